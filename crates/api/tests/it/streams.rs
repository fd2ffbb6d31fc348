//! Server-Sent Event streams read frame by frame in-process: replay then
//! live, isolation between orders, ending on shutdown, resuming a board,
//! and catching up from the store after the live feed overflowed.

use axum::body::Body;
use axum::http::{Method, Request, header};
use domain::ports::EventScope;
use domain::{OrderId, StoreId};
use futures::StreamExt;
use std::time::Duration;

use crate::harness::{KEY, STORE, event_ids, harness, harness_full, read_until};

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
