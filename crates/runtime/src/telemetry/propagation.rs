//! W3C trace context on the move: read from a call's headers, written onto outgoing calls, and
//! stored with work that a background task does later, so that work joins the caller's trace.

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::{Deserialize, Serialize};

use super::trace_id::{TRACE_ID_FIELD, recorded_trace_id, traceparent_of};

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
