//! The OpenAPI document (`/openapi.json`) and Swagger UI (`/docs`).
//!
//! The document is derived from the handlers' `#[utoipa::path]` attributes
//! and the DTOs' `ToSchema`, so it cannot drift from what the code serves
//! as long as every route is listed in `paths(...)` below; a test checks
//! that every route of the router appears in it. Swagger UI's assets are
//! vendored into the binary: nothing is downloaded at build or run time.
//!
//! The document is serialized once, when the router is built, and served
//! as those bytes: the `utoipa` structs it is made of were the largest
//! thing an idle server held (about 4 MB of small allocations, by the heap
//! profile; the JSON is about 115 KB), and they are dropped right after.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;
use crate::permissions::SecurityFromTable;
use crate::{
    accounts, admin, admin_figures, admin_ops, admin_profile, error, events, health, loyalty, metrics, orders, schemas,
    stores, subscribers, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rushhour",
        description = "Coffee ordering for the rush. Every error is `application/problem+json` with a stable `code`."
    ),
    paths(
        orders::place_order,
        orders::list_orders,
        orders::get_order,
        orders::cancel_order,
        orders::start_line,
        orders::finish_line,
        orders::undo_line,
        orders::pick_up,
        events::order_events,
        events::store_board,
        events::pickup_board,
        events::pickup_events,
        stores::tickets,
        stores::figures,
        stores::popular,
        stores::list_stores,
        stores::menu,
        stores::set_availability,
        webhooks::receive_payment,
        admin::queues,
        admin::list_jobs,
        admin::get_job,
        admin::retry_job,
        admin::discard_job,
        admin::sync,
        admin::clear_cache,
        loyalty::account,
        admin_figures::figures,
        admin_figures::snapshots,
        admin_figures::cache,
        admin_profile::cpu,
        admin_profile::heap,
        admin_ops::schedules,
        admin_ops::run_schedule,
        admin_ops::dead_letters,
        admin_ops::replay_dead_letter,
        admin_ops::discard_dead_letter,
        admin_ops::bulk_retry,
        admin_ops::bulk_discard,
        admin_ops::invalidate_store,
        accounts::login,
        accounts::current,
        accounts::logout,
        accounts::list_users,
        accounts::add_user,
        accounts::update_user,
        accounts::list_keys,
        accounts::issue_key,
        accounts::revoke_key,
        accounts::audit,
        subscribers::list,
        subscribers::create,
        subscribers::update,
        subscribers::remove,
        subscribers::test,
        subscribers::deliveries,
        subscribers::retry,
        health::live,
        health::ready,
        metrics::render,
        openapi_json,
        docs,
        page_stores,
        page_menu,
        page_order,
        page_login,
        page_board,
        page_pickup,
        page_manage,
        page_ops,
        page_asset,
    ),
    components(schemas(
        error::Problem,
        error::ErrorCode,
        error::FieldProblem,
        admin::SyncWhat,
        events::LiveEventDto,
        events::PickupEntry,
        schemas::StoreSlug,
        schemas::IdempotencyKeyValue,
        schemas::LastEventIdValue,
        schemas::EventIdValue,
        schemas::LiveEventStream,
        schemas::PickupEventStream,
    )),
    modifiers(&SecurityFromTable),
    tags(
        (name = "orders", description = "Placing and following orders"),
        (name = "stores", description = "Stores and menus"),
        (name = "staff", description = "Staff routes; a session (cookie or `Authorization: Bearer rhs_…`) or a personal API key (`Bearer rhk_…`)"),
        (name = "sessions", description = "Staff login and logout"),
        (name = "webhooks", description = "Callbacks from the payment provider, signed with a shared secret (`Rushhour-Signature`)"),
        (name = "admin", description = "Operator routes (role admin): live figures and snapshots, background jobs and schedules, dead letters, upstream sync, caches, users, API keys, audit"),
        (name = "ops", description = "Health, metrics and documentation"),
        (name = "pages", description = "The web UI's HTML pages and assets (crates/web); they call only the routes above"),
    )
)]
pub struct ApiDoc;

/// Swagger UI at `/docs`, and the document at `/openapi.json` (which the
/// UI loads); neither route may be registered anywhere else.
pub fn swagger_ui() -> Router<AppState> {
    let json = axum::body::Bytes::from(document_json());
    let ui: Router<AppState> = SwaggerUi::new("/docs").config(Config::from("/openapi.json")).into();
    ui.route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move { ([(CONTENT_TYPE, "application/json")], json) }
        }),
    )
}

/// The document as served: compact JSON.
fn document_json() -> Vec<u8> {
    // Serializing maps, strings and numbers built by the derive cannot fail.
    serde_json::to_vec(&ApiDoc::openapi()).expect("the OpenAPI document serializes")
}

