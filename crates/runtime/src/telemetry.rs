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

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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
            .json()
            .with_current_span(true)
            .with_span_list(false)
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
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
    });
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
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
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

    /// The context of `span`.
    pub fn of(span: &tracing::Span) -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = span.context();
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

    /// Makes `span` a child of this context; does nothing when the context is empty.
    pub fn set_parent_of(&self, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if self.is_empty() {
            return;
        }
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&StoredExtractor(&self.0))
        });
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
