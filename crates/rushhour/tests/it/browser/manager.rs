//! The shift manager 86's an item on the manager's page and the
//! customer's menu marks it unavailable (and drops it from a cart that
//! held it); putting it back brings it back.

use super::harness::*;
use std::time::{Duration, Instant};

/// Reload the menu until the item's `data-available` is `want` (the menu
/// is cached behind an ETag; the switch invalidates it). A poll with a
/// deadline: each round is a fresh page load.
async fn reload_until_available(phone: &Page, server: &Server, sku: &str, want: bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        phone.goto(&server.url(&format!("/stores/{STORE}"))).await;
        phone.wait_for("#menu-page").await;
        let got = phone
            .attrs(&format!("[data-testid=item-{sku}]"), "data-available")
            .await;
        if got == [Some(want.to_string())] {
            return;
        }
        assert!(Instant::now() < deadline, "{sku} available={got:?}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_86d_on_the_manager_page_is_unavailable_on_the_menu() {
    let test = "an_item_86d_on_the_manager_page_is_unavailable_on_the_menu";
    let Some(driver) = driver(test).await else {
        return;
    };
    let server = Server::start().await;
    server.add_user("max", "manager").await;

    // A customer has an oat latte in the cart.
    let phone = driver.page(Screen::Phone).await;
    phone.goto(&server.url(&format!("/stores/{STORE}"))).await;
    phone.click("[data-testid=add-latte]").await;
    phone.wait_count("[data-testid=cart-lines] > li", 1).await;

    let tablet = driver.page(Screen::Tablet).await;
    tablet.goto(&server.url(&format!("/stores/{STORE}/manage"))).await;
    tablet.sign_in("max", STAFF_PASSWORD).await;
    let switch = "[data-testid=avail-latte]";
    tablet.wait_for(&format!("{switch}[aria-checked=true]")).await;
    tablet.shot("manage").await;
    tablet.click(switch).await;
    tablet.wait_for(&format!("{switch}[aria-checked=false]")).await;
    assert_eq!(tablet.texts("[data-testid=manage-error]").await, [""]);

    reload_until_available(&phone, &server, "latte", false).await;
    phone.wait_for("[data-testid=unavailable-latte]").await;
    assert_eq!(
        phone
            .eval("return document.querySelector('[data-testid=add-latte]').disabled;")
            .await,
        true,
        "an 86'd item cannot be added"
    );
    // The cart held it: it is dropped, and the page says why.
    phone.wait_count("[data-testid=cart-lines] > li", 0).await;
    phone
        .wait_text("[data-testid=order-error]", "t.includes('no longer available')")
        .await;
    phone
        .eval("document.querySelector('[data-testid=item-latte]').scrollIntoView(); return true;")
        .await;
    phone.shot("menu-86d").await;

    // Back on: the menu offers it again.
    tablet.click(switch).await;
    tablet.wait_for(&format!("{switch}[aria-checked=true]")).await;
    reload_until_available(&phone, &server, "latte", true).await;
    assert_eq!(phone.count("[data-testid=unavailable-latte]").await, 0);
}
