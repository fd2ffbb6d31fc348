//! Router-level tests: the whole `router()` driven in-process through
//! `tower::ServiceExt::oneshot`, over small in-memory fakes of the ports.
//!
//! They pin what only the assembled router can show: which layer answers
//! which error, that every error is problem+json, headers, streaming. The
//! black-box tests against real adapters live in the binary crate; these
//! stay here because they need fakes that can be made slow, broken or
//! panicking on demand.

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use domain::menu::{Menu, StoreInfo, demo_menu};
use domain::order::{Timestamps, apply, plan};
use domain::ports::{
    AppendOutcome, AppendRequest, BatchApplied, Clock, DeadLetter, Decided, EventLog, EventScope, FeedItem,
    IdempotencyRecord, LiveFeed, LogRecord, MenuCache, MenuLoad, OrderFilter, OrderSummary, PortResult, Store,
};
use domain::{
    Action, LiveEvent, LiveEventKind, MenuSnapshot, Order, OrderId, OrderLine, OrderStatus, PortError, Rushhour,
    RushhourConfig, Station, StoreId, TicketStatus, TransitionError,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{ApiConfig, router};

const KEY: &str = "staff-secret";
const STORE: &str = "demo-downtown";

// ------------------------------------------------------------------ fakes

#[derive(Default)]
struct FakeLog {
    records: Mutex<Vec<LogRecord>>,
    keys: Mutex<HashMap<String, IdempotencyRecord>>,
    down: AtomicBool,
    /// When set, appends wait for a permit: lets a test hold intake in flight.
    gate: Mutex<Option<Arc<Semaphore>>>,
    /// Appends parked on the gate.
    parked: AtomicUsize,
}

#[async_trait]
impl EventLog for FakeLog {
    fn partitions(&self) -> u32 {
        1
    }

    async fn append(&self, req: AppendRequest) -> PortResult<AppendOutcome> {
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            self.parked.fetch_add(1, Ordering::SeqCst);
            let _permit = g.acquire().await.unwrap();
        }
        if let Some(claim) = &req.idempotency {
            let mut keys = self.keys.lock().unwrap();
            if let Some(rec) = keys.get(&claim.key) {
                return Ok(AppendOutcome::Duplicate(rec.clone()));
            }
            keys.insert(
                claim.key.clone(),
                IdempotencyRecord {
                    fingerprint: claim.fingerprint.clone(),
                    status: claim.status,
                    response: claim.response.clone(),
                    created_at: 0,
                },
            );
        }
        let mut records = self.records.lock().unwrap();
        let offset = records.len() as u64;
        records.push(LogRecord {
            partition: 0,
            offset,
            key: req.key,
            payload: req.payload,
            appended_at: 0,
        });
        Ok(AppendOutcome::Appended(domain::ports::Position {
            partition: 0,
            offset,
        }))
    }

    async fn idempotency(&self, key: &str) -> PortResult<Option<IdempotencyRecord>> {
        Ok(self.keys.lock().unwrap().get(key).cloned())
    }

    async fn find(&self, key: &str) -> PortResult<Option<LogRecord>> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.key == key)
            .cloned())
    }

    async fn read(&self, _: u32, _: u64, _: usize, _: Duration) -> PortResult<Vec<LogRecord>> {
        Ok(vec![])
    }

    async fn end_offset(&self, _: u32) -> PortResult<u64> {
        Ok(self.records.lock().unwrap().len() as u64)
    }

    async fn commit(&self, _: &str, _: u32, _: u64) -> PortResult<()> {
        Ok(())
    }

    async fn health(&self) -> PortResult<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(PortError::Unavailable("log down".into()))
        } else {
            Ok(())
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Normal,
    Slow,
    Panic,
    Down,
    Corrupt,
}

