//! The server's own deadline (`request_timeout_seconds`), applied only where it means something.
//!
//! The handler of a call runs until its response starts. For a call whose request is a single
//! message — unary, or server streaming such as WatchImport and the downloads, whose messages
//! then flow in the body untouched — that is the time the server works on it, and the deadline
//! bounds it. For a call whose request is a stream (UploadImport, reflection's bidirectional
//! stream) the handler lasts as long as the client sends: a deadline there cuts off every
//! upload that takes longer, whatever its size limit says. So [`DeadlineLayer`] leaves those
//! calls alone; they are bounded by their own rules (an upload's idle timeout and size limit).
//!
//! Which methods take a request stream is read from the descriptor sets, never from a list of
//! names. A deadline the client sends as `grpc-timeout` is enforced on every call by tonic
//! itself, client streams included.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;

use crate::descriptors::{DeclaredMethod, declared_methods};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `/package.Service/Method` paths of every method in `descriptor_sets` whose request is a
/// stream (client streaming or bidirectional).
pub fn client_streaming_methods(descriptor_sets: &[&[u8]]) -> HashSet<String> {
    declared_methods(descriptor_sets)
        .iter()
        .filter(|method| method.descriptor.client_streaming())
        .map(DeclaredMethod::path)
        .collect()
}

/// Tower layer ending a call that takes longer than `timeout` with DEADLINE_EXCEEDED, except a
/// call whose request is a stream (see the module documentation).
#[derive(Clone)]
pub struct DeadlineLayer {
    timeout: Duration,
    request_streams: Arc<HashSet<String>>,
}

impl DeadlineLayer {
    /// A deadline of `timeout` for every method but the request streams of `descriptor_sets`.
    pub fn new(timeout: Duration, descriptor_sets: &[&[u8]]) -> Self {
        Self {
            timeout,
            request_streams: Arc::new(client_streaming_methods(descriptor_sets)),
        }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            timeout: self.timeout,
            request_streams: self.request_streams.clone(),
        }
    }
}

/// The service [`DeadlineLayer`] builds.
#[derive(Clone)]
pub struct DeadlineService<S> {
    inner: S,
    timeout: Duration,
    request_streams: Arc<HashSet<String>>,
}

impl<S, B> tower::Service<http::Request<B>> for DeadlineService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let bounded = !self.request_streams.contains(request.uri().path());
        let timeout = self.timeout;
        // The service made ready by `poll_ready` is the one called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let call = inner.call(request);
            if !bounded {
                return call.await.map_err(Into::into);
            }
            match tokio::time::timeout(timeout, call).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the server gives one call at most {}s (its request_timeout_seconds); \
                     this one took longer",
                    timeout.as_secs_f64()
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    /// Calls `path` through `layer` on a handler that answers OK after `work`.
    async fn answer(
        layer: &DeadlineLayer,
        work: Duration,
        path: &str,
    ) -> http::Response<tonic::body::Body> {
        let handler = tower::service_fn(move |_request: http::Request<()>| async move {
            tokio::time::sleep(work).await;
            Ok::<_, std::convert::Infallible>(Status::ok("").into_http())
        });
        let mut service = layer.layer(handler);
        service
            .ready()
            .await
            .unwrap()
            .call(http::Request::builder().uri(path).body(()).unwrap())
            .await
            .unwrap()
    }

    fn grpc_status(response: &http::Response<tonic::body::Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
    }

    #[test]
    fn request_streams_come_from_the_descriptors() {
        let methods = client_streaming_methods(&[
            roster_proto::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        ]);
        assert!(methods.contains("/roster.imports.v1.ImportService/UploadImport"));
        // Bidirectional streams take a request stream too.
        assert!(methods.contains("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        for unbounded in [
            "/roster.imports.v1.ImportService/GetImport",
            "/roster.imports.v1.ImportService/CreateImport",
            "/roster.imports.v1.ImportService/WatchImport",
            "/roster.imports.v1.ImportService/DownloadReport",
        ] {
            assert!(!methods.contains(unbounded), "{unbounded}");
        }
    }

    #[tokio::test]
    async fn a_single_request_call_ends_at_the_deadline() {
        let deadline = Duration::from_millis(200);
        let layer = DeadlineLayer::new(deadline, &[roster_proto::FILE_DESCRIPTOR_SET]);
        let get = "/roster.imports.v1.ImportService/GetImport";
        let started = std::time::Instant::now();
        let response = answer(&layer, Duration::from_secs(5), get).await;
        assert_eq!(grpc_status(&response), Some("4"), "DEADLINE_EXCEEDED");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let response = answer(&layer, Duration::from_millis(10), get).await;
        assert_eq!(grpc_status(&response), Some("0"));
    }

    #[tokio::test]
    async fn a_request_stream_outlives_the_deadline() {
        let deadline = Duration::from_millis(100);
        let layer = DeadlineLayer::new(deadline, &[roster_proto::FILE_DESCRIPTOR_SET]);
        let upload = "/roster.imports.v1.ImportService/UploadImport";
        let response = answer(&layer, deadline * 5, upload).await;
        assert_eq!(grpc_status(&response), Some("0"));
    }
}
