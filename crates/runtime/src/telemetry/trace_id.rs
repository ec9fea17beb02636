//! The trace id of each call, with or without trace export: recorded on the call's span, shown
//! on every log line of the call, quoted by INTERNAL errors and passed on to the next service.

use std::fmt;

use opentelemetry::trace::{TraceContextExt as _, TraceId};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// The span field that names the trace a span's work belongs to: a call's span, or a background
/// task's that continues a call's trace. 32 lower-case hex digits, as in `traceparent`.
pub const TRACE_ID_FIELD: &str = "trace_id";

/// The trace id of a span, from its [`TRACE_ID_FIELD`], kept where log formatting and
/// [`current_trace_id`] find it.
#[derive(Clone, Debug)]
struct SpanTraceId(String);

/// Keeps the [`TRACE_ID_FIELD`] of every span that records one in the span's extensions.
struct TraceIdLayer;

/// The [`TraceIdLayer`] for spans only (the ones that carry trace ids are at info), never
/// events, whatever RUST_LOG says: a call's trace id is known even when its span is not logged,
/// for the INTERNAL errors that quote it.
pub(super) fn trace_ids<S: Subscriber + for<'a> LookupSpan<'a>>() -> impl Layer<S> {
    TraceIdLayer.with_filter(
        tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.is_span() && *metadata.level() <= tracing::Level::INFO
        })
        .with_max_level_hint(tracing::Level::INFO),
    )
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TraceIdLayer {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        attributes.record(&mut visitor);
        if let (Some(trace_id), Some(span)) = (visitor.0, context.span(id)) {
            span.extensions_mut().insert(SpanTraceId(trace_id));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        values.record(&mut visitor);
        if let (Some(trace_id), Some(span)) = (visitor.0, context.span(id)) {
            span.extensions_mut().replace(SpanTraceId(trace_id));
        }
    }
}

struct TraceIdVisitor(Option<String>);

impl Visit for TraceIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACE_ID_FIELD {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == TRACE_ID_FIELD {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// The trace id recorded on `span` or its nearest ancestor that has one.
pub(super) fn recorded_trace_id(span: &tracing::Span) -> Option<String> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        registry.span(id)?.scope().find_map(|span| {
            span.extensions()
                .get::<SpanTraceId>()
                .map(|trace_id| trace_id.0.clone())
        })
    })
    .flatten()
}

/// The trace id `span` belongs to: the one recorded on it or an ancestor, else its
/// OpenTelemetry trace id when a trace is being recorded.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    recorded_trace_id(span).or_else(|| {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string())
    })
}

/// The trace id of the current call (or background work continuing one), `none` outside any.
pub fn current_trace_id() -> String {
    trace_id_of(&tracing::Span::current()).unwrap_or_else(|| "none".to_owned())
}

/// The trace id of a new call's span: the caller's (from `parent`, its extracted context) when
/// valid, otherwise the one OpenTelemetry started for `span`, otherwise a new one. Recorded on
/// `span` as [`TRACE_ID_FIELD`].
pub fn adopt_trace_id(span: &tracing::Span, parent: &opentelemetry::Context) -> String {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let incoming = parent.span().span_context().clone();
    let trace_id = if incoming.is_valid() {
        incoming.trace_id()
    } else {
        let started = span.context().span().span_context().trace_id();
        if started == TraceId::INVALID {
            new_trace_id()
        } else {
            started
        }
    };
    span.record(TRACE_ID_FIELD, tracing::field::display(trace_id));
    trace_id.to_string()
}

fn new_trace_id() -> TraceId {
    loop {
        let id = TraceId::from(rand::random::<u128>());
        if id != TraceId::INVALID {
            return id;
        }
    }
}

/// A `traceparent` naming `trace_id`, for passing a trace on when OpenTelemetry records none:
/// the span id is new (no span of it is exported), the trace the same.
pub(super) fn traceparent_of(trace_id: &str) -> String {
    format!("00-{trace_id}-{:016x}-01", rand::random::<u64>() | 1)
}

/// JSON log lines with the trace id of their span first, as a top-level `trace_id`, so that
/// every line of a call carries it however deep the span it was logged in.
pub(super) struct TraceIdFirst<F>(pub(super) F);

impl<S, N, F> FormatEvent<S, N> for TraceIdFirst<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The current span as the registry knows it, not as this layer's filter lets it see
        // it: a call's span that RUST_LOG leaves out still names the trace of its lines.
        let Some(trace_id) = recorded_trace_id(&tracing::Span::current()) else {
            return self.0.format_event(context, writer, event);
        };
        let mut line = String::new();
        self.0
            .format_event(context, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let comma = if rest.starts_with('}') { "" } else { "," };
                write!(writer, "{{\"{TRACE_ID_FIELD}\":\"{trace_id}\"{comma}{rest}")
            }
            None => writer.write_str(&line),
        }
    }
}