struct FakeStore {
    menu: Mutex<Menu>,
    orders: Mutex<HashMap<OrderId, Order>>,
    events: Mutex<Vec<LiveEvent>>,
    /// How `list_stores` behaves: the knob for timeout/panic/outage tests.
    mode: Mutex<Mode>,
}

impl FakeStore {
    fn new() -> Self {
        FakeStore {
            menu: Mutex::new(demo_menu()),
            orders: Mutex::default(),
            events: Mutex::default(),
            mode: Mutex::default(),
        }
    }

    fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn push_event(&self, order: &Order, kind: LiveEventKind, line: Option<&OrderLine>) -> LiveEvent {
        let mut events = self.events.lock().unwrap();
        let e = LiveEvent {
            id: events.len() as i64 + 1,
            kind,
            order_id: order.id,
            store: order.store.clone(),
            status: order.status,
            line: line.map(|l| l.line),
            station: line.map(|l| l.station),
            ticket: line.and_then(|l| l.ticket),
            at: 1,
        };
        events.push(e.clone());
        e
    }

    /// A confirmed order with two barista lines, and its `confirmed` event.
    fn confirmed_order(&self) -> Order {
        let line = |n: u32| OrderLine {
            line: n,
            sku: "latte".into(),
            name: "Caffè Latte".into(),
            station: Station::Barista,
            size: "small".into(),
            modifiers: vec![],
            qty: 1,
            unit_price: 420,
            line_total: 420,
            ticket: Some(TicketStatus::Queued),
        };
        let o = Order {
            id: OrderId::new(),
            store: StoreId(STORE.into()),
            customer: Some("ada".into()),
            status: OrderStatus::Confirmed,
            reject_reason: None,
            payment_status: "unpaid".into(),
            currency: "USD".into(),
            total: 840,
            lines: vec![line(1), line(2)],
            at: Timestamps {
                placed_at: 1_700_000_000_000,
                confirmed_at: Some(1_700_000_000_500),
                ..Timestamps::default()
            },
        };
        self.orders.lock().unwrap().insert(o.id, o.clone());
        self.push_event(&o, LiveEventKind::Status, None);
        o
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn list_stores(&self) -> PortResult<Vec<StoreInfo>> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Normal => Ok(vec![self.menu.lock().unwrap().store.clone()]),
            Mode::Slow => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(vec![])
            }
            Mode::Panic => panic!("the fake store was told to panic"),
            Mode::Down => Err(PortError::Unavailable("connection refused".into())),
            Mode::Corrupt => Err(PortError::Invalid("row 7 of secret_table is corrupt".into())),
        }
    }

    async fn load_menu(&self, store: &StoreId) -> PortResult<Option<Menu>> {
        let menu = self.menu.lock().unwrap();
        Ok((menu.store.id == *store).then(|| menu.clone()))
    }

    async fn upsert_menu(&self, _: &Menu) -> PortResult<()> {
        Ok(())
    }

    async fn set_availability(&self, store: &StoreId, sku: &str, available: bool) -> PortResult<bool> {
        let mut menu = self.menu.lock().unwrap();
        if menu.store.id != *store {
            return Ok(false);
        }
        match menu.items.iter_mut().find(|i| i.sku == sku) {
            Some(item) => {
                item.available = available;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn consumer_position(&self, _: &str, _: u32) -> PortResult<u64> {
        Ok(0)
    }

    async fn apply_batch(
        &self,
        _: &str,
        _: u32,
        _: u64,
        _: &[Decided],
        _: &[DeadLetter],
        _: i64,
    ) -> PortResult<BatchApplied> {
        Ok(BatchApplied {
            inserted: 0,
            events: vec![],
        })
    }

    async fn get_order(&self, id: OrderId) -> PortResult<Option<Order>> {
        Ok(self.orders.lock().unwrap().get(&id).cloned())
    }

    async fn list_orders(&self, f: &OrderFilter) -> PortResult<Vec<OrderSummary>> {
        let orders = self.orders.lock().unwrap();
        let mut rows: Vec<&Order> = orders
            .values()
            .filter(|o| f.store.as_ref().is_none_or(|s| o.store == *s))
            .filter(|o| f.status.is_none_or(|s| o.status == s))
            .filter(|o| f.before.is_none_or(|b| o.id < b))
            .collect();
        rows.sort_by_key(|o| std::cmp::Reverse(o.id));
        Ok(rows
            .into_iter()
            .take(f.limit as usize)
            .map(|o| OrderSummary {
                id: o.id,
                store: o.store.clone(),
                status: o.status,
                customer: o.customer.clone(),
                currency: o.currency.clone(),
                total: o.total,
                placed_at: o.at.placed_at,
            })
            .collect())
    }

    async fn transition(
        &self,
        id: OrderId,
        action: Action,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError> {
        let order = {
            let mut orders = self.orders.lock().unwrap();
            let o = orders.get_mut(&id).ok_or(TransitionError::OrderNotFound(id))?;
            let p = plan(o, action)?;
            apply(o, &p, now);
            (o.clone(), p)
        };
        let (o, p) = order;
        let mut events = vec![];
        if let Some((n, _)) = p.ticket {
            let line = o.lines.iter().find(|l| l.line == n);
            events.push(self.push_event(&o, LiveEventKind::Ticket, line));
        }
        if p.status.is_some() {
            events.push(self.push_event(&o, LiveEventKind::Status, None));
        }
        Ok((o, events))
    }

    async fn events_after(&self, scope: &EventScope, after: i64, limit: u32) -> PortResult<Vec<LiveEvent>> {
        Ok(self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.id > after)
            .filter(|e| match scope {
                EventScope::Order(id) => e.order_id == *id,
                EventScope::Store(s) => e.store == *s,
            })
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn dead_letters(&self, _: u32) -> PortResult<Vec<DeadLetter>> {
        Ok(vec![])
    }

    async fn health(&self) -> PortResult<()> {
        Ok(())
    }
}

/// No caching at all: every read loads, so tests see changes at once.
struct PassThroughCache;

#[async_trait]
impl MenuCache for PassThroughCache {
    async fn get_or_load(&self, _: &StoreId, load: MenuLoad<'_>) -> PortResult<Arc<MenuSnapshot>> {
        load.await
    }

    async fn invalidate(&self, _: &StoreId) -> PortResult<()> {
        Ok(())
    }

    async fn clear(&self) -> PortResult<()> {
        Ok(())
    }

    async fn health(&self) -> PortResult<()> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    }
}

struct FakeFeed(broadcast::Sender<LiveEvent>);

#[async_trait]
impl LiveFeed for FakeFeed {
    async fn publish(&self, events: &[LiveEvent]) -> PortResult<()> {
        for e in events {
            let _ = self.0.send(e.clone());
        }
        Ok(())
    }

    async fn subscribe(&self) -> PortResult<BoxStream<'static, FeedItem>> {
        let rx = tokio_stream::wrappers::BroadcastStream::new(self.0.subscribe());
        Ok(rx
            .map(|r| match r {
                Ok(e) => FeedItem::Event(e),
                Err(_) => FeedItem::Lagged,
            })
            .boxed())
    }
}

struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        domain::ports::system_now_ms()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

// ---------------------------------------------------------------- harness

struct Harness {
    router: Router,
    log: Arc<FakeLog>,
    store: Arc<FakeStore>,
    shutdown: CancellationToken,
}

fn harness() -> Harness {
    harness_with(|_| {})
}

fn harness_with(tweak: impl FnOnce(&mut ApiConfig)) -> Harness {
    harness_full(64, tweak)
}

/// `feed_capacity`: how far a live subscriber may fall behind before the
/// feed tells it `Lagged`.
fn harness_full(feed_capacity: usize, tweak: impl FnOnce(&mut ApiConfig)) -> Harness {
    let log = Arc::new(FakeLog::default());
    let store = Arc::new(FakeStore::new());
    let (tx, _) = broadcast::channel(feed_capacity);
    let app = Arc::new(Rushhour {
        log: log.clone(),
        store: store.clone(),
        menus: Arc::new(PassThroughCache),
        feed: Arc::new(FakeFeed(tx)),
        clock: Arc::new(SystemClock),
        config: RushhourConfig {
            apply_wait: Duration::from_millis(20),
        },
    });
    let shutdown = CancellationToken::new();
    let mut config = ApiConfig {
        max_body_bytes: 64 * 1024,
        max_inflight_intake: 64,
        request_timeout: Duration::from_secs(5),
        staff_key: KEY.into(),
        sse_heartbeat: Duration::from_secs(15),
        shutdown: shutdown.clone(),
    };
    tweak(&mut config);
    Harness {
        router: router(app, telemetry::prometheus(), config),
        log,
        store,
        shutdown,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Assert a problem document with this status and code.
    fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/problem+json");
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["status"], status);
        v
    }
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: axum::body::to_bytes(body, usize::MAX).await.unwrap(),
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post_json(&self, uri: &str, body: &Value, key: Option<&str>) -> Answer {
        let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap()).await
    }

    async fn staff(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.send(req.body(body).unwrap()).await
    }
}

