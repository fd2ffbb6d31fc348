//! Bad input gets a clear `application/problem+json` error with a stable
//! code — never a 500, never a panic — and loses nothing.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_raw(app: &TestApp, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::Response {
    let mut r = app.client.post(app.url("/v1/orders")).body(body);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn malformed_bodies_are_refused_clearly() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    problem(post_raw(&app, json_ct, "{\"store\": ").await, 400, "malformed_json").await;
    problem(
        post_raw(&app, Some("text/plain"), latte_order().to_string()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    problem(
        post_raw(&app, None, latte_order().to_string()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let v = problem(
        post_raw(
            &app,
            json_ct,
            json!({"store": STORE, "lines": [], "coupon": "FREE"}).to_string(),
        )
        .await,
        422,
        "invalid_body",
    )
    .await;
    assert!(v["detail"].as_str().unwrap().contains("coupon"), "{v}");
    problem(
        post_raw(
            &app,
            json_ct,
            json!({"store": STORE, "lines": [{"sku": "latte", "qty": "two"}]}).to_string(),
        )
        .await,
        422,
        "invalid_body",
    )
    .await;

    let huge = format!(
        "{{\"store\":\"{STORE}\",\"customer\":\"{}\",\"lines\":[]}}",
        "x".repeat(70 * 1024)
    );
    problem(post_raw(&app, json_ct, huge).await, 413, "payload_too_large").await;
}

#[tokio::test]
async fn invalid_orders_name_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"store": "nowhere", "lines": [{"sku": "latte", "size": "small", "qty": 1}]}),
            "store",
            "unknown_store",
        ),
        (
            json!({"store": STORE, "lines": [{"sku": "unicorn", "qty": 1}]}),
            "lines[0].sku",
            "unknown_sku",
        ),
        (
            json!({"store": STORE, "lines": [{"sku": "latte", "size": "venti", "qty": 1}]}),
            "lines[0].size",
            "unknown_size",
        ),
        (
            json!({"store": STORE, "lines": [{"sku": "latte", "size": "small", "modifiers": ["gold"], "qty": 1}]}),
            "lines[0].modifiers[0]",
            "unknown_modifier",
        ),
        (
            json!({"store": STORE, "lines": [{"sku": "latte", "size": "small", "qty": 0}]}),
            "lines[0].qty",
            "out_of_range",
        ),
        (
            json!({"store": STORE, "lines": [{"sku": "latte", "size": "small", "qty": 21}]}),
            "lines[0].qty",
            "out_of_range",
        ),
        (json!({"store": STORE, "lines": []}), "lines", "required"),
    ];
    for (body, field, code) in cases {
        let v = problem(app.post_order(&body, None).await, 422, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], field, "{v}");
        assert_eq!(v["errors"][0]["code"], code, "{v}");
    }
    let many: Vec<Value> = (0..51)
        .map(|_| json!({"sku": "espresso", "size": "small", "qty": 1}))
        .collect();
    let v = problem(
        app.post_order(&json!({"store": STORE, "lines": many}), None).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(v["errors"][0]["code"], "too_many_lines");

    // Nothing was accepted along the way.
    let all: Value = app.staff_get("/v1/orders").await.json().await.unwrap();
    assert!(all["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_paths_routes_and_methods() {
    let app = spawn_app().await;
    problem(app.get("/v1/orders/not-a-uuid").await, 400, "invalid_path").await;
    problem(
        app.staff_post("/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001/lines/abc/start")
            .await,
        400,
        "invalid_path",
    )
    .await;
    problem(
        app.get("/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001").await,
        404,
        "order_not_found",
    )
    .await;
    problem(app.get("/v1/nothing-here").await, 404, "route_not_found").await;
    problem(
        app.client.delete(app.url("/v1/orders")).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    problem(app.post("/health/live").await, 405, "method_not_allowed").await;
    let availability = app
        .client
        .put(app.url(&format!("/v1/stores/{STORE}/items/latte/availability")))
        .bearer_auth(STAFF_KEY)
        .json(&json!({"available": "nope"}))
        .send()
        .await
        .unwrap();
    problem(availability, 422, "invalid_body").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_shed_with_503_not_queued() {
    // One intake slot: concurrent intakes beyond it are refused at once.
    let app = spawn_app_with(|c| c.http.max_inflight_intake = 1).await;
    let body = latte_order();
    let keys: Vec<String> = (0..64).map(|i| format!("shed-{i}")).collect();
    let requests = keys.iter().map(|k| app.post_order(&body, Some(k)));
    let responses = futures::future::join_all(requests).await;
    let (mut accepted, mut shed) = (0, 0);
    for res in responses {
        match res.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(res.headers()["retry-after"], "1");
                problem(res, 503, "overloaded").await;
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(accepted >= 1, "the slot was used");
    assert!(shed >= 1, "64 concurrent intakes through one slot must shed some");
    assert_eq!(accepted + shed, 64);
}
