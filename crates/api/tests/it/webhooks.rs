//! `POST /v1/webhooks/payments` through the whole router, over the real
//! embedded log and store with processors applying what it appends:
//! signatures (good, wrong, tampered, stale, missing secret), body
//! validation after verification, idempotent redelivery by event id,
//! callbacks out of order (the provider's time decides), its own
//! load-shedding bound, a slow sender holding no slot, a log outage, and a flood of ten thousand
//! callbacks with duplicates that must each take effect exactly once.
//!
//! Signatures are computed here with `hmac` directly rather than with
//! `api::webhook_signature`, so the tests pin the wire format a provider
//! implements, not whatever the server happens to compute.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use domain::OrderId;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::faults::Fault;
use crate::harness::{Answer, Harness, WEBHOOK_SECRET, harness, harness_with, latte_order, stalled_body};

const PATH: &str = "/v1/webhooks/payments";
/// What `latte_order()` costs: 2 × (420 + 90 + 60).
const LATTE_TOTAL: i64 = 1140;

fn now_s() -> i64 {
    domain::ports::system_now_ms() / 1000
}

/// `t=…,v1=…` for `body` under `secret` at `t`, computed independently.
fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

fn event(id: &str, kind: &str, order: OrderId, amount: i64) -> String {
    event_at(id, kind, order, amount, now_s())
}

/// An event the provider created at `created` (Unix seconds).
fn event_at(id: &str, kind: &str, order: OrderId, amount: i64, created: i64) -> String {
    json!({"id": id, "type": kind, "order_id": order.to_string(), "amount": amount,
           "currency": "USD", "created": created})
    .to_string()
}

