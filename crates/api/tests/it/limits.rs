//! How the router protects itself and reports trouble: broken, hung and
//! panicking backends, the request deadline, load shedding on intake, the
//! body-read deadline before the intake slot, the body limit without a
//! declared length, and the health probes.

use axum::body::{Body, Bytes};
use axum::http::{Request, header};
use domain::PortError;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

use crate::faults::{Fault, SECRET};
use crate::harness::{STORE, harness, harness_with, latte_order, stalled_body};

#[tokio::test]
async fn backend_failures_timeouts_and_panics_are_problems() {
    let h = harness_with(|c| c.request_timeout = Duration::from_millis(100)).await;
    // Healthy first: the switch delegates to the real store.
    let v = h.get("/v1/stores").await.json();
    assert_eq!(v["items"][0]["id"], STORE);
    assert_eq!(v["items"][0]["currency"], "USD");

    h.store.set(Fault::Unavailable);
    let a = h.get("/v1/stores").await;
    a.problem(503, "unavailable");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");

    h.store.set(Fault::Corrupt);
    let v = h.get("/v1/stores").await.problem(500, "internal");
    assert!(!v.to_string().contains("secret_table"), "{v}");

    h.store.set(Fault::Hang);
    let a = h.get("/v1/stores").await;
    a.problem(503, "timeout");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");

    h.store.set(Fault::Panic);
    let v = h.get("/v1/stores").await.problem(500, "internal");
    assert!(
        !v.to_string().contains(SECRET) && !v.to_string().contains("panic"),
        "{v}"
    );

    // A panic poisons nothing: the next request is served normally.
    h.store.set(Fault::None);
    assert_eq!(h.get("/v1/stores").await.status, 200);

    // An intake whose log is down is refused as retryable, not lost silently.
    h.log.set(Fault::Unavailable);
    h.post_json("/v1/orders", &latte_order(), None)
        .await
        .problem(503, "unavailable");
    h.log.set(Fault::None);
    assert_eq!(h.log_records().await, 0, "nothing was appended");
}

#[tokio::test]
async fn intake_sheds_load_beyond_its_bound() {
    let h = harness_with(|c| c.max_inflight_intake = 1).await;
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)));
    h.log.set(Fault::Hold {
        arrived: arrived.clone(),
        release: release.clone(),
    });
    let router = h.router.clone();
    let first = tokio::spawn(async move {
        let req = Request::post("/v1/orders")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(latte_order().to_string()))
            .unwrap();
        router.oneshot(req).await.unwrap().status()
    });
    // Once the first request is parked inside the log append, it holds the
    // only intake permit.
    tokio::time::timeout(Duration::from_secs(5), arrived.notified())
        .await
        .expect("the first intake reaches the log");
    let shed = h.post_json("/v1/orders", &latte_order(), None).await;
    shed.problem(503, "overloaded");
    assert_eq!(shed.headers[header::RETRY_AFTER], "1");
    assert_eq!(h.log_records().await, 0, "a shed request never reaches the log");

    release.add_permits(1);
    assert_eq!(first.await.unwrap(), 202);
    // The permit is back: intake works again.
    h.log.set(Fault::None);
    assert_eq!(h.post_json("/v1/orders", &latte_order(), None).await.status, 202);
    assert_eq!(h.log_records().await, 2);
}