fn latte_order() -> Value {
    json!({"store": STORE, "customer": "ada",
           "lines": [{"sku": "latte", "size": "large", "modifiers": ["oat-milk"], "qty": 2}]})
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn liveness_is_a_static_ok() {
    let h = harness();
    let a = h.get("/health/live").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), json!({"status": "ok"}));
}

#[tokio::test]
async fn intake_answers_202_with_location_and_is_readable_at_once() {
    let h = harness();
    let a = h.post_json("/v1/orders", &latte_order(), None).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let receipt = a.json();
    let id = receipt["id"].as_str().unwrap().to_owned();
    assert_eq!(a.headers[header::LOCATION], format!("/v1/orders/{id}"));
    assert_eq!(receipt["status"], "placed");
    assert_eq!(receipt["total"], json!({"amount": 1140, "currency": "USD"}));

    let a = h.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["status"], "placed");
    assert_eq!(v["lines"][0]["unit_price"], 570);
    assert_eq!(v["lines"][0]["station"], "barista");
    assert_eq!(v["lines"][0]["ticket"], Value::Null);
    assert!(v["placed_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["confirmed_at"], Value::Null);
    assert_eq!(v["links"]["self"], format!("/v1/orders/{id}"));
}

#[tokio::test]
async fn idempotent_retries_replay_and_reuse_is_refused() {
    let h = harness();
    let first = h.post_json("/v1/orders", &latte_order(), Some("key-1")).await;
    assert_eq!(first.status, 202);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = h.post_json("/v1/orders", &latte_order(), Some("key-1")).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers[header::LOCATION], first.headers[header::LOCATION]);
    assert_eq!(h.log.records.lock().unwrap().len(), 1, "the retry appended nothing");

    let mut other = latte_order();
    other["lines"][0]["qty"] = json!(3);
    h.post_json("/v1/orders", &other, Some("key-1"))
        .await
        .problem(422, "idempotency_key_reused");
    h.post_json("/v1/orders", &latte_order(), Some("has space"))
        .await
        .problem(400, "invalid_idempotency_key");
}

