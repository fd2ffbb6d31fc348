//! `WebhookStore` and `WebhookSender`: the two ports outbound webhooks need.
//!
//! `WebhookStore` holds the subscribers, the outbox of order events waiting
//! to be fanned out, and one delivery row per (subscriber, event). The
//! outbox is filled by the store itself, in the transaction that records
//! the order change (triggers on the live events and payment rows, migration
//! 0006), so no change is ever committed without its webhook event and no
//! code on the order path knows webhooks exist. A port of its own: nothing
//! here is on an order's path, and the order ports stay as they were.
//!
//! `WebhookSender` is the HTTP client (reqwest over rustls in
//! `crates/upstream`), so the delivery rules in `domain::webhooks` stay
//! free of IO and are tested against a real receiver.

use async_trait::async_trait;
use std::time::Duration;

use super::{PortResult, StoreBackend};
use crate::webhooks::{Attempt, Delivery, DeliveryState, NewSubscriber, Subscriber, SubscriberId, SubscriberPatch};

#[async_trait]
pub trait WebhookStore: StoreBackend {
    /// Add a subscriber; returns it with its id.
    async fn create_subscriber(&self, new: &NewSubscriber) -> PortResult<Subscriber>;

    /// Every subscriber, oldest first (secrets included: callers that show
    /// them must not).
    async fn subscribers(&self) -> PortResult<Vec<Subscriber>>;

    async fn subscriber(&self, id: SubscriberId) -> PortResult<Option<Subscriber>>;

    /// Enable or disable; `NotFound` for an unknown id.
    async fn update_subscriber(&self, id: SubscriberId, patch: &SubscriberPatch) -> PortResult<Subscriber>;

    /// Delete a subscriber and its delivery log; `false` if there was none.
    async fn delete_subscriber(&self, id: SubscriberId) -> PortResult<bool>;

    /// Put a `ping` event for `id` alone in the outbox (the test button);
    /// returns its event id, `NotFound` for an unknown subscriber.
    async fn add_ping(&self, id: SubscriberId, now: i64) -> PortResult<i64>;

    /// Fan out up to `limit` outbox events, oldest first: one pending
    /// delivery per enabled subscriber that wants each (by
    /// `webhooks::wants`; unique per subscriber and event, so a replay adds
    /// none), due at `now`, and the events leave the outbox, all in one
    /// transaction. One caller at a time across processes (a second one
    /// finds nothing to do), so an order's deliveries are created in event
    /// order. Returns how many events were taken.
    async fn dispatch(&self, limit: u32, now: i64) -> PortResult<usize>;

    /// Subscribers with a delivery to attempt at `now`: the oldest pending
    /// one of some order, due (what `due_deliveries` would hand out).
    async fn due_subscribers(&self, now: i64) -> PortResult<Vec<SubscriberId>>;

    /// Up to `limit` deliveries of `subscriber` to attempt now: for each
    /// order, its oldest pending delivery, if that one is due (so an
    /// order's later events wait behind an earlier one in backoff); oldest
    /// event first.
    async fn due_deliveries(&self, subscriber: SubscriberId, now: i64, limit: u32) -> PortResult<Vec<Delivery>>;

    /// Record attempts: each delivery's attempts grow by one and it takes
    /// the attempt's state, next time and response. Deliveries that are no
    /// longer pending (or gone with their subscriber) are left alone.
    async fn record_attempts(&self, attempts: &[Attempt]) -> PortResult<()>;

    /// A subscriber's delivery log, newest event first, optionally one
    /// state only, events older than `before` (keyset paging).
    async fn deliveries(
        &self,
        subscriber: SubscriberId,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<Delivery>>;

    /// Put `subscriber`'s dead deliveries back to pending, due at `now`,
    /// their attempts counted from zero (the last answer stays in the log
    /// until the next attempt): the one of event `event`, or every dead
    /// one when `None`. Deliveries that are not dead are left alone.
    /// Returns how many went back.
    ///
    /// The per-order rule holds as for any pending delivery: a retried
    /// delivery goes once no older delivery of its order is pending, and
    /// that order's later pending deliveries wait behind it.
    async fn retry_deliveries(&self, subscriber: SubscriberId, event: Option<i64>, now: i64) -> PortResult<u64>;

    /// Delete up to `limit` finished deliveries in one statement: delivered
    /// ones last updated before `delivered_before`, dead ones before
    /// `dead_before`; pending ones never. Returns how many went (the
    /// caller repeats while that is `limit`, so no call holds its locks
    /// for long).
    async fn prune_deliveries(&self, delivered_before: i64, dead_before: i64, limit: u32) -> PortResult<u64>;

    /// Deliveries still pending, every subscriber (a gauge).
    async fn pending_deliveries(&self) -> PortResult<u64>;

    /// Events still in the outbox (not fanned out yet).
    async fn outbox_len(&self) -> PortResult<u64>;
}

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentResponse {
    pub status: u16,
    /// The start of the body, at most the sender's excerpt size, lossy UTF-8.
    pub body: String,
}

/// One signed POST to a subscriber.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'a [u8],
    pub timeout: Duration,
}

/// The outbound HTTP client.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// POST `req`; `Err` is a transport failure (connect, TLS, timeout),
    /// described for the delivery log. Any status is an `Ok`.
    async fn post(&self, req: Outgoing<'_>) -> Result<SentResponse, String>;
}
