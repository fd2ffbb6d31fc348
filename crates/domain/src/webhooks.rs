//! Outbound webhooks: order events POSTed to subscribers, signed, at least
//! once, in order per order, retried with backoff, dead after N attempts.
//!
//! The road an event takes:
//!
//! ```text
//! order change ─(same transaction, store trigger)─► webhook_outbox
//! dispatcher (worker) ─► WebhookStore::dispatch: one pending delivery per
//!                        interested subscriber, outbox rows gone, one tx
//!                     ─► one unique `webhooks.deliver` job per subscriber
//!                        with something due (queue `webhooks`)
//! job ─► deliver_due: per order its oldest pending delivery, up to
//!        `concurrency` at once, signed POST under a timeout, record
//! ```
//!
//! Why a table filled by triggers rather than a cursor over the live events:
//! in PostgreSQL, ids from a sequence commit out of order across concurrent
//! transactions, so a cursor can step over an event committed late; rows
//! that are deleted once fanned out cannot be skipped. And the order path
//! is unchanged: intake never waits for, nor knows about, a subscriber.
//!
//! Why one job per subscriber rather than one per delivery: per-order order
//! needs someone who knows what is still pending for that subscriber, and
//! a slow subscriber then occupies one slot of the `webhooks` queue, never
//! another subscriber's deliveries or any other queue.
//!
//! The signature is the inbound payment callbacks' scheme
//! (`api::webhooks`): `Rushhour-Signature: t=<unix s>,v1=<hex>` with
//! `HMAC-SHA256(secret, "{t}.{body}")`, under the subscriber's own secret,
//! re-signed on every attempt so a receiver's timestamp tolerance holds for
//! retries too.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

use crate::ports::{Clock, Outgoing, PortError, PortResult, WebhookSender, WebhookStore};

pub type SubscriberId = i64;

/// Longest subscriber URL accepted.
pub const MAX_URL: usize = 2048;

/// Longest part of a receiver's answer kept in the delivery log.
pub const BODY_EXCERPT: usize = 512;

/// The header carrying the signature (same as inbound callbacks).
pub const SIGNATURE_HEADER: &str = "rushhour-signature";
/// The event id, so a receiver can drop a redelivery without parsing.
pub const EVENT_ID_HEADER: &str = "rushhour-event-id";
pub const EVENT_TYPE_HEADER: &str = "rushhour-event-type";

/// What a subscriber can ask for. `Ping` is only ever sent by the test
/// button, to the one subscriber it was pressed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Confirmed,
    Ready,
    PickedUp,
    Cancelled,
    Expired,
    Paid,
    Ping,
}

impl EventType {
    /// The types a subscriber may subscribe to (every one but `ping`).
    pub const SUBSCRIBABLE: [EventType; 6] = [
        EventType::Confirmed,
        EventType::Ready,
        EventType::PickedUp,
        EventType::Cancelled,
        EventType::Expired,
        EventType::Paid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Confirmed => "confirmed",
            EventType::Ready => "ready",
            EventType::PickedUp => "picked_up",
            EventType::Cancelled => "cancelled",
            EventType::Expired => "expired",
            EventType::Paid => "paid",
            EventType::Ping => "ping",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirmed" => Some(EventType::Confirmed),
            "ready" => Some(EventType::Ready),
            "picked_up" => Some(EventType::PickedUp),
            "cancelled" => Some(EventType::Cancelled),
            "expired" => Some(EventType::Expired),
            "paid" => Some(EventType::Paid),
            "ping" => Some(EventType::Ping),
            _ => None,
        }
    }
}

/// Event types as stored: a comma-separated list.
pub fn encode_types(types: &[EventType]) -> String {
    types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
}

pub fn decode_types(s: &str) -> Result<Vec<EventType>, PortError> {
    s.split(',').filter(|t| !t.is_empty()).map(decode_type).collect()
}

/// A stored event type; `Invalid` when it is none we know (written by a
/// newer binary, or damaged). Both store adapters read rows through it.
pub fn decode_type(s: &str) -> Result<EventType, PortError> {
    EventType::parse(s).ok_or_else(|| PortError::Invalid(format!("unknown webhook event type {s:?}")))
}

/// A stored delivery state, as [`decode_type`].
pub fn decode_state(s: &str) -> Result<DeliveryState, PortError> {
    DeliveryState::parse(s).ok_or_else(|| PortError::Invalid(format!("unknown delivery state {s:?}")))
}

/// A webhook subscriber. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub id: SubscriberId,
    pub url: String,
    pub events: Vec<EventType>,
    /// Only this store's orders, when set.
    pub store: Option<String>,
    /// Signs every delivery; shown once, at creation.
    pub secret: String,
    pub enabled: bool,
    pub created_at: i64,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("store", &self.store)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A subscriber to add.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSubscriber {
    pub url: String,
    pub events: Vec<EventType>,
    pub store: Option<String>,
    pub secret: String,
    pub enabled: bool,
    pub created_at: i64,
}

impl std::fmt::Debug for NewSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSubscriber")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What may change on a subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberPatch {
    pub enabled: Option<bool>,
}

