//! OpenTelemetry traces: the OTLP exporter, and the few helpers the rest of
//! the tree uses to carry a trace across the places where a request's work
//! leaves its task (the event log, the order row, the job queue).
//!
//! What crosses those boundaries is a plain W3C `traceparent` string, never
//! an otel type: the domain and the adapters store and compare strings, and
//! only this module parses them. Tracing is off by default; then every helper
//! here returns after one relaxed atomic load ([`enabled`]), so the intake
//! path pays nothing for the feature it does not use.
//!
//! A processor batch serves many orders, so it is *linked* to each order's
//! trace rather than made a child of one. Its sampling follows the links
//! ([`FollowLinks`]): with a 1% ratio, the batch that applied a sampled
//! order is kept too, otherwise the order's trace would end at the append.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, SpanContext, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Where and how to export spans (`[telemetry]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// OTLP/HTTP (protobuf) endpoint: a collector's base URL
    /// (`http://localhost:4318`) or its full traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// Fraction of new traces kept, 0.0 to 1.0 (parent-based: a request that
    /// arrives with a sampled `traceparent` is always kept).
    pub sample_ratio: f64,
    /// `service.name` of every span this process exports.
    pub service_name: String,
    /// How long one export request may take before it is abandoned.
    pub export_timeout: Duration,
}

impl TraceSettings {
    /// The URL spans are POSTed to: the base URL gets OTLP's traces path.
    pub fn traces_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }
    }
}

/// The exporter could not be built (a malformed endpoint, most often).
#[derive(Debug, thiserror::Error)]
#[error("OTLP trace exporter: {0}")]
pub struct TraceInitError(String);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported. The one check every helper makes first.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Keeps the tracer provider alive; [`TraceGuard::shutdown`] (or drop)
/// flushes the spans still in the batch exporter's queue.
#[derive(Debug, Default)]
#[must_use = "dropping the guard shuts the exporter down"]
pub struct TraceGuard {
    provider: Option<SdkTracerProvider>,
}

impl TraceGuard {
    /// Flush and stop the exporter. Called at the end of a process's shutdown.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take() {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = p.shutdown() {
                eprintln!("shutting the trace exporter down: {e}");
            }
        }
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Build the batch exporter and its provider. The HTTP client is built on a
/// thread of its own by the exporter, so this works inside or outside a
/// tokio runtime.
pub(crate) fn provider(settings: &TraceSettings) -> Result<SdkTracerProvider, TraceInitError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.traces_url())
        .with_timeout(settings.export_timeout)
        .build()
        .map_err(|e| TraceInitError(e.to_string()))?;
    let ratio = settings.sample_ratio.clamp(0.0, 1.0);
    let sampler = FollowLinks(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}

pub(crate) fn guard(provider: SdkTracerProvider) -> TraceGuard {
    ENABLED.store(true, Ordering::Relaxed);
    TraceGuard {
        provider: Some(provider),
    }
}

/// Parent-based ratio sampling, except that a root span linked to a sampled
/// trace is sampled too (a processor batch, a job): see the module docs.
#[derive(Debug, Clone)]
struct FollowLinks(Sampler);

impl ShouldSample for FollowLinks {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let has_parent = parent_context.is_some_and(|cx| cx.has_active_span());
        if !has_parent && links.iter().any(|l| l.span_context.is_sampled()) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// The W3C `traceparent` of the current span, or `None` when tracing is off.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    traceparent_of(&tracing::Span::current())
}

/// The W3C `traceparent` of `span` (`00-<trace>-<span>-<flags>`).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The trace id (32 hex digits) of `span`, for log lines and tests.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Parse a `traceparent`; `None` for anything malformed (a record written
/// by a foreign producer, a client's junk header). Public only for the
/// log-record fuzz target (`fuzz/`): a record's trace header reaches it.
#[doc(hidden)]
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Link `span` to the trace `traceparent` names (a batch to the orders it
/// applied, a staff action to the order's intake). Call before the span is
/// first entered, so the sampler sees the link.
pub fn link(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    if let Some(sc) = parse(traceparent) {
        span.add_link(sc);
    }
}

/// Make `span` a child of the remote context `traceparent` names (a caller's
/// `traceparent` header, the enqueuer of a job). Call before the span is
/// first entered.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    if let Some(sc) = parse(traceparent) {
        let _ = span.set_parent(Context::new().with_remote_span_context(sc));
    }
}

/// The trace id of the span entered on this thread, for JSON log lines.
pub(crate) fn current_trace_id() -> Option<TraceId> {
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path_once() {
        let s = |endpoint: &str| TraceSettings {
            endpoint: endpoint.into(),
            sample_ratio: 1.0,
            service_name: "x".into(),
            export_timeout: Duration::from_secs(1),
        };
        assert_eq!(s("http://c:4318").traces_url(), "http://c:4318/v1/traces");
        assert_eq!(s("http://c:4318/").traces_url(), "http://c:4318/v1/traces");
        assert_eq!(s("http://c:4318/v1/traces").traces_url(), "http://c:4318/v1/traces");
    }

    #[test]
    fn junk_is_no_context() {
        assert!(parse("junk").is_none());
        assert!(parse("00-00000000000000000000000000000000-0000000000000000-01").is_none());
        let sc = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert!(sc.is_sampled());
    }
}
