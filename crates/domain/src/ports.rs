//! The port traits: everything the domain needs from the outside world.
//!
//! Each port has an embedded backend (SQLite, in-process) and a scale
//! backend (PostgreSQL, Redis, Kafka); `testkit` holds one contract suite per
//! port that every backend must pass. Every port has `health()` for
//! `/health/ready`, and every fallible call returns `PortError`, which says
//! whether retrying can help; adapters translate their client's errors at
//! the boundary so no driver error type leaks past them.

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{LiveEvent, OrderPlacedV1, PaymentV1};
use crate::ids::{OrderId, StoreId};
use crate::menu::{Category, Item, Menu, MenuSnapshot, StoreInfo};
use crate::ops::{LoyaltyAccount, PerfSnapshot, PruneStats, Retention, SyncRun};
use crate::order::{Action, Order, OrderStatus, TransitionError};

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
}

/// A change in the partitions a consumer-group member owns.
#[derive(Debug)]
pub enum Rebalance {
    /// These partitions are now this member's to process, each from the
    /// position its group stored in the `Store`.
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
    /// `next`. The consumer's own position lives in the `Store`, written in
    /// the same transaction as the batch; this is what the log may prune by.
    async fn commit(&self, group: &str, partition: u32, next: u64) -> PortResult<()>;

    /// Join consumer group `group`: the log decides which partitions this
    /// process consumes, and tells it through the returned `Membership`.
    /// A log read by one process at a time assigns every partition at once
    /// and never revokes them.
    async fn join(&self, group: &str) -> PortResult<Membership>;

    /// Set a record that could not be applied aside in the log's dead-letter
    /// area as well (the `Store` keeps the authoritative copy, which
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

/// What a processor decided about a placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Confirm,
    Reject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub placed: OrderPlacedV1,
    pub decision: Decision,
}

/// A record that could not be applied and was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub group: String,
    pub partition: u32,
    pub offset: u64,
    pub key: String,
    pub payload: Vec<u8>,
    pub error: String,
    pub attempts: u32,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFilter {
    pub store: Option<StoreId>,
    pub status: Option<OrderStatus>,
    /// Keyset cursor: only orders with a smaller id (older) than this.
    pub before: Option<OrderId>,
    pub limit: u32,
}

/// An order without its lines, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub id: OrderId,
    pub store: StoreId,
    pub status: OrderStatus,
    pub customer: Option<String>,
    pub currency: String,
    pub total: i64,
    pub placed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventScope {
    Order(OrderId),
    Store(StoreId),
}

/// Everything written to a batch by `Store::apply_batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchApplied {
    /// Orders that were new (replays of already-applied records are skipped).
    pub inserted: usize,
    pub events: Vec<LiveEvent>,
    pub payments: PaymentsApplied,
}

/// What became of a batch's payments. Every payment lands in exactly one
/// count; all but `duplicates` are recorded under their `event_id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaymentsApplied {
    /// New events that set their order's payment status.
    pub applied: usize,
    /// Events already recorded (earlier, or earlier in the same batch):
    /// nothing changed.
    pub duplicates: usize,
    /// New events for an order the store does not have; recorded, so a
    /// redelivery is still a duplicate, but nothing changed.
    pub unknown_order: usize,
    /// New `paid` events whose amount or currency differ from the order's
    /// total; recorded, order left as it was.
    pub mismatched: usize,
}

/// Durable state: stores, menus, orders, tickets, consumer positions.
#[async_trait]
pub trait Store: Send + Sync {
    async fn list_stores(&self) -> PortResult<Vec<StoreInfo>>;

    /// The store's menu with current availability, or `None` for an unknown store.
    async fn load_menu(&self, store: &StoreId) -> PortResult<Option<Menu>>;

    /// Create or replace a store and its whole menu.
    async fn upsert_menu(&self, menu: &Menu) -> PortResult<()>;

    /// 86 an item or bring it back. `false` if the store has no such sku.
    async fn set_availability(&self, store: &StoreId, sku: &str, available: bool) -> PortResult<bool>;

    /// Where `group` should resume reading `partition` (0 if never read).
    async fn consumer_position(&self, group: &str, partition: u32) -> PortResult<u64>;

