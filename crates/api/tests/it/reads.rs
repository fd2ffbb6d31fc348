//! Read-side details the black-box tests do not pin: extractor rejections
//! the router maps to problems, the menu's exact caching headers and every
//! conditional form, metric labels, and OpenAPI completeness.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use domain::OrderId;
use serde_json::json;

use crate::harness::{STORE, harness};

#[tokio::test]
async fn routing_and_query_rejections_are_problems() {
    let h = harness().await;
    let a = h.send(Request::delete("/v1/orders").body(Body::empty()).unwrap()).await;
    a.problem(405, "method_not_allowed");
    let allow = a.headers[header::ALLOW].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    h.get("/v1/stores/Not_A_Slug/menu").await.problem(400, "invalid_path");
    // A query that does not even parse, as opposed to one out of range.
    h.get("/v1/orders?limit=abc").await.problem(400, "invalid_query");
}

#[tokio::test]
async fn menus_are_cacheable_in_every_conditional_form() {
    let h = harness().await;
    let a = h.get(&format!("/v1/stores/{STORE}/menu")).await;
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
        let req = Request::get(format!("/v1/stores/{STORE}/menu"))
            .header(header::IF_NONE_MATCH, &inm)
            .body(Body::empty())
            .unwrap();
        let a = h.send(req).await;
        assert_eq!(a.status, 304, "{inm}");
        assert!(a.body.is_empty());
        assert_eq!(a.headers[header::ETAG], etag.as_str());
    }

    // The availability body refuses unknown fields like every request body.
    h.staff(
        Method::PUT,
        &format!("/v1/stores/{STORE}/items/latte/availability"),
        Some(json!({"avail": false})),
    )
    .await
    .problem(422, "invalid_body");
}

#[tokio::test]
async fn metrics_use_route_templates() {
    let h = harness().await;
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
    let h = harness().await;
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
        ("/v1/webhooks/payments", "post"),
        ("/v1/admin/queues", "get"),
        ("/v1/admin/jobs", "get"),
        ("/v1/admin/jobs/{id}", "get"),
        ("/v1/admin/jobs/{id}", "delete"),
        ("/v1/admin/jobs/{id}/retry", "post"),
        ("/v1/admin/sync/{what}", "post"),
        ("/v1/admin/cache/clear", "post"),
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