#[tokio::test]
async fn invalid_orders_name_their_fields() {
    let h = harness();
    let v = h
        .post_json(
            "/v1/orders",
            &json!({"store": STORE, "lines": [{"sku": "nope", "qty": 1}]}),
            None,
        )
        .await
        .problem(422, "validation_failed");
    assert_eq!(v["errors"][0]["field"], "lines[0].sku");
    assert_eq!(v["errors"][0]["code"], "unknown_sku");
}

#[tokio::test]
async fn body_rejections_are_problems() {
    let h = harness();
    let raw = |ct: Option<&str>, body: &str| {
        let mut r = Request::post("/v1/orders");
        if let Some(ct) = ct {
            r = r.header(header::CONTENT_TYPE, ct);
        }
        r.body(Body::from(body.to_owned())).unwrap()
    };
    h.send(raw(Some("application/json"), "{not json"))
        .await
        .problem(400, "malformed_json");
    h.send(raw(Some("text/plain"), "{}"))
        .await
        .problem(415, "unsupported_media_type");
    h.send(raw(None, "{}")).await.problem(415, "unsupported_media_type");
    let v = h
        .send(raw(Some("application/json"), r#"{"store":"s","lines":[],"price":1}"#))
        .await
        .problem(422, "invalid_body");
    assert!(v["detail"].as_str().unwrap().contains("price"), "{v}");
    h.send(raw(
        Some("application/json"),
        r#"{"store":"s","lines":[{"sku":"x","qty":"two"}]}"#,
    ))
    .await
    .problem(422, "invalid_body");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let h = harness();
    let big = format!(
        r#"{{"store":"{}","lines":[],"customer":"{}"}}"#,
        STORE,
        "x".repeat(70_000)
    );
    // Declared length: refused before reading.
    let req = Request::post("/v1/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    h.send(req).await.problem(413, "payload_too_large");
    // No declared length (chunked): refused once the limit is crossed.
    let chunks = big
        .into_bytes()
        .chunks(8192)
        .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
        .collect::<Vec<_>>();
    let req = Request::post("/v1/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    h.send(req).await.problem(413, "payload_too_large");
}

#[tokio::test]
async fn routing_errors_are_problems() {
    let h = harness();
    h.get("/v1/orders/not-a-uuid").await.problem(400, "invalid_path");
    h.get(&format!("/v1/orders/{}", OrderId::new()))
        .await
        .problem(404, "order_not_found");
    h.get("/v1/nothing-here").await.problem(404, "route_not_found");
    let a = h.send(Request::delete("/v1/orders").body(Body::empty()).unwrap()).await;
    a.problem(405, "method_not_allowed");
    let allow = a.headers[header::ALLOW].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    h.get("/v1/stores/Not_A_Slug/menu").await.problem(400, "invalid_path");
    h.get("/v1/stores/nowhere/menu").await.problem(404, "store_not_found");
}

#[tokio::test]
async fn staff_routes_need_the_key() {
    let h = harness();
    let o = h.store.confirmed_order();
    let uri = format!("/v1/orders/{}/lines/1/start", o.id);
    let a = h.send(Request::post(&uri).body(Body::empty()).unwrap()).await;
    a.problem(401, "unauthorized");
    assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
    let wrong = Request::post(&uri)
        .header(header::AUTHORIZATION, "Bearer staff-secreT")
        .body(Body::empty())
        .unwrap();
    h.send(wrong).await.problem(401, "unauthorized");
    let board = h.get("/v1/stores/demo-downtown/board").await;
    board.problem(401, "unauthorized");
}

#[tokio::test]
async fn lifecycle_actions_move_orders_and_refuse_illegal_moves() {
    let h = harness();
    let o = h.store.confirmed_order();
    let id = o.id;
    let a = h
        .staff(Method::POST, &format!("/v1/orders/{id}/lines/1/start"), None)
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["status"], "in_progress");
    assert_eq!(a.json()["lines"][0]["ticket"], "started");
    h.staff(Method::POST, &format!("/v1/orders/{id}/lines/9/start"), None)
        .await
        .problem(404, "line_not_found");
    h.staff(Method::POST, &format!("/v1/orders/{id}/lines/x/start"), None)
        .await
        .problem(400, "invalid_path");
    h.staff(Method::POST, &format!("/v1/orders/{id}/pickup"), None)
        .await
        .problem(409, "invalid_transition");
    h.post_json(&format!("/v1/orders/{id}/cancel"), &json!({}), None)
        .await
        .problem(409, "invalid_transition");
    for n in [1, 2] {
        if n == 2 {
            h.staff(Method::POST, &format!("/v1/orders/{id}/lines/2/start"), None)
                .await;
        }
        let a = h
            .staff(Method::POST, &format!("/v1/orders/{id}/lines/{n}/done"), None)
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    let a = h.staff(Method::POST, &format!("/v1/orders/{id}/pickup"), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["status"], "picked_up");
    assert!(a.json()["picked_up_at"].is_string());
}

#[tokio::test]
async fn actions_on_unapplied_orders_are_not_ready() {
    let h = harness();
    let id = h.post_json("/v1/orders", &latte_order(), None).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = h.post_json(&format!("/v1/orders/{id}/cancel"), &json!({}), None).await;
    a.problem(503, "not_ready");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    h.post_json(&format!("/v1/orders/{}/cancel", OrderId::new()), &json!({}), None)
        .await
        .problem(404, "order_not_found");
}

#[tokio::test]
async fn listings_paginate_by_cursor() {
    let h = harness();
    let ids: Vec<OrderId> = (0..5).map(|_| h.store.confirmed_order().id).collect();
    let a = h.get("/v1/orders?limit=2&store=demo-downtown&status=confirmed").await;
    assert_eq!(a.status, 200);
    let page = a.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["id"], ids[4].to_string(), "newest first");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let page = h.get(&format!("/v1/orders?limit=2&cursor={cursor}")).await.json();
    assert_eq!(page["items"][0]["id"], ids[2].to_string());
    let last = h.get("/v1/orders?limit=5").await.json();
    assert_eq!(last["next_cursor"], Value::Null);
    assert_eq!(h.get("/v1/orders?status=ready").await.json()["items"], json!([]));
    h.get("/v1/orders?limit=101").await.problem(400, "invalid_query");
    h.get("/v1/orders?limit=abc").await.problem(400, "invalid_query");
    h.get("/v1/orders?status=brewing").await.problem(400, "invalid_query");
}

#[tokio::test]
async fn menus_are_cacheable_and_86_changes_them() {
    let h = harness();
    let a = h.get("/v1/stores/demo-downtown/menu").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers[header::CACHE_CONTROL], "public, max-age=30");
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    let etag = a.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(a.json()["store"]["id"], STORE);

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"zzz\", {etag}"),
        "*".into(),
    ] {
        let req = Request::get("/v1/stores/demo-downtown/menu")
            .header(header::IF_NONE_MATCH, inm)
            .body(Body::empty())
            .unwrap();
        let a = h.send(req).await;
        assert_eq!(a.status, 304);
        assert!(a.body.is_empty());
        assert_eq!(a.headers[header::ETAG], etag.as_str());
    }

    let a = h
        .staff(
            Method::PUT,
            "/v1/stores/demo-downtown/items/latte/availability",
            Some(json!({"available": false})),
        )
        .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let again = h.get("/v1/stores/demo-downtown/menu").await;
    assert_ne!(again.headers[header::ETAG], etag.as_str());
    h.staff(
        Method::PUT,
        "/v1/stores/demo-downtown/items/nope/availability",
        Some(json!({"available": false})),
    )
    .await
    .problem(404, "item_not_found");
    h.staff(
        Method::PUT,
        "/v1/stores/demo-downtown/items/latte/availability",
        Some(json!({"avail": false})),
    )
    .await
    .problem(422, "invalid_body");
    // An 86'd item can no longer be ordered.
    h.post_json("/v1/orders", &latte_order(), None)
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn stores_are_listed() {
    let h = harness();
    let v = h.get("/v1/stores").await.json();
    assert_eq!(v["items"][0]["id"], STORE);
    assert_eq!(v["items"][0]["currency"], "USD");
}

#[tokio::test]
async fn backend_failures_timeouts_and_panics_are_problems() {
    let h = harness_with(|c| c.request_timeout = Duration::from_millis(100));
    h.store.set_mode(Mode::Down);
    let a = h.get("/v1/stores").await;
    a.problem(503, "unavailable");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    h.store.set_mode(Mode::Corrupt);
    let v = h.get("/v1/stores").await.problem(500, "internal");
    assert!(!v.to_string().contains("secret_table"));
    h.store.set_mode(Mode::Slow);
    h.get("/v1/stores").await.problem(503, "timeout");
    h.store.set_mode(Mode::Panic);
    let v = h.get("/v1/stores").await.problem(500, "internal");
    assert!(!v.to_string().contains("fake store"));
}

#[tokio::test]
async fn intake_sheds_load_beyond_its_bound() {
    let h = harness_with(|c| c.max_inflight_intake = 1);
    let gate = Arc::new(Semaphore::new(0));
    *h.log.gate.lock().unwrap() = Some(gate.clone());
    let router = h.router.clone();
    let first = tokio::spawn(async move {
        let req = Request::post("/v1/orders")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(latte_order().to_string()))
            .unwrap();
        router.oneshot(req).await.unwrap().status()
    });
    // Wait until the first request holds the only intake permit: it is
    // parked on the gate inside the log append.
    tokio::time::timeout(Duration::from_secs(5), async {
        while h.log.parked.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the first intake reaches the log");
    let shed = h.post_json("/v1/orders", &latte_order(), None).await;
    shed.problem(503, "overloaded");
    assert_eq!(shed.headers[header::RETRY_AFTER], "1");
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), 202);
    // The permit is back: intake works again.
    gate.add_permits(1);
    assert_eq!(h.post_json("/v1/orders", &latte_order(), None).await.status, 202);
}

