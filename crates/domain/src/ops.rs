//! Records of the background machinery that the store keeps for operators:
//! loyalty accounts mirrored from the external loyalty service, the stats of
//! each upstream sync run, periodic performance snapshots, and what the
//! nightly cleanup removed.

use serde::{Deserialize, Serialize};

/// A loyalty account as mirrored from the external loyalty service
/// (≈150k of them). `version` is the service's change stamp: an upsert
/// only overwrites a row with an older one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyAccount {
    pub id: String,
    pub email: Option<String>,
    pub name: String,
    pub tier: String,
    pub points: i64,
    /// The service's change stamp (epoch ms of its last change).
    pub version: i64,
}

/// One run of an upstream sync (`menu` or `accounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// `menu` or `accounts`.
    pub kind: String,
    pub started_at: i64,
    pub finished_at: i64,
    /// Records fetched from upstream.
    pub fetched: u64,
    /// Records that differed from the store and were written.
    pub changed: u64,
    /// Statements sent to the store during the run.
    pub db_queries: u64,
    /// Failed upstream calls (retried or not).
    pub errors: u64,
    /// `ok`, `not_modified`, or `failed: …`.
    pub outcome: String,
}

/// A row of key metrics written every few minutes (`perf.snapshot` job),
/// shown by `rushhour monitor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfSnapshot {
    pub at: i64,
    /// Which process took it.
    pub instance: String,
    /// Free-form named figures (orders per minute, queue depths, lag, …).
    pub metrics: serde_json::Value,
}

/// What the nightly cleanup keeps: rows older than these cut-offs (epoch
/// ms) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished orders (picked up, cancelled, expired, rejected) placed
    /// before this go, with their lines, tickets and events.
    pub orders_before: i64,
    /// Sync runs and performance snapshots before this go.
    pub records_before: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneStats {
    pub orders: u64,
    pub records: u64,
}
