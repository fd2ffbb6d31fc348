//! `/stores/{id}/board?station=barista|kitchen`: the barista and kitchen
//! display (screen 2), for staff.
//!
//! The server renders the frame — toolbar, badge, recall panel, all-day
//! counts — and hands `board.js` the store, the station and the station's
//! ageing thresholds (configuration) as `data-*` attributes. The script
//! loads the open tickets (`GET /v1/stores/{id}/tickets`), opens the board
//! stream after the snapshot's cursor, and keeps the DOM in step one
//! ticket at a time.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::Station;
use maud::html;
use serde::Deserialize;

use crate::layout::{self, Page};
use crate::{Viewer, Web, html, store_menu};

#[derive(Debug, Deserialize)]
pub(crate) struct Which {
    station: Option<String>,
}

pub(crate) async fn page(
    State(web): State<Web>,
    Path(id): Path<String>,
    Query(q): Query<Which>,
    viewer: Option<Extension<Viewer>>,
) -> Response {
    let viewer = viewer.map(|Extension(v)| v);
    let station = match q.station.as_deref() {
        None => Station::Barista,
        Some(s) => match Station::parse(s) {
            Some(s) => s,
            None => return layout::not_found(viewer.as_ref(), "station"),
        },
    };
    let snap = match store_menu(&web, &id, viewer.as_ref()).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let store = snap.store();
    let ageing = match station {
        Station::Barista => web.config.barista,
        Station::Kitchen => web.config.kitchen,
    };
    let other = match station {
        Station::Barista => Station::Kitchen,
        Station::Kitchen => Station::Barista,
    };
    let title = match station {
        Station::Barista => "Barista",
        Station::Kitchen => "Kitchen",
    };
    let body = html! {
        div.board #board data-testid="board" data-store=(store.id.0) data-heartbeat-secs=(web.config.heartbeat_secs) data-station=(station.as_str())
            data-warn-secs=(ageing.warn_secs) data-late-secs=(ageing.late_secs) data-state="loading" {
            div.toolbar role="toolbar" aria-label="Board controls" {
                h1 { (title) }
                span.badge #live-badge data-testid="live-badge" role="status" data-state="stale" { "CONNECTING" }
                span #live-age data-testid="live-age" {}
                span.count { span #open-count data-testid="open-count" { "0" } " open" }
                button #undo type="button" data-testid="undo" disabled aria-keyshortcuts="U" { "Undo (U)" }
                button #recall type="button" data-testid="recall" aria-expanded="false" aria-controls="recall-panel" aria-keyshortcuts="R" { "Recall (R)" }
                button #sound type="button" data-testid="sound" aria-pressed="false" { "Sound off" }
                a href={ "/stores/" (store.id.0) "/board?station=" (other.as_str()) } { "Switch to " (other.as_str()) }
            }
            p.keys #keys { "Keys: 1–9 bump the n-th ticket · arrows move · Enter/Space start or finish the focused line · R recall · U undo" }
            p #board-error .error role="alert" data-testid="board-error" {}
            p.sr-only #board-announce aria-live="polite" {}
            div.board-body {
                ol.tickets #tickets data-testid="tickets" aria-label="Open tickets, oldest first" {}
                aside.allday #allday aria-labelledby="allday-title" data-testid="all-day" {
                    h2 #allday-title { "All day" }
                    ul #allday-list {}
                }
            }
            section.recall-panel #recall-panel data-testid="recall-panel" hidden aria-labelledby="recall-title" {
                h2 #recall-title { "Finished in the last 15 minutes" }
                ol #recall-list data-testid="recall-list" {}
                button #recall-close type="button" { "Close" }
            }
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: format!("{title} board"),
                store: Some(store),
                viewer: viewer.as_ref(),
                script: Some("board.js"),
                class: "board-page",
            },
            body,
        ),
    )
}
