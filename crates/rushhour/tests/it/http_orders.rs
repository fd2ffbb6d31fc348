//! The write path over HTTP: intake, idempotency, processing into
//! `confirmed`/`rejected`, and the guarded lifecycle.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn intake_answers_202_and_the_order_is_confirmed() {
    let app = spawn_app().await;
    let res = app.post_order(&latte_order(), Some("key-1")).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(body["status"], "placed");
    // latte large (420+90) + oat milk 60 = 570 x2, croissant 320
    assert_eq!(body["total"], json!({"amount": 1460, "currency": "USD"}));
    // The links carry the customer's access token.
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token, customer_token(&location).unwrap());
    assert_eq!(body["links"]["self"], format!("{location}?token={token}"));

    // Read-your-writes: visible at once, whether processed yet or not.
    let seen = app.order(id).await;
    assert!(["placed", "confirmed"].contains(&seen["status"].as_str().unwrap()));
    assert_eq!(seen["total"]["amount"], 1460);

    assert_eq!(app.settled(id).await, "confirmed");
    let order = app.order(id).await;
    assert_eq!(order["status"], "confirmed");
    let lines = order["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["station"], "barista");
    assert_eq!(lines[1]["station"], "kitchen");
    assert!(lines.iter().all(|l| l["ticket"] == "queued"));
    assert!(
        order["placed_at"].is_string() || order["timestamps"].is_object(),
        "{order}"
    );
}

#[tokio::test]
async fn client_prices_are_never_trusted() {
    let app = spawn_app().await;
    let body = json!({"store": STORE, "lines": [{"sku": "espresso", "size": "small", "qty": 1, "unit_price": 1}]});
    problem(app.post_order(&body, None).await, 422, "invalid_body").await;
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_reuse() {
    let app = spawn_app().await;
    let first = app.post_order(&latte_order(), Some("same-key")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first_body = first.bytes().await.unwrap();

    let again = app.post_order(&latte_order(), Some("same-key")).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body, "replayed byte for byte");

    let other = json!({"store": STORE, "lines": [{"sku": "espresso", "size": "small", "qty": 1}]});
    problem(
        app.post_order(&other, Some("same-key")).await,
        422,
        "idempotency_key_reused",
    )
    .await;
    problem(
        app.post_order(&latte_order(), Some("")).await,
        400,
        "invalid_idempotency_key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_create_one_order() {
    let app = spawn_app().await;
    let body = latte_order();
    let requests = (0..24).map(|_| app.post_order(&body, Some("racing-key")));
    let responses = futures::future::join_all(requests).await;
    let mut ids = std::collections::HashSet::new();
    for res in responses {
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let v: Value = res.json().await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every duplicate got the one order: {ids:?}");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(app.settled(&id).await, "confirmed");
    let all: Value = app.staff_get("/v1/orders?limit=100").await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn staff_walk_an_order_to_picked_up() {
    let app = spawn_app().await;
    let id = app.place(&latte_order()).await;
    assert_eq!(app.settled(&id).await, "confirmed");

    // Staff routes need the key.
    let anon = app.post(&format!("/v1/orders/{id}/lines/1/start")).await;
    assert_eq!(anon.headers()["www-authenticate"], "Bearer");
    problem(anon, 401, "unauthorized").await;
    let wrong = app
        .client
        .post(app.url(&format!("/v1/orders/{id}/pickup")))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    problem(wrong, 401, "unauthorized").await;

    problem(
        app.staff_post(&format!("/v1/orders/{id}/pickup")).await,
        409,
        "invalid_transition",
    )
    .await;
    problem(
        app.staff_post(&format!("/v1/orders/{id}/lines/1/done")).await,
        409,
        "invalid_transition",
    )
    .await;
    problem(
        app.staff_post(&format!("/v1/orders/{id}/lines/9/start")).await,
        404,
        "line_not_found",
    )
    .await;

    let step = |path: String| {
        let app = &app;
        async move {
            let res = app.staff_post(&path).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            res.json::<Value>().await.unwrap()
        }
    };
    let o = step(format!("/v1/orders/{id}/lines/1/start")).await;
    assert_eq!(o["status"], "in_progress");
    problem(
        app.staff_post(&format!("/v1/orders/{id}/lines/1/start")).await,
        409,
        "invalid_transition",
    )
    .await;
    step(format!("/v1/orders/{id}/lines/2/start")).await;
    let o = step(format!("/v1/orders/{id}/lines/1/done")).await;
    assert_eq!(o["status"], "in_progress", "one line still cooking");
    let o = step(format!("/v1/orders/{id}/lines/2/done")).await;
    assert_eq!(o["status"], "ready");
    let o = step(format!("/v1/orders/{id}/pickup")).await;
    assert_eq!(o["status"], "picked_up");
    problem(
        app.post(&format!("/v1/orders/{id}/cancel")).await,
        409,
        "invalid_transition",
    )
    .await;
}

#[tokio::test]
async fn customers_can_cancel_before_work_starts() {
    let app = spawn_app().await;
    let id = app.place(&latte_order()).await;
    let res = app.post(&format!("/v1/orders/{id}/cancel")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let o: Value = res.json().await.unwrap();
    assert_eq!(o["status"], "cancelled");
    problem(
        app.post(&format!("/v1/orders/{id}/cancel")).await,
        409,
        "invalid_transition",
    )
    .await;
    problem(
        app.post("/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001/cancel").await,
        404,
        "order_not_found",
    )
    .await;
}

#[tokio::test]
async fn an_item_86d_after_intake_rejects_the_order() {
    // Processors off: the test decides when the backlog is processed.
    let app = spawn_app_with(|c| c.processor.enabled = false).await;
    let id = app.place(&latte_order()).await;
    assert_eq!(app.order(&id).await["status"], "placed", "durable before processing");
    assert_eq!(
        app.set_available("croissant", false).await.status(),
        StatusCode::NO_CONTENT
    );
    app.process_all().await;
    let o = app.order(&id).await;
    assert_eq!(o["status"], "rejected");
    assert!(o["reject_reason"].as_str().unwrap().contains("Croissant"), "{o}");
    assert!(o["lines"].as_array().unwrap().iter().all(|l| l["ticket"].is_null()));
}

#[tokio::test]
async fn drink_only_orders_get_barista_tickets_only() {
    let app = spawn_app_with(|c| c.processor.enabled = false).await;
    let body = json!({"store": STORE, "lines": [
        {"sku": "flat-white", "size": "small", "qty": 1},
        {"sku": "flat-white", "size": "small", "qty": 1}
    ]});
    let id = app.place(&body).await;
    app.process_all().await;
    let o = app.order(&id).await;
    let lines = o["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "two identical drinks are two tickets");
    assert!(
        lines
            .iter()
            .all(|l| l["station"] == "barista" && l["ticket"] == "queued")
    );
}

#[tokio::test]
async fn a_retry_is_replayed_even_after_its_item_sold_out() {
    let app = spawn_app().await;
    let first = app.post_order(&latte_order(), Some("retry-after-86")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let body = first.bytes().await.unwrap();
    assert_eq!(app.set_available("latte", false).await.status(), StatusCode::NO_CONTENT);
    // The client never saw the 202 and retries: it must get it now, not a 422.
    let retry = app.post_order(&latte_order(), Some("retry-after-86")).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(retry.bytes().await.unwrap(), body);
    // A new order for the latte is refused.
    problem(
        app.post_order(&latte_order(), Some("fresh-key")).await,
        422,
        "validation_failed",
    )
    .await;
}
