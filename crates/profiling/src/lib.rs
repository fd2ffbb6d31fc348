//! `Profiler` over the process itself: [`ProcessProfiler`] answers CPU
//! flamegraphs (`cpu`, pprof's SIGPROF sampler) and heap profiles (`heap`,
//! jemalloc's own profiler) for `GET /v1/admin/profile/{cpu,heap}` and
//! `rushhour profile [--heap]`.
//!
//! Why a crate of its own: pprof and jemalloc_pprof (with their
//! unwinders, symbolizers and flamegraph renderers) are the only users of
//! those dependencies, and the API crate must not depend on them; the
//! binary wires this in. Why one port for both rather than a port per
//! kind: the API holds one `Profiler`, and "this process cannot take a
//! heap profile" is a property of the process the port can state
//! (`heap_support`).

mod cpu;
mod heap;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use domain::ports::{HeapFormat, HeapProfile, PortResult, Profiler};

pub use cpu::{CpuProfiler, FREQUENCY};
pub use heap::{HeapProfiler, declare_jemalloc_global, keep_on_from_start};

/// The process's profilers, CPU and heap; one of each kind at a time.
#[derive(Debug, Default)]
pub struct ProcessProfiler {
    cpu: CpuProfiler,
    heap: HeapProfiler,
}

impl ProcessProfiler {
    /// The process's one profiler (pprof's sampler and jemalloc's profiler
    /// are process-wide; sharing one makes a second ask a clean
    /// `Conflict`).
    pub fn shared() -> Arc<ProcessProfiler> {
        static SHARED: OnceLock<Arc<ProcessProfiler>> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(ProcessProfiler::default())).clone()
    }
}

#[async_trait]
impl Profiler for ProcessProfiler {
    async fn cpu_flamegraph(&self, duration: Duration) -> PortResult<Vec<u8>> {
        self.cpu.flamegraph(duration).await
    }

    fn heap_support(&self) -> Result<(), String> {
        heap::support()
    }

    async fn heap_profile(&self, window: Duration, format: HeapFormat) -> PortResult<HeapProfile> {
        self.heap.profile(window, format).await
    }
}
