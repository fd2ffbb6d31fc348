//! The steady load of a chaos run, and the ledger of what it was told.
//!
//! Order clients take tickets off one schedule (ticket `n` is due at
//! `n / rate` seconds, and goes to front process `n mod count`: the one
//! `serve`, or each `api` in turn, as a load balancer would), so the
//! offered load stays the same whatever the server does: while it is
//! down, tickets pile up behind the clients retrying, and the backlog arrives as a burst once it is back, as a real
//! rush's would. Every order carries its own `Idempotency-Key`, and a
//! request that got no final answer (the connection broke, 5xx, 408, 429)
//! is sent again with the same key and the same bytes until it gets one,
//! to the next front process (the same one in embedded mode): exactly what
//! a careful client behind a load balancer does, and the only way an
//! acknowledgement can be lost to a kill between the commit and the
//! answer. Payment callbacks follow some acknowledged orders, signed
//! afresh on every attempt as a provider would; some are delivered a
//! second time after their first 2xx, the provider's redelivery.
//!
//! What counts is recorded in the [`Ledger`]: every final 2xx (the order
//! id a key was answered with, the callback an event id was accepted
//! for), and what was still unanswered when the run stopped waiting.
//! Those are the promises the checks in `verify.rs` hold the server to.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode, Uri};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::cluster::Victim;
use crate::client::{Conn, Target};

/// Pause before a retry. Short: a refused connect costs nothing, and the
/// pause bounds how precisely the time to the first 202 after a kill is
/// measured.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Callbacks waiting for a sender. When the senders fall this far behind
/// (a long outage), further orders go unpaid rather than queue without
/// bound; they are counted as `skipped`.
const CALLBACK_QUEUE: usize = 4096;

/// An acknowledged order, as its 202 described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub id: Uuid,
    pub amount: i64,
    pub currency: String,
}

/// Everything the server answered, and what it never did.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Idempotency key → the order its final 202 named.
    pub orders: HashMap<String, Acked>,
    /// Keys sent at least once and never answered before the run stopped
    /// waiting: their orders may or may not exist, and either is correct.
    pub orders_unanswered: Vec<String>,
    /// Final answers other than 202, by reason (none are expected).
    pub orders_refused: BTreeMap<String, u64>,
    /// 202s that were replays of an earlier attempt's (`Idempotent-Replayed`):
    /// the attempt before had committed, and its answer was lost to a kill.
    pub orders_replayed: u64,
    /// Attempts beyond each request's first.
    pub order_retries: u64,
    /// Event id → the order its callback was for, for every callback
    /// answered 2xx at least once.
    pub payments: HashMap<String, Uuid>,
    /// Callbacks (first deliveries) sent and never answered.
    pub payments_unanswered: Vec<String>,
    pub payments_refused: BTreeMap<String, u64>,
    /// Second deliveries answered 2xx.
    pub redeliveries: u64,
    /// 2xx answers that were replays (a redelivery, or a retry after a kill).
    pub payments_replayed: u64,
    pub payment_retries: u64,
    /// Acknowledged orders left unpaid because the callback queue was
    /// full (a long outage).
    pub payments_skipped: u64,
}

/// One kill and the server's way back, for the recovery figures.
#[derive(Debug, Clone)]
pub struct Kill {
    /// The process killed. A `serve` or an api (a front process, whose
    /// index in the targets is `victim.target()`) is back at its first
    /// 202 after the kill; a worker answers no orders.
    pub victim: Victim,
    /// Just before SIGKILL was sent.
    pub killed_at: Instant,
    /// Once the process was reaped: a request sent after this cannot have
    /// reached the killed process.
    pub dead_at: Instant,
    pub ready_at: Option<Instant>,
    /// The first 202 from `target` to an order sent after `dead_at`.
    pub first_202_at: Option<Instant>,
    /// A worker's way back: every order acknowledged before the kill is
    /// confirmed in the store.
    pub caught_up_at: Option<Instant>,
}

