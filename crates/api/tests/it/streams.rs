//! Server-Sent Event streams read frame by frame in-process: replay then
//! live, isolation between orders, ending on shutdown, resuming a board, a
//! fresh board starting from today's open tickets, the caps on open
//! streams, and catching up from the store after the live feed overflowed.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use domain::ports::EventScope;
use domain::{Action, OrderId, StoreId};
use futures::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::{KEY, STORE, event_ids, harness, harness_full, harness_with, read_until};

fn board(last_event_id: Option<&str>) -> Request<Body> {
    let mut req =
        Request::get(format!("/v1/stores/{STORE}/board")).header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.body(Body::empty()).unwrap()
}

/// Every event id the store holds for the demo store, oldest first.
async fn store_event_ids(h: &crate::harness::Harness) -> Vec<i64> {
    let scope = EventScope::Store(StoreId::parse(STORE).unwrap());
    let events = h.app.events_after(&scope, 0, 1000).await.unwrap();
    events.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn order_streams_replay_then_follow_live_and_end_on_shutdown() {
    let h = harness().await;
    let o = h.confirmed_order().await;
    let other = h.confirmed_order().await;
    let mut body = h
        .stream(
            Request::get(format!("/v1/orders/{o}/events?token={}", h.token(o)))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let mut seen = String::new();
    // Replay: the `confirmed` event from the store.
    read_until(&mut body, &mut seen, |s| s.contains(r#""status":"confirmed""#)).await;
    assert!(seen.contains("event: status"), "{seen}");

    // Live: a ticket change through the feed, after one to the other order.
    for id in [other, o] {
        let a = h
            .staff(Method::POST, &format!("/v1/orders/{id}/lines/1/start"), None)
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    read_until(&mut body, &mut seen, |s| {
        s.contains("event: ticket") && s.contains(r#""status":"in_progress""#)
    })
    .await;
    assert!(
        !seen.contains(&other.to_string()),
        "events of other orders leak: {seen}"
    );

    h.shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), async { while body.next().await.is_some() {} }).await;
    assert!(end.is_ok(), "the stream ends on shutdown");
}

#[tokio::test]
async fn boards_resume_after_last_event_id_and_streams_check_their_subject() {
    let h = harness().await;
    let o = h.confirmed_order().await;
    let a = h
        .staff(Method::POST, &format!("/v1/orders/{o}/lines/1/start"), None)
        .await;
    assert_eq!(a.status, 200);
    // Events so far: confirmed, ticket, in_progress. Resume after the second.
    let ids = store_event_ids(&h).await;
    assert_eq!(ids.len(), 3, "{ids:?}");
    let mut body = h.stream(board(Some(&ids[1].to_string()))).await;
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| s.contains(&format!("id: {}\n", ids[2]))).await;
    assert_eq!(event_ids(&seen), vec![ids[2]], "{seen}");

    let req = Request::get(format!("/v1/orders/{o}/events"))
        .header("x-order-token", h.token(o))
        .header("last-event-id", "soon")
        .body(Body::empty())
        .unwrap();
    h.send(req).await.problem(400, "invalid_last_event_id");
    h.staff(Method::GET, "/v1/stores/nowhere/board", None)
        .await
        .problem(404, "store_not_found");
    let stranger = OrderId::new();
    h.get(&format!("/v1/orders/{stranger}/events?token={}", h.token(stranger)))
        .await
        .problem(404, "order_not_found");
}

#[tokio::test]
async fn lagging_subscribers_catch_up_from_the_store() {
    // A one-slot live feed: any burst overflows it.
    let h = harness_full(1, |_| {}).await;
    let o = h.confirmed_order().await;
    let mut body = h.stream(board(None)).await;
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| s.contains(r#""status":"confirmed""#)).await;
    // Several events while nobody reads.
    for step in ["lines/1/start", "lines/2/start", "lines/1/done", "lines/2/done"] {
        let a = h.staff(Method::POST, &format!("/v1/orders/{o}/{step}"), None).await;
        assert_eq!(a.status, 200, "{step}: {:?}", a.body);
    }
    let all = store_event_ids(&h).await;
    assert!(all.len() >= 6, "{all:?}");
    let last = *all.last().unwrap();
    read_until(&mut body, &mut seen, |s| s.contains(&format!("id: {last}\n"))).await;
    assert_eq!(event_ids(&seen), all, "every event once, in order: {seen}");
}

/// The complete events of an SSE text, each as its `id:` and whether it
/// had data (an id-only event is a board's snapshot cursor).
fn frames(seen: &str) -> Vec<(i64, bool)> {
    let complete = seen.rfind("\n\n").map_or("", |end| &seen[..end]);
    complete
        .split("\n\n")
        .filter_map(|block| {
            let id = block.lines().find_map(|l| l.strip_prefix("id: "))?.parse().unwrap();
            Some((id, block.lines().any(|l| l.starts_with("data: "))))
        })
        .collect()
}

#[tokio::test]
async fn a_fresh_board_starts_from_open_tickets_and_resumes_losslessly() {
    let h = harness().await;
    let open = h.confirmed_order().await;
    let finished = h.confirmed_order().await;
    assert_eq!(
        h.staff(Method::POST, &format!("/v1/orders/{open}/lines/1/start"), None)
            .await
            .status,
        200
    );
    let a = h
        .staff(Method::POST, &format!("/v1/orders/{finished}/cancel"), None)
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let history = store_event_ids(&h).await;
    let cursor = *history.last().unwrap();

    // Without Last-Event-ID: the open order's events, then the cursor
    // alone, and nothing of the finished order.
    let mut body = h.stream(board(None)).await;
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| s.contains(&format!("id: {cursor}\n"))).await;
    let scope = EventScope::Order(open);
    let open_ids: Vec<i64> = h
        .app
        .events_after(&scope, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(open_ids.len(), 3, "confirmed; ticket; in progress");
    let mut want: Vec<(i64, bool)> = open_ids.iter().map(|id| (*id, true)).collect();
    want.push((cursor, false));
    assert_eq!(frames(&seen), want, "{seen}");
    assert!(
        !seen.contains(&finished.to_string()),
        "finished orders are history: {seen}"
    );

    // Live from there on.
    assert_eq!(
        h.staff(Method::POST, &format!("/v1/orders/{open}/lines/2/start"), None)
            .await
            .status,
        200
    );
    read_until(&mut body, &mut seen, |s| frames(s).len() > want.len()).await;
    let live = frames(&seen)[want.len()];
    assert!(live.0 > cursor && live.1, "{seen}");

    // A reconnect after the cursor gets exactly what came since; one from
    // the beginning gets the whole history, finished orders included.
    let mut resumed = h.stream(board(Some(&cursor.to_string()))).await;
    let mut again = String::new();
    read_until(&mut resumed, &mut again, |s| s.contains(&format!("id: {}\n", live.0))).await;
    assert_eq!(frames(&again)[0], live, "{again}");
    let mut all = h.stream(board(Some("0"))).await;
    let mut everything = String::new();
    read_until(&mut all, &mut everything, |s| s.contains(&format!("id: {cursor}\n"))).await;
    assert_eq!(event_ids(&everything)[..history.len()], history[..]);
    assert!(everything.contains(&finished.to_string()));
}

fn from(client: [u8; 4], mut req: Request<Body>) -> Request<Body> {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((client, 40_000))));
    req
}

#[tokio::test]
async fn streams_are_capped_per_client_and_in_total() {
    let h = harness_with(|c| {
        c.max_streams = 3;
        c.max_streams_per_client = 2;
    })
    .await;
    let o = h.confirmed_order().await;
    let token = h.token(o);
    let order = || {
        Request::get(format!("/v1/orders/{o}/events?token={token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);

    let a1 = h.stream(from(a, order())).await;
    let _a2 = h.stream(from(a, board(None))).await;
    let refused = h.send(from(a, order())).await;
    refused.problem(429, "too_many_streams");
    assert_eq!(refused.headers[header::RETRY_AFTER], "5");

    let _b1 = h.stream(from(b, order())).await;
    let full = h.send(from(c, board(None))).await;
    full.problem(503, "streams_at_capacity");
    assert!(full.headers.contains_key(header::RETRY_AFTER));

    // A client that goes away gives its slot back.
    drop(a1);
    let _c1 = h.stream(from(c, order())).await;
    h.send(from(b, order())).await.problem(503, "streams_at_capacity");

    let metrics = h.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"http_streams_refused_total{reason="per_client"}"#),
        "{text}"
    );
    assert!(text.contains(r#"http_streams_refused_total{reason="total"}"#), "{text}");
    assert!(text.contains("http_streams_open"), "{text}");
}

/// Publishers race: a processor per partition and every staff action
/// publish after their own commit, so the feed can carry a newer event
/// before an older one. The stream must still send both, each once.
#[tokio::test]
async fn an_event_published_before_an_older_one_loses_neither() {
    let h = harness().await;
    let (a, b) = (h.confirmed_order().await, h.confirmed_order().await);
    let cursor = *store_event_ids(&h).await.last().unwrap();
    let mut body = h.stream(board(Some(&cursor.to_string()))).await;

    // Two commits, not yet published: the older one (a) will come last.
    let now = domain::ports::system_now_ms();
    let (_, older) = h.app.store.transition(a, Action::StartLine(1), now).await.unwrap();
    let (_, newer) = h.app.store.transition(b, Action::StartLine(1), now).await.unwrap();
    assert!(older.last().unwrap().id < newer[0].id);
    h.app.publish(&newer).await;
    let mut seen = String::new();
    let last = newer.last().unwrap().id;
    read_until(&mut body, &mut seen, |s| s.contains(&format!("id: {last}\n"))).await;
    h.app.publish(&older).await;
    // Something after the late one, so the stream has a reason to speak.
    let (_, after) = h.app.store.transition(b, Action::StartLine(2), now).await.unwrap();
    h.app.publish(&after).await;
    let end = after.last().unwrap().id;
    read_until(&mut body, &mut seen, |s| s.contains(&format!("id: {end}\n"))).await;

    let sent = event_ids(&seen);
    let mut expected: Vec<i64> = older.iter().chain(&newer).chain(&after).map(|e| e.id).collect();
    expected.sort();
    assert_eq!(sent, expected, "every event once, in id order");
}
