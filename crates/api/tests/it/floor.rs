//! The routes the screens of issue 11 stand on, black box through the
//! router: pickup codes and first names in every view, undo, cancel with a
//! reason, a board's tickets snapshot followed losslessly by its stream
//! (`?after=`), and the public pickup board, which must carry nothing but
//! codes, first names and states. Each staff route is tried with no
//! credential, and with the least role it admits.

use axum::body::Body;
use axum::http::{Method, Request, header};
use domain::OrderId;
use domain::identity::Role;
use serde_json::{Value, json};
use std::collections::BTreeSet;

use crate::harness::{Harness, KEY, STORE, event_ids, harness, read_until};

fn named_latte(name: &str) -> Value {
    json!({"store": STORE, "name": name, "customer": "loyalty-7",
           "lines": [{"sku": "latte", "size": "small", "qty": 1}]})
}

async fn placed_and_applied(h: &Harness, body: &Value) -> OrderId {
    let id = h.place(body).await;
    h.process_all().await;
    id
}

async fn act(h: &Harness, id: OrderId, what: &str) -> Value {
    let a = h
        .as_role(Role::Barista, Method::POST, &format!("/v1/orders/{id}/{what}"), None)
        .await;
    assert_eq!(a.status, 200, "{what}: {:?}", a.body);
    a.json()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

#[tokio::test]
async fn confirmed_orders_get_consecutive_codes_and_keep_their_first_name() {
    let h = harness().await;
    let a = h.place(&named_latte("  Ada ")).await;
    // Before a processor has confirmed it: no code yet.
    assert_eq!(h.customer_get(a).await.json()["pickup_code"], Value::Null);
    let b = h.place(&crate::harness::latte_order()).await;
    h.process_all().await;
    let va = h.customer_get(a).await.json();
    let vb = h.customer_get(b).await.json();
    // Codes follow confirmation, and the two orders may sit on different
    // partitions, processed in either order: one each, consecutive.
    let mut codes = [va["pickup_code"].as_str().unwrap(), vb["pickup_code"].as_str().unwrap()];
    codes.sort();
    assert_eq!(codes, ["A-001", "A-002"]);
    assert_eq!((va["name"].as_str(), &vb["name"]), (Some("Ada"), &Value::Null));
    let a_code = va["pickup_code"].as_str().unwrap().to_lowercase();

    // Listings carry them, and a manager finds an order by its code.
    let page = h
        .as_role(
            Role::Manager,
            Method::GET,
            &format!("/v1/orders?store={STORE}&code={a_code}"),
            None,
        )
        .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let items = page.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["id"].as_str(), items[0]["name"].as_str()),
        (Some(a.to_string().as_str()), Some("Ada"))
    );
    // `since` as RFC 3339 or epoch ms: everything here was placed after 2020.
    for since in ["2020-01-01T00:00:00Z", "1577836800000"] {
        let page = h
            .as_role(Role::Manager, Method::GET, &format!("/v1/orders?since={since}"), None)
            .await;
        assert_eq!(page.json()["items"].as_array().unwrap().len(), 2, "since={since}");
    }
    let future = h
        .as_role(
            Role::Manager,
            Method::GET,
            "/v1/orders?since=2999-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(future.json()["items"].as_array().unwrap().len(), 0);
    for bad in ["code=A42", "since=yesterday"] {
        h.as_role(Role::Manager, Method::GET, &format!("/v1/orders?{bad}"), None)
            .await
            .problem(400, "invalid_query");
    }

    // A name that is blank or too long is refused with the field named.
    for bad in ["   ", "abcdefghijklmnopqrstuvwxy"] {
        let v = h
            .post_json("/v1/orders", &named_latte(bad), None)
            .await
            .problem(422, "validation_failed");
        assert_eq!(v["errors"][0]["field"], "name", "{v}");
    }
}