/// An order event waiting in the outbox to be fanned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The event id every delivery of it carries: stable across retries.
    pub id: i64,
    pub kind: EventType,
    /// Empty for a ping.
    pub order_id: String,
    pub store: String,
    /// When the change happened (epoch ms).
    pub at: i64,
    /// Only this subscriber (a ping), when set.
    pub target: Option<SubscriberId>,
}

/// Whether `sub` gets `event`: the one rule both store backends fan out by.
pub fn wants(sub: &Subscriber, event: &OutboxEvent) -> bool {
    if !sub.enabled {
        return false;
    }
    if let Some(target) = event.target {
        return target == sub.id;
    }
    sub.events.contains(&event.kind) && sub.store.as_deref().is_none_or(|s| s == event.store)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

/// One event for one subscriber: a row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subscriber: SubscriberId,
    pub event_id: i64,
    pub kind: EventType,
    pub order_id: String,
    pub store: String,
    /// When the change happened (epoch ms).
    pub occurred_at: i64,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_at: i64,
    pub last_status: Option<u16>,
    pub last_body: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub subscriber: SubscriberId,
    pub event_id: i64,
    pub state: DeliveryState,
    /// The next attempt's time when still pending.
    pub next_at: i64,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub error: Option<String>,
    pub at: i64,
}

/// The JSON body a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// `evt_<n>`: the same on every attempt; receivers deduplicate by it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the change happened (epoch ms).
    pub occurred_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

impl WebhookPayload {
    pub fn of(d: &Delivery) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Self {
            id: event_id(d.event_id),
            kind: d.kind,
            occurred_at: d.occurred_at,
            order_id: some(&d.order_id),
            store: some(&d.store),
        }
    }
}

/// The public form of an event id.
pub fn event_id(id: i64) -> String {
    format!("evt_{id}")
}

/// An event id in its public form (`evt_<n>`) or bare (`<n>`), as
/// operators copy it from the delivery log.
pub fn parse_event_id(s: &str) -> Option<i64> {
    s.strip_prefix("evt_")
        .unwrap_or(s)
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
}

/// `t=<unix s>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`, the inbound
/// callbacks' scheme.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a subscriber cannot be added as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriberError {
    #[error("url must be an absolute http:// or https:// URL of at most 2048 characters")]
    Url,
    #[error("events must name at least one of confirmed, ready, picked_up, cancelled, expired, paid")]
    Events,
}

/// Check a subscriber's URL and events before it is stored.
pub fn validate(url: &str, events: &[EventType]) -> Result<(), SubscriberError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(SubscriberError::Url)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if url.chars().count() > MAX_URL || host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SubscriberError::Url);
    }
    if events.is_empty() || events.contains(&EventType::Ping) {
        return Err(SubscriberError::Events);
    }
    Ok(())
}

/// How deliveries are attempted (`webhooks.outbound` configuration).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// One request's deadline, connect included.
    pub timeout: Duration,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// Requests in flight per subscriber.
    pub concurrency: u32,
    /// First retry delay; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// One job's rounds stop after this long (the next job goes on), so a
    /// queue slot is handed back now and then.
    pub budget: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_attempts: 8,
            concurrency: 8,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            budget: Duration::from_secs(20),
        }
    }
}

/// The delay before attempt `attempts + 1`: `base * 2^(attempts-1)`, capped,
/// with equal jitter drawn from the event id (deterministic, so tests can
/// step a manual clock; spread, so a receiver back from an outage is not
/// hit by every retry at once).
pub fn retry_delay(attempts: u32, event_id: i64, s: &DeliverySettings) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    let step = s.backoff_base.saturating_mul(1u32 << doublings).min(s.backoff_max);
    let half = step / 2;
    let spread = (event_id.unsigned_abs().wrapping_mul(2_654_435_761) % 1000) as u32;
    half + half * spread / 1000
}

/// One attempt's outcome, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptReport {
    pub state: DeliveryState,
    /// Whether the attempt itself failed (a retry or dead).
    pub failed: bool,
    pub duration: Duration,
}

/// Fan out everything in the outbox, `batch` events per transaction.
/// Returns how many events were taken.
pub async fn dispatch_all(store: &dyn WebhookStore, batch: u32, now: i64) -> PortResult<usize> {
    let mut total = 0;
    loop {
        let n = store.dispatch(batch, now).await?;
        total += n;
        if n < batch as usize {
            return Ok(total);
        }
    }
}

