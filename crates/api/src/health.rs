//! Health endpoints for orchestrators and load balancers.
//!
//! `live` says only that the process answers HTTP; it touches nothing, so it
//! doubles as the ceiling the menu route is benchmarked against. `ready`
//! checks every backend concurrently, each under its own short deadline, so
//! one hung backend makes the instance unready in about a second instead of
//! hanging the probe.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::PortError;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;
use utoipa::ToSchema;

use crate::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ok` or `unavailable`.
    #[schema(example = "ok")]
    pub status: &'static str,
    pub checks: Checks,
}

/// Each check is `ok`, `timeout`, `unavailable` or `error`. The backend's
/// own message goes to the log, not here: it may name hosts or users.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub log: &'static str,
    pub store: &'static str,
    pub cache: &'static str,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "ops",
    responses((status = 200, description = "Alive", body = Live))
)]
pub async fn live() -> Response {
    // A static body: this route must cost nothing beyond HTTP itself.
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// Every backend answers.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "A backend failed its check", body = Ready),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let app = &state.app;
    let (log, store, cache) = tokio::join!(
        check("log", app.log.health()),
        check("store", app.store.health()),
        check("cache", app.menus.health()),
    );
    let ok = [log, store, cache].iter().all(|c| *c == "ok");
    let body = Ready {
        status: if ok { "ok" } else { "unavailable" },
        checks: Checks { log, store, cache },
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn check(name: &'static str, health: impl Future<Output = Result<(), PortError>>) -> &'static str {
    match tokio::time::timeout(CHECK_TIMEOUT, health).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = %e, "readiness check failed");
            if e.is_retryable() { "unavailable" } else { "error" }
        }
        Err(_) => {
            tracing::warn!(check = name, "readiness check timed out");
            "timeout"
        }
    }
}
