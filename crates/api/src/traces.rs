//! The span of every HTTP request, named for OpenTelemetry by its route
//! template (`POST /v1/orders`, never the raw path: one span name per route,
//! as for the metrics), with the response status recorded when it is known.
//!
//! Staff actions on an order link to the order's trace
//! ([`link_to_order`]).
//!
//! When traces are off the span is the plain log span it always was (method,
//! path, version): no name to format, no header to parse. When they are on,
//! a caller's W3C `traceparent` header makes the request part of the
//! caller's trace.

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use std::time::Duration;
use tracing::Span;
use tracing::field::Empty;

/// `TraceLayer`'s `make_span_with`. The layer runs inside routing (axum
/// applies `Router::layer` per route), so the route template is known here.
pub fn request_span<B>(req: &Request<B>) -> Span {
    let (method, path, version) = (req.method(), req.uri().path(), req.version());
    if !telemetry::traces::enabled() {
        return tracing::info_span!("request", %method, path, ?version);
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        %method,
        path,
        ?version,
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
    );
    if let Some(parent) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        telemetry::traces::set_parent(&span, parent);
    }
    span
}

/// `TraceLayer`'s `on_response`: the status on the span (a 5xx marks it
/// failed), and the DEBUG line the default handler wrote.
pub fn on_response<B>(res: &Response<B>, latency: Duration, span: &Span) {
    let status = res.status().as_u16();
    if telemetry::traces::enabled() {
        span.record("http.response.status_code", status);
        if res.status().is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    tracing::debug!(
        status,
        latency_ms = latency.as_millis() as u64,
        "finished processing request"
    );
}

/// Link the current request's span to the trace the order was placed under
/// (kept on its row): a staff action (start, done, undo, pickup, cancel)
/// shows up from the order's trace. One primary-key read, and only when
/// traces are exported; an order not applied yet, or untraced, has none.
pub async fn link_to_order(state: &crate::AppState, id: domain::OrderId) {
    if !telemetry::traces::enabled() {
        return;
    }
    if let Ok(Some(trace)) = state.app.store.order_trace(id).await {
        telemetry::traces::link(&Span::current(), &trace);
    }
}
