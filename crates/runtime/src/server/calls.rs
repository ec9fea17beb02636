//! What the server does around every call: the span it runs in, the hosted methods its metrics
//! label by name, and the status of a request message over the size limit.

/// The methods a server hosting `names` answers, besides health and reflection, with their
/// streaming types: what the call metrics label by name.
pub(super) fn hosted_methods(names: &[&'static str]) -> crate::metrics::HostedMethods {
    let mut hosted = names.to_vec();
    hosted.extend([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    crate::metrics::hosted_methods(&DESCRIPTOR_SETS, &hosted)
}

/// The descriptors of every method a server may host: Roster's, health's and reflection's.
pub(super) const DESCRIPTOR_SETS: [&[u8]; 4] = [
    roster_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// tonic reports a request message over the size limit as OUT_OF_RANGE; the gRPC status-code
/// specification (and every other gRPC implementation) says RESOURCE_EXHAUSTED. Roster's own
/// handlers never answer OUT_OF_RANGE, so the rewrite touches only tonic's decode refusal.
pub(super) fn message_limit_is_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|status| status == "11");
    let too_large = headers.get("grpc-message").is_some_and(|message| {
        let message = String::from_utf8_lossy(message.as_bytes());
        message.contains("too large") || message.contains("too%20large")
    });
    if out_of_range && too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// The span of one call, named `package.Service/Method` as OpenTelemetry's RPC conventions
/// have it: the request id (the caller's `x-request-id` or a new one), the trace id (the
/// caller's W3C `traceparent`'s when valid, else a new one; with or without trace export), the
/// caller's name once authenticated, the status code once answered, and the caller's trace
/// context as parent.
pub(super) fn call_span(request: &http::Request<()>) -> tracing::Span {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = crate::telemetry::rpc_span!(
        "grpc",
        "server",
        request.uri().path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        caller = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    // Extracted with the W3C propagator itself, not the global one, so the caller's trace id
    // is adopted even where telemetry was never installed.
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&crate::telemetry::HeaderExtractor(request.headers()));
    let _ = span.set_parent(parent.clone());
    crate::telemetry::adopt_trace_id(&span, &parent);
    span
}