    /// In one transaction: insert the decided orders with their lines and
    /// tickets (an order already present is skipped, so a replayed batch
    /// changes nothing), apply the payments after them (each `event_id` at
    /// most once; see `PaymentV1`), store the dead letters, and move
    /// `group`'s position on `partition` to `next_offset`.
    #[allow(clippy::too_many_arguments)]
    async fn apply_batch(
        &self,
        group: &str,
        partition: u32,
        next_offset: u64,
        orders: &[Decided],
        payments: &[PaymentV1],
        dead: &[DeadLetter],
        now: i64,
    ) -> PortResult<BatchApplied>;

    async fn get_order(&self, id: OrderId) -> PortResult<Option<Order>>;

    /// Newest first, keyset-paginated.
    async fn list_orders(&self, filter: &OrderFilter) -> PortResult<Vec<OrderSummary>>;

    /// Apply a guarded lifecycle action in one transaction (rules from
    /// `order::plan`); returns the new order and the events it produced.
    async fn transition(
        &self,
        id: OrderId,
        action: Action,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError>;

    /// Events in `scope` with an id greater than `after`, oldest first.
    async fn events_after(&self, scope: &EventScope, after: i64, limit: u32) -> PortResult<Vec<LiveEvent>>;

    /// Newest first.
    async fn dead_letters(&self, limit: u32) -> PortResult<Vec<DeadLetter>>;

    /// Forget the dead letter `group` set aside at `partition`/`offset`
    /// (it was re-driven into the log). `false` if there was none.
    async fn remove_dead_letter(&self, group: &str, partition: u32, offset: u64) -> PortResult<bool>;

    // ---- catalog sync

    /// Write a sync's diff into `store`'s menu in one transaction: set the
    /// categories (upsert by code), upsert `items` by sku (a new item is
    /// available; an existing item keeps its availability), and delete the
    /// items in `removed`. The menu cache is the caller's to invalidate.
    async fn apply_menu_diff(
        &self,
        store: &StoreId,
        categories: &[Category],
        items: &[Item],
        removed: &[String],
    ) -> PortResult<()>;

    // ---- loyalty accounts

    /// Bulk upsert in one statement per call (callers chunk): a row is only
    /// overwritten by a newer `version`. When `cursor` is given, the
    /// `accounts` sync cursor is set to it in the same transaction.
    async fn upsert_accounts(&self, accounts: &[LoyaltyAccount], cursor: Option<&str>) -> PortResult<u64>;

    async fn loyalty_account(&self, id: &str) -> PortResult<Option<LoyaltyAccount>>;

    async fn count_accounts(&self) -> PortResult<u64>;

    /// The cursor a sync of `kind` left last (`None` before the first).
    async fn sync_cursor(&self, kind: &str) -> PortResult<Option<String>>;

    async fn set_sync_cursor(&self, kind: &str, cursor: Option<&str>) -> PortResult<()>;

    // ---- operations

    async fn record_sync_run(&self, run: &SyncRun) -> PortResult<()>;

    /// Newest first; `kind` filters.
    async fn sync_runs(&self, kind: Option<&str>, limit: u32) -> PortResult<Vec<SyncRun>>;

    async fn record_snapshot(&self, snapshot: &PerfSnapshot) -> PortResult<()>;

    /// Newest first.
    async fn snapshots(&self, limit: u32) -> PortResult<Vec<PerfSnapshot>>;

    /// Expire up to `limit` orders that became ready before `ready_before`
    /// and were not picked up (`ready` → `expired`, at `now`), in one
    /// transaction; returns their live events.
    async fn expire_ready(&self, ready_before: i64, limit: u32, now: i64) -> PortResult<Vec<LiveEvent>>;

    /// Orders per status (for snapshots and `monitor`).
    async fn order_counts(&self) -> PortResult<Vec<(OrderStatus, u64)>>;

    /// Nightly cleanup: delete what `retention` no longer keeps.
    async fn prune(&self, retention: &Retention) -> PortResult<PruneStats>;

    /// Refresh planner statistics (`ANALYZE` / `PRAGMA optimize`); returns
    /// a line saying what ran.
    async fn maintain(&self) -> PortResult<String>;

    async fn health(&self) -> PortResult<()>;
}

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
