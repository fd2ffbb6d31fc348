//! The port traits: everything the domain needs from the outside world.
//!
//! Each port has an embedded backend (SQLite, in-process) and a scale
//! backend (PostgreSQL, Redis, Kafka); `testkit` holds one contract suite per
//! port that every backend must pass. Every port has `health()` for
//! `/health/ready`, and every fallible call returns `PortError`, which says
//! whether retrying can help; adapters translate their client's errors at
//! the boundary so no driver error type leaks past them.
//!
//! Ports are narrow, one per capability: the store is `OrderStore`,
//! `MenuStore`, `AccountStore`, `OpsStore`, `UserStore` and `AuditLog` (one
//! module each under `ports/`, the last two sharing `identity`), and code
//! that needs one capability takes that port, not the `Store` aggregate. A new capability (users, sessions, audit, webhook
//! subscriptions, ...) gets a new narrow port of its own, in its own
//! module, added to the aggregate if one backend serves it; it never adds
//! methods to an existing port it does not belong to.

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;

use crate::events::LiveEvent;
use crate::ids::StoreId;
use crate::menu::MenuSnapshot;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The backend could not be reached or timed out; retrying may help.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Data violated a constraint; retrying the same call will not help.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    /// Stored data could not be read back (corrupt, or written by a newer
    /// binary); retrying will not help.
    #[error("invalid data: {0}")]
    Invalid(String),
}

impl PortError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Unavailable(_))
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// Time, injectable so tests can move it. The runtime-backed implementation
/// lives with the runtime (`worker::TokioClock`); this crate knows none.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- EventLog

/// Where a record landed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// An idempotency key claimed atomically with an append: either both the
/// record and the claim become durable, or neither does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    /// Hash of the canonical request; a reuse with another body is refused.
    pub fingerprint: String,
    pub status: u16,
    pub response: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    pub status: u16,
    pub response: Vec<u8>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Partitioning key (the order id); records with one key stay in order.
    pub key: String,
    pub payload: Vec<u8>,
    pub idempotency: Option<IdempotencyClaim>,
    /// W3C `traceparent` to store with the record. `None` lets the log take
    /// its append span's context (nothing when tracing is off); a re-drive
    /// passes the original record's to keep the order's trace.
    pub trace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Durable at this position.
    Appended(Position),
    /// The idempotency key was already claimed; nothing was appended.
    Duplicate(IdempotencyRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub partition: u32,
    pub offset: u64,
    pub key: String,
    pub payload: Vec<u8>,
    pub appended_at: i64,
    /// The W3C `traceparent` of the append that wrote it; `None` for a
    /// record written with tracing off, or before the log kept one.
    pub trace: Option<String>,
}

/// A change in the partitions a consumer-group member owns.
#[derive(Debug)]
pub enum Rebalance {
    /// These partitions are now this member's to process, each from the
    /// position its group stored in the `OrderStore`.
    Assigned(Vec<u32>),
    /// These partitions are being taken away: finish (or abandon) the batch
    /// in hand, stop reading them, then send on `done`. Until then the log
    /// hands them to no one else.
    Revoked {
        partitions: Vec<u32>,
        done: futures::channel::oneshot::Sender<()>,
    },
}

/// Membership in a consumer group: a stream of `Rebalance`s. Dropping it
/// leaves the group (its partitions move to the other members).
pub struct Membership {
    events: futures::channel::mpsc::UnboundedReceiver<Rebalance>,
    _member: Box<dyn Send + Sync>,
}

impl Membership {
    /// `member` is whatever keeps the membership alive (a group consumer);
    /// it is dropped with the `Membership`.
    pub fn new(events: futures::channel::mpsc::UnboundedReceiver<Rebalance>, member: Box<dyn Send + Sync>) -> Self {
        Self {
            events,
            _member: member,
        }
    }

    /// The next change; `None` once the log has ended the membership.
    pub async fn next(&mut self) -> Option<Rebalance> {
        use futures::StreamExt;
        self.events.next().await
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").finish_non_exhaustive()
    }
}

/// A partitioned, durable, append-only log of records.
#[async_trait]
pub trait EventLog: Send + Sync {
    fn partitions(&self) -> u32;

    /// Append one record; returns only once it is durable (or refused as a
    /// duplicate idempotency key). Backends gather concurrent appends into
    /// shared durable writes (group commit).
    async fn append(&self, req: AppendRequest) -> PortResult<AppendOutcome>;

    async fn idempotency(&self, key: &str) -> PortResult<Option<IdempotencyRecord>>;

    /// The newest record with this key, for read-your-writes before the
    /// processors have applied it.
    async fn find(&self, key: &str) -> PortResult<Option<LogRecord>>;

