//! `Fleet`: the running instances of a deployment, and the operator
//! commands broadcast to them (issue 12: `rushhour sync`, `warmup` and
//! `cache clear` must reach the server that is running, not only the CLI's
//! own short-lived process).
//!
//! It lives in the store because the store is the one thing every process
//! of a deployment already shares, in both modes: the SQLite file on one
//! box (so `rushhour serve` in one terminal and `rushhour sync all` in
//! another need no setup), PostgreSQL in scale mode. See `domain::fleet`
//! for the protocol and the rejected alternatives.

use async_trait::async_trait;

use super::{PortResult, StoreBackend};

/// One running process as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `jobs.worker_id` (default `<host>-<pid>`).
    pub id: String,
    /// `serve`, `api` or `worker`.
    pub role: String,
    /// Where it listens (`127.0.0.1:8080`), or empty.
    pub addr: String,
    pub started_at: i64,
    /// Its last heartbeat (epoch ms).
    pub seen_at: i64,
    /// The newest broadcast it has carried out (0: none yet).
    pub acked: i64,
}

/// An operator command broadcast to every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Increasing; instances carry broadcasts out in this order.
    pub seq: i64,
    /// What to do (`domain::fleet::Command` names, comma-separated).
    pub commands: String,
    pub issued_at: i64,
}

/// The instance registry and its broadcast channel.
#[async_trait]
pub trait Fleet: StoreBackend {
    /// Register `instance` or refresh its row (heartbeat, acked broadcast);
    /// rows not seen for a day are forgotten on the way.
    async fn beat(&self, instance: &Instance) -> PortResult<()>;

    /// Remove an instance (a clean shutdown).
    async fn leave(&self, id: &str) -> PortResult<()>;

    /// The instances seen at or after `since`, by id.
    async fn instances(&self, since: i64) -> PortResult<Vec<Instance>>;

    /// Record a broadcast; returns its `seq`. Broadcasts older than a day
    /// are forgotten on the way.
    async fn broadcast(&self, commands: &str, now: i64) -> PortResult<i64>;

    /// The broadcasts after `seq`, oldest first.
    async fn broadcasts_after(&self, seq: i64) -> PortResult<Vec<Broadcast>>;

    /// The newest broadcast's `seq` (0 when there is none).
    async fn last_broadcast(&self) -> PortResult<i64>;
}
