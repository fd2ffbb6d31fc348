//! The web UI: server-rendered pages for every role (customer, barista and
//! kitchen, pickup TV, manager, operator) and the assets they load.
//!
//! Pages are rendered with maud (HTML checked at compile time, escaped by
//! default; ADR 0010) from one shared [`layout`], one module per page.
//! Everything live or that acts runs in small ES modules of our own
//! (`assets/*.js`) that talk to the JSON API only — the pages have no API
//! of their own — with the staff session cookie and its CSRF token.
//!
//! This crate depends on `domain`, never on `api`: `api::router` merges
//! [`router`] so every page goes through the one permission table and its
//! `authorize` middleware, which also hands the page the signed-in
//! [`Viewer`] and answers refused page requests with [`forbidden`] or a
//! redirect to the login page.

pub mod assets;
mod board;
mod format;
mod layout;
mod login;
mod manage;
mod menu;
mod ops;
mod order;
mod picker;
mod pickup;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::Rushhour;
use domain::identity::Role;
use maud::Markup;
use std::sync::Arc;

pub use format::money;

/// The page routes this crate serves (axum templates), for the permission
/// table's test.
pub const PAGE_ROUTES: &[&str] = &[
    "/",
    "/stores/{id}",
    "/orders/{id}",
    "/login",
    "/stores/{id}/board",
    "/stores/{id}/pickup",
    "/stores/{id}/manage",
    "/ops",
    "/assets/{name}",
];

/// The strict policy every page answers with: only our own scripts,
/// styles and connections; no inline script or style, no framing, no
/// `<base>`, forms only to ourselves.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Ageing thresholds of the board's ticket timers, in seconds: a ticket
/// turns yellow at `warn` and red at `late`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ageing {
    pub warn_secs: u32,
    pub late_secs: u32,
}

/// What the binary decides about the pages.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Drinks age faster than food: 3 and 5 minutes by default.
    pub barista: Ageing,
    /// 5 and 8 minutes by default.
    pub kitchen: Ageing,
    /// The live streams' heartbeat interval (`http.sse_heartbeat_secs`):
    /// a board that hears nothing for two of them shows STALE.
    pub heartbeat_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            barista: Ageing {
                warn_secs: 180,
                late_secs: 300,
            },
            kitchen: Ageing {
                warn_secs: 300,
                late_secs: 480,
            },
            heartbeat_secs: 15,
        }
    }
}

/// The signed-in staff member, as `api`'s `authorize` found them; absent
/// for anonymous visitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The username (or `key:<prefix>` for an API key).
    pub name: String,
    pub role: Role,
}

/// The state every page handler shares.
#[derive(Clone)]
pub(crate) struct Web {
    pub app: Arc<Rushhour>,
    pub config: Arc<WebConfig>,
}

/// Every page and asset route, for `api::router` to merge (generic over
/// the outer router's state, which the pages do not use).
pub fn router<S: Clone + Send + Sync + 'static>(app: Arc<Rushhour>, config: WebConfig) -> Router<S> {
    let web = Web {
        app,
        config: Arc::new(config),
    };
    Router::new()
        .route("/", get(picker::page))
        .route("/stores/{id}", get(menu::page))
        .route("/orders/{id}", get(order::page))
        .route("/login", get(login::page))
        .route("/stores/{id}/board", get(board::page))
        .route("/stores/{id}/pickup", get(pickup::page))
        .route("/stores/{id}/manage", get(manage::page))
        .route("/ops", get(ops::page))
        .route("/assets/{name}", get(assets::serve))
        .layer(axum::middleware::map_response(secure))
        .with_state(web)
}

/// The headers every page and asset answers with.
async fn secure(mut resp: Response) -> Response {
    secure_headers(resp.headers_mut());
    resp
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The order page's URL carries the order's token: it must not leak to
    // another site through `Referer`.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// An HTML answer. Pages are never cached: they are cheap to render, and
/// an order page's URL holds a secret.
pub(crate) fn html(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The HTML 403 page `authorize` answers a signed-in user without the
/// page's role with (a page, not problem+json: a person is reading it).
pub fn forbidden(viewer: Option<&Viewer>, need: Role) -> Response {
    let mut resp = html(StatusCode::FORBIDDEN, layout::forbidden(viewer, need));
    secure_headers(resp.headers_mut());
    resp
}

/// The redirect `authorize` answers an anonymous visitor of a staff page
/// with: to the login page, which comes back to `path_and_query`.
pub fn to_login(path_and_query: &str) -> Response {
    let target = format!("/login?next={}", format::url_encode(path_and_query));
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_str(&target).expect("encoded path"))],
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(resp.headers_mut());
    resp
}

/// The path a login page may go back to: a same-origin path (`/…`, not
/// `//host` nor `/\host`), or `/` for anything else.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.contains(['\r', '\n']) => {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The store's menu snapshot for a store page, or the page to answer
/// instead (404 for a store that does not exist, 503 when the store
/// cannot say).
pub(crate) async fn store_menu(
    web: &Web,
    id: &str,
    viewer: Option<&Viewer>,
) -> Result<Arc<domain::MenuSnapshot>, Response> {
    let Some(store) = domain::StoreId::parse(id) else {
        return Err(layout::not_found(viewer, "store"));
    };
    match web.app.menu(&store).await {
        Ok(m) => Ok(m),
        Err(domain::AppError::NotFound(_)) => Err(layout::not_found(viewer, "store")),
        Err(e) => {
            tracing::warn!(error = %e, store = id, "a store page could not load its menu");
            Err(layout::unavailable(viewer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_origin() {
        assert_eq!(
            safe_next(Some("/stores/a/board?station=barista")),
            "/stores/a/board?station=barista"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
