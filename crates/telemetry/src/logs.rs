//! JSON log lines that join their trace: tracing-subscriber's own JSON
//! format, with a top-level `trace_id` when the line is written inside an
//! exported span, so a log search and a trace view meet on one id.
//!
//! The line is formatted by the stock formatter into a buffer and the field
//! spliced in after its opening brace. Rejected: a formatter of our own
//! (every field, span and escape rule to redo) and the span-list fields
//! (`with_span_list`, the id buried in a nested array of every span).

use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

pub(crate) struct TraceJson {
    inner: Format<Json>,
}

impl TraceJson {
    pub(crate) fn new() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format().json().flatten_event(true),
        }
    }
}

impl<S> FormatEvent<S, JsonFields> for TraceJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let trace = if crate::traces::enabled() {
            crate::traces::current_trace_id()
        } else {
            None
        };
        let Some(trace) = trace else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}
