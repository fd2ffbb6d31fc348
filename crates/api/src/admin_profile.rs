//! `GET /v1/admin/profile/cpu`: a CPU flamegraph of the answering process,
//! sampled for `seconds` (at most [`MAX_SECONDS`]) by the `Profiler` port,
//! for `rushhour profile`. Admin only; one profile at a time (409
//! `profile_running`). Outside the request timeout, like the streams: the
//! answer takes as long as the profile asked for.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::admin::AdminError;
use crate::error::{ApiError, Problem};
use crate::extract::Query;

/// The longest profile one request may ask for.
pub const MAX_SECONDS: u64 = 60;
/// A profile's length when the query names none.
pub const DEFAULT_SECONDS: u64 = 10;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// How long to sample, 1 to 60 seconds (default 10).
    pub seconds: Option<u64>,
}

/// Sample every thread of this process for `seconds` and answer the
/// flamegraph (SVG).
#[utoipa::path(
    get,
    path = "/v1/admin/profile/cpu",
    tag = "admin",
    params(ProfileQuery),
    responses(
        (status = 200, description = "A flamegraph of the samples", body = String, content_type = "image/svg+xml"),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "profile_running", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable (no profiler in this process)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cpu(State(state): State<AppState>, Query(q): Query<ProfileQuery>) -> Result<Response, AdminError> {
    let seconds = q.seconds.unwrap_or(DEFAULT_SECONDS);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::InvalidQuery(format!("seconds must be 1 to {MAX_SECONDS}")).into());
    }
    let Some(profiler) = &state.ops.profiler else {
        return Err(ApiError::Unavailable.into());
    };
    let svg = match profiler.cpu_flamegraph(Duration::from_secs(seconds)).await {
        Ok(svg) => svg,
        Err(domain::PortError::Conflict(_)) => return Err(AdminError::ProfileRunning),
        Err(e) => return Err(e.into()),
    };
    let mut resp = svg.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    Ok(resp)
}
