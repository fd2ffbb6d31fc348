//! `OpsStore`: what operating the service writes and reads back — sync
//! runs, performance snapshots, the nightly cleanup and planner
//! maintenance. None of it is on a request's path.

use async_trait::async_trait;

use super::{PortResult, StoreBackend};
use crate::ops::{PerfSnapshot, PruneStats, Retention, SyncRun};

/// Operations: sync runs, snapshots, retention and maintenance.
#[async_trait]
pub trait OpsStore: StoreBackend {
    async fn record_sync_run(&self, run: &SyncRun) -> PortResult<()>;

    /// Newest first; `kind` filters.
    async fn sync_runs(&self, kind: Option<&str>, limit: u32) -> PortResult<Vec<SyncRun>>;

    async fn record_snapshot(&self, snapshot: &PerfSnapshot) -> PortResult<()>;

    /// Newest first.
    async fn snapshots(&self, limit: u32) -> PortResult<Vec<PerfSnapshot>>;

    /// Nightly cleanup: delete what `retention` no longer keeps.
    async fn prune(&self, retention: &Retention) -> PortResult<PruneStats>;

    /// Refresh planner statistics (`ANALYZE` / `PRAGMA optimize`); returns
    /// a line saying what ran.
    async fn maintain(&self) -> PortResult<String>;
}
