//! `Profiler` over the process itself: `CpuProfiler` samples every thread
//! with `pprof` (SIGPROF at [`FREQUENCY`] Hz) for the asked duration and
//! answers a flamegraph SVG, for `GET /v1/admin/profile/cpu` and
//! `rushhour profile`.
//!
//! Why a crate of its own: pprof (with its unwinder, symbolizer and the
//! flamegraph renderer) is the only user of those dependencies, and the
//! API crate must not depend on it; the binary wires it in.
//!
//! Why sampling only while asked, not always on: the signal handler walks
//! the stack of whichever thread it interrupts; at 99 Hz that is cheap,
//! but a profile nobody reads is pure cost. One profile at a time (pprof
//! has one global profiler); a second ask while one runs is a `Conflict`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use domain::ports::{PortError, PortResult, Profiler};
use tokio::sync::Mutex;

/// Samples per second: prime, so the sampling does not beat with a
/// periodic task (the usual choice of `perf record -F 99`).
pub const FREQUENCY: i32 = 99;

/// Libraries whose frames are skipped at the top of a sample: unwinding
/// from inside them can deadlock in the signal handler (pprof's advice).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// The process's CPU profiler. One per process.
#[derive(Debug, Default)]
pub struct CpuProfiler {
    running: Mutex<()>,
}

impl CpuProfiler {
    /// The process's one profiler (pprof's sampler is process-wide, so two
    /// instances could not run at once anyway; sharing one makes the
    /// refusal a clean `Conflict`).
    pub fn shared() -> Arc<CpuProfiler> {
        static SHARED: OnceLock<Arc<CpuProfiler>> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(CpuProfiler::default())).clone()
    }
}

#[async_trait]
impl Profiler for CpuProfiler {
    async fn cpu_flamegraph(&self, duration: Duration) -> PortResult<Vec<u8>> {
        let Ok(_running) = self.running.try_lock() else {
            return Err(PortError::Conflict("a CPU profile is already running".into()));
        };
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            .blocklist(&BLOCKLIST)
            .build()
            .map_err(|e| PortError::Unavailable(format!("cannot start the CPU profiler: {e}")))?;
        tokio::time::sleep(duration).await;
        // Symbolizing and rendering take a while and are CPU work: off the
        // async workers. The guard stops sampling when dropped there.
        tokio::task::spawn_blocking(move || {
            let report = guard
                .report()
                .build()
                .map_err(|e| PortError::Unavailable(format!("cannot build the CPU profile: {e}")))?;
            drop(guard);
            let mut svg = Vec::new();
            report
                .flamegraph(&mut svg)
                .map_err(|e| PortError::Unavailable(format!("cannot render the flamegraph: {e}")))?;
            tracing::info!(samples = report.data.len(), bytes = svg.len(), "CPU profile taken");
            Ok(svg)
        })
        .await
        .map_err(|e| PortError::Unavailable(format!("profile thread: {e}")))?
    }
}
