//! `/stores/{id}/manage`: the shift manager's page (screen 4) — the
//! store's items with availability switches (86 / back), today's orders
//! with a status filter and search by pickup code, cancel with a reason,
//! and the day's figures with a bar chart per hour (drawn by `manage.js`
//! as SVG from `GET /v1/stores/{id}/figures`).
//!
//! The items are rendered here from the menu snapshot, so the switches
//! show the availability the menu is being served with.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use crate::format::money;
use crate::layout::{self, Page};
use crate::{Viewer, Web, html, store_menu};

/// The statuses the order list can be filtered by.
const STATUSES: &[&str] = &[
    "placed",
    "confirmed",
    "in_progress",
    "ready",
    "picked_up",
    "cancelled",
    "rejected",
    "expired",
];

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
    let store = snap.store();
    // "Today" is the store's local day, not the browser's: a manager's
    // laptop in another time zone still sees this shop's day.
    let now = web.app.clock.now_ms();
    let (day_start, day_end) =
        domain::pickup::day_bounds(&store.time_zone, &domain::pickup::local_day(&store.time_zone, now)).unwrap_or((
            now - now.rem_euclid(86_400_000),
            now - now.rem_euclid(86_400_000) + 86_400_000,
        ));
    let mut items: Vec<_> = snap.menu.items.iter().collect();
    items.sort_by(|a, b| a.category.cmp(&b.category).then(a.name.cmp(&b.name)));
    let body = html! {
        div.manage #manage data-testid="manage" data-store=(store.id.0) data-currency=(store.currency)
            data-time-zone=(store.time_zone) data-day-start=(day_start) data-day-end=(day_end) {
            h1 { "Manage " (store.name) }
            nav.tabs aria-label="Sections" {
                a href="#availability" { "Availability" } " · "
                a href="#orders" { "Today's orders" } " · "
                a href="#figures" { "Figures" }
            }
            p #manage-error .error role="alert" data-testid="manage-error" {}
            section #availability aria-labelledby="availability-title" {
                h2 #availability-title { "Availability" }
                p.hint { "Switch an item off when it runs out (86 it); it shows as unavailable on the menu at once." }
                ul.switches {
                    @for item in items {
                        li data-testid={ "avail-row-" (item.sku) } {
                            button.switch type="button" role="switch" aria-checked=(item.available)
                                data-sku=(item.sku) data-testid={ "avail-" (item.sku) }
                                aria-label={ (item.name) " available" } {
                                span.knob aria-hidden="true" {}
                                span.state { @if item.available { "On" } @else { "86'd" } }
                            }
                            " " span.item-name { (item.name) }
                            " " span.muted { (item.category) " · from "
                                (money(item.sizes.iter().map(|s| s.price).min().unwrap_or(0), &store.currency)) }
                        }
                    }
                }
            }
            section #orders aria-labelledby="orders-title" {
                h2 #orders-title { "Today's orders" }
                form.filters #order-filter data-testid="order-filter" role="search" {
                    label { "Status "
                        select #filter-status name="status" data-testid="filter-status" {
                            option value="" { "any" }
                            @for s in STATUSES { option value=(s) { (s.replace('_', " ")) } }
                        }
                    }
                    label { "Pickup code " input #filter-code name="code" type="search" placeholder="A-042" data-testid="filter-code"; }
                    button type="submit" { "Show" }
                }
                p #orders-state data-testid="orders-state" aria-live="polite" {}
                table.data #orders-table data-testid="orders-table" {
                    thead { tr { th { "Code" } th { "Name" } th { "Status" } th { "Placed" } th { "Total" } th { span.sr-only { "Actions" } } } }
                    tbody #orders-body {}
                }
                form.cancel-form #cancel-form data-testid="cancel-form" hidden {
                    h3 #cancel-title { "Cancel order" }
                    label for="cancel-reason" { "Reason (told to the customer)" }
                    input #cancel-reason type="text" maxlength="200" required data-testid="cancel-reason";
                    button.danger type="submit" data-testid="cancel-confirm" { "Cancel the order" }
                    button #cancel-dismiss type="button" { "Keep it" }
                }
            }
            section #figures aria-labelledby="figures-title" {
                h2 #figures-title { "The day's figures" }
                label { "Day " input #fig-date type="date" data-testid="fig-date"; }
                dl.figures data-testid="figures" {
                    div { dt { "Orders" } dd #fig-orders data-testid="fig-orders" { "—" } }
                    div { dt { "Picked up" } dd #fig-picked { "—" } }
                    div { dt { "Cancelled" } dd #fig-cancelled { "—" } }
                    div { dt { "Average time to ready" } dd #fig-avg data-testid="fig-avg" { "—" } }
                    div { dt { "p90 time to ready" } dd #fig-p90 data-testid="fig-p90" { "—" } }
                }
                figure.chart {
                    div #fig-chart data-testid="fig-chart" {}
                    figcaption { "Orders per hour (store time)" }
                }
            }
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: format!("Manage {}", store.name),
                store: Some(store),
                viewer: viewer.as_ref(),
                script: Some("manage.js"),
                class: "staff",
            },
            body,
        ),
    )
}
