//! `/`: the store picker — every store, with a link to its menu and to
//! its pickup board, and for signed-in staff the screens of their role.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use domain::identity::Role;
use maud::html;

use crate::layout::{self, Page};
use crate::{Viewer, Web, html};

pub(crate) async fn page(State(web): State<Web>, viewer: Option<Extension<Viewer>>) -> Response {
    let viewer = viewer.map(|Extension(v)| v);
    let viewer = viewer.as_ref();
    let stores = match web.app.stores().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "the store picker could not list the stores");
            return layout::unavailable(viewer);
        }
    };
    let role = viewer.map(|v| v.role);
    let at_least = |r: Role| role.is_some_and(|have| have.covers(r));
    let body = html! {
        h1 { "Pick a store" }
        @if stores.is_empty() {
            p data-testid="no-stores" { "No store is open yet." }
        }
        ul.stores data-testid="stores" {
            @for s in &stores {
                li.store-card data-testid={ "store-" (s.id.0) } {
                    h2 { a href={ "/stores/" (s.id.0) } data-testid={ "order-at-" (s.id.0) } { (s.name) } }
                    p.links {
                        a href={ "/stores/" (s.id.0) } { "Order" }
                        " · "
                        a href={ "/stores/" (s.id.0) "/pickup" } { "Pickup board" }
                        @if at_least(Role::Barista) {
                            " · " a href={ "/stores/" (s.id.0) "/board?station=barista" } { "Barista board" }
                            " · " a href={ "/stores/" (s.id.0) "/board?station=kitchen" } { "Kitchen board" }
                        }
                        @if at_least(Role::Manager) {
                            " · " a href={ "/stores/" (s.id.0) "/manage" } { "Manage" }
                        }
                    }
                }
            }
        }
        p.staff-links {
            @if at_least(Role::Admin) { a href="/ops" data-testid="ops-link" { "Operations" } " · " }
            @if viewer.is_none() { a href="/login" data-testid="staff-login" { "Staff sign-in" } }
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: "Stores".into(),
                store: None,
                viewer,
                script: None,
                class: "customer",
            },
            body,
        ),
    )
}