/// Attempt `subscriber`'s due deliveries, round after round, until none is
/// due or the budget is spent: each round sends, for up to `concurrency`
/// orders, that order's oldest pending delivery, all at once, and records
/// every outcome before the next round (so an order's next event goes only
/// after its previous one was delivered or died). A subscriber gone or
/// disabled gets nothing.
pub async fn deliver_due(
    store: &dyn WebhookStore,
    sender: &dyn WebhookSender,
    clock: &dyn Clock,
    subscriber: SubscriberId,
    s: &DeliverySettings,
) -> PortResult<Vec<AttemptReport>> {
    let Some(sub) = store.subscriber(subscriber).await? else {
        return Ok(Vec::new());
    };
    if !sub.enabled {
        return Ok(Vec::new());
    }
    let started = clock.now_ms();
    let mut reports = Vec::new();
    loop {
        let now = clock.now_ms();
        if now - started > s.budget.as_millis() as i64 {
            break;
        }
        let due = store.due_deliveries(sub.id, now, s.concurrency.max(1)).await?;
        if due.is_empty() {
            break;
        }
        let sends = due.iter().map(|d| attempt(&sub, d, sender, clock, s));
        let outcomes = futures::future::join_all(sends).await;
        let attempts: Vec<Attempt> = outcomes.iter().map(|(a, _)| a.clone()).collect();
        store.record_attempts(&attempts).await?;
        reports.extend(outcomes.into_iter().map(|(_, r)| r));
    }
    Ok(reports)
}

/// One signed POST of `d` and what it means for the delivery.
async fn attempt(
    sub: &Subscriber,
    d: &Delivery,
    sender: &dyn WebhookSender,
    clock: &dyn Clock,
    s: &DeliverySettings,
) -> (Attempt, AttemptReport) {
    let body = serde_json::to_vec(&WebhookPayload::of(d)).expect("payloads serialize");
    let start = clock.now_ms();
    let t = start.div_euclid(1000);
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        (SIGNATURE_HEADER, signature(sub.secret.as_bytes(), t, &body)),
        (EVENT_ID_HEADER, event_id(d.event_id)),
        (EVENT_TYPE_HEADER, d.kind.as_str().to_owned()),
    ];
    let result = sender
        .post(Outgoing {
            url: &sub.url,
            headers,
            body: &body,
            timeout: s.timeout,
        })
        .await;
    let at = clock.now_ms();
    let (status, excerpt, error) = match result {
        Ok(r) => (Some(r.status), Some(r.body), None),
        Err(e) => (None, None, Some(e)),
    };
    let ok = status.is_some_and(|c| (200..300).contains(&c));
    let attempts = d.attempts + 1;
    let state = if ok {
        DeliveryState::Delivered
    } else if attempts >= s.max_attempts.max(1) {
        DeliveryState::Dead
    } else {
        DeliveryState::Pending
    };
    let next_at = if state == DeliveryState::Pending {
        at + retry_delay(attempts, d.event_id, s).as_millis() as i64
    } else {
        at
    };
    let error = error.or_else(|| (!ok).then(|| format!("receiver answered {}", status.unwrap_or(0))));
    (
        Attempt {
            subscriber: sub.id,
            event_id: d.event_id,
            state,
            next_at,
            status,
            body: excerpt,
            error,
            at,
        },
        AttemptReport {
            state,
            failed: !ok,
            duration: Duration::from_millis((at - start).max(0) as u64),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_inbound_scheme() {
        // python3 -c "import hmac,hashlib; print(hmac.new(b'whsec_test', b'1700000000.{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            signature(b"whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn urls_and_events_are_checked() {
        assert!(validate("https://example.com/hook", &[EventType::Ready]).is_ok());
        assert!(validate("http://127.0.0.1:9000", &[EventType::Paid]).is_ok());
        assert_eq!(validate("ftp://x", &[EventType::Ready]), Err(SubscriberError::Url));
        assert_eq!(
            validate("https:///path", &[EventType::Ready]),
            Err(SubscriberError::Url)
        );
        assert_eq!(validate("https://a b", &[EventType::Ready]), Err(SubscriberError::Url));
        assert_eq!(validate("https://a", &[]), Err(SubscriberError::Events));
        assert_eq!(validate("https://a", &[EventType::Ping]), Err(SubscriberError::Events));
    }

    #[test]
    fn subscribers_get_what_they_asked_for() {
        let sub = Subscriber {
            id: 1,
            url: "https://a".into(),
            events: vec![EventType::Ready],
            store: Some("s1".into()),
            secret: "x".into(),
            enabled: true,
            created_at: 0,
        };
        let ev = |kind, store: &str, target| OutboxEvent {
            id: 1,
            kind,
            order_id: "o".into(),
            store: store.into(),
            at: 0,
            target,
        };
        assert!(wants(&sub, &ev(EventType::Ready, "s1", None)));
        assert!(!wants(&sub, &ev(EventType::Ready, "s2", None)));
        assert!(!wants(&sub, &ev(EventType::Paid, "s1", None)));
        assert!(wants(&sub, &ev(EventType::Ping, "", Some(1))));
        assert!(!wants(&sub, &ev(EventType::Ready, "s1", Some(2))));
        let off = Subscriber { enabled: false, ..sub };
        assert!(!wants(&off, &ev(EventType::Ready, "s1", None)));
    }

    #[test]
    fn retries_back_off_within_bounds() {
        let s = DeliverySettings::default();
        for attempts in 1..20 {
            let step = s
                .backoff_base
                .saturating_mul(1 << (attempts - 1).min(31))
                .min(s.backoff_max);
            let d = retry_delay(attempts, 42, &s);
            assert!(d >= step / 2 && d <= step, "{attempts}: {d:?}");
        }
    }
}
