//! `Profiler`: what the process spends its time on, sampled while an
//! operator asks (`GET /v1/admin/profile/cpu`, `rushhour profile`). A port
//! so the API (which knows only `domain`) can serve it; the sampling
//! itself is `crates/profiling`'s.

use std::time::Duration;

use async_trait::async_trait;

use super::PortResult;

#[async_trait]
pub trait Profiler: Send + Sync {
    /// Sample every thread for `duration`, answer a flamegraph SVG. One at
    /// a time: `Conflict` while another runs.
    async fn cpu_flamegraph(&self, duration: Duration) -> PortResult<Vec<u8>>;
}
