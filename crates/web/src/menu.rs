//! `/stores/{id}`: the store's menu with the cart (screen 1).
//!
//! Rendered on the server from `Rushhour::menu` — the same cached
//! snapshot intake prices from — so the menu is readable before any
//! script runs: categories in order, each item's sizes and modifiers with
//! prices in the store's currency, 86'd items shown and marked
//! unavailable (a missing item would look like a bug). `menu.js` adds the
//! cart (kept in `localStorage`), the "popular now" row and placing the
//! order with a device-made `Idempotency-Key`.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::menu::Item;
use maud::{Markup, html};

use crate::format::money;
use crate::layout::{self, Page};
use crate::{Viewer, Web, html, store_menu};

pub(crate) async fn page(
    State(web): State<Web>,
    Path(id): Path<String>,
    viewer: Option<Extension<Viewer>>,
) -> Response {
    let viewer = viewer.map(|Extension(v)| v);
    let snap = match store_menu(&web, &id, viewer.as_ref()).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let menu = &snap.menu;
    let store = &menu.store;
    let mut cats: Vec<_> = menu.categories.iter().collect();
    cats.sort_by_key(|c| (c.position, c.code.as_str()));
    let body = html! {
        div.menu-layout #menu-page data-store=(store.id.0) data-currency=(store.currency) {
            section.menu aria-labelledby="menu-title" {
                h1 #menu-title { (store.name) }
                section.popular #popular data-testid="popular" hidden aria-labelledby="popular-title" {
                    h2 #popular-title { "Popular now" }
                    ol #popular-list {}
                }
                @for cat in cats {
                    @let items: Vec<&Item> = menu.items.iter().filter(|i| i.category == cat.code).collect();
                    @if !items.is_empty() {
                        section.category aria-labelledby={ "cat-" (cat.code) } data-testid={ "category-" (cat.code) } {
                            h2 id={ "cat-" (cat.code) } { (cat.name) }
                            ul.items {
                                @for item in items { (item_card(item, &store.currency)) }
                            }
                        }
                    }
                }
            }
            aside.cart #cart aria-labelledby="cart-title" data-testid="cart" {
                h2 #cart-title { "Your order" }
                p #cart-empty data-testid="cart-empty" { "Nothing yet: add something from the menu." }
                ul #cart-lines data-testid="cart-lines" {}
                p.total { "Total " output #cart-total data-testid="cart-total" { (money(0, &store.currency)) } }
                label for="name" { "First name (optional, shown on the pickup board)" }
                input #name type="text" maxlength="24" autocomplete="given-name" data-testid="name";
                button.primary #place-order type="button" data-testid="place-order" disabled { "Place order" }
                p #order-error .error role="alert" data-testid="order-error" {}
            }
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: store.name.clone(),
                store: Some(store),
                viewer: viewer.as_ref(),
                script: Some("menu.js"),
                class: "customer",
            },
            body,
        ),
    )
}

/// One item: its name, size choice, modifiers, quantity and "Add"; all of
/// it disabled, and said so, when the item is 86'd.
fn item_card(item: &Item, currency: &str) -> Markup {
    let sku = &item.sku;
    let off = !item.available;
    let from = item.sizes.iter().map(|s| s.price).min().unwrap_or(0);
    html! {
        li.item.unavailable[off] id={ "item-" (sku) } data-testid={ "item-" (sku) }
            data-sku=(sku) data-name=(item.name) data-available=(item.available) {
            form.add data-sku=(sku) aria-labelledby={ "name-" (sku) } {
                h3 id={ "name-" (sku) } { (item.name) }
                p.price { @if item.sizes.len() > 1 { "from " } (money(from, currency)) }
                @if off {
                    p.badge data-testid={ "unavailable-" (sku) } { "Unavailable today" }
                }
                @if item.sizes.len() > 1 {
                    fieldset.sizes {
                        legend { "Size" }
                        @for (i, s) in item.sizes.iter().enumerate() {
                            label {
                                input type="radio" name="size" value=(s.code) data-price=(s.price)
                                    data-label=(s.name) checked[i == 0] disabled[off];
                                " " (s.name) " " span.amount { (money(s.price, currency)) }
                            }
                        }
                    }
                } @else if let Some(s) = item.sizes.first() {
                    input type="hidden" name="size" value=(s.code) data-price=(s.price) data-label=(s.name);
                }
                @if !item.modifiers.is_empty() {
                    fieldset.modifiers {
                        legend { "Extras" }
                        @for m in &item.modifiers {
                            label {
                                input type="checkbox" name="modifier" value=(m.code) data-delta=(m.price_delta)
                                    data-label=(m.name) disabled[off];
                                " " (m.name)
                                @if m.price_delta != 0 { " " span.amount { "+" (money(m.price_delta, currency)) } }
                            }
                        }
                    }
                }
                div.qty-add {
                    label { "Qty " input type="number" name="qty" min="1" max="20" value="1" inputmode="numeric" disabled[off]; }
                    button type="submit" data-testid={ "add-" (sku) } disabled[off] { "Add" }
                }
            }
        }
    }
}
