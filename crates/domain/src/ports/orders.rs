//! `OrderStore`: orders and their lifecycle, the live events they emit,
//! the processors' consumer positions and the dead letters set aside with
//! their batches — everything the hot path (`apply_batch`) writes in one
//! transaction, and what the API reads back.

use async_trait::async_trait;

use super::{PortResult, StoreBackend};
use crate::events::{LiveEvent, OrderPlacedV1, PaymentV1};
use crate::ids::{OrderId, StoreId};
use crate::menu::Station;
use crate::order::{Action, Order, OrderStatus, TransitionError};

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
    /// The W3C `traceparent` of the order's log record, kept on the order
    /// row so later actions on the order link to its trace.
    pub trace: Option<String>,
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
    /// Only the order(s) with this pickup code (codes repeat across days
    /// and stores: combine with `store` and `placed_since`).
    pub pickup_code: Option<String>,
    /// Only orders placed at or after this time (epoch ms).
    pub placed_since: Option<i64>,
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
    pub name: Option<String>,
    pub pickup_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventScope {
    Order(OrderId),
    Store(StoreId),
}

/// A store's board as of now (`OrderStore::open_board`): where its live tail
/// starts, and what to draw first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardSnapshot {
    /// The id of the store's newest event when the snapshot was read (0 if
    /// it has none): a live tail resumes after it, losing nothing.
    pub cursor: i64,
    /// Every event, oldest first, of the store's open orders (not in a
    /// terminal status) placed since the window's start, none newer than
    /// `cursor`, at most the limit asked for.
    pub events: Vec<LiveEvent>,
}

/// What a station's board draws first (`OrderStore::tickets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketsQuery {
    pub store: StoreId,
    /// Only tickets of this station; `None` for both.
    pub station: Option<Station>,
    /// Open orders placed at or after this time (epoch ms).
    pub placed_since: i64,
    /// Recently finished orders: their last line of the station done at or
    /// after this time (epoch ms).
    pub done_since: i64,
    pub open_limit: u32,
    pub recent_limit: u32,
}

/// A station board's tickets as of now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketsSnapshot {
    /// The store's newest event id, read before the orders: a board stream
    /// opened after it (`?after=`) misses no change to them.
    pub cursor: i64,
    /// Orders `confirmed` or `in_progress` with a line of the station not
    /// done, oldest first.
    pub open: Vec<Order>,
    /// Orders whose lines of the station are all done, the last of them at
    /// or after `done_since`, most recently finished first.
    pub recent: Vec<Order>,
}

/// The public pickup board as of now (`OrderStore::pickup_board`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PickupSnapshot {
    /// The store's newest event id, read before the orders.
    pub cursor: i64,
    /// Orders with a pickup code that are `confirmed`, `in_progress` or
    /// `ready`, oldest first, *without their lines* (the board shows none).
    pub orders: Vec<Order>,
}

/// Everything written to a batch by `OrderStore::apply_batch`.
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
    /// New events added to their order's payment history; the newest of
    /// the history by the provider's time sets the status, so an older
    /// event arriving late counts here but changes nothing.
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

/// One processor batch for `OrderStore::apply_batch`: what to write, and
/// where `group`'s position on `partition` moves to. A struct rather than
/// seven arguments, so every backend and decorator passes it on whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyBatch<'a> {
    pub group: &'a str,
    pub partition: u32,
    /// The consumer position after this batch.
    pub next_offset: u64,
    pub orders: &'a [Decided],
    pub payments: &'a [PaymentV1],
    pub dead: &'a [DeadLetter],
    /// When the batch is applied (epoch ms).
    pub now: i64,
}

impl<'a> ApplyBatch<'a> {
    /// A batch that only moves the position; fill in `orders`, `payments`
    /// or `dead` with struct update syntax.
    pub fn new(group: &'a str, partition: u32, next_offset: u64, now: i64) -> Self {
        Self {
            group,
            partition,
            next_offset,
            orders: &[],
            payments: &[],
            dead: &[],
            now,
        }
    }
}

/// Orders, their live events, consumer positions and dead letters.
#[async_trait]
pub trait OrderStore: StoreBackend {
    /// Where `group` should resume reading `partition` (0 if never read).
    async fn consumer_position(&self, group: &str, partition: u32) -> PortResult<u64>;

    /// In one transaction: insert the decided orders with their lines and
    /// tickets (an order already present is skipped, so a replayed batch
    /// changes nothing), apply the payments after them (each `event_id` at
    /// most once, the newest by `provider_ts` deciding the status; see
    /// `PaymentV1`), store the dead letters, and move
    /// `group`'s position on `partition` to `next_offset`.
    async fn apply_batch(&self, batch: ApplyBatch<'_>) -> PortResult<BatchApplied>;

    async fn get_order(&self, id: OrderId) -> PortResult<Option<Order>>;

    /// The W3C `traceparent` the order was placed under (`Decided::trace`),
    /// if it was traced. Asked only with traces exported, by a staff action
    /// linking its span to the order's trace.
    async fn order_trace(&self, id: OrderId) -> PortResult<Option<String>>;

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

    /// `transition` with `Action::Cancel`, storing `reason` (if any) with
    /// the order in the same transaction.
    async fn cancel(
        &self,
        id: OrderId,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError>;

    /// Events in `scope` with an id greater than `after`, oldest first,
    /// each with its order's pickup code and name as they are now.
    async fn events_after(&self, scope: &EventScope, after: i64, limit: u32) -> PortResult<Vec<LiveEvent>>;

    /// What a board opened without `Last-Event-ID` draws: the tickets still
    /// open instead of the store's whole history. Reads the store's newest
    /// event id first, then the events (oldest first, at most `limit`, none
    /// newer than that id) of the orders of `store` placed at or after
    /// `placed_since` whose status is not terminal. An order that changes
    /// in between is complete either way: its newer events follow in the
    /// tail after the cursor. Here rather than on a port of its own because
    /// it reads the very rows `events_after` reads.
    async fn open_board(&self, store: &StoreId, placed_since: i64, limit: u32) -> PortResult<BoardSnapshot>;

    /// A station board's snapshot (`TicketsSnapshot`): the cursor first,
    /// then the open and the recently finished orders with their lines.
    /// Here with `open_board` for the same reason: it reads the rows the
    /// board's stream reads.
    async fn tickets(&self, query: &TicketsQuery) -> PortResult<TicketsSnapshot>;

    /// The pickup board's snapshot (`PickupSnapshot`) of the orders of
    /// `store` placed at or after `placed_since`, at most `limit`.
    async fn pickup_board(&self, store: &StoreId, placed_since: i64, limit: u32) -> PortResult<PickupSnapshot>;

    /// Newest first.
    async fn dead_letters(&self, limit: u32) -> PortResult<Vec<DeadLetter>>;

    /// Forget the dead letter `group` set aside at `partition`/`offset`
    /// (it was re-driven into the log). `false` if there was none.
    async fn remove_dead_letter(&self, group: &str, partition: u32, offset: u64) -> PortResult<bool>;

    /// Expire up to `limit` orders that became ready before `ready_before`
    /// and were not picked up (`ready` → `expired`, at `now`), in one
    /// transaction; returns their live events.
    async fn expire_ready(&self, ready_before: i64, limit: u32, now: i64) -> PortResult<Vec<LiveEvent>>;

    /// Orders per status (for snapshots and `monitor`).
    async fn order_counts(&self) -> PortResult<Vec<(OrderStatus, u64)>>;
}