/// A payment callback: its body is fixed when the order is acknowledged,
/// so every attempt and the redelivery send the same bytes (a provider's
/// event does not change), only the signature's timestamp moves.
#[derive(Debug, Clone)]
struct Callback {
    event_id: String,
    order: Uuid,
    body: Bytes,
    redelivery: bool,
}

/// The final answer to a request, or none.
enum Answer {
    Final {
        status: StatusCode,
        replayed: bool,
        body: Bytes,
        sent_at: Instant,
        /// The front process that answered.
        target: usize,
    },
    GaveUp,
}

/// Settings of the load.
#[derive(Debug, Clone)]
pub struct LoadShape {
    /// Orders per second offered.
    pub rate: f64,
    /// Share of acknowledged orders that get a callback.
    pub pay: f64,
    /// Share of acknowledged callbacks delivered a second time.
    pub redeliver: f64,
    pub timeout: Duration,
}

/// What the clients share: the schedule, the ledger, the kill records.
pub struct Traffic {
    /// The front processes: one `serve`, or every `api`.
    targets: Vec<Target>,
    orders_uri: Uri,
    payments_uri: Uri,
    bodies: Vec<Bytes>,
    /// Tags every key and event id of this run.
    run: String,
    secret: String,
    shape: LoadShape,
    start: Instant,
    phase_end: Instant,
    /// Cancelled once every order client is done: the callback senders
    /// then send what is queued and end.
    pub stop_callbacks: CancellationToken,
    /// Cancelled when the run stops waiting for answers.
    pub give_up: CancellationToken,
    next_ticket: AtomicU64,
    next_event: AtomicU64,
    ledger: Mutex<Ledger>,
    kills: Mutex<Vec<Kill>>,
    /// Signalled when a kill's first 202 is recorded.
    pub recovered: Notify,
    callbacks: mpsc::Sender<Callback>,
    queue: tokio::sync::Mutex<mpsc::Receiver<Callback>>,
}

#[derive(Deserialize)]
struct Receipt {
    id: Uuid,
    total: Total,
}

#[derive(Deserialize)]
struct Total {
    amount: i64,
    currency: String,
}

/// The prefix of every idempotency key of run `run` (the warm-up's too).
pub fn key_prefix(run: &str) -> String {
    format!("chaos-{run}-")
}

/// The order a 202's body describes.
pub fn receipt(body: &[u8]) -> Option<Acked> {
    let r: Receipt = serde_json::from_slice(body).ok()?;
    Some(Acked {
        id: r.id,
        amount: r.total.amount,
        currency: r.total.currency,
    })
}

/// Locks survive a panicking client: the ledger is plain data, and a
/// panic is reported through the client's task anyway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

fn count(map: &mut BTreeMap<String, u64>, reason: String) {
    *map.entry(reason).or_default() += 1;
}

impl Traffic {
    pub fn new(
        targets: Vec<Target>,
        bodies: Vec<Bytes>,
        run: String,
        secret: String,
        shape: LoadShape,
        start: Instant,
        phase_end: Instant,
    ) -> Self {
        let (callbacks, queue) = mpsc::channel(CALLBACK_QUEUE);
        assert!(!targets.is_empty(), "traffic needs a server to send to");
        Self {
            targets,
            orders_uri: Uri::from_static("/v1/orders"),
            payments_uri: Uri::from_static("/v1/webhooks/payments"),
            bodies,
            run,
            secret,
            shape,
            start,
            phase_end,
            stop_callbacks: CancellationToken::new(),
            give_up: CancellationToken::new(),
            next_ticket: AtomicU64::new(0),
            next_event: AtomicU64::new(0),
            ledger: Mutex::new(Ledger::default()),
            kills: Mutex::new(Vec::new()),
            recovered: Notify::new(),
            callbacks,
            queue: tokio::sync::Mutex::new(queue),
        }
    }