#[tokio::test]
async fn a_slow_body_holds_no_intake_slot_and_is_refused_408() {
    // One intake slot, and a body deadline short enough for the test; no
    // assertion below depends on how long anything takes.
    let h = harness_with(|c| {
        c.max_inflight_intake = 1;
        c.body_read_timeout = Duration::from_millis(200);
    })
    .await;
    let (body, polled) = stalled_body(r#"{"store": "demo-downtown", "lines": ["#);
    let req = Request::post("/v1/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let router = h.router.clone();
    let slow = tokio::spawn(async move { router.oneshot(req).await.unwrap() });
    tokio::time::timeout(Duration::from_secs(5), polled.notified())
        .await
        .expect("the slow request is being read");

    // While it trickles, another client's order goes through: the slow one
    // holds no slot.
    assert_eq!(h.post_json("/v1/orders", &latte_order(), None).await.status, 202);

    let resp = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the slow request is answered")
        .unwrap();
    assert_eq!(resp.headers()[header::CONNECTION], "close");
    let (parts, body) = resp.into_parts();
    let a = crate::harness::Answer {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX).await.unwrap(),
    };
    a.problem(408, "body_timeout");
    assert_eq!(h.log_records().await, 1, "only the whole order was appended");
    let metrics = h.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"http_body_read_timeouts_total{path="/v1/orders"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn oversized_bodies_without_a_declared_length_are_refused_with_413() {
    // A declared Content-Length is covered over real HTTP by the binary's
    // `malformed_bodies_are_refused_clearly`; a chunked body is only
    // refused once the limit is crossed while reading.
    let h = harness().await;
    let big = json!({"store": STORE, "lines": [], "customer": "x".repeat(70_000)}).to_string();
    let chunks = big
        .into_bytes()
        .chunks(8192)
        .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
        .collect::<Vec<_>>();
    let req = Request::post("/v1/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    assert!(req.headers().get(header::CONTENT_LENGTH).is_none());
    h.send(req).await.problem(413, "payload_too_large");
    assert_eq!(h.log_records().await, 0);
}

#[tokio::test]
async fn liveness_is_static_and_readiness_reports_each_backend() {
    let h = harness().await;
    let a = h.get("/health/ready").await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    h.log.set(Fault::Unavailable);
    h.store.set(Fault::Corrupt);
    h.cache.set(Fault::Hang);
    let a = h.get("/health/ready").await;
    assert_eq!(a.status, 503);
    let v = a.json();
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["checks"]["log"], "unavailable");
    assert_eq!(v["checks"]["store"], "error", "not retryable");
    // A hung backend is bounded by the 1 s check deadline.
    assert_eq!(v["checks"]["cache"], "timeout");
    assert!(!v.to_string().contains("secret_table"), "{v}");
    // Each scrape runs the same checks and publishes them for alert rules.
    let text = String::from_utf8(h.get("/metrics").await.body.to_vec()).unwrap();
    for line in [
        "rushhour_ready 0",
        r#"rushhour_check_up{check="log"} 0"#,
        r#"rushhour_check_up{check="store"} 0"#,
        r#"rushhour_check_up{check="cache"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in:\n{text}");
    }

    h.store.set(Fault::None);
    h.cache.set(Fault::None);
    let v = h.get("/health/ready").await.json();
    assert_eq!(v["checks"]["store"], "ok");
    assert_eq!(v["checks"]["cache"], "ok");

    // Liveness touches no backend: fine while the log is down.
    let a = h.get("/health/live").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), json!({"status": "ok"}));
}

/// The job queue and the order processors are checked too, where the
/// process has them, and a failing processor check alone makes the
/// instance unready (and ready again once it recovers).
#[tokio::test]
async fn readiness_covers_the_job_queue_and_the_processors() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue::SqliteQueue::open(&dir.path().join("jobs.db"), queue::SqliteQueueOptions::default()).unwrap();
    let stalled = Arc::new(AtomicBool::new(false));
    let s = stalled.clone();
    let h = harness_with(move |c| {
        c.jobs = Some(Arc::new(queue));
        c.processors = Some(Arc::new(move || {
            if s.load(Ordering::SeqCst) {
                Err(PortError::Unavailable(
                    "partitions [3] have no running processor".into(),
                ))
            } else {
                Ok(())
            }
        }));
    })
    .await;
    let a = h.get("/health/ready").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let v = a.json();
    assert_eq!(v["checks"]["jobs"], "ok");
    assert_eq!(v["checks"]["processors"], "ok");

    stalled.store(true, Ordering::SeqCst);
    let a = h.get("/health/ready").await;
    assert_eq!(a.status, 503);
    let v = a.json();
    assert_eq!(v["checks"]["processors"], "unavailable");
    assert_eq!(v["checks"]["log"], "ok", "only the failing check says so");
    assert!(!v.to_string().contains("partitions"), "causes stay in the log: {v}");

    stalled.store(false, Ordering::SeqCst);
    assert_eq!(h.get("/health/ready").await.status, 200);

    // A process without a queue or processors does not report them.
    let plain = harness().await.get("/health/ready").await.json();
    assert!(
        plain["checks"].get("jobs").is_none() && plain["checks"].get("processors").is_none(),
        "{plain}"
    );
}
