//! The bar's display on a tablet, worked with the keyboard alone (as with
//! a bump bar): tickets in placed order, lines started and finished with
//! Enter, a ticket bumped with its digit; the customer's order page, open
//! on a phone in another browser, follows every step live.

use super::harness::*;
use fantoccini::key::Key;
use serde_json::{Value, json};

pub fn latte_and_croissant() -> Value {
    json!({"store": STORE, "lines": [
        {"sku": "latte", "size": "large", "modifiers": ["oat-milk"], "qty": 2},
        {"sku": "croissant", "qty": 1}
    ]})
}

pub fn two_drinks() -> Value {
    json!({"store": STORE, "lines": [
        {"sku": "flat-white", "size": "small", "qty": 1},
        {"sku": "mocha", "size": "medium", "modifiers": ["extra-shot"], "qty": 1}
    ]})
}

/// Ids of the tickets on the board, top to bottom.
pub async fn ticket_ids(page: &Page) -> Vec<String> {
    page.attrs("[data-testid=ticket]", "data-order-id")
        .await
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barista_works_the_board_with_the_keyboard_and_the_customer_page_follows() {
    let test = "a_barista_works_the_board_with_the_keyboard_and_the_customer_page_follows";
    let Some(driver) = driver(test).await else {
        return;
    };
    let server = Server::start().await;
    let barista = server.add_user("bea", "barista").await;
    let a = server.place(&latte_and_croissant()).await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    server
        .order_until(&a_id, &barista, "confirmed", |o| o["status"] == "confirmed")
        .await;
    let b = server.place(&two_drinks()).await;
    let b_id = b["id"].as_str().unwrap().to_owned();

    // The customer of the first order watches it on their phone.
    let phone = driver.page(Screen::Phone).await;
    phone.goto(&server.url(&order_page(&a))).await;
    phone.wait_for("#order-page[data-status=confirmed]").await;

    let tablet = driver.page(Screen::Tablet).await;
    let board = format!("/stores/{STORE}/board?station=barista");
    tablet.goto(&server.url(&board)).await;
    tablet.sign_in("bea", STAFF_PASSWORD).await;
    tablet.wait_for("[data-testid=board][data-state=ready]").await;
    tablet.wait_count("[data-testid=ticket]", 2).await;
    assert_eq!(ticket_ids(&tablet).await, [a_id.clone(), b_id.clone()], "oldest first");
    tablet.wait_text("[data-testid=live-badge]", "t === 'LIVE'").await;
    assert_eq!(tablet.wait_text("[data-testid=open-count]", "t === '2'").await, "2");
    // The croissant is the kitchen's: only drinks here.
    let lines = tablet.texts("[data-testid=ticket] [data-testid=line]").await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("Croissant")), "{lines:?}");
    // All-day counts: 2 lattes, 1 flat white, 1 mocha.
    tablet
        .wait_js(
            "all-day counts",
            "const r = [...document.querySelectorAll('[data-testid=all-day-row]')].map(e => e.textContent); \
             return r.length === 3 && r.some(t => t.startsWith('2 Caff')) ? r : null;",
        )
        .await;
    tablet.shot("board").await;

    // Keyboard only: an arrow puts the focus on the first line, Enter
    // starts it, Enter again finishes it.
    tablet.press(&[Key::Right.into()]).await;
    tablet
        .wait_js(
            "the focus on the first line",
            &format!(
                "const e = document.activeElement; return e && e.dataset.testid === 'line' \
                 && e.dataset.orderId === '{a_id}' && e.dataset.line === '1';"
            ),
        )
        .await;
    tablet.press(&[Key::Enter.into()]).await;
    tablet
        .wait_for(&format!(
            "[data-order-id='{a_id}'][data-testid=line][data-state=started]"
        ))
        .await;
    phone.wait_for("#order-page[data-status=in_progress]").await;
    phone.wait_for("[data-testid=line-1][data-state=started]").await;
    tablet.press(&[Key::Enter.into()]).await;
    // The lattes were the ticket's only drinks: it leaves the board, the
    // croissant still to come from the kitchen.
    tablet.wait_count("[data-testid=ticket]", 1).await;
    phone.wait_for("[data-testid=line-1][data-state=done]").await;
    let o = server
        .order_until(&a_id, &barista, "latte done", |o| o["lines"][0]["ticket"] == "done")
        .await;
    assert_eq!(o["status"], "in_progress", "the croissant is not done");

    // `1` bumps the first ticket (now the second order): all its lines
    // done, the order ready.
    tablet.press(&['1']).await;
    tablet.wait_count("[data-testid=ticket]", 0).await;
    tablet.wait_text("[data-testid=open-count]", "t === '0'").await;
    server
        .order_until(&b_id, &barista, "ready", |o| o["status"] == "ready")
        .await;
    tablet.shot("board-empty").await;

    // The kitchen finishes the croissant: the customer sees ready.
    server.post(&format!("/v1/orders/{a_id}/lines/2/start"), &barista).await;
    server.post(&format!("/v1/orders/{a_id}/lines/2/done"), &barista).await;
    phone.wait_for("#order-page[data-status=ready]").await;
}
