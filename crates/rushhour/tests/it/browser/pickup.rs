//! Undo and recall on the bar's display, with the keyboard, while the
//! pickup board on the shop's TV (public, no sign-in) follows: an order
//! shows under Preparing with its pickup code and first name, moves to
//! Ready when bumped, back when the bump is undone, and leaves the board
//! when it is picked up.

use super::harness::*;
use serde_json::json;

async fn entry_state(tv: &Page, id: &str, column: &str) {
    tv.wait_for(&format!(
        "[data-testid={column}] [data-testid=pickup-entry][data-order-id='{id}']"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_and_recall_on_the_board_and_the_pickup_board_follows() {
    let test = "undo_and_recall_on_the_board_and_the_pickup_board_follows";
    let Some(driver) = driver(test).await else {
        return;
    };
    let server = Server::start().await;
    let barista = server.add_user("bea", "barista").await;
    let a = server
        .place(&json!({"store": STORE, "name": "Ana", "lines": [
            {"sku": "cappuccino", "size": "medium", "qty": 1},
            {"sku": "chai-latte", "size": "large", "modifiers": ["oat-milk"], "qty": 1}
        ]}))
        .await;
    let id = a["id"].as_str().unwrap().to_owned();
    let order = server
        .order_until(&id, &barista, "a pickup code", |o| o["pickup_code"].is_string())
        .await;
    let code = order["pickup_code"].as_str().unwrap().to_owned();

    let tv = driver.page(Screen::Tv).await;
    tv.goto(&server.url(&format!("/stores/{STORE}/pickup"))).await;
    entry_state(&tv, &id, "preparing").await;
    let shown = tv
        .wait_text(
            &format!("[data-testid=pickup-entry][data-order-id='{id}']"),
            "t.length > 0",
        )
        .await;
    assert!(shown.contains(&code) && shown.contains("Ana"), "{shown}");
    tv.shot("pickup").await;

    let tablet = driver.page(Screen::Tablet).await;
    tablet
        .goto(&server.url(&format!("/stores/{STORE}/board?station=barista")))
        .await;
    tablet.sign_in("bea", STAFF_PASSWORD).await;
    tablet.wait_for("[data-testid=board][data-state=ready]").await;
    tablet.wait_count("[data-testid=ticket]", 1).await;
    assert_eq!(
        tablet.texts("[data-testid=ticket-code]").await,
        [code.as_str()],
        "the ticket carries the pickup code"
    );

    // Bump with `1`: ready, on the TV too.
    tablet.press(&['1']).await;
    tablet.wait_count("[data-testid=ticket]", 0).await;
    entry_state(&tv, &id, "ready").await;
    tv.shot("pickup-ready").await;

    // `U` within 5 s undoes the bump: the ticket is back, nothing started.
    tablet.wait_for("[data-testid=undo]:not([disabled])").await;
    tablet.press(&['u']).await;
    tablet.wait_count("[data-testid=ticket]", 1).await;
    tablet
        .wait_count("[data-testid=ticket] [data-testid=line][data-state=queued]", 2)
        .await;
    server
        .order_until(&id, &barista, "confirmed again", |o| o["status"] == "confirmed")
        .await;
    entry_state(&tv, &id, "preparing").await;

    // Bumped again, then recalled with `R` and restored with Enter (the
    // panel puts the focus on the newest finished ticket's Restore).
    tablet.press(&['1']).await;
    tablet.wait_count("[data-testid=ticket]", 0).await;
    entry_state(&tv, &id, "ready").await;
    tablet.press(&['r']).await;
    tablet
        .wait_for(&format!("[data-testid=recall-item][data-order-id='{id}']"))
        .await;
    tablet
        .wait_js(
            "the focus on Restore",
            "const e = document.activeElement; return !!e && e.dataset.testid === 'restore';",
        )
        .await;
    tablet.shot("board-recall").await;
    tablet.press(&[fantoccini::key::Key::Enter.into()]).await;
    tablet.wait_count("[data-testid=ticket]", 1).await;
    server
        .order_until(&id, &barista, "in progress again", |o| o["status"] == "in_progress")
        .await;
    entry_state(&tv, &id, "preparing").await;

    // Finished and picked up: it leaves the pickup board.
    tablet.press(&['1']).await;
    tablet.wait_count("[data-testid=ticket]", 0).await;
    entry_state(&tv, &id, "ready").await;
    server.post(&format!("/v1/orders/{id}/pickup"), &barista).await;
    tv.wait_count(&format!("[data-testid=pickup-entry][data-order-id='{id}']"), 0)
        .await;
}
