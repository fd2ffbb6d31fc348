//! Intake over a menu whose prices went wrong upstream (or in a seed file):
//! an order whose total would be negative or too large to charge is refused
//! with `invalid_total` and a detail saying which line, and nothing is
//! appended to the log. The catalog sync refuses such prices before they
//! reach a menu (`crates/upstream/tests/it/sync.rs`); this is the check
//! behind it, for menus that did not come through the sync.

use domain::StoreId;
use domain::menu::demo_menu;
use serde_json::json;

use crate::harness::{STORE, harness};

/// Put `menu` in the store and drop the cached copy.
async fn set_menu(h: &crate::harness::Harness, menu: &domain::menu::Menu) {
    h.app.store.upsert_menu(menu).await.unwrap();
    h.app.menus.invalidate(&StoreId(STORE.into())).await.unwrap();
}

#[tokio::test]
async fn a_total_that_cannot_be_charged_is_refused_with_invalid_total() {
    let h = harness().await;
    let mut menu = demo_menu();
    let latte = menu.items.iter_mut().find(|i| i.sku == "latte").unwrap();
    // A discount larger than the smallest latte, and a size priced absurdly.
    latte.modifiers[0].price_delta = -10_000;
    let discount = latte.modifiers[0].code.clone();
    latte.sizes[0].price = i64::MAX;
    let (small, large) = (latte.sizes[0].code.clone(), latte.sizes[1].code.clone());
    set_menu(&h, &menu).await;
    let before = h.log_records().await;

    let negative = json!({"store": STORE, "lines": [
        {"sku": "latte", "size": large, "modifiers": [discount], "qty": 1}]});
    let v = h
        .post_json("/v1/orders", &negative, None)
        .await
        .problem(422, "invalid_total");
    assert_eq!(v["type"], "urn:rushhour:problem:invalid_total");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("lines[0]") && detail.contains("negative"), "{detail}");
    assert!(v.get("errors").is_none(), "{v}");

    // Twenty of an i64::MAX latte: wraps an i64 many times over.
    let huge = json!({"store": STORE, "lines": [{"sku": "latte", "size": small, "qty": 20}]});
    let v = h
        .post_json("/v1/orders", &huge, None)
        .await
        .problem(422, "invalid_total");
    assert!(v["detail"].as_str().unwrap().contains("exceed"), "{v}");

    // Field errors still come first: they are what the client can fix.
    let both = json!({"store": STORE, "lines": [
        {"sku": "latte", "size": small, "qty": 20}, {"sku": "nope", "qty": 1}]});
    h.post_json("/v1/orders", &both, None)
        .await
        .problem(422, "validation_failed");
    assert_eq!(h.log_records().await, before, "nothing refused reaches the log");
}