#[tokio::test]
async fn undo_takes_back_the_last_step_and_only_staff_may() {
    let h = harness().await;
    let id = h.confirmed_order().await;
    let undo = |line: u32| format!("/v1/orders/{id}/lines/{line}/undo");

    h.post_json(&undo(1), &json!({}), None)
        .await
        .problem(401, "unauthorized");
    // Nothing to take back yet.
    h.as_role(Role::Barista, Method::POST, &undo(1), None)
        .await
        .problem(409, "invalid_transition");

    act(&h, id, "lines/1/start").await;
    let v = act(&h, id, "lines/1/undo").await;
    assert_eq!(
        (v["status"].as_str(), v["lines"][0]["ticket"].as_str()),
        (Some("confirmed"), Some("queued"))
    );
    assert_eq!(v["started_at"], Value::Null);

    // Recall: a ready order goes back to in progress.
    for step in ["lines/1/start", "lines/2/start", "lines/1/done", "lines/2/done"] {
        act(&h, id, step).await;
    }
    let v = act(&h, id, "lines/2/undo").await;
    assert_eq!(
        (v["status"].as_str(), v["lines"][1]["ticket"].as_str()),
        (Some("in_progress"), Some("started"))
    );
    assert_eq!(v["ready_at"], Value::Null);
    let a = h.as_role(Role::Manager, Method::POST, &undo(9), None).await;
    a.problem(404, "line_not_found");

    // Once picked up, nothing is taken back.
    act(&h, id, "lines/2/done").await;
    act(&h, id, "pickup").await;
    h.as_role(Role::Barista, Method::POST, &undo(1), None)
        .await
        .problem(409, "invalid_transition");
}

