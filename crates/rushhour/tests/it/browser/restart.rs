//! The server stops and starts again (same data dir, same port) under an
//! open bar display: the display says STALE, with a red border, and keeps
//! its tickets on screen instead of going blank; once the server is back
//! it resumes by itself, and catches up on what happened meanwhile — a
//! ticket finished and orders placed before it reconnected — each ticket
//! exactly once.

use super::board::{latte_and_croissant, ticket_ids, two_drinks};
use super::harness::*;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_goes_stale_when_the_server_stops_and_resumes_losslessly() {
    let test = "the_board_goes_stale_when_the_server_stops_and_resumes_losslessly";
    let Some(driver) = driver(test).await else {
        return;
    };
    let mut server = Server::start().await;
    server.add_user("bea", "barista").await;
    let a = server
        .place(&json!({"store": STORE, "lines": [
            {"sku": "americano", "size": "large", "qty": 1}
        ]}))
        .await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let b = server.place(&two_drinks()).await;
    let b_id = b["id"].as_str().unwrap().to_owned();

    let tablet = driver.page(Screen::Tablet).await;
    tablet
        .goto(&server.url(&format!("/stores/{STORE}/board?station=barista")))
        .await;
    tablet.sign_in("bea", STAFF_PASSWORD).await;
    tablet.wait_for("[data-testid=board][data-state=ready]").await;
    tablet.wait_count("[data-testid=ticket]", 2).await;
    tablet.wait_for("[data-testid=board][data-live=live]").await;
    assert_eq!(ticket_ids(&tablet).await, [a_id.clone(), b_id.clone()]);

    server.stop().await;
    tablet.wait_for("[data-testid=board][data-live=stale]").await;
    tablet.wait_text("[data-testid=live-badge]", "t === 'STALE'").await;
    assert_eq!(
        tablet
            .eval("return document.querySelector('#board').classList.contains('stale');")
            .await,
        true,
        "the red border"
    );
    assert_eq!(
        ticket_ids(&tablet).await,
        [a_id.clone(), b_id.clone()],
        "a stale board keeps its tickets on screen"
    );
    tablet.shot("board-stale").await;

    // Back on the same files and port. Before the board has reconnected
    // (the server's token for this session stays valid: sessions live in
    // the data dir), the first order is finished and two more come in.
    server.restart().await;
    let barista = server.login_token("bea", STAFF_PASSWORD).await;
    server.post(&format!("/v1/orders/{a_id}/lines/1/start"), &barista).await;
    server.post(&format!("/v1/orders/{a_id}/lines/1/done"), &barista).await;
    let c = server.place(&latte_and_croissant()).await;
    let d = server.place(&two_drinks()).await;
    let (c_id, d_id) = (
        c["id"].as_str().unwrap().to_owned(),
        d["id"].as_str().unwrap().to_owned(),
    );

    tablet.wait_for("[data-testid=board][data-live=live]").await;
    tablet.wait_text("[data-testid=live-badge]", "t === 'LIVE'").await;
    let want = [b_id.clone(), c_id.clone(), d_id.clone()];
    tablet
        .wait_js(
            "the board to catch up",
            &format!(
                "const ids = [...document.querySelectorAll('[data-testid=ticket]')].map(e => e.dataset.orderId); \
                 return JSON.stringify(ids) === JSON.stringify({});",
                json!(want)
            ),
        )
        .await;
    let ids = ticket_ids(&tablet).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no ticket twice: {ids:?}");
    assert_eq!(ids, want, "none lost, the finished one gone, oldest first");
    assert_eq!(tablet.wait_text("[data-testid=open-count]", "t === '3'").await, "3");
    tablet.shot("board-resumed").await;
}
