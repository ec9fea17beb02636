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
//!
//! The parts: `propagation` (trace context into and out of headers, and stored with work for
//! later), `trace_id` (the trace id each span and log line carries, with or without export) and
//! `span` (the span of a gRPC call, client and server alike).

mod propagation;
mod span;
mod trace_id;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::format;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::LogFormat;

pub use propagation::{
    HeaderExtractor, HeaderInjector, MetadataInjector, TraceContext, inject_context,
    inject_span_context,
};
pub use trace_id::{TRACE_ID_FIELD, adopt_trace_id, current_trace_id, trace_id_of};

pub(crate) use span::{rpc_name, rpc_span};

use trace_id::{TraceIdFirst, trace_ids};

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

#[cfg(test)]
mod tests;
