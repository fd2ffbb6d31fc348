//! The CPU half of the process's `Profiler`: `CpuProfiler` samples every
//! thread with `pprof` (SIGPROF at [`FREQUENCY`] Hz) for the asked
//! duration and answers a flamegraph SVG, for `GET /v1/admin/profile/cpu`
//! and `rushhour profile`.
//!
//! Why sampling only while asked, not always on: the signal handler walks
//! the stack of whichever thread it interrupts; at 99 Hz that is cheap,
//! but a profile nobody reads is pure cost. One profile at a time (pprof
//! has one global profiler); a second ask while one runs is a `Conflict`.

use std::time::Duration;

use domain::ports::{PortError, PortResult};
use tokio::sync::Mutex;

/// Samples per second: prime, so the sampling does not beat with a
/// periodic task (the usual choice of `perf record -F 99`).
pub const FREQUENCY: i32 = 99;

/// Libraries whose frames are skipped at the top of a sample: unwinding
/// from inside them can deadlock in the signal handler (pprof's advice).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// The process's CPU profiler. One per process (held by
/// [`crate::ProcessProfiler::shared`]).
#[derive(Debug, Default)]
pub struct CpuProfiler {
    running: Mutex<()>,
}

impl CpuProfiler {
    /// Sample for `duration`, answer the flamegraph SVG; `Conflict` while
    /// another CPU profile runs.
    pub async fn flamegraph(&self, duration: Duration) -> PortResult<Vec<u8>> {
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