    /// The prefix of every idempotency key this run sends.
    pub fn key_prefix(&self) -> String {
        key_prefix(&self.run)
    }

    /// When the load started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When the chaos phase ends: no ticket is due after it.
    pub fn phase_end(&self) -> Instant {
        self.phase_end
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    pub fn kills(&self) -> MutexGuard<'_, Vec<Kill>> {
        lock(&self.kills)
    }

    /// One order client: take the next ticket, wait for its time, send
    /// until answered; until the schedule ends. Tickets a kill held up are
    /// sent late rather than never, so every order the schedule offered
    /// gets its final answer (or is counted unanswered).
    pub async fn orders(self: Arc<Self>, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut conns = self.no_conns();
        loop {
            let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
            let due = self.start + Duration::from_secs_f64(ticket as f64 / self.shape.rate);
            if due >= self.phase_end {
                return;
            }
            tokio::time::sleep_until(due).await;
            let key = format!("{}{ticket}", self.key_prefix());
            let key_header = HeaderValue::from_str(&key).expect("keys are ASCII");
            let body = self.bodies[ticket as usize % self.bodies.len()].clone();
            let mut retries = 0;
            let answer = self
                .until_answered(&mut conns, ticket as usize, &mut retries, |target| {
                    target.post_json(self.orders_uri.clone(), body.clone(), key_header.clone())
                })
                .await;
            let callback = self.record_order(key, answer, retries);
            if let Some(acked) = callback
                && rng.random_bool(self.shape.pay)
            {
                self.pay(acked);
            }
        }
    }

    /// Record an order's answer; the acknowledged order, if it was.
    fn record_order(&self, key: String, answer: Answer, retries: u64) -> Option<Acked> {
        let mut ledger = self.ledger();
        ledger.order_retries += retries;
        let (status, replayed, body, sent_at, target) = match answer {
            Answer::GaveUp => {
                ledger.orders_unanswered.push(key);
                return None;
            }
            Answer::Final {
                status,
                replayed,
                body,
                sent_at,
                target,
            } => (status, replayed, body, sent_at, target),
        };
        if status != StatusCode::ACCEPTED {
            count(&mut ledger.orders_refused, format!("status {}", status.as_u16()));
            return None;
        }
        let Some(acked) = receipt(&body) else {
            count(&mut ledger.orders_refused, "202 without an order id".to_owned());
            return None;
        };
        ledger.orders_replayed += u64::from(replayed);
        ledger.orders.insert(key, acked.clone());
        drop(ledger);
        let mut kills = self.kills();
        if let Some(kill) = kills.last_mut()
            && kill.victim.target() == Some(target)
            && kill.first_202_at.is_none()
            && sent_at >= kill.dead_at
        {
            kill.first_202_at = Some(Instant::now());
            self.recovered.notify_one();
        }
        Some(acked)
    }

    /// Queue the callback that pays `order` in full.
    fn pay(&self, order: Acked) {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let event_id = format!("evt_chaos_{}_{n}", self.run);
        let body = serde_json::json!({
            "id": event_id,
            "type": "payment.succeeded",
            "order_id": order.id,
            "amount": order.amount,
            "currency": order.currency,
            "created": domain::ports::system_now_ms() / 1000,
        });
        let callback = Callback {
            event_id,
            order: order.id,
            body: Bytes::from(body.to_string()),
            redelivery: false,
        };
        if self.callbacks.try_send(callback).is_err() {
            self.ledger().payments_skipped += 1;
        }
    }