    /// Up to `max` records of `partition` from offset `from` on, in order,
    /// without gaps. When none are there yet, waits up to `wait` for the
    /// first to arrive. A record that is durable at `from` is always
    /// returned, even with a zero `wait`; of those after it, a backend that
    /// fetches over a network may return only what it has at hand (a
    /// shorter batch), never skipping one.
    async fn read(&self, partition: u32, from: u64, max: usize, wait: Duration) -> PortResult<Vec<LogRecord>>;

    /// The offset the next record of `partition` will get.
    async fn end_offset(&self, partition: u32) -> PortResult<u64>;

    /// Tell the log that `group` has durably consumed `partition` below
    /// `next`. The consumer's own position lives in the `OrderStore`, written in
    /// the same transaction as the batch; this is what the log may prune by.
    async fn commit(&self, group: &str, partition: u32, next: u64) -> PortResult<()>;

    /// Join consumer group `group`: the log decides which partitions this
    /// process consumes, and tells it through the returned `Membership`.
    /// A log read by one process at a time assigns every partition at once
    /// and never revokes them.
    async fn join(&self, group: &str) -> PortResult<Membership>;

    /// Set a record that could not be applied aside in the log's dead-letter
    /// area as well (the `OrderStore` keeps the authoritative copy, which
    /// `replay-dlq` re-drives). A log without such an area accepts and drops it.
    async fn dead_letter(&self, letter: &DeadLetter) -> PortResult<()> {
        let _ = letter;
        Ok(())
    }

    /// Forget idempotency keys claimed before `before` (epoch ms; keys are
    /// kept at least 24 h). Returns how many went.
    async fn prune_idempotency(&self, before: i64) -> PortResult<u64>;

    async fn health(&self) -> PortResult<()>;
}

// ------------------------------------------------------------------- Store

// The store is narrow ports over one backend (one module each), plus
// the `Store` aggregate the wiring holds; see `ports::store`.
mod accounts;
mod backups;
mod fleet;
mod identity;
mod limits;
mod menus;
mod ops;
mod orders;
mod points;
mod profiling;
mod reports;
mod sessions;
mod store;
mod webhooks;

pub use accounts::AccountStore;
pub use backups::{BackupTaken, Backups};
pub use fleet::{Broadcast, Fleet, Instance};
pub use identity::{AuditLog, AuditQuery, UserStore};
pub use limits::{Quota, RateDecision, RateLimiter};
pub use menus::MenuStore;
pub use ops::OpsStore;
pub use orders::{
    ApplyBatch, BatchApplied, BoardSnapshot, DeadLetter, Decided, Decision, EventScope, OrderFilter, OrderStore,
    OrderSummary, PaymentsApplied, PickupSnapshot, TicketsQuery, TicketsSnapshot,
};
pub use points::{PointsAward, PointsLedger};
pub use profiling::{HeapFormat, HeapProfile, HeapWindow, Profiler};
pub use reports::{DayRows, HourRow, PopularItem, PrepSample, ReportStore};
pub use sessions::{LoginAttempts, SessionStore};
pub use store::{Store, StoreBackend};
pub use webhooks::{Outgoing, SentResponse, WebhookSender, WebhookStore};

// --------------------------------------------------------------- MenuCache

pub type MenuLoad<'a> = BoxFuture<'a, PortResult<Arc<MenuSnapshot>>>;

/// Menu snapshots by store. Implementations load a missing entry at most
/// once at a time per store (single flight): a hundred concurrent misses
/// cause one store query.
#[async_trait]
pub trait MenuCache: Send + Sync {
    async fn get_or_load(&self, store: &StoreId, load: MenuLoad<'_>) -> PortResult<Arc<MenuSnapshot>>;

    /// Drop the store's entry everywhere (every instance, in scale mode).
    async fn invalidate(&self, store: &StoreId) -> PortResult<()>;

    async fn clear(&self) -> PortResult<()>;

    async fn health(&self) -> PortResult<()>;
}

// ------------------------------------------------------------------ Mailer

/// A plain message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Outgoing e-mail: SMTP in production, `.eml` files in the embedded
/// default's outbox.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hand the message over for delivery. `Unavailable` is worth a retry;
    /// `Invalid` (a malformed address) is not.
    async fn send(&self, email: &Email) -> PortResult<()>;
}

// ---------------------------------------------------------------- LiveFeed

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Event(LiveEvent),
    /// The subscriber fell behind and missed events; re-read from the store.
    Lagged,
}

/// Fan-out of committed live events to every SSE subscriber (every
/// instance, in scale mode). Best effort: the store is the source of truth
/// and subscribers resume from it.
#[async_trait]
pub trait LiveFeed: Send + Sync {
    async fn publish(&self, events: &[LiveEvent]) -> PortResult<()>;

    async fn subscribe(&self) -> PortResult<BoxStream<'static, FeedItem>>;
}
