//! Request metrics: a middleware recording
//! `http_request_duration_seconds{path,method,status}` for every request,
//! a slow-request warning, and the `/metrics` endpoint that renders them.
//!
//! `path` is the route template (`/v1/orders/{id}`), never the raw URI: one
//! series per route keeps cardinality bounded whatever clients send, and a
//! request no route matched is `unmatched`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};
use telemetry::names;

use crate::AppState;

/// Requests slower than this are logged (§8): one line per outlier, so a
/// slow backend shows up in logs even without a dashboard.
const SLOW_REQUEST: Duration = Duration::from_secs(1);

pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    // The one allocation here; `MatchedPath` does not hand out its `Arc`.
    let path = match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().to_owned(),
        None => "unmatched".to_owned(),
    };
    let resp = next.run(req).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    // An accepted order, for the live figures (`telemetry::figures`): the
    // intake handler answers 202 only once the order is durable, so this
    // is the customer's wait, measured where every intake passes.
    if status == 202 && method == "POST" && path == "/v1/orders" {
        telemetry::figures().record_intake(elapsed.as_secs_f64() * 1000.0);
    }
    if elapsed >= SLOW_REQUEST {
        tracing::warn!(path = %path, method, status, elapsed_ms = elapsed.as_millis() as u64, "slow request");
    }
    metrics::histogram!(
        names::HTTP_REQUEST_DURATION,
        "path" => path,
        "method" => method,
        "status" => status_label(status),
    )
    .record(elapsed.as_secs_f64());
    resp
}

/// Methods are a closed set here; anything exotic shares one label.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The statuses this API answers most, without formatting a number.
fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    let s = match status {
        200 => "200",
        202 => "202",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        404 => "404",
        409 => "409",
        422 => "422",
        503 => "503",
        other => return other.to_string().into(),
    };
    s.into()
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn render(State(state): State<AppState>) -> Response {
    // Every scrape is also a readiness probe (each check under its 1 s
    // deadline), so `rushhour_check_up` tells alert rules which backend an
    // instance cannot reach, with no blackbox prober beside Prometheus.
    crate::health::publish(&crate::health::readiness(&state).await);
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(status_label(202), "202");
        assert_eq!(status_label(413), "413");
    }
}