fn request(body: &str, sig: Option<&str>) -> Request<Body> {
    let mut req = Request::post(PATH).header(header::CONTENT_TYPE, "application/json");
    if let Some(s) = sig {
        req = req.header("rushhour-signature", s);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

/// Send `body` signed now with the harness's secret.
async fn deliver(h: &Harness, body: &str) -> Answer {
    let sig = signature(WEBHOOK_SECRET, now_s(), body);
    h.send(request(body, Some(&sig))).await
}

/// Deliver until the answer is not a 503, as a provider retries.
async fn deliver_until_taken(h: &Harness, body: &str, shed: &AtomicUsize) -> Answer {
    loop {
        let a = deliver(h, body).await;
        if a.status != StatusCode::SERVICE_UNAVAILABLE {
            return a;
        }
        assert_eq!(a.headers[header::RETRY_AFTER], "1");
        shed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn assert_accepted(a: &Answer, id: &str) {
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(a.json(), json!({"event_id": id, "status": "accepted"}));
}

/// Order processors running in the background, as in the binary.
struct Processors {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Processors {
    fn spawn(h: &Harness) -> Self {
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let config = worker::ProcessorConfig {
            linger: Duration::from_millis(2),
            ..Default::default()
        };
        worker::spawn_processors(h.app.clone(), config, &tracker, stop.clone());
        Self { stop, tracker }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Bounded wait until `order`'s `payment_status`, read through the API, is
/// `want`.
async fn wait_for_payment_status(h: &Harness, order: OrderId, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = h.customer_get(order).await.json();
        if v["payment_status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "payment_status never became {want}: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bounded wait until the processors have applied everything in the log.
async fn wait_until_drained(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let group = worker::ProcessorConfig::default().group;
    loop {
        let mut behind = 0;
        for p in 0..h.app.log.partitions() {
            let end = h.app.log.end_offset(p).await.unwrap();
            let at = h.app.store.consumer_position(&group, p).await.unwrap();
            behind += end.saturating_sub(at);
        }
        if behind == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{behind} records still unapplied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics_text(h: &Harness) -> String {
    String::from_utf8(h.get("/metrics").await.body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_signed_payment_is_durable_at_once_and_pays_its_order() {
    let h = harness().await;
    let procs = Processors::spawn(&h);
    let order = h.place(&latte_order()).await;

    let body = event("evt_paid_1", "payment.succeeded", order, LATTE_TOTAL);
    let a = deliver(&h, &body).await;
    assert_accepted(&a, "evt_paid_1");
    assert!(a.headers.get("idempotent-replayed").is_none());
    assert_eq!(h.log_records().await, 2, "the order and its payment");

    wait_for_payment_status(&h, order, "paid").await;
    let text = metrics_text(&h).await;
    assert!(text.contains(r#"payment_webhooks_total{outcome="accepted"}"#), "{text}");
    assert!(text.contains(r#"payments_applied_total{outcome="applied"}"#), "{text}");
    assert!(text.contains(r#"path="/v1/webhooks/payments""#), "{text}");
    procs.stop().await;
}

#[tokio::test]
async fn wrong_tampered_stale_and_missing_signatures_are_refused_before_parsing() {
    let h = harness().await;
    let order = OrderId::new();
    let body = event("evt_1", "payment.succeeded", order, LATTE_TOTAL);
    let now = now_s();

    // No header, a malformed one, another secret.
    h.send(request(&body, None)).await.problem(401, "invalid_signature");
    let a = h.send(request(&body, Some("sha256=deadbeef"))).await;
    a.problem(401, "invalid_signature");
    assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Rushhour-Signature");
    let other = signature("whsec_someone_else", now, &body);
    h.send(request(&body, Some(&other)))
        .await
        .problem(401, "invalid_signature");

    // Signed, then the body changed in flight (the amount).
    let sig = signature(WEBHOOK_SECRET, now, &body);
    let tampered = body.replace(&LATTE_TOTAL.to_string(), "1");
    assert_ne!(tampered, body);
    h.send(request(&tampered, Some(&sig)))
        .await
        .problem(401, "invalid_signature");

    // Genuine but outside the 300 s tolerance, either way: a replay of an
    // old capture, or a sender whose clock is far off.
    for t in [now - 301, now + 3600] {
        let sig = signature(WEBHOOK_SECRET, t, &body);
        h.send(request(&body, Some(&sig))).await.problem(401, "stale_signature");
    }
    // Within it: fine.
    let sig = signature(WEBHOOK_SECRET, now - 250, &body);
    assert_accepted(&h.send(request(&body, Some(&sig))).await, "evt_1");

    // Not even JSON, unsigned: the signature is checked first, so an
    // anonymous caller learns nothing about what the body should be.
    h.send(request("{not json", None))
        .await
        .problem(401, "invalid_signature");

    // The secret rolls: the provider signs with old and new, we know one.
    let body2 = event("evt_2", "payment.succeeded", order, LATTE_TOTAL);
    let old = signature("whsec_old", now, &body2);
    let new = signature(WEBHOOK_SECRET, now, &body2);
    let both = format!("{old},{}", new.split_once(',').unwrap().1);
    assert_accepted(&h.send(request(&body2, Some(&both))).await, "evt_2");

    assert_eq!(
        h.log_records().await,
        2,
        "only the two accepted callbacks were appended"
    );
    let text = metrics_text(&h).await;
    assert!(
        text.contains(r#"payment_webhooks_total{outcome="invalid_signature"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"payment_webhooks_total{outcome="stale_signature"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn without_a_secret_nothing_is_accepted() {
    let h = harness_with(|c| c.webhook_secret = String::new()).await;
    let body = event("evt_1", "payment.succeeded", OrderId::new(), 1);
    // A MAC under the empty key is one anybody can compute.
    let sig = signature("", now_s(), &body);
    h.send(request(&body, Some(&sig)))
        .await
        .problem(401, "invalid_signature");
    assert_eq!(h.log_records().await, 0);
}

#[tokio::test]
async fn signed_but_invalid_bodies_are_problems_naming_the_field() {
    let h = harness().await;
    let order = OrderId::new().to_string();

    deliver(&h, "{\"id\":").await.problem(400, "malformed_json");

    let wrong_type = json!({"id": "evt_1", "type": "payment.pending", "order_id": order, "amount": 1,
                            "currency": "USD", "created": 1})
    .to_string();
    let v = deliver(&h, &wrong_type).await.problem(422, "invalid_body");
    assert!(v["detail"].as_str().unwrap().contains("type"), "{v}");

    let no_order = json!({"id": "evt_1", "type": "payment.failed", "amount": 1, "currency": "USD",
                          "created": 1})
    .to_string();
    let v = deliver(&h, &no_order).await.problem(422, "invalid_body");
    assert!(v["detail"].as_str().unwrap().contains("order_id"), "{v}");

    let bad_uuid = json!({"id": "evt_1", "type": "payment.failed", "order_id": "nope", "amount": 1,
                          "currency": "USD", "created": 1})
    .to_string();
    let v = deliver(&h, &bad_uuid).await.problem(422, "invalid_body");
    assert!(v["detail"].as_str().unwrap().contains("order_id"), "{v}");

    let bad_values = json!({"id": "x".repeat(129), "type": "payment.succeeded", "order_id": order,
                            "amount": -5, "currency": "usd", "created": 1700000000})
    .to_string();
    let v = deliver(&h, &bad_values).await.problem(422, "validation_failed");
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["id", "amount", "currency"], "{v}");

    // A signed body sent as something other than JSON.
    let body = event("evt_1", "payment.succeeded", OrderId::new(), 1);
    let sig = signature(WEBHOOK_SECRET, now_s(), &body);
    let req = Request::post(PATH)
        .header(header::CONTENT_TYPE, "text/plain")
        .header("rushhour-signature", sig)
        .body(Body::from(body))
        .unwrap();
    h.send(req).await.problem(415, "unsupported_media_type");

    // Too large, whatever the signature says.
    let huge = "x".repeat(70_000);
    deliver(&h, &huge).await.problem(413, "payload_too_large");

    assert_eq!(h.log_records().await, 0, "nothing invalid reaches the log");
}

#[tokio::test]
async fn a_redelivered_event_is_replayed_and_applied_once() {
    let h = harness().await;
    let order = h.place(&latte_order()).await;

    let paid = event("evt_dup_paid", "payment.succeeded", order, LATTE_TOTAL);
    let first = deliver(&h, &paid).await;
    assert_accepted(&first, "evt_dup_paid");
    // The provider did not hear us and sends it again (a fresh signature,
    // the same body): the original answer, nothing appended.
    let again = deliver(&h, &paid).await;
    assert_accepted(&again, "evt_dup_paid");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    assert_eq!(h.log_records().await, 2);
    h.process_all().await;
    assert_eq!(h.customer_get(order).await.json()["payment_status"], "paid");

    // Refunded later; a late redelivery of the old success must not flip
    // the order back to paid.
    assert_accepted(
        &deliver(&h, &event("evt_dup_refund", "payment.refunded", order, LATTE_TOTAL)).await,
        "evt_dup_refund",
    );
    let late = deliver(&h, &paid).await;
    assert_eq!(late.headers["idempotent-replayed"], "true");
    h.process_all().await;
    assert_eq!(h.customer_get(order).await.json()["payment_status"], "refunded");
    assert_eq!(h.log_records().await, 3);

    // The same event id with another body is not a redelivery.
    let forged = event("evt_dup_paid", "payment.refunded", order, LATTE_TOTAL);
    deliver(&h, &forged).await.problem(422, "idempotency_key_reused");
    assert_eq!(h.log_records().await, 3);
    let text = metrics_text(&h).await;
    assert!(text.contains(r#"payment_webhooks_total{outcome="replayed"}"#), "{text}");
}

/// The provider's callbacks out of order: the payment, then a failed
/// attempt it created a minute earlier, delivered after it. Both are
/// accepted and recorded; the order stays paid, and a newer refund still
/// applies.
#[tokio::test]
async fn an_older_failure_delivered_after_the_payment_leaves_the_order_paid() {
    let h = harness().await;
    let order = h.place(&latte_order()).await;
    let status = || async { h.customer_get(order).await.json()["payment_status"].clone() };
    let now = now_s();

    let paid = event_at("evt_ooo_paid", "payment.succeeded", order, LATTE_TOTAL, now - 10);
    assert_accepted(&deliver(&h, &paid).await, "evt_ooo_paid");
    h.process_all().await;
    assert_eq!(status().await, "paid");

    let failed = event_at("evt_ooo_failed", "payment.failed", order, LATTE_TOTAL, now - 70);
    assert_accepted(&deliver(&h, &failed).await, "evt_ooo_failed");
    h.process_all().await;
    assert_eq!(status().await, "paid", "an older failure arriving late changes nothing");
    assert_eq!(h.log_records().await, 3, "every callback is in the log");

    let refund = event_at("evt_ooo_refund", "payment.refunded", order, LATTE_TOTAL, now);
    assert_accepted(&deliver(&h, &refund).await, "evt_ooo_refund");
    h.process_all().await;
    assert_eq!(status().await, "refunded");
}

#[tokio::test]
async fn a_payment_for_an_unknown_order_is_accepted_and_recorded_without_effect() {
    let h = harness().await;
    let stranger = OrderId::new();
    // Intake does not read the store: existence is the processor's question.
    assert_accepted(
        &deliver(&h, &event("evt_stranger", "payment.succeeded", stranger, 100)).await,
        "evt_stranger",
    );
    // It blocks nothing: the orders and payments after it still apply.
    let order = h.place(&latte_order()).await;
    assert_accepted(
        &deliver(&h, &event("evt_known", "payment.succeeded", order, LATTE_TOTAL)).await,
        "evt_known",
    );
    h.process_all().await;
    h.customer_get(stranger).await.problem(404, "order_not_found");
    assert_eq!(h.customer_get(order).await.json()["payment_status"], "paid");
    assert!(
        h.app.store.dead_letters(10).await.unwrap().is_empty(),
        "not a poison record"
    );
    let text = metrics_text(&h).await;
    assert!(
        text.contains(r#"payments_applied_total{outcome="unknown_order"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_sender_holds_no_webhook_slot_and_is_refused_408() {
    let h = harness_with(|c| {
        c.max_inflight_webhooks = 1;
        c.body_read_timeout = Duration::from_millis(200);
    })
    .await;
    let (body, polled) = stalled_body(r#"{"id": "evt_slow", "type": "#);
    let sig = signature(WEBHOOK_SECRET, now_s(), "whatever comes");
    let req = Request::post(PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .header("rushhour-signature", sig)
        .body(body)
        .unwrap();
    let slow = tokio::spawn(h.router.clone().oneshot(req));
    tokio::time::timeout(Duration::from_secs(5), polled.notified())
        .await
        .expect("the slow callback is being read");

    // The only webhook slot is free for a provider that sends promptly.
    let a = deliver(&h, &event("evt_prompt", "payment.failed", OrderId::new(), 1)).await;
    assert_accepted(&a, "evt_prompt");

    let resp = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the slow callback is answered")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 408);
    let v: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(v["code"], "body_timeout");
    assert_eq!(h.log_records().await, 1);
}

#[tokio::test]
async fn webhooks_shed_beyond_their_own_bound_without_shedding_intake() {
    let h = harness_with(|c| {
        c.max_inflight_webhooks = 1;
        c.max_inflight_intake = 1;
    })
    .await;
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)));
    h.log.set(Fault::Hold {
        arrived: arrived.clone(),
        release: release.clone(),
    });
    let router = h.router.clone();
    let body = event("evt_held", "payment.failed", OrderId::new(), 1);
    let sig = signature(WEBHOOK_SECRET, now_s(), &body);
    let held = tokio::spawn(router.oneshot(request(&body, Some(&sig))));
    tokio::time::timeout(Duration::from_secs(5), arrived.notified())
        .await
        .expect("the first webhook reaches the log");

    // The only webhook permit is taken: the next callback is refused at
    // once, before its signature is checked.
    let a = deliver(&h, &event("evt_shed", "payment.failed", OrderId::new(), 1)).await;
    a.problem(503, "overloaded");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");

    // Intake has its own bound: an order is not shed, it waits for the log.
    let router = h.router.clone();
    let order = tokio::spawn(
        router.oneshot(
            Request::post("/v1/orders")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(latte_order().to_string()))
                .unwrap(),
        ),
    );
    tokio::time::timeout(Duration::from_secs(5), arrived.notified())
        .await
        .expect("the order reaches the log too");
    release.add_permits(2);
    assert_eq!(held.await.unwrap().unwrap().status(), 202);
    assert_eq!(order.await.unwrap().unwrap().status(), 202);
    h.log.set(Fault::None);
    assert_eq!(h.log_records().await, 2, "the shed callback never reached the log");
    let text = metrics_text(&h).await;
    assert!(
        text.contains(r#"http_requests_shed_total{path="/v1/webhooks/payments"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_log_outage_is_a_retryable_503_and_claims_nothing() {
    let h = harness().await;
    let body = event("evt_outage", "payment.succeeded", OrderId::new(), 1);
    h.log.set(Fault::Unavailable);
    let a = deliver(&h, &body).await;
    a.problem(503, "unavailable");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    h.log.set(Fault::None);
    assert_eq!(h.log_records().await, 0);
    // The provider's retry is a first delivery, not a replay.
    let a = deliver(&h, &body).await;
    assert_accepted(&a, "evt_outage");
    assert!(a.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn the_endpoint_is_documented() {
    let h = harness().await;
    let doc = h.get("/openapi.json").await.json();
    let op = &doc["paths"][PATH]["post"];
    assert!(op.is_object(), "POST {PATH} undocumented");
    let params: Vec<&Value> = op["parameters"].as_array().unwrap().iter().collect();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "Rushhour-Signature" && p["in"] == "header"),
        "{op}"
    );
    for status in ["202", "401", "422", "503"] {
        assert!(op["responses"][status].is_object(), "{status} undocumented: {op}");
    }
    assert!(doc["components"]["schemas"]["PaymentWebhook"].is_object());
}

/// Ten thousand callbacks for two thousand orders, 64 at a time, with exact
/// redeliveries mixed in and a webhook bound below the concurrency (so some
/// are shed and retried): every callback ends 202, every distinct event is
/// appended once, and each order ends in the status of its last distinct
/// event — a redelivery of an earlier event, were it applied again, would
/// leave it elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_callbacks_with_redeliveries_applies_each_event_once() {
    const ORDERS: usize = 2_000;
    let h = harness_with(|c| {
        c.max_inflight_webhooks = 32;
        c.request_timeout = Duration::from_secs(30);
    })
    .await;
    let procs = Processors::spawn(&h);

    let latte = latte_order();
    let orders: Vec<OrderId> = futures::stream::iter(0..ORDERS)
        .map(|_| h.place(&latte))
        .buffered(64)
        .collect()
        .await;

    // Per order, in this order: failed (a), succeeded (b), b again, then
    // either refunded (c, every third order) or a again, then b again.
    // Five callbacks per order; distinct events: a, b and maybe c.
    let plan = |i: usize, order: OrderId| -> Vec<(String, String)> {
        let a = (
            format!("evt_{i}_a"),
            event(&format!("evt_{i}_a"), "payment.failed", order, LATTE_TOTAL),
        );
        let b = (
            format!("evt_{i}_b"),
            event(&format!("evt_{i}_b"), "payment.succeeded", order, LATTE_TOTAL),
        );
        let third = if i.is_multiple_of(3) {
            let id = format!("evt_{i}_c");
            let body = event(&id, "payment.refunded", order, LATTE_TOTAL);
            (id, body)
        } else {
            a.clone()
        };
        vec![a, b.clone(), b.clone(), third, b]
    };
    let (accepted, replayed, shed) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    let sent: usize = futures::stream::iter(orders.iter().enumerate())
        .map(|(i, &order)| {
            let (h, accepted, replayed, shed) = (&h, &accepted, &replayed, &shed);
            async move {
                let calls = plan(i, order);
                for (id, body) in &calls {
                    // Sequential per order, so the log holds its events in
                    // the order the provider sent them.
                    let a = deliver_until_taken(h, body, shed).await;
                    assert_accepted(&a, id);
                    if a.headers.contains_key("idempotent-replayed") {
                        replayed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                calls.len()
            }
        })
        .buffer_unordered(64)
        .fold(0, |n, k| async move { n + k })
        .await;
    assert_eq!(sent, 5 * ORDERS);

    let refunded = ORDERS.div_ceil(3);
    let distinct = 2 * ORDERS + refunded;
    assert_eq!(accepted.load(Ordering::Relaxed), distinct);
    assert_eq!(replayed.load(Ordering::Relaxed), 5 * ORDERS - distinct);
    assert_eq!(
        h.log_records().await,
        (ORDERS + distinct) as u64,
        "every order and every distinct event appended exactly once"
    );

    wait_until_drained(&h).await;
    procs.stop().await;
    for (i, &order) in orders.iter().enumerate() {
        let o = h.app.store.get_order(order).await.unwrap().expect("applied");
        let want = if i.is_multiple_of(3) { "refunded" } else { "paid" };
        assert_eq!(o.payment_status, want, "order {i} ({order})");
    }
    assert!(h.app.store.dead_letters(10).await.unwrap().is_empty());
    eprintln!(
        "flood: {} callbacks, {distinct} distinct, {} shed and retried",
        5 * ORDERS,
        shed.load(Ordering::Relaxed)
    );
}