#[tokio::test]
async fn readiness_reports_each_backend() {
    let h = harness();
    h.log.down.store(true, Ordering::SeqCst);
    let a = h.get("/health/ready").await;
    assert_eq!(a.status, 503);
    let v = a.json();
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["checks"]["log"], "unavailable");
    assert_eq!(v["checks"]["store"], "ok");
    // The fake cache takes 5 s to answer: bounded by the 1 s check timeout.
    assert_eq!(v["checks"]["cache"], "timeout");
}

#[tokio::test]
async fn metrics_use_route_templates() {
    let h = harness();
    h.get(&format!("/v1/orders/{}", OrderId::new())).await;
    h.get("/no/such/route/for/metrics").await;
    let a = h.get("/metrics").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/plain; version=0.0.4");
    let text = String::from_utf8(a.body.to_vec()).unwrap();
    assert!(text.contains("http_request_duration_seconds"), "{text}");
    assert!(text.contains(r#"path="/v1/orders/{id}""#), "{text}");
    assert!(text.contains(r#"path="unmatched""#), "{text}");
    assert!(!text.contains("/no/such/route"), "raw URIs never become labels");
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let h = harness();
    let a = h.get("/openapi.json").await;
    assert_eq!(a.status, 200);
    let doc = a.json();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/orders", "post"),
        ("/v1/orders", "get"),
        ("/v1/orders/{id}", "get"),
        ("/v1/orders/{id}/cancel", "post"),
        ("/v1/orders/{id}/lines/{line}/start", "post"),
        ("/v1/orders/{id}/lines/{line}/done", "post"),
        ("/v1/orders/{id}/pickup", "post"),
        ("/v1/orders/{id}/events", "get"),
        ("/v1/stores", "get"),
        ("/v1/stores/{id}/menu", "get"),
        ("/v1/stores/{id}/items/{sku}/availability", "put"),
        ("/v1/stores/{id}/board", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    assert!(doc["components"]["securitySchemes"]["staff_key"].is_object());
    assert_eq!(h.get("/docs").await.status, StatusCode::SEE_OTHER);
    let ui = h.get("/docs/").await;
    assert_eq!(ui.status, 200);
    assert!(String::from_utf8_lossy(&ui.body).contains("swagger"));
}

/// Read SSE frames until `pred` holds for the text so far.
async fn read_until(body: &mut axum::body::BodyDataStream, seen: &mut String, pred: impl Fn(&str) -> bool) {
    while !pred(seen) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream is still open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn order_streams_replay_then_follow_live_and_end_on_shutdown() {
    let h = harness();
    let o = h.store.confirmed_order();
    let other = h.store.confirmed_order();
    let resp = h
        .router
        .clone()
        .oneshot(
            Request::get(format!("/v1/orders/{}/events", o.id))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    // Replay: the `confirmed` event (id 1) from the store.
    read_until(&mut body, &mut seen, |s| s.contains("id: 1\n")).await;
    assert!(seen.contains("event: status"), "{seen}");
    assert!(seen.contains(r#""status":"confirmed""#), "{seen}");

    // Live: a ticket change through the feed (ids 3 and 4; 2 is the other order's).
    let a = h
        .staff(Method::POST, &format!("/v1/orders/{}/lines/1/start", other.id), None)
        .await;
    assert_eq!(a.status, 200);
    let a = h
        .staff(Method::POST, &format!("/v1/orders/{}/lines/1/start", o.id), None)
        .await;
    assert_eq!(a.status, 200);
    read_until(&mut body, &mut seen, |s| {
        s.contains("event: ticket") && s.contains(r#""status":"in_progress""#)
    })
    .await;
    assert!(
        !seen.contains(&other.id.to_string()),
        "events of other orders leak: {seen}"
    );

    h.shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), async { while body.next().await.is_some() {} }).await;
    assert!(end.is_ok(), "the stream ends on shutdown");
}

#[tokio::test]
async fn streams_resume_after_last_event_id_and_check_their_subject() {
    let h = harness();
    let o = h.store.confirmed_order();
    h.staff(Method::POST, &format!("/v1/orders/{}/lines/1/start", o.id), None)
        .await;
    // Events so far: 1 confirmed, 2 ticket, 3 in_progress. Resume after 2.
    let req = Request::get("/v1/stores/demo-downtown/board")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header("last-event-id", "2")
        .body(Body::empty())
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| s.contains("id: 3\n")).await;
    assert!(!seen.contains("id: 1\n") && !seen.contains("id: 2\n"), "{seen}");

    h.get(&format!("/v1/orders/{}/events", OrderId::new()))
        .await
        .problem(404, "order_not_found");
    let req = Request::get(format!("/v1/orders/{}/events", o.id))
        .header("last-event-id", "soon")
        .body(Body::empty())
        .unwrap();
    h.send(req).await.problem(400, "invalid_last_event_id");
    h.staff(Method::GET, "/v1/stores/nowhere/board", None)
        .await
        .problem(404, "store_not_found");
}

#[tokio::test]
async fn lagging_subscribers_catch_up_from_the_store() {
    let h = harness_full(1, |_| {});
    let o = h.store.confirmed_order();
    let req = Request::get("/v1/stores/demo-downtown/board")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| s.contains("id: 1\n")).await;
    // Six events while nobody reads: the one-slot feed overflows.
    for step in ["lines/1/start", "lines/2/start", "lines/1/done", "lines/2/done"] {
        let a = h
            .staff(Method::POST, &format!("/v1/orders/{}/{step}", o.id), None)
            .await;
        assert_eq!(a.status, 200, "{step}: {:?}", a.body);
    }
    let total = h.store.events.lock().unwrap().len();
    assert!(total >= 6);
    read_until(&mut body, &mut seen, |s| s.contains(&format!("id: {total}\n"))).await;
    let ids: Vec<i64> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=total as i64).collect::<Vec<_>>(),
        "every event once, in order: {seen}"
    );
}
