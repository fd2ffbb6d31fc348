//! Request metrics: a middleware recording
//! `http_request_duration_seconds{path,method,status}` for every request,
//! the database statements it ran (`db_queries_per_request{path}`, and the
//! `x-db-queries` header when configured), slow requests
//! (`http_slow_requests_total{path}` and a warning), and the `/metrics`
//! endpoint that renders them.
//!
//! `path` is the route template (`/v1/orders/{id}`), never the raw URI: one
//! series per route keeps cardinality bounded whatever clients send, and a
//! request no route matched is `unmatched`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use telemetry::names;
use telemetry::queries::{Scope, within};

use crate::{AppState, ObserveConfig};

/// The response header carrying the request's statement count, when
/// `ObserveConfig::query_count_header` is on.
pub const DB_QUERIES_HEADER: &str = "x-db-queries";

pub async fn track(State(observe): State<Arc<ObserveConfig>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    // The one allocation here; `MatchedPath` does not hand out its `Arc`.
    let path = match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().to_owned(),
        None => "unmatched".to_owned(),
    };
    // Every statement the handler causes counts here (`dbkit::observe`
    // carries the scope to the threads that run them). A stream's body is
    // polled after this returns, so a stream counts its opening only.
    let scope = Scope::new();
    let mut resp = within(scope.clone(), next.run(req)).await;
    let elapsed = start.elapsed();
    let queries = scope.queries();
    metrics::histogram!(names::DB_QUERIES_PER_REQUEST, "path" => path.clone()).record(f64::from(queries));
    if observe.query_count_header {
        resp.headers_mut().insert(DB_QUERIES_HEADER, HeaderValue::from(queries));
    }
    let status = resp.status().as_u16();
    // An accepted order, for the live figures (`telemetry::figures`): the
    // intake handler answers 202 only once the order is durable, so this
    // is the customer's wait, measured where every intake passes.
    if status == 202 && method == "POST" && path == "/v1/orders" {
        telemetry::figures().record_intake(elapsed.as_secs_f64() * 1000.0);
    }
    // Requests slower than `observability.slow_request_ms` (§8): counted
    // and logged, one line per outlier, so a slow backend shows up even
    // without a dashboard. Streams are long by design and not counted.
    if elapsed >= observe.slow_request && !resp.headers().get(header::CONTENT_TYPE).is_some_and(is_stream) {
        metrics::counter!(names::HTTP_SLOW_REQUESTS, "path" => path.clone()).increment(1);
        tracing::warn!(path = %path, method, status, elapsed_ms = elapsed.as_millis() as u64, queries, "slow request");
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

fn is_stream(content_type: &HeaderValue) -> bool {
    content_type.as_bytes().starts_with(b"text/event-stream")
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
