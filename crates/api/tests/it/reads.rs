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
    h.staff(Method::GET, "/v1/orders?limit=abc", None)
        .await
        .problem(400, "invalid_query");
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
    h.customer_get(OrderId::new()).await;
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
    // The permission table and the document list the same operations: a
    // route added to one and not the other fails here.
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let table: std::collections::BTreeSet<_> = api::RULES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, table, "OpenAPI operations vs the permission table");
    // Each operation states its security requirement (an empty list for
    // public ones), written from the table.
    for rule in api::RULES {
        let op = &paths[rule.path][rule.method.as_str().to_lowercase()];
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{} {} has no security", rule.method, rule.path));
        match rule.access {
            api::Access::Public => assert!(security.is_empty(), "{}", rule.path),
            api::Access::Signed => assert!(security[0].get("webhook_signature").is_some()),
            api::Access::Staff(_) => assert!(security.iter().any(|s| s.get("bearer").is_some())),
            api::Access::OrderOrStaff(_) => {
                assert!(security.iter().any(|s| s.get("order_token").is_some()));
                assert!(security.iter().any(|s| s.get("bearer").is_some()));
            }
        }
    }
    for scheme in [
        "bearer",
        "session_cookie",
        "order_token",
        "order_token_query",
        "webhook_signature",
    ] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object(), "{scheme}");
    }
    assert_eq!(h.get("/docs").await.status, StatusCode::SEE_OTHER);
    let ui = h.get("/docs/").await;
    assert_eq!(ui.status, 200);
    assert!(String::from_utf8_lossy(&ui.body).contains("swagger"));
    // The UI loads the document the server serves (serialized once at start).
    let init = h.get("/docs/swagger-initializer.js").await;
    assert_eq!(init.status, 200);
    assert!(String::from_utf8_lossy(&init.body).contains("\"/openapi.json\""));
    assert_eq!(a.headers["content-type"], "application/json");
}

/// Every refusal the server sends is in the document (what schemathesis
/// checks): 401 and 403 on each staff and order-token API route, and the
/// JSON extractor's 400/413/415/422 on each route taking a JSON body.
#[tokio::test]
async fn openapi_documents_the_refusals_of_every_route() {
    let h = harness().await;
    let doc = h.get("/openapi.json").await.json();
    let (mut guarded_checked, mut bodies_checked) = (0, 0);
    for rule in api::RULES {
        let Some(op) = doc["paths"][rule.path].get(rule.method.as_str().to_lowercase()) else {
            continue; // served by Swagger UI's router: checked by the test above
        };
        let documents = |statuses: &[&str]| {
            for status in statuses {
                let documented = op["responses"][*status].is_object();
                assert!(documented, "{} {} lacks {status}", rule.method, rule.path);
            }
        };
        let guarded = matches!(rule.access, api::Access::Staff(_) | api::Access::OrderOrStaff(_));
        if guarded && rule.class != api::Class::Pages {
            documents(&["401", "403"]);
            guarded_checked += 1;
        }
        let json_body = op["requestBody"]["content"]["application/json"].is_object();
        if json_body && rule.access != api::Access::Signed {
            documents(&["400", "413", "415", "422"]);
            bodies_checked += 1;
        }
    }
    assert!(
        guarded_checked >= 20 && bodies_checked >= 5,
        "{guarded_checked} guarded, {bodies_checked} bodies"
    );
}