// The two routes below are served by `swagger_ui()`; these functions exist
// only to carry their documentation, so that the document lists every route.

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_json() {}

/// Swagger UI for this document.
#[utoipa::path(get, path = "/docs", tag = "ops", responses((status = 303, description = "Redirect to the Swagger UI page")))]
#[allow(dead_code)]
fn docs() {}

// The web UI's pages (crates/web), listed so the document names every
// route of the permission table. They answer HTML, never problem+json: a
// refused staff page redirects an anonymous visitor to `/login?next=` and
// shows a signed-in user without the role an HTML 403.

/// The store picker.
#[utoipa::path(get, path = "/", tag = "pages", responses(
    (status = 200, description = "HTML page", content_type = "text/html"),
    (status = 503, description = "The store cannot answer (HTML)", content_type = "text/html")))]
#[allow(dead_code)]
fn page_stores() {}

/// A store's menu with the cart.
#[utoipa::path(get, path = "/stores/{id}", tag = "pages", params(("id" = String, Path, description = "Store id")), responses(
    (status = 200, description = "HTML page", content_type = "text/html"),
    (status = 404, description = "No such store (HTML)", content_type = "text/html"),
    (status = 503, description = "The store cannot answer (HTML)", content_type = "text/html")))]
#[allow(dead_code)]
fn page_menu() {}

/// The customer's order page; `?token=` is the order's access token.
#[utoipa::path(get, path = "/orders/{id}", tag = "pages", params(("id" = String, Path, description = "Order id"),
    ("token" = Option<String>, Query, description = "The order's access token")), responses(
    (status = 200, description = "HTML page", content_type = "text/html"),
    (status = 404, description = "Not an order id (HTML)", content_type = "text/html")))]
#[allow(dead_code)]
fn page_order() {}

/// The staff sign-in page; `?next=` is a same-origin path to go back to.
#[utoipa::path(get, path = "/login", tag = "pages", params(("next" = Option<String>, Query, description = "Where to go after signing in")), responses(
    (status = 200, description = "HTML page", content_type = "text/html")))]
#[allow(dead_code)]
fn page_login() {}

/// The barista or kitchen display.
#[utoipa::path(get, path = "/stores/{id}/board", tag = "pages", params(("id" = String, Path, description = "Store id"),
    ("station" = Option<String>, Query, description = "`barista` (default) or `kitchen`")), responses(
    (status = 200, description = "HTML page", content_type = "text/html"),
    (status = 303, description = "Not signed in: to `/login?next=`"),
    (status = 403, description = "Signed in without the role (HTML)", content_type = "text/html"),
    (status = 404, description = "No such store or station (HTML)", content_type = "text/html"),
    (status = 503, description = "The store cannot answer (HTML)", content_type = "text/html")))]
#[allow(dead_code)]
fn page_board() {}

/// The public pickup board (a TV).
#[utoipa::path(get, path = "/stores/{id}/pickup", tag = "pages", params(("id" = String, Path, description = "Store id")), responses(
    (status = 200, description = "HTML page", content_type = "text/html"),
    (status = 404, description = "No such store (HTML)", content_type = "text/html"),
    (status = 503, description = "The store cannot answer (HTML)", content_type = "text/html")))]
#[allow(dead_code)]
fn page_pickup() {}

/// The manager's page.
#[utoipa::path(get, path = "/stores/{id}/manage", tag = "pages", params(("id" = String, Path, description = "Store id")), responses(
    (status = 200, description = "HTML page", content_type = "text/html"),
    (status = 303, description = "Not signed in: to `/login?next=`"),
    (status = 403, description = "Signed in without the role (HTML)", content_type = "text/html"),
    (status = 404, description = "No such store (HTML)", content_type = "text/html"),
    (status = 503, description = "The store cannot answer (HTML)", content_type = "text/html")))]
#[allow(dead_code)]
fn page_manage() {}

/// The operator's dashboard.
#[utoipa::path(get, path = "/ops", tag = "pages", responses(
    (status = 200, description = "HTML page", content_type = "text/html"),
    (status = 303, description = "Not signed in: to `/login?next=`"),
    (status = 403, description = "Signed in without the role (HTML)", content_type = "text/html")))]
#[allow(dead_code)]
fn page_ops() {}

/// An embedded asset under its content-hashed name: cached for a year,
/// precompressed (brotli, gzip), `ETag` and `304` on `If-None-Match`.
#[utoipa::path(get, path = "/assets/{name}", tag = "pages", params(("name" = String, Path, description = "Hashed file name")), responses(
    (status = 200, description = "The asset"),
    (status = 304, description = "Not modified"),
    (status = 404, description = "No such asset")))]
#[allow(dead_code)]
fn page_asset() {}
