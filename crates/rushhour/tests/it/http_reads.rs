//! Read-side routes over HTTP: probes, metrics, OpenAPI, stores, the cached
//! menu with ETags, order listings and the live event streams.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn probes_metrics_and_docs_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    let ready: Value = {
        let res = app.get("/health/ready").await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    };
    for check in ["log", "store", "cache"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }

    app.place(&latte_order()).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for name in [
        "http_request_duration_seconds",
        "log_append_duration_seconds",
        "log_group_commit_size",
        "cache_requests_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert!(
        metrics.contains("path=\"/v1/orders\""),
        "route templates label the histogram"
    );

    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for p in [
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/cancel",
        "/v1/orders/{id}/lines/{line}/start",
        "/v1/orders/{id}/lines/{line}/done",
        "/v1/orders/{id}/pickup",
        "/v1/orders/{id}/events",
        "/v1/stores",
        "/v1/stores/{id}/menu",
        "/v1/stores/{id}/board",
        "/v1/stores/{id}/items/{sku}/availability",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().to_lowercase().contains("swagger"));
}

#[tokio::test]
async fn menu_is_cached_with_etags_and_follows_availability() {
    let app = spawn_app().await;
    let stores: Value = app.get("/v1/stores").await.json().await.unwrap();
    assert_eq!(stores["items"][0]["id"], STORE);

    let res = app.get(&format!("/v1/stores/{STORE}/menu")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(res.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let menu: Value = res.json().await.unwrap();
    assert_eq!(menu["categories"][0]["items"][0]["sku"], "espresso");

    let not_modified = app
        .client
        .get(app.url(&format!("/v1/stores/{STORE}/menu")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);

    // 86 the latte: visible at once, with a new ETag, and intake refuses it.
    assert_eq!(app.set_available("latte", false).await.status(), StatusCode::NO_CONTENT);
    let res = app
        .client
        .get(app.url(&format!("/v1/stores/{STORE}/menu")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the old ETag no longer matches");
    let menu: Value = res.json().await.unwrap();
    let latte = menu["categories"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sku"] == "latte")
        .unwrap();
    assert_eq!(latte["available"], false);
    let v = problem(app.post_order(&latte_order(), None).await, 422, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "lines[0].sku");
    assert_eq!(v["errors"][0]["code"], "unavailable");

    problem(app.get("/v1/stores/no-such-store/menu").await, 404, "store_not_found").await;
    problem(app.set_available("no-such-sku", false).await, 404, "item_not_found").await;
}

#[tokio::test]
async fn listings_paginate_by_cursor_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(app.place(&latte_order()).await);
    }
    for id in &placed {
        assert_eq!(app.settled(id).await, "confirmed");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/orders?store={STORE}&status=confirmed&limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app.staff_get(&path).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    placed.reverse(); // newest first
    assert_eq!(seen, placed);
    let none: Value = app.staff_get("/v1/orders?status=ready").await.json().await.unwrap();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    problem(app.staff_get("/v1/orders?limit=101").await, 400, "invalid_query").await;
    problem(app.staff_get("/v1/orders?status=brewing").await, 400, "invalid_query").await;
}

#[tokio::test]
async fn live_events_stream_and_resume_from_last_event_id() {
    let app = spawn_app().await;
    let id = app.place(&latte_order()).await;
    let mut board = app.sse(&format!("/v1/stores/{STORE}/board"), None).await;
    let first = board.next_event().await.unwrap();
    assert_eq!(first.event.as_deref(), Some("status"));
    assert_eq!(first.data["order_id"], id.as_str());
    assert_eq!(first.data["status"], "confirmed");
    let first_id = first.id.clone().unwrap();

    assert_eq!(
        app.staff_post(&format!("/v1/orders/{id}/lines/1/start")).await.status(),
        StatusCode::OK
    );
    let ticket = board.next_event().await.unwrap();
    assert_eq!(ticket.event.as_deref(), Some("ticket"));
    assert_eq!(ticket.data["line"], 1);
    assert_eq!(ticket.data["ticket"], "started");
    assert_eq!(ticket.data["station"], "barista");
    let status = board.next_event().await.unwrap();
    assert_eq!(status.data["status"], "in_progress");

    // Resume after the first event: the rest is replayed, the first is not.
    let mut resumed = app.sse(&format!("/v1/orders/{id}/events"), Some(&first_id)).await;
    let again = resumed.next_event().await.unwrap();
    assert_eq!(again.id, ticket.id);

    let unauthenticated = app.get(&format!("/v1/stores/{STORE}/board")).await;
    problem(unauthenticated, 401, "unauthorized").await;
    problem(
        app.get("/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001/events").await,
        404,
        "order_not_found",
    )
    .await;
}

#[tokio::test]
async fn graceful_shutdown_completes_with_streams_open() {
    let app = spawn_app().await;
    let id = app.place(&latte_order()).await;
    let _stream = app.sse(&format!("/v1/orders/{id}/events"), None).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("shutdown finished")
        .expect("clean exit");
}
