//! Health endpoints for orchestrators and load balancers.
//!
//! `live` says only that the process answers HTTP; it touches nothing, so it
//! doubles as the ceiling the menu route is benchmarked against. `ready`
//! checks every backend the process uses concurrently (the log — with the
//! Kafka log's claims database —, the store, the cache, and the job queue
//! when there is one), each under its own short deadline, so one hung
//! backend makes the instance unready in about a second instead of hanging
//! the probe. A process that runs order processors also reports them: it is
//! not ready while a partition assigned to it has no running processor
//! (one died and waits for its restart).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::PortError;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
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
/// `jobs` and `processors` are present only in a process that has them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub log: &'static str,
    pub store: &'static str,
    pub cache: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processors: Option<&'static str>,
}

/// Readiness of something in this process beside the ports: the order
/// processors' supervision (`worker::ProcessorStatus`), which the binary
/// hands over as a closure so this crate stays ignorant of `worker`. `Err`
/// while it cannot do its job.
pub type SharedProbe = Arc<dyn Fn() -> Result<(), PortError> + Send + Sync>;

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
    let body = readiness(&state).await;
    let status = if body.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Run every check once (concurrently, each under its own deadline). Shared
/// by `/health/ready` and by `/metrics`, which publishes the outcome as
/// gauges so alert rules see an unreachable backend without a separate
/// prober.
pub(crate) async fn readiness(state: &AppState) -> Ready {
    let app = &state.app;
    let jobs = async {
        match &state.jobs {
            Some(queue) => Some(check("jobs", queue.health()).await),
            None => None,
        }
    };
    let (log, store, cache, jobs) = tokio::join!(
        check("log", app.log.health()),
        check("store", app.store.health()),
        check("cache", app.menus.health()),
        jobs,
    );
    let processors = state.processors.as_ref().map(|p| outcome("processors", p()));
    let ok = [Some(log), Some(store), Some(cache), jobs, processors]
        .iter()
        .flatten()
        .all(|c| *c == "ok");
    Ready {
        status: if ok { "ok" } else { "unavailable" },
        checks: Checks {
            log,
            store,
            cache,
            jobs,
            processors,
        },
    }
}

/// Publish a readiness outcome as `rushhour_ready` and
/// `rushhour_check_up{check}` (1 = ok, 0 = anything else).
pub(crate) fn publish(ready: &Ready) {
    use telemetry::names;
    let up = |v: &str| if v == "ok" { 1.0 } else { 0.0 };
    metrics::gauge!(names::READY).set(up(ready.status));
    let c = &ready.checks;
    let checks = [
        ("log", Some(c.log)),
        ("store", Some(c.store)),
        ("cache", Some(c.cache)),
        ("jobs", c.jobs),
        ("processors", c.processors),
    ];
    for (name, value) in checks {
        if let Some(v) = value {
            metrics::gauge!(names::CHECK_UP, "check" => name).set(up(v));
        }
    }
}

async fn check(name: &'static str, health: impl Future<Output = Result<(), PortError>>) -> &'static str {
    match tokio::time::timeout(CHECK_TIMEOUT, health).await {
        Ok(result) => outcome(name, result),
        Err(_) => {
            tracing::warn!(check = name, "readiness check timed out");
            "timeout"
        }
    }
}

fn outcome(name: &'static str, result: Result<(), PortError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(check = name, error = %e, "readiness check failed");
            if e.is_retryable() { "unavailable" } else { "error" }
        }
    }
}