#[tokio::test]
async fn a_cancel_may_say_why() {
    let h = harness().await;
    let a = h.confirmed_order().await;
    let cancel = |id: OrderId, body: &str| {
        Request::post(format!("/v1/orders/{id}/cancel"))
            .header("x-order-token", h.token(id))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    h.send(cancel(a, "{not json")).await.problem(400, "malformed_json");
    h.send(cancel(a, r#"{"why": "x"}"#)).await.problem(422, "invalid_body");
    let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(201));
    h.send(cancel(a, &long)).await.problem(422, "validation_failed");
    let r = h.send(cancel(a, r#"{"reason": " changed my mind "}"#)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.json()["status"].as_str(), r.json()["cancel_reason"].as_str()),
        (Some("cancelled"), Some("changed my mind"))
    );
    assert_eq!(h.customer_get(a).await.json()["cancel_reason"], "changed my mind");

    // No body: no reason, as before reasons existed.
    let b = h.confirmed_order().await;
    let r = h.customer_cancel(b).await;
    assert_eq!((r.status.as_u16(), &r.json()["cancel_reason"]), (200, &Value::Null));
}

#[tokio::test]
async fn a_tickets_snapshot_then_the_board_after_its_cursor_misses_nothing() {
    let h = harness().await;
    let uri = format!("/v1/stores/{STORE}/tickets?station=barista");
    h.get(&uri).await.problem(401, "unauthorized");
    h.as_role(
        Role::Barista,
        Method::GET,
        &format!("/v1/stores/{STORE}/tickets?station=bar"),
        None,
    )
    .await
    .problem(400, "invalid_query");
    h.as_role(
        Role::Barista,
        Method::GET,
        &format!("/v1/stores/{STORE}/tickets?recent_secs=3601"),
        None,
    )
    .await
    .problem(400, "invalid_query");

    let a = h.confirmed_order().await;
    let b = h.confirmed_order().await;
    for step in ["lines/1/start", "lines/2/start", "lines/1/done", "lines/2/done"] {
        act(&h, b, step).await;
    }
    let snap = h.as_role(Role::Barista, Method::GET, &uri, None).await;
    assert_eq!(snap.status, 200, "{:?}", snap.body);
    let snap = snap.json();
    let ids = |k: &str| -> Vec<String> {
        snap[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("open"), vec![a.to_string()]);
    assert_eq!(ids("recent"), vec![b.to_string()]);
    assert_eq!(snap["open"][0]["pickup_code"], "A-001");
    assert_eq!(snap["open"][0]["lines"].as_array().unwrap().len(), 2);
    let cursor = snap["cursor"].as_i64().unwrap();
    // A manager may look too (roles are ordered); the kitchen has nothing.
    let kitchen = h
        .as_role(
            Role::Manager,
            Method::GET,
            &format!("/v1/stores/{STORE}/tickets?station=kitchen"),
            None,
        )
        .await;
    assert_eq!(kitchen.json()["open"].as_array().unwrap().len(), 0);

    // An order changes after the snapshot: the board opened with
    // `?after=cursor` (no Last-Event-ID) starts with exactly that change.
    act(&h, a, "lines/1/start").await;
    let req = Request::get(format!("/v1/stores/{STORE}/board?after={cursor}"))
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let mut body = h.stream(req).await;
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| event_ids(s).len() >= 2).await;
    let ids = event_ids(&seen);
    assert_eq!(
        ids,
        vec![cursor + 1, cursor + 2],
        "the ticket event, then in progress: {seen}"
    );
    assert!(
        seen.contains("\"ticket\":\"started\"") && seen.contains("\"pickup_code\":\"A-001\""),
        "{seen}"
    );
    // The header wins over `after`.
    let req = Request::get(format!("/v1/stores/{STORE}/board?after=0"))
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header("last-event-id", (cursor + 1).to_string())
        .body(Body::empty())
        .unwrap();
    let mut body = h.stream(req).await;
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| !event_ids(s).is_empty()).await;
    assert_eq!(event_ids(&seen)[0], cursor + 2, "{seen}");
    let anonymous = h.get(&format!("/v1/stores/{STORE}/board?after={cursor}")).await;
    anonymous.problem(401, "unauthorized");
}

#[tokio::test]
async fn the_pickup_board_shows_codes_names_and_states_and_nothing_else() {
    let h = harness().await;
    let ready = placed_and_applied(&h, &named_latte("Ada")).await;
    let making = placed_and_applied(&h, &crate::harness::latte_order()).await;
    act(&h, ready, "lines/1/start").await;
    act(&h, ready, "lines/1/done").await;

    // Public: no credential needed.
    let board = h.get(&format!("/v1/stores/{STORE}/pickup")).await;
    assert_eq!(board.status, 200, "{:?}", board.body);
    let board = board.json();
    assert_eq!(keys(&board), BTreeSet::from(["cursor".into(), "orders".into()]));
    let entries = board["orders"].as_array().unwrap();
    let want: BTreeSet<String> = ["order_id", "code", "name", "state", "at"].map(String::from).into();
    for e in entries {
        assert_eq!(keys(e), want, "only codes, names and states leave: {e}");
    }
    let got: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e["order_id"].as_str().unwrap().to_owned(),
                e["code"].clone(),
                e["name"].clone(),
                e["state"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ready.to_string(), json!("A-001"), json!("Ada"), json!("ready")),
            (making.to_string(), json!("A-002"), Value::Null, json!("preparing")),
        ]
    );
    h.get("/v1/stores/nowhere/pickup").await.problem(404, "store_not_found");

    // Live: from the cursor, a `pickup` event per change of place, carrying
    // the same five fields; ticket events are not sent.
    let cursor = board["cursor"].as_i64().unwrap();
    let mut body = h
        .stream(
            Request::get(format!("/v1/stores/{STORE}/pickup/events?after={cursor}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    act(&h, making, "lines/1/start").await;
    act(&h, making, "lines/1/done").await;
    act(&h, ready, "pickup").await;
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| s.matches("event: pickup").count() >= 3).await;
    assert!(
        !seen.contains("event: ticket") && !seen.contains("event: status"),
        "{seen}"
    );
    let data: Vec<Value> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for d in &data {
        assert_eq!(keys(d), want, "{d}");
    }
    let states: Vec<_> = data.iter().map(|d| (d["code"].clone(), d["state"].clone())).collect();
    assert_eq!(
        states,
        vec![
            (json!("A-002"), json!("preparing")),
            (json!("A-002"), json!("ready")),
            (json!("A-001"), json!("gone")),
        ]
    );
    // Nothing but those fields anywhere in the stream: no totals, lines or
    // customers. The order ids go first: a UUID's hex can spell "ada".
    let scrubbed = [ready.to_string(), making.to_string()]
        .iter()
        .fold(seen.clone(), |s, id| s.replace(id.as_str(), "<order id>"));
    for secret in ["loyalty-7", "ada", "latte", "total", "lines"] {
        assert!(!scrubbed.contains(secret), "{secret} leaked: {seen}");
    }
}

#[tokio::test]
async fn orders_being_made_carry_a_ready_time_estimate() {
    let h = harness().await;
    let id = h.confirmed_order().await;
    let v = h.customer_get(id).await.json();
    let e = &v["estimate"];
    assert_eq!(
        keys(e),
        ["basis", "ready_at", "samples", "seconds_left"]
            .map(String::from)
            .into()
    );
    // No prep times measured yet: the drinks' default (3 minutes).
    assert_eq!((e["basis"].as_str(), e["samples"].as_u64()), (Some("default"), Some(0)));
    let left = e["seconds_left"].as_i64().unwrap();
    assert!((0..=180).contains(&left), "{e}");
    act(&h, id, "lines/1/start").await;
    assert!(
        h.customer_get(id).await.json()["estimate"].is_object(),
        "in progress: still estimated"
    );
    act(&h, id, "lines/2/start").await;
    act(&h, id, "lines/1/done").await;
    act(&h, id, "lines/2/done").await;
    assert_eq!(
        h.customer_get(id).await.json()["estimate"],
        Value::Null,
        "ready: nothing to estimate"
    );
}

#[tokio::test]
async fn a_manager_reads_the_day_s_figures() {
    let h = harness().await;
    let uri = format!("/v1/stores/{STORE}/figures");
    h.get(&uri).await.problem(401, "unauthorized");
    h.as_role(Role::Barista, Method::GET, &uri, None)
        .await
        .problem(403, "forbidden");
    let id = h.confirmed_order().await;
    for step in [
        "lines/1/start",
        "lines/2/start",
        "lines/1/done",
        "lines/2/done",
        "pickup",
    ] {
        act(&h, id, step).await;
    }
    h.confirmed_order().await;
    let a = h.as_role(Role::Manager, Method::GET, &uri, None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let f = a.json();
    assert_eq!(f["store"], STORE);
    assert_eq!(
        (f["orders"].as_u64(), f["ready"].as_u64(), f["picked_up"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert!(
        f["avg_ready_secs"].as_f64().unwrap() >= 0.0 && f["p90_ready_secs"].is_number(),
        "{f}"
    );
    let hours = f["per_hour"].as_array().unwrap();
    assert_eq!(hours.iter().map(|x| x["orders"].as_u64().unwrap()).sum::<u64>(), 2);
    assert!(hours.iter().all(|x| x["hour"].as_u64().unwrap() < 24));
    // Another day has nothing; a malformed date is refused.
    let other = h
        .as_role(Role::Manager, Method::GET, &format!("{uri}?date=2001-02-03"), None)
        .await
        .json();
    assert_eq!(
        (other["date"].as_str(), other["orders"].as_u64()),
        (Some("2001-02-03"), Some(0))
    );
    assert_eq!(other["avg_ready_secs"], Value::Null);
    for bad in ["2001-2-3", "2001-13-01", "today"] {
        h.as_role(Role::Manager, Method::GET, &format!("{uri}?date={bad}"), None)
            .await
            .problem(400, "invalid_query");
    }
}

#[tokio::test]
async fn popular_items_are_what_the_refresh_job_kept() {
    let h = harness().await;
    h.get("/v1/stores/nowhere/popular")
        .await
        .problem(404, "store_not_found");
    h.confirmed_order().await; // two small lattes
    let refreshed = domain::reports::refresh_popular(&*h.app.store, h.app.clock.now_ms())
        .await
        .unwrap();
    assert!(refreshed >= 1);
    // Public, and only what the job kept.
    let a = h.get(&format!("/v1/stores/{STORE}/popular")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let v = a.json();
    assert_eq!(v["items"], json!([{"sku": "latte", "name": "Caffè Latte", "count": 2}]));
    assert!(v["computed_at"].is_string(), "{v}");
}
