//! Logging and tracing: `tracing` with pretty output in development and JSON in production, and
//! OpenTelemetry export over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. W3C trace
//! context is the propagation format, so a trace continues across every gRPC hop: the server
//! bootstrap makes each call's span a child of the caller's context, and the
//! [`client`](crate::client) puts the current context on every outgoing call.
//!
//! Work that leaves the request — an outbox row relayed later, an import applied by a worker —
//! carries the context in its database row as a [`TraceContext`], and the background task makes
//! its span a child of it with [`TraceContext::set_parent_of`]. So one password reset, or one
//! bulk import, is one trace even though its parts run in other tasks, later.
//!
//! The trace id does not depend on export. Each call's span carries it as the field
//! [`TRACE_ID_FIELD`] — the caller's when its `traceparent` is valid, a new one otherwise — and
//! every log line of the call shows it (in the span context of pretty lines, as a top-level
//! `trace_id` of JSON lines), as the message of an INTERNAL error quotes it
//! ([`current_trace_id`]). Without OTLP the context passed on (to the next service, into a
//! stored [`TraceContext`]) still names that trace, so the next service's lines show it too.

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::LogFormat;

/// Keeps the trace exporter alive; flushes pending spans when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {error}");
        }
    }
}

/// Libraries whose info lines only repeat what Roster logs itself, quieted to warnings unless
/// `RUST_LOG` names them: PostgreSQL's notices (`relation "seaql_migrations" already exists,
/// skipping` on every start) and sea-orm-migration's progress lines, which
/// [`db::migrate`](crate::db::migrate) replaces by one line saying what it applied.
const QUIET_TARGETS: [&str; 2] = ["sqlx::postgres::notice", "sea_orm_migration"];

/// The log filter: `RUST_LOG` (default `info`), with [`QUIET_TARGETS`] at `warn` unless it names
/// them.
fn log_filter() -> EnvFilter {
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_new(&directives)
        .ok()
        .filter(|_| !directives.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for target in QUIET_TARGETS {
        let root = target.split("::").next().unwrap_or(target);
        if !directives.contains(root)
            && let Ok(directive) = format!("{target}=warn").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). Safe to call more than
/// once in one process (tests, the embedded suite): later calls keep the first subscriber.
pub fn init(service_name: &str, format: LogFormat) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = log_filter;
    let fmt_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(format::JsonFields::new())
            .event_format(TraceIdFirst(
                format::format()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            ))
            .with_filter(filter())
            .boxed(),
    };

    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => match otlp_provider(service_name) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("OTLP export to {endpoint} is off: {error}");
                None
            }
        },
        _ => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("roster"))
            .with_filter(filter())
    });

    let installed = tracing_subscriber::registry()
        .with(trace_ids())
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .is_ok();
    TelemetryGuard {
        provider: if installed { provider } else { None },
    }
}

