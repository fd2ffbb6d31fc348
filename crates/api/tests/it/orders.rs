//! The write path where the harness's control of the processors matters:
//! orders durable in the log but not yet applied, what an idempotent retry
//! appends, and the order documents each action answers with.

use axum::http::{Method, header};
use domain::OrderId;
use serde_json::{Value, json};

use crate::harness::{harness, latte_order};

#[tokio::test]
async fn unapplied_orders_are_read_from_the_log_and_not_ready_for_actions() {
    let h = harness().await;
    let id = h.place(&latte_order()).await;

    // Read-your-writes before any processor ran: the view from the log.
    let a = h.customer_get(id).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["status"], "placed");
    assert_eq!(v["total"], json!({"amount": 1140, "currency": "USD"}));
    assert_eq!(v["lines"][0]["unit_price"], 570);
    assert_eq!(v["lines"][0]["station"], "barista");
    assert_eq!(v["lines"][0]["ticket"], Value::Null);
    assert!(v["placed_at"].as_str().unwrap().ends_with('Z'), "{v}");
    assert_eq!(v["confirmed_at"], Value::Null);
    assert_eq!(v["links"]["self"], format!("/v1/orders/{id}"));

    // An action waits `apply_wait` for the processor, then says "retry".
    let a = h.customer_cancel(id).await;
    a.problem(503, "not_ready");
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    // Unlike an order the log has never seen.
    h.customer_cancel(OrderId::new()).await.problem(404, "order_not_found");

    // Once applied, the same action goes through.
    h.process_all().await;
    let a = h.customer_cancel(id).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["status"], "cancelled");
}

#[tokio::test]
async fn idempotent_replays_append_nothing_and_keep_their_location() {
    let h = harness().await;
    let first = h.post_json("/v1/orders", &latte_order(), Some("key-1")).await;
    assert_eq!(first.status, 202);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = h.post_json("/v1/orders", &latte_order(), Some("key-1")).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers[header::LOCATION], first.headers[header::LOCATION]);
    assert_eq!(h.log_records().await, 1, "the retry appended nothing");

    h.post_json("/v1/orders", &latte_order(), Some("has space"))
        .await
        .problem(400, "invalid_idempotency_key");
    assert_eq!(h.log_records().await, 1);
}

#[tokio::test]
async fn actions_answer_with_the_updated_order() {
    let h = harness().await;
    let id = h.confirmed_order().await;
    let v = h.customer_get(id).await.json();
    assert_eq!(v["status"], "confirmed");
    assert!(v["confirmed_at"].as_str().unwrap().ends_with('Z'), "{v}");

    let a = h
        .staff(Method::POST, &format!("/v1/orders/{id}/lines/1/start"), None)
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let v = a.json();
    assert_eq!(v["status"], "in_progress");
    assert_eq!(v["lines"][0]["ticket"], "started");
    assert_eq!(v["lines"][1]["ticket"], "queued");
    // Work has started: too late to cancel.
    h.customer_cancel(id).await.problem(409, "invalid_transition");

    for step in ["lines/2/start", "lines/1/done", "lines/2/done"] {
        let a = h.staff(Method::POST, &format!("/v1/orders/{id}/{step}"), None).await;
        assert_eq!(a.status, 200, "{step}: {:?}", a.body);
    }
    let a = h.staff(Method::POST, &format!("/v1/orders/{id}/pickup"), None).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["status"], "picked_up");
    assert!(
        v["lines"].as_array().unwrap().iter().all(|l| l["ticket"] == "done"),
        "{v}"
    );
    assert!(v["picked_up_at"].as_str().unwrap().ends_with('Z'), "{v}");
}
