//! The retries of an idempotent call that fails with UNAVAILABLE: the request message is
//! buffered so that it can be sent again, with exponential backoff and jitter between attempts.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::ServiceExt;

use super::BoxError;

/// First wait before a retry; it doubles with each further attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Sends `request` up to `attempts` times while it fails with UNAVAILABLE.
pub(super) async fn call_with_retries(
    channel: Channel,
    request: http::Request<Body>,
    attempts: u32,
) -> Result<http::Response<Body>, BoxError> {
    let (parts, body) = request.into_parts();
    let message = body.collect().await.map_err(Box::new)?.to_bytes();
    let request = http::Request::from_parts(parts, message);
    let policy = RetryUnavailable {
        attempts_left: attempts,
        backoff: FIRST_BACKOFF,
    };
    tower::retry::Retry::new(policy, Replayable(channel))
        .oneshot(request)
        .await
}

/// The retry policy: UNAVAILABLE only, a bounded number of attempts, exponential backoff with
/// jitter.
#[derive(Clone, Debug)]
struct RetryUnavailable {
    attempts_left: u32,
    backoff: Duration,
}

impl tower::retry::Policy<http::Request<Bytes>, http::Response<Body>, BoxError>
    for RetryUnavailable
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut http::Request<Bytes>,
        result: &mut Result<http::Response<Body>, BoxError>,
    ) -> Option<Self::Future> {
        let unavailable = match result {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .is_some_and(|code| Code::from_bytes(code.as_bytes()) == Code::Unavailable),
            Err(error) => error
                .downcast_ref::<Status>()
                .is_some_and(|status| status.code() == Code::Unavailable),
        };
        if !unavailable || self.attempts_left <= 1 {
            return None;
        }
        self.attempts_left -= 1;
        let wait = self.backoff.mul_f64(rand::random::<f64>() * 0.5 + 0.75);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        tracing::debug!(?wait, "UNAVAILABLE; retrying");
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &http::Request<Bytes>) -> Option<http::Request<Bytes>> {
        let mut copy = http::Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// The channel, taking a buffered request message that can be sent again.
#[derive(Clone)]
struct Replayable(Channel);

impl tower::Service<http::Request<Bytes>> for Replayable {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(as_status)
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let response = self
            .0
            .call(request.map(|message| Body::new(http_body_util::Full::new(message))));
        Box::pin(async move { response.await.map_err(as_status) })
    }
}

/// A transport failure as the status the caller sees (UNAVAILABLE for a refused or broken
/// connection), so the retry policy and the generated client read one type.
pub(super) fn as_status(error: impl Into<BoxError>) -> BoxError {
    Box::new(Status::from_error(error.into()))
}