    /// One callback sender, until `stop_callbacks` and an empty queue.
    pub async fn payments(self: Arc<Self>, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut conns = self.no_conns();
        let mut sent = 0usize;
        loop {
            // Once stopped, what is still queued is sent (redeliveries
            // included), then the sender ends.
            let next = {
                let mut queue = self.queue.lock().await;
                let received = tokio::select! {
                    c = queue.recv() => Some(c),
                    _ = self.stop_callbacks.cancelled() => None,
                };
                received.unwrap_or_else(|| queue.try_recv().ok())
            };
            let Some(callback) = next else { return };
            let mut retries = 0;
            sent += 1;
            let answer = self
                .until_answered(&mut conns, sent, &mut retries, |target| {
                    let t = domain::ports::system_now_ms() / 1000;
                    let signature = domain::webhooks::signature(self.secret.as_bytes(), t, &callback.body);
                    target.post_signed(
                        self.payments_uri.clone(),
                        callback.body.clone(),
                        HeaderValue::from_str(&signature).expect("signatures are ASCII"),
                    )
                })
                .await;
            let redeliver = self.record_payment(&callback, answer, retries) && rng.random_bool(self.shape.redeliver);
            if redeliver {
                let again = Callback {
                    redelivery: true,
                    ..callback
                };
                // A full queue means a long outage; the redelivery is
                // simply not made (nothing was acknowledged for it).
                let _ = self.callbacks.try_send(again);
            }
        }
    }

    /// Record a callback's answer; whether it was a first delivery that
    /// was acknowledged.
    fn record_payment(&self, callback: &Callback, answer: Answer, retries: u64) -> bool {
        let mut ledger = self.ledger();
        ledger.payment_retries += retries;
        match answer {
            Answer::GaveUp => {
                if !callback.redelivery {
                    ledger.payments_unanswered.push(callback.event_id.clone());
                }
                false
            }
            Answer::Final { status, replayed, .. } if status.is_success() => {
                ledger.payments_replayed += u64::from(replayed);
                if callback.redelivery {
                    ledger.redeliveries += 1;
                    false
                } else {
                    ledger.payments.insert(callback.event_id.clone(), callback.order);
                    true
                }
            }
            Answer::Final { status, .. } => {
                count(&mut ledger.payments_refused, format!("status {}", status.as_u16()));
                false
            }
        }
    }

    /// A client's connections: one per front process, opened on first use.
    fn no_conns(&self) -> Vec<Option<Conn>> {
        self.targets.iter().map(|_| None).collect()
    }

    /// Send `make(target)` until a final answer comes back: the first
    /// attempt to front process `first mod count`, each retry to the next
    /// one (a load balancer's retry; always the same one in embedded
    /// mode), reconnecting as needed; give up only when the run says so.
    async fn until_answered(
        &self,
        conns: &mut [Option<Conn>],
        first: usize,
        retries: &mut u64,
        make: impl Fn(&Target) -> Request<Full<Bytes>>,
    ) -> Answer {
        let timeout = self.shape.timeout;
        let mut attempt = 0usize;
        loop {
            if self.give_up.is_cancelled() {
                return Answer::GaveUp;
            }
            if attempt > 0 {
                *retries += 1;
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = self.give_up.cancelled() => return Answer::GaveUp,
                }
            }
            let i = first.wrapping_add(attempt) % self.targets.len();
            attempt += 1;
            let target = &self.targets[i];
            let c = match &mut conns[i] {
                Some(c) => c,
                slot @ None => match tokio::time::timeout(timeout, Conn::open(target)).await {
                    Ok(Ok(c)) => slot.insert(c),
                    _ => continue,
                },
            };
            let sent_at = Instant::now();
            match tokio::time::timeout(timeout, c.exchange_full(make(target))).await {
                Ok(Ok((head, body))) if !retryable(head.status) => {
                    return Answer::Final {
                        status: head.status,
                        replayed: head.headers.contains_key("idempotent-replayed"),
                        body,
                        sent_at,
                        target: i,
                    };
                }
                // A 503 while the server starts, or the like: the same
                // request again (on the same connection when it is the
                // same process).
                Ok(Ok(_)) => {}
                // The connection broke (the process was killed) or hung.
                _ => conns[i] = None,
            }
        }
    }
}
