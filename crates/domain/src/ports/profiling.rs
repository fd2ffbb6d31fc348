//! `Profiler`: what the process spends its time on and what holds its
//! memory, sampled while an operator asks (`GET /v1/admin/profile/cpu`,
//! `GET /v1/admin/profile/heap`, `rushhour profile [--heap]`). A port so
//! the API (which knows only `domain`) can serve it; the sampling itself
//! is `crates/profiling`'s.

use std::time::Duration;

use async_trait::async_trait;

use super::PortResult;

/// How a heap profile is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapFormat {
    /// A flamegraph SVG of live bytes by call site, for a browser.
    Flamegraph,
    /// The raw pprof protobuf (gzipped), for `go tool pprof` / `pprof
    /// -http`, which can also diff two of them (`-diff_base`).
    Pprof,
}

/// Which allocations a heap profile covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapWindow {
    /// Every sampled allocation still live since the process started
    /// (heap profiling was switched on at start).
    SinceStart,
    /// Allocations made during the last so long that are still live.
    Last(Duration),
}

/// A heap profile and what it covers.
#[derive(Debug, Clone)]
pub struct HeapProfile {
    pub body: Vec<u8>,
    pub window: HeapWindow,
}

#[async_trait]
pub trait Profiler: Send + Sync {
    /// Sample every thread for `duration`, answer a flamegraph SVG. One at
    /// a time: `Conflict` while another runs.
    async fn cpu_flamegraph(&self, duration: Duration) -> PortResult<Vec<u8>>;

    /// `Err(why)` when this process cannot take heap profiles at all (it
    /// does not allocate through a profiling allocator): asking would
    /// never work, unlike a busy or failing profiler.
    fn heap_support(&self) -> Result<(), String>;

    /// Live allocations by call site: those since start when heap
    /// profiling is always on, else those made during `window` and still
    /// live at its end. One at a time: `Conflict` while another runs.
    async fn heap_profile(&self, window: Duration, format: HeapFormat) -> PortResult<HeapProfile>;
}
