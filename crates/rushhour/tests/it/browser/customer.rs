//! The customer's screens on a phone: the store picker, the menu and cart,
//! placing the order (twice, as a double tap and as a retry after a lost
//! answer, which must still make one order), and the order page following
//! the order live while the bar works on it through the API.

use super::harness::*;
use serde_json::Value;

/// Every order of the demo store, as the admin lists them.
pub async fn store_orders(server: &Server) -> Vec<Value> {
    let v = server
        .get(&format!("/v1/orders?store={STORE}&limit=100"), &server.admin)
        .await;
    v["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_orders_from_the_menu_and_watches_it_become_ready() {
    let test = "a_customer_orders_from_the_menu_and_watches_it_become_ready";
    let Some(driver) = driver(test).await else {
        return;
    };
    let server = Server::start().await;
    let barista = server.add_user("bea", "barista").await;
    let phone = driver.page(Screen::Phone).await;

    // The store picker leads to the menu.
    phone.goto(&server.url("/")).await;
    phone.wait_for(&format!("[data-testid=store-{STORE}]")).await;
    phone.shot("picker").await;
    phone.click(&format!("[data-testid=order-at-{STORE}]")).await;
    phone.wait_for("#menu-page").await;
    assert_eq!(phone.path().await, format!("/stores/{STORE}"));
    assert_eq!(
        phone.attrs("[data-testid=item-latte]", "data-available").await,
        [Some("true".to_owned())]
    );

    // Two large oat lattes and a croissant.
    phone
        .click("[data-testid=item-latte] input[name=size][value=large]")
        .await;
    phone
        .click("[data-testid=item-latte] input[name=modifier][value=oat-milk]")
        .await;
    phone.fill("[data-testid=item-latte] input[name=qty]", "2").await;
    phone.click("[data-testid=add-latte]").await;
    phone.click("[data-testid=add-croissant]").await;
    phone.wait_count("[data-testid=cart-lines] > li", 2).await;
    let lines = phone.texts("[data-testid=cart-lines] > li").await;
    assert!(lines[0].starts_with("2 ×") && lines[0].contains("Oat"), "{lines:?}");
    assert!(lines[1].contains("Croissant"), "{lines:?}");
    phone.fill("[data-testid=name]", "Ana").await;
    phone
        .eval("document.querySelector('[data-testid=cart]').scrollIntoView(); return true;")
        .await;
    phone.shot("menu-cart").await;

    // The first answer is lost on the way back (the request did reach the
    // server): the page says to try again, and the retry, with the same
    // device-made key, is answered with the same order.
    phone
        .eval(
            "const real = window.fetch; let first = true; \
             window.fetch = async (url, opts) => { \
               const r = await real(url, opts); \
               if (first && String(url).endsWith('/v1/orders') && opts && opts.method === 'POST') { \
                 first = false; throw new TypeError('network error'); } \
               return r; }; return true;",
        )
        .await;
    // A double tap: the second tap finds the button busy.
    phone
        .eval("const b = document.querySelector('[data-testid=place-order]'); b.click(); b.click(); return true;")
        .await;
    phone
        .wait_text("[data-testid=order-error]", "t.includes('again')")
        .await;
    phone.click("[data-testid=place-order]").await;
    phone.wait_for("#order-page").await;
    let path = phone.path().await;
    assert!(path.starts_with("/orders/") && path.contains("token="), "{path}");
    let id = path["/orders/".len()..].split('?').next().unwrap().to_owned();
    // The processor confirms it; the page follows without a reload.
    phone.wait_for("#order-page[data-status=confirmed]").await;
    phone.wait_count("[data-testid=order-lines] > li", 2).await;
    let code = phone
        .wait_text("[data-testid=pickup-code]", "/^[A-Z]-\\d{3}$/.test(t)")
        .await;
    phone.shot("order-confirmed").await;
    let orders = store_orders(&server).await;
    assert_eq!(orders.len(), 1, "a double tap and a retry make one order: {orders:?}");
    assert_eq!(orders[0]["id"], id.as_str(), "the page is that order's");
    assert_eq!(orders[0]["pickup_code"], code.as_str());
    assert_eq!(orders[0]["name"], "Ana");
    let marker = phone.eval("window.__same_page = 1; return window.__same_page;").await;
    assert_eq!(marker, 1);

    // The bar starts the lattes: in progress, the line "being made".
    server.post(&format!("/v1/orders/{id}/lines/1/start"), &barista).await;
    phone.wait_for("#order-page[data-status=in_progress]").await;
    phone.wait_for("[data-testid=line-1][data-state=started]").await;
    phone.shot("order-in-progress").await;

    // Everything done: ready, and the page says so plainly.
    server.post(&format!("/v1/orders/{id}/lines/1/done"), &barista).await;
    server.post(&format!("/v1/orders/{id}/lines/2/start"), &barista).await;
    server.post(&format!("/v1/orders/{id}/lines/2/done"), &barista).await;
    phone.wait_for("#order-page[data-status=ready]").await;
    phone.wait_for("[data-testid=line-2][data-state=done]").await;
    let status = phone.wait_text("[data-testid=order-status]", "t.length > 0").await;
    assert!(status.to_lowercase().contains("ready"), "{status}");
    assert_eq!(
        phone.eval("return window.__same_page === 1;").await,
        true,
        "followed live, not by reloading"
    );
    phone.shot("order-ready").await;
}
