//! The span of one gRPC call, on either side of it: named and described as OpenTelemetry's RPC
//! conventions have it, so that a call's client span and server span read alike.

/// The name, service and method of the call at `path`: `/package.Service/Method` is the call
/// `package.Service/Method` of the service `package.Service` and the method `Method`.
pub(crate) fn rpc_name(path: &str) -> (&str, &str, &str) {
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    (name, service, method)
}

/// An info span `$span` of the call at `$path` on its `$kind` side (`"client"` or `"server"`):
/// named after the call, with OpenTelemetry's RPC fields, then the fields given after them.
macro_rules! rpc_span {
    ($span:literal, $kind:literal, $path:expr, $($fields:tt)*) => {{
        let (name, service, method) = $crate::telemetry::rpc_name($path);
        ::tracing::info_span!(
            $span,
            otel.name = %name,
            otel.kind = $kind,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            $($fields)*
        )
    }};
}

pub(crate) use rpc_span;
