//! Who may do what, through the assembled router: the permission table
//! walked with every role, customers' order tokens, logins, sessions and
//! their cookie with CSRF, lockout without user enumeration, personal API
//! keys with store scopes, rate limits with their headers, and the audit
//! trail these leave.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use domain::OrderId;
use domain::identity::Role;
use domain::ports::Quota;
use serde_json::{Value, json};
use std::time::Duration;

use crate::harness::{Answer, Harness, PASSWORD, STORE, harness, harness_with, latte_order};

/// A concrete path for a route template.
fn concrete(path: &str, order: OrderId) -> String {
    path.replace("{id}", &order.to_string())
        .replace("{line}", "1")
        .replace("{sku}", "latte")
        .replace("{what}", "menu")
        .replace("{username}", "barista")
        .replace("{prefix}", "rhk_00000000")
        .replace("{name}", "app.css")
}

async fn call(h: &Harness, who: Option<Role>, method: &Method, path: &str) -> Answer {
    let mut req = Request::builder().method(method.clone()).uri(path);
    if let Some(role) = who {
        req = req.header(header::AUTHORIZATION, format!("Bearer {}", h.keys[&role]));
    }
    let body = if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    // Streams answer 200 and stay open: only the head matters here.
    let resp = tower::ServiceExt::oneshot(h.router.clone(), req.body(body).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = if parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "text/event-stream")
    {
        Default::default()
    } else {
        axum::body::to_bytes(body, usize::MAX).await.unwrap()
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

#[tokio::test]
async fn the_permission_table_holds_for_every_role_on_every_route() {
    let h = harness().await;
    let order = h.confirmed_order().await;
    let mut checked = 0;
    for rule in api::RULES {
        if rule.access == api::Access::Signed || rule.path.starts_with("/docs") {
            continue; // the signature is the handler's; docs are static
        }
        let path = concrete(rule.path, order);
        for who in [None, Some(Role::Barista), Some(Role::Manager), Some(Role::Admin)] {
            let a = call(&h, who, &rule.method, &path).await;
            let allowed = match rule.access {
                api::Access::Public | api::Access::Signed => true,
                api::Access::Staff(need) | api::Access::OrderOrStaff(need) => who.is_some_and(|r| r.covers(need)),
            };
            // Pages refuse for a person: anonymous visitors go to the
            // login page, other roles get an HTML 403.
            let page = rule.class == api::Class::Pages;
            let refused = if page {
                a.status == StatusCode::SEE_OTHER || a.status == StatusCode::FORBIDDEN
            } else {
                a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::FORBIDDEN
            };
            assert_eq!(
                !refused, allowed,
                "{} {} as {who:?}: {} {:?}",
                rule.method, rule.path, a.status, a.body
            );
            if !allowed && page {
                if who.is_none() {
                    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", rule.path);
                    assert!(
                        a.headers[header::LOCATION]
                            .to_str()
                            .unwrap()
                            .starts_with("/login?next=/")
                    );
                } else {
                    assert_eq!(a.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
                }
            } else if !allowed {
                let code = if who.is_none() { "unauthorized" } else { "forbidden" };
                a.problem(a.status.as_u16(), code);
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * 30, "walked {checked} role × route pairs");
}

#[tokio::test]
async fn staff_pages_send_visitors_to_login_and_refuse_other_roles_with_a_page() {
    let h = harness().await;
    let board = format!("/stores/{STORE}/board?station=kitchen");
    let a = call(&h, None, &Method::GET, &board).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.headers[header::LOCATION],
        format!("/login?next=/stores/{STORE}/board%3Fstation%3Dkitchen").as_str()
    );
    // The login page itself is open, and says where it goes back to.
    let login = call(&h, None, &Method::GET, a.headers[header::LOCATION].to_str().unwrap()).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&login.body).contains(&format!(r#"data-next="/stores/{STORE}/board?station=kitchen""#))
    );

    // A barista sees the board, named in the header, but not the
    // manager's or the operator's pages: an HTML 403, not problem+json.
    let ok = call(&h, Some(Role::Barista), &Method::GET, &board).await;
    assert_eq!(ok.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&ok.body).into_owned();
    let viewer = &html[html
        .find(r#"data-testid="viewer">"#)
        .expect("the header names the viewer")..];
    assert!(
        viewer[..viewer.find("</span>").unwrap()].ends_with(" · barista"),
        "{viewer}"
    );
    for page in ["/ops".to_owned(), format!("/stores/{STORE}/manage")] {
        let no = call(&h, Some(Role::Barista), &Method::GET, &page).await;
        assert_eq!(no.status, StatusCode::FORBIDDEN, "{page}");
        assert_eq!(no.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(no.headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(String::from_utf8_lossy(&no.body).contains(r#"data-testid="forbidden""#));
    }
    assert_eq!(
        call(
            &h,
            Some(Role::Manager),
            &Method::GET,
            &format!("/stores/{STORE}/manage")
        )
        .await
        .status,
        200
    );
    assert_eq!(call(&h, Some(Role::Admin), &Method::GET, "/ops").await.status, 200);
    // Public pages need nobody.
    for page in [
        "/".to_owned(),
        format!("/stores/{STORE}"),
        format!("/stores/{STORE}/pickup"),
    ] {
        assert_eq!(call(&h, None, &Method::GET, &page).await.status, 200, "{page}");
    }
}

#[tokio::test]
async fn the_receipt_links_the_order_page() {
    let h = harness().await;
    let placed = h.post_json("/v1/orders", &latte_order(), Some("page-1")).await;
    assert_eq!(placed.status, 202);
    let r = placed.json();
    let id = r["id"].as_str().unwrap();
    let token = r["access_token"].as_str().unwrap();
    assert_eq!(r["links"]["page"], format!("/orders/{id}?token={token}"));
    let page = call(&h, None, &Method::GET, r["links"]["page"].as_str().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains(&format!(r#"data-order-id="{id}""#)));
}

#[tokio::test]
async fn customers_reach_only_their_own_orders_with_its_token() {
    let h = harness().await;
    let placed = h.post_json("/v1/orders", &latte_order(), Some("k-1")).await;
    assert_eq!(placed.status, 202);
    let receipt = placed.json();
    let id = OrderId::parse(receipt["id"].as_str().unwrap()).unwrap();
    let token = receipt["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token, h.token(id));
    assert_eq!(receipt["links"]["self"], format!("/v1/orders/{id}?token={token}"));
    assert_eq!(
        receipt["links"]["events"],
        format!("/v1/orders/{id}/events?token={token}")
    );
    // The idempotent replay carries the same token.
    let again = h.post_json("/v1/orders", &latte_order(), Some("k-1")).await;
    assert_eq!(again.json()["access_token"], token.as_str());

    // No token: 401; another order's token: 403; its own (header or query): 200.
    h.get(&format!("/v1/orders/{id}")).await.problem(401, "unauthorized");
    let other = h.place(&latte_order()).await;
    let a = h
        .send(
            Request::get(format!("/v1/orders/{id}"))
                .header("x-order-token", h.token(other))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    a.problem(403, "forbidden");
    assert_eq!(h.customer_get(id).await.status, 200);
    assert_eq!(h.get(&format!("/v1/orders/{id}?token={token}")).await.status, 200);
    // The same for cancel and the order's stream.
    h.post_json(&format!("/v1/orders/{id}/cancel"), &json!({}), None)
        .await
        .problem(401, "unauthorized");
    h.get(&format!("/v1/orders/{id}/events"))
        .await
        .problem(401, "unauthorized");

    // The order list is staff-only, and a manager's.
    h.get("/v1/orders").await.problem(401, "unauthorized");
    h.as_role(Role::Barista, Method::GET, "/v1/orders", None)
        .await
        .problem(403, "forbidden");
    assert_eq!(
        h.as_role(Role::Manager, Method::GET, "/v1/orders", None).await.status,
        200
    );
}

async fn login(h: &Harness, user: &str, password: &str) -> Answer {
    h.post_json("/v1/sessions", &json!({"username": user, "password": password}), None)
        .await
}

fn with_cookie(method: Method, uri: &str, cookie: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, format!("rh_session={cookie}"))
}

#[tokio::test]
async fn logins_give_sessions_by_cookie_and_bearer_that_logout_and_disable_end() {
    let h = harness().await;
    login(&h, "manager", "wrong password!!")
        .await
        .problem(401, "invalid_credentials");
    let a = login(&h, "Manager", PASSWORD).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let cookie = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP without a proxy: {cookie}");
    let v = a.json();
    let token = v["token"].as_str().unwrap().to_owned();
    let csrf = v["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(v["role"], "manager");
    assert!(cookie.starts_with(&format!("rh_session={token};")));

    // Bearer and cookie both identify the manager.
    let me = h.with_bearer(&token, Method::GET, "/v1/sessions/current", None).await;
    assert_eq!(me.json()["username"], "manager");
    assert_eq!(me.json()["via"], "session");
    let me = h
        .send(
            with_cookie(Method::GET, "/v1/sessions/current", &token)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(me.status, 200);

    // A cookie-borne unsafe request needs the CSRF token and this origin.
    let put = |csrf: Option<&str>, origin: Option<&str>| {
        let mut r = with_cookie(
            Method::PUT,
            &format!("/v1/stores/{STORE}/items/croissant/availability"),
            &token,
        )
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::HOST, "shop.example");
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        r.body(Body::from(r#"{"available":false}"#)).unwrap()
    };
    h.send(put(None, None)).await.problem(403, "csrf_failed");
    h.send(put(Some("nope"), None)).await.problem(403, "csrf_failed");
    h.send(put(Some(&csrf), Some("https://evil.example")))
        .await
        .problem(403, "csrf_failed");
    assert_eq!(h.send(put(Some(&csrf), Some("https://shop.example"))).await.status, 204);
    // A bearer token needs no CSRF token (no browser sends it by itself).
    let a = h
        .with_bearer(
            &token,
            Method::PUT,
            &format!("/v1/stores/{STORE}/items/croissant/availability"),
            Some(json!({"available": true})),
        )
        .await;
    assert_eq!(a.status, 204);

    // Logout ends the session.
    let out = h
        .with_bearer(&token, Method::DELETE, "/v1/sessions/current", None)
        .await;
    assert_eq!(out.status, 204);
    assert!(out.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    h.with_bearer(&token, Method::GET, "/v1/sessions/current", None)
        .await
        .problem(401, "unauthorized");

    // Disabling a user ends its sessions; a new password does too.
    let token = login(&h, "barista", PASSWORD).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = h
        .staff(
            Method::PATCH,
            "/v1/admin/users/barista",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["disabled"], true);
    h.with_bearer(&token, Method::GET, "/v1/sessions/current", None)
        .await
        .problem(401, "unauthorized");
    login(&h, "barista", PASSWORD).await.problem(401, "invalid_credentials");
    // Its personal key stops too.
    h.as_role(Role::Barista, Method::GET, "/v1/sessions/current", None)
        .await
        .problem(401, "unauthorized");
    h.staff(
        Method::PATCH,
        "/v1/admin/users/barista",
        Some(json!({"disabled": false})),
    )
    .await;
    let token = login(&h, "barista", PASSWORD).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = h
        .staff(
            Method::PATCH,
            "/v1/admin/users/barista",
            Some(json!({"password": "another long passphrase"})),
        )
        .await;
    assert_eq!(a.status, 200);
    h.with_bearer(&token, Method::GET, "/v1/sessions/current", None)
        .await
        .problem(401, "unauthorized");
    assert_eq!(login(&h, "barista", "another long passphrase").await.status, 201);
}

#[tokio::test]
async fn repeated_failures_lock_known_and_unknown_users_alike() {
    let h = harness().await;
    // Before the lock: one answer for a wrong password and an unknown user.
    for _ in 0..5 {
        let wrong = login(&h, "manager", "not the password").await;
        let unknown = login(&h, "nobody-here", "not the password").await;
        assert_eq!(
            wrong.problem(401, "invalid_credentials"),
            unknown.problem(401, "invalid_credentials")
        );
    }
    // Locked now, both, with a Retry-After; even the right password waits.
    for user in ["manager", "nobody-here"] {
        let a = login(&h, user, PASSWORD).await;
        a.problem(429, "login_locked");
        let wait: u64 = a.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
    }
    // Other users are not affected.
    assert_eq!(login(&h, "admin", PASSWORD).await.status, 201);
    // Every lock is in the audit log.
    let audit = h
        .staff(Method::GET, "/v1/admin/audit?action=lockout", None)
        .await
        .json();
    let targets: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(
        targets.contains(&"manager") && targets.contains(&"nobody-here"),
        "{audit}"
    );
}

#[tokio::test]
async fn personal_keys_carry_a_role_and_a_store_scope_until_revoked() {
    let h = harness().await;
    let issued = h
        .staff(
            Method::POST,
            "/v1/admin/keys",
            Some(json!({"name": "downtown tablet", "role": "manager", "store": STORE})),
        )
        .await;
    assert_eq!(issued.status, 201, "{:?}", issued.body);
    let v = issued.json();
    let key = v["key"].as_str().unwrap().to_owned();
    let prefix = v["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("{prefix}_")));
    assert_eq!(v["store"], STORE);

    let avail = |store: &str| format!("/v1/stores/{store}/items/latte/availability");
    let a = h
        .with_bearer(&key, Method::PUT, &avail(STORE), Some(json!({"available": true})))
        .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    h.with_bearer(&key, Method::PUT, &avail("uptown"), Some(json!({"available": true})))
        .await
        .problem(403, "forbidden");
    // Its order list is its store's, asked or not.
    h.with_bearer(&key, Method::GET, "/v1/orders?store=uptown", None)
        .await
        .problem(403, "forbidden");
    assert_eq!(h.with_bearer(&key, Method::GET, "/v1/orders", None).await.status, 200);
    // A manager key is not an admin.
    h.with_bearer(&key, Method::GET, "/v1/admin/users", None)
        .await
        .problem(403, "forbidden");

    // Listed without its secret, with its last use.
    let keys = h.staff(Method::GET, "/v1/admin/keys", None).await.json();
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix.as_str())
        .unwrap();
    assert!(
        listed.get("key").is_none() && listed["last_used_at"].is_string(),
        "{listed}"
    );

    assert_eq!(
        h.staff(Method::DELETE, &format!("/v1/admin/keys/{prefix}"), None)
            .await
            .status,
        204
    );
    h.with_bearer(&key, Method::GET, "/v1/orders", None)
        .await
        .problem(401, "unauthorized");
    h.staff(Method::DELETE, &format!("/v1/admin/keys/{prefix}"), None)
        .await
        .problem(404, "key_not_found");
}

#[tokio::test]
async fn rate_limits_answer_429_with_their_headers_per_client_and_class() {
    let h = harness_with(|c| {
        c.limits.quotas.insert(
            api::Class::Reads,
            Quota {
                burst: 3,
                period: Duration::from_secs(60),
            },
        );
    })
    .await;
    for left in (0..3).rev() {
        let a = h.get("/v1/stores").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["ratelimit-policy"], "\"reads\";q=3;w=60");
        let rl = a.headers["ratelimit"].to_str().unwrap().to_owned();
        assert!(rl.starts_with(&format!("\"reads\";r={left};t=")), "{rl}");
    }
    let a = h.get("/v1/stores").await;
    a.problem(429, "rate_limited");
    let wait: u64 = a.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    assert!(a.headers.contains_key("ratelimit"));
    // Another class has its own budget; a staff credential has its own key.
    assert_eq!(h.get("/health/live").await.status, 200);
    assert_eq!(
        h.as_role(Role::Barista, Method::GET, "/v1/stores", None).await.status,
        200
    );
}

#[tokio::test]
async fn staff_actions_are_audited_with_who_and_what() {
    let h = harness().await;
    let id = h.confirmed_order().await;
    h.as_role(Role::Manager, Method::POST, &format!("/v1/orders/{id}/cancel"), None)
        .await;
    h.as_role(
        Role::Manager,
        Method::PUT,
        &format!("/v1/stores/{STORE}/items/latte/availability"),
        Some(json!({"available": false})),
    )
    .await;
    h.staff(Method::POST, "/v1/admin/cache/clear", None).await;
    let page = h.staff(Method::GET, "/v1/admin/audit?limit=2", None).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let page = page.json();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "cache_clear");
    assert_eq!(entries[0]["actor"], "staff-key");
    assert_eq!(entries[1]["action"], "availability");
    assert_eq!(entries[1]["role"], "manager");
    assert_eq!(entries[1]["detail"]["available"], false);
    let before = page["next_before"].as_i64().unwrap();
    let older: Value = h
        .staff(
            Method::GET,
            &format!("/v1/admin/audit?before={before}&action=cancel"),
            None,
        )
        .await
        .json();
    assert_eq!(older["entries"][0]["target"], id.to_string());
}
