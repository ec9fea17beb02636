//! The tower layer that counts and times every call of a server: started, handled by status
//! code, messages received and sent, and the time until the status was sent.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tonic::Code;

use super::body::ObservedBody;
use super::codes::status_in;
use super::hosted::{HostedMethods, MethodLabels};
use super::{GrpcSeries, Metrics};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Tower layer counting and timing gRPC calls (see the module documentation).
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    pub(super) metrics: Metrics,
    pub(super) methods: Arc<HostedMethods>,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
            methods: self.methods.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] builds.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
    methods: Arc<HostedMethods>,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcMetricsService<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let labels = self.methods.labels(request.uri().path());
        let series = &self.metrics.inner.grpc;
        series.started.get_or_create(&labels).inc();
        let received = series.received.get_or_create_owned(&labels);
        let sent = series.sent.get_or_create_owned(&labels);
        let request = request.map(|body| ObservedBody::request(body, received));
        let series = series.clone();
        // The service made ready by `poll_ready` goes into the future; tonic enters the call's
        // span only while polling it, so the inner layers (authentication, which records the
        // caller on the span) are called from inside the future, where the span is current.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // Dropped unfinished (deadline passed, client gone): counted as Canceled.
            let mut call = Call {
                series,
                labels,
                started: Instant::now(),
                span: tracing::Span::current(),
                finished: false,
            };
            match inner.call(request).await {
                Ok(response) => match status_in(response.headers()) {
                    // A status in the headers is a response without messages.
                    Some(code) => {
                        call.finish(code);
                        Ok(response)
                    }
                    None => Ok(response.map(|body| ObservedBody::response(body, sent, call))),
                },
                Err(error) => {
                    let error = error.into();
                    let code = if error.is::<tower::load_shed::error::Overloaded>() {
                        Code::ResourceExhausted
                    } else {
                        Code::Unknown
                    };
                    call.finish(code);
                    Err(error)
                }
            }
        })
    }
}

/// One call being measured.
pub(super) struct Call {
    series: GrpcSeries,
    labels: MethodLabels,
    started: Instant,
    span: tracing::Span,
    finished: bool,
}

impl Call {
    pub(super) fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.series
            .handled
            .get_or_create(&self.labels.with_code(code))
            .inc();
        self.series
            .handling
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
        self.span.record("rpc.grpc.status_code", code as i32);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}
