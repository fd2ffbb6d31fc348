//! `/stores/{id}/pickup`: the public pickup board for a TV (screen 3):
//! "Preparing" and "Ready" columns of pickup codes and first names, live
//! from the public pickup stream (`pickup.js`). Nothing else about an
//! order is on this page or reachable from it.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

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
    let store = snap.store();
    let body = html! {
        div.pickup #pickup data-testid="pickup" data-store=(store.id.0) data-heartbeat-secs=(web.config.heartbeat_secs) {
            h1.sr-only { "Pickup board" }
            span.badge #live-badge data-testid="live-badge" role="status" data-state="stale" { "CONNECTING" }
            p #pickup-error .error role="alert" data-testid="pickup-error" {}
            div.columns {
                section.col aria-labelledby="preparing-title" {
                    h2 #preparing-title { "Preparing" }
                    ul.codes #preparing data-testid="preparing" {}
                }
                section.col.ready-col aria-labelledby="ready-title" {
                    h2 #ready-title { "Ready" }
                    ul.codes #ready data-testid="ready" {}
                }
            }
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: format!("{} pickup", store.name),
                store: Some(store),
                viewer: viewer.as_ref(),
                script: Some("pickup.js"),
                class: "tv",
            },
            body,
        ),
    )
}
