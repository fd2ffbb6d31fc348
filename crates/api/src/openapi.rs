//! The OpenAPI document (`/openapi.json`) and Swagger UI (`/docs`).
//!
//! The document is derived from the handlers' `#[utoipa::path]` attributes
//! and the DTOs' `ToSchema`, so it cannot drift from what the code serves
//! as long as every route is listed in `paths(...)` below; a test checks
//! that every route of the router appears in it. Swagger UI's assets are
//! vendored into the binary: nothing is downloaded at build or run time.

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;
use crate::permissions::SecurityFromTable;
use crate::{accounts, admin, admin_figures, admin_ops, error, events, health, metrics, orders, stores, webhooks};

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
        admin_figures::figures,
        admin_figures::snapshots,
        admin_figures::cache,
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
        health::live,
        health::ready,
        metrics::render,
        openapi_json,
        docs,
    ),
    components(schemas(error::Problem, error::ErrorCode, error::FieldProblem)),
    modifiers(&SecurityFromTable),
    tags(
        (name = "orders", description = "Placing and following orders"),
        (name = "stores", description = "Stores and menus"),
        (name = "staff", description = "Staff routes; a session (cookie or `Authorization: Bearer rhs_…`) or a personal API key (`Bearer rhk_…`)"),
        (name = "sessions", description = "Staff login and logout"),
        (name = "webhooks", description = "Callbacks from the payment provider, signed with a shared secret (`Rushhour-Signature`)"),
        (name = "admin", description = "Operator routes (role admin): live figures and snapshots, background jobs and schedules, dead letters, upstream sync, caches, users, API keys, audit"),
        (name = "ops", description = "Health, metrics and documentation"),
    )
)]
pub struct ApiDoc;

/// Swagger UI at `/docs`; it also serves the document at `/openapi.json`,
/// so that route must not be registered anywhere else.
pub fn swagger_ui() -> Router<AppState> {
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()).into()
}

// The two routes below are served by `SwaggerUi`; these functions exist only
// to carry their documentation, so that the document lists every route.

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_json() {}

/// Swagger UI for this document.
#[utoipa::path(get, path = "/docs", tag = "ops", responses((status = 303, description = "Redirect to the Swagger UI page")))]
#[allow(dead_code)]
fn docs() {}
