//! `GET /v1/admin/profile/cpu`: a CPU flamegraph of the answering process,
//! sampled for `seconds` (at most [`MAX_SECONDS`]) by the `Profiler` port,
//! for `rushhour profile`. `GET /v1/admin/profile/heap`: its live
//! allocations by call site (a flamegraph, or pprof protobuf with
//! `format=pprof`), since start or over a window of `seconds` (at most
//! [`MAX_HEAP_SECONDS`]), for `rushhour profile --heap`. Admin only; one
//! profile of each kind at a time (409 `profile_running`); a process
//! without a heap profiler answers 503 `profiling_unavailable`. Outside the
//! request timeout, like the streams: the answer takes as long as the
//! profile asked for.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use domain::ports::{HeapFormat, HeapWindow};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

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
    #[param(minimum = 1, maximum = 60)]
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

/// The longest heap window one request may ask for: a leak needs time to
/// outgrow the sampling (one sample per 512 KiB allocated).
pub const MAX_HEAP_SECONDS: u64 = 600;
/// A heap window's length when the query names none.
pub const DEFAULT_HEAP_SECONDS: u64 = 30;

/// `x-heap-window` of a heap profile: `since-start` (heap profiling is on
/// from start) or the window in seconds (`30s`).
pub const HEAP_WINDOW_HEADER: HeaderName = HeaderName::from_static("x-heap-window");

/// A heap profile's encoding.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeapFormatParam {
    /// A flamegraph SVG (the default).
    Svg,
    /// Gzipped pprof protobuf, for `go tool pprof` / `pprof -http`.
    Pprof,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HeapQuery {
    /// When heap profiling is not on from start: how long to record
    /// allocations, 1 to 600 seconds (default 30); the profile shows those
    /// still live at the end. Ignored when it is on from start.
    #[param(minimum = 1, maximum = 600)]
    pub seconds: Option<u64>,
    /// `svg` (default) or `pprof`.
    #[param(inline)]
    pub format: Option<HeapFormatParam>,
}

/// Live allocations of this process by call site (jemalloc's sampled heap
/// profile): a flamegraph SVG, or pprof protobuf with `format=pprof`.
#[utoipa::path(
    get,
    path = "/v1/admin/profile/heap",
    tag = "admin",
    params(HeapQuery),
    responses(
        (status = 200, description = "Live bytes by call site; `x-heap-window` says what it covers (`since-start` or e.g. `30s`)", content(
            (String = "image/svg+xml"),
            (Vec<u8> = "application/octet-stream"),
        )),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "profile_running", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "profiling_unavailable (this process does not allocate through jemalloc's profiler), or unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn heap(State(state): State<AppState>, Query(q): Query<HeapQuery>) -> Result<Response, AdminError> {
    let seconds = q.seconds.unwrap_or(DEFAULT_HEAP_SECONDS);
    if !(1..=MAX_HEAP_SECONDS).contains(&seconds) {
        return Err(ApiError::InvalidQuery(format!("seconds must be 1 to {MAX_HEAP_SECONDS}")).into());
    }
    let Some(profiler) = &state.ops.profiler else {
        return Err(AdminError::ProfilingUnavailable("this process has no profiler".into()));
    };
    profiler.heap_support().map_err(AdminError::ProfilingUnavailable)?;
    let (format, content_type) = match q.format.unwrap_or(HeapFormatParam::Svg) {
        HeapFormatParam::Svg => (HeapFormat::Flamegraph, "image/svg+xml"),
        HeapFormatParam::Pprof => (HeapFormat::Pprof, "application/octet-stream"),
    };
    let profile = match profiler.heap_profile(Duration::from_secs(seconds), format).await {
        Ok(p) => p,
        Err(domain::PortError::Conflict(_)) => return Err(AdminError::ProfileRunning),
        Err(e) => return Err(e.into()),
    };
    let window = match profile.window {
        HeapWindow::SinceStart => HeaderValue::from_static("since-start"),
        HeapWindow::Last(d) => {
            HeaderValue::from_str(&format!("{}s", d.as_secs())).unwrap_or(HeaderValue::from_static("window"))
        }
    };
    let mut resp = profile.body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(HEAP_WINDOW_HEADER, window);
    Ok(resp)
}
