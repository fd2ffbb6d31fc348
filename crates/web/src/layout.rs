//! The one layout every page shares: `lang`, viewport, the stylesheet and
//! the page's module, a skip link, and a header naming the store and the
//! signed-in user (with sign-out); plus the pages every screen can end on
//! (not found, unavailable, forbidden).
//!
//! No inline script or style anywhere (the CSP forbids both): a page
//! hands its settings to its module through `data-*` attributes.

use axum::http::StatusCode;
use axum::response::Response;
use domain::identity::Role;
use domain::menu::StoreInfo;
use maud::{DOCTYPE, Markup, html};

use crate::{Viewer, assets, html as respond};

/// What a page tells the layout.
pub struct Page<'a> {
    pub title: String,
    pub store: Option<&'a StoreInfo>,
    pub viewer: Option<&'a Viewer>,
    /// The page's ES module under `assets/` (it imports `common.js`).
    pub script: Option<&'static str>,
    /// The `<body>` class: the screen's look (`customer`, `board`, `tv`,
    /// `staff`).
    pub class: &'static str,
}

pub fn page(p: Page<'_>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (p.title) " · rushhour" }
                link rel="stylesheet" href=(assets::url("app.css"));
                link rel="icon" href=(assets::url("icon.svg")) type="image/svg+xml";
                script type="module" src=(assets::url("common.js")) {}
                @if let Some(s) = p.script {
                    script type="module" src=(assets::url(s)) {}
                }
            }
            body class=(p.class) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "rushhour" }
                    @if let Some(s) = p.store {
                        span.store data-testid="header-store" { (s.name) }
                    }
                    span.spacer {}
                    @if let Some(v) = p.viewer {
                        span.viewer data-testid="viewer" { (v.name) " · " (v.role.as_str()) }
                        button #signout type="button" data-testid="signout" { "Sign out" }
                    }
                }
                main #main tabindex="-1" {
                    (main)
                }
            }
        }
    }
}

/// 404 page for a store or order that does not exist.
pub fn not_found(viewer: Option<&Viewer>, what: &str) -> Response {
    let body = page(
        Page {
            title: "Not found".into(),
            store: None,
            viewer,
            script: None,
            class: "customer",
        },
        html! {
            h1 { "Not found" }
            p data-testid="not-found" { "There is no " (what) " here. " a href="/" { "Back to the stores" } }
        },
    );
    respond(StatusCode::NOT_FOUND, body)
}

/// 503 page when the store cannot answer.
pub fn unavailable(viewer: Option<&Viewer>) -> Response {
    let body = page(
        Page {
            title: "Not available".into(),
            store: None,
            viewer,
            script: None,
            class: "customer",
        },
        html! {
            h1 { "Not available right now" }
            p data-testid="unavailable" { "This page cannot be shown at the moment. Please try again in a little while." }
        },
    );
    respond(StatusCode::SERVICE_UNAVAILABLE, body)
}

/// The body of the HTML 403 page.
pub fn forbidden(viewer: Option<&Viewer>, need: Role) -> Markup {
    page(
        Page {
            title: "Not allowed".into(),
            store: None,
            viewer,
            script: None,
            class: "customer",
        },
        html! {
            h1 { "Not allowed" }
            p data-testid="forbidden" {
                "This page needs the " strong { (need.as_str()) } " role"
                @if let Some(v) = viewer { "; you are signed in as " (v.name) " (" (v.role.as_str()) ")" }
                ". "
                a href="/" { "Back to the stores" }
            }
        },
    )
}
