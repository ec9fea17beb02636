//! The trace id without export, and stored trace contexts.

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
        let none = TraceContextPropagator::new().extract(&HeaderExtractor(&http::HeaderMap::new()));
        let other = tracing::info_span!("grpc", trace_id = tracing::field::Empty);
        let made = adopt_trace_id(&other, &none);
        assert_eq!(made.len(), 32);
        assert_ne!(made, callers);
        assert_eq!(trace_id_of(&other), Some(made));
    });
}

#[test]
fn a_stored_context_round_trips_through_json() {
    let context =
        TraceContext::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
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