fn otlp_provider(
    service_name: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    // The endpoint, headers and timeout come from the standard OTEL_EXPORTER_OTLP_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Reads W3C trace context from HTTP/gRPC headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes W3C trace context into outgoing gRPC metadata.
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Puts the current span's trace context on an outgoing request, for the next service's span
/// to join the same trace.
pub fn inject_context<T>(request: &mut tonic::Request<T>) {
    let span = tracing::Span::current();
    for (key, value) in TraceContext::of(&span).0 {
        MetadataInjector(request.metadata_mut()).set(&key, value);
    }
}

/// Writes W3C trace context into outgoing HTTP/gRPC headers.
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Puts `span`'s trace context on outgoing headers.
pub fn inject_span_context(span: &tracing::Span, headers: &mut http::HeaderMap) {
    for (key, value) in TraceContext::of(span).0 {
        HeaderInjector(headers).set(&key, value);
    }
}

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
fn trace_ids<S: Subscriber + for<'a> LookupSpan<'a>>() -> impl Layer<S> {
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
fn recorded_trace_id(span: &tracing::Span) -> Option<String> {
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
fn traceparent_of(trace_id: &str) -> String {
    format!("00-{trace_id}-{:016x}-01", rand::random::<u64>() | 1)
}

/// JSON log lines with the trace id of their span first, as a top-level `trace_id`, so that
/// every line of a call carries it however deep the span it was logged in.
struct TraceIdFirst<F>(F);

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

/// A trace context saved for later: the W3C `traceparent` (and `tracestate`) of the span that
/// was current when it was taken. It serializes as a small JSON object, to be stored with work
/// that a background task does later (an outbox row, an import job), so that task's spans join
/// the trace of the request that caused the work. Empty when no trace was being recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TraceContext(BTreeMap<String, String>);

impl TraceContext {
    /// The context of the current span.
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// The context of `span`: its OpenTelemetry context when a trace is being recorded,
    /// otherwise a `traceparent` naming the trace id recorded on it or an ancestor (a call's),
    /// so the trace id carries on without export.
    pub fn of(span: &tracing::Span) -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return recorded_trace_id(span)
                .map(|trace_id| Self::from_traceparent(traceparent_of(&trace_id)))
                .unwrap_or_default();
        }
        let mut carrier = std::collections::HashMap::new();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut carrier);
        });
        Self(carrier.into_iter().collect())
    }

    /// True when there is no context to continue (tracing was off when it was taken).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The W3C `traceparent` value, e.g. `00-<trace id>-<span id>-01`.
    pub fn traceparent(&self) -> Option<&str> {
        self.0.get("traceparent").map(String::as_str)
    }

    /// A context from a stored W3C `traceparent` value (for a text column).
    pub fn from_traceparent(traceparent: impl Into<String>) -> Self {
        Self(BTreeMap::from([(
            "traceparent".to_owned(),
            traceparent.into(),
        )]))
    }

    /// Makes `span` a child of this context, and records its trace id on `span` as
    /// [`TRACE_ID_FIELD`] (when `span` declares that field); does nothing when the context is
    /// empty.
    pub fn set_parent_of(&self, span: &tracing::Span) {
        use opentelemetry::propagation::TextMapPropagator as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if self.is_empty() {
            return;
        }
        let parent = TraceContextPropagator::new().extract(&StoredExtractor(&self.0));
        let span_context = parent.span().span_context().clone();
        if span_context.is_valid() {
            span.record(
                TRACE_ID_FIELD,
                tracing::field::display(span_context.trace_id()),
            );
        }
        let _ = span.set_parent(parent);
    }
}

struct StoredExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for StoredExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_export_a_calls_trace_id_is_adopted_quoted_and_passed_on() {
        use opentelemetry::propagation::TextMapPropagator as _;
        let subscriber = tracing_subscriber::registry().with(trace_ids());
        tracing::subscriber::with_default(subscriber, || {
            let callers = "0af7651916cd43dd8448eb211c80319c";
            let headers = http::HeaderMap::from_iter([(
                http::HeaderName::from_static("traceparent"),
                http::HeaderValue::from_str(&format!("00-{callers}-b7ad6b7169203331-01")).unwrap(),
            )]);
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
            let call = tracing::info_span!("grpc", trace_id = tracing::field::Empty);
            assert_eq!(adopt_trace_id(&call, &parent), callers);
            let _entered = call.enter();
            let nested = tracing::info_span!("nested");
            let _nested = nested.enter();
            assert_eq!(current_trace_id(), callers);

            // Stored with work for later, and passed on to the next service.
            let stored = TraceContext::current();
            let traceparent = stored.traceparent().expect("a traceparent");
            assert!(
                traceparent.starts_with(&format!("00-{callers}-")),
                "{traceparent}"
            );
            let mut outgoing = http::HeaderMap::new();
            inject_span_context(&nested, &mut outgoing);
            assert!(outgoing["traceparent"].to_str().unwrap().contains(callers));
            let later = tracing::info_span!("job", trace_id = tracing::field::Empty);
            stored.set_parent_of(&later);
            assert_eq!(trace_id_of(&later).as_deref(), Some(callers));

            // A caller without a (valid) traceparent gets a new trace id.
            let none =
                TraceContextPropagator::new().extract(&HeaderExtractor(&http::HeaderMap::new()));
            let other = tracing::info_span!("grpc", trace_id = tracing::field::Empty);
            let made = adopt_trace_id(&other, &none);
            assert_eq!(made.len(), 32);
            assert_ne!(made, callers);
            assert_eq!(trace_id_of(&other), Some(made));
        });
    }

    #[test]
    fn a_stored_context_round_trips_through_json() {
        let context = TraceContext::from_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        let json = serde_json::to_string(&context).unwrap();
        assert_eq!(
            json,
            r#"{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#
        );
        assert_eq!(
            serde_json::from_str::<TraceContext>(&json).unwrap(),
            context
        );
        assert!(TraceContext::default().is_empty());
    }
}
