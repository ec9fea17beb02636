//! The service-to-service client against real servers on real sockets: retries only of
//! idempotent calls and only on UNAVAILABLE, deadlines, balancing across addresses, the caller
//! key and the trace context on the wire.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster_runtime::client::{Client, ClientConfig, idempotent};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// A Health server that answers the first `failures` calls with `failure`, waits `delay`
/// before answering, and keeps the metadata of every call it saw.
#[derive(Clone, Default)]
struct Scripted {
    failures: usize,
    failure: Option<Code>,
    delay: Duration,
    seen: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>,
}

impl Scripted {
    /// Answers the first `failures` calls with `code`, the others at once.
    fn failing(failures: usize, code: Code) -> Self {
        Self {
            failures,
            failure: Some(code),
            ..Self::default()
        }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn header(&self, call: usize, name: &str) -> Option<String> {
        self.seen.lock().unwrap()[call]
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

#[tonic::async_trait]
impl Health for Scripted {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let call = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(request.metadata().clone());
            seen.len()
        };
        tokio::time::sleep(self.delay).await;
        match self.failure {
            Some(code) if call <= self.failures => Err(Status::new(code, "scripted failure")),
            _ => Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            })),
        }
    }

    type WatchStream =
        Pin<Box<dyn futures::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

async fn serve(service: Scripted) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(service))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

fn client(addrs: &[SocketAddr]) -> HealthClient<Client> {
    let urls: Vec<String> = addrs.iter().map(|addr| format!("http://{addr}")).collect();
    let config = ClientConfig::new("test", &urls.join(","))
        .key(Some("test-key".to_owned()))
        .timeout(Duration::from_secs(5));
    HealthClient::new(Client::new(config).unwrap())
}

fn check() -> Request<HealthCheckRequest> {
    Request::new(HealthCheckRequest::default())
}

#[tokio::test]
async fn an_idempotent_call_is_retried_while_unavailable() {
    let server = Scripted::failing(2, Code::Unavailable);
    let addr = serve(server.clone()).await;
    let response = client(&[addr]).check(idempotent(check())).await;
    assert_eq!(
        response.expect("third attempt answers").into_inner().status,
        ServingStatus::Serving as i32
    );
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts() {
    let server = Scripted::failing(10, Code::Unavailable);
    let addr = serve(server.clone()).await;
    let status = client(&[addr])
        .check(idempotent(check()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.calls(), 3, "three attempts in all by default");
}

#[tokio::test]
async fn a_call_not_marked_idempotent_is_sent_once() {
    let server = Scripted::failing(1, Code::Unavailable);
    let addr = serve(server.clone()).await;
    let status = client(&[addr]).check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn only_unavailable_is_retried() {
    let server = Scripted::failing(1, Code::Internal);
    let addr = serve(server.clone()).await;
    let status = client(&[addr])
        .check(idempotent(check()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn a_call_past_its_deadline_is_deadline_exceeded() {
    let server = Scripted {
        delay: Duration::from_secs(3),
        ..Scripted::default()
    };
    let addr = serve(server.clone()).await;
    let config =
        ClientConfig::new("test", &format!("http://{addr}")).timeout(Duration::from_millis(300));
    let mut health = HealthClient::new(Client::new(config).unwrap());
    let started = Instant::now();
    let status = health.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.header(0, "grpc-timeout").as_deref(), Some("300m"));

    // A deadline the caller sets on its request wins.
    let mut request = check();
    request.set_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let status = health.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_millis(290));
}

#[tokio::test]
async fn an_address_nobody_listens_on_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let status = client(&[port])
        .check(idempotent(check()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn calls_are_balanced_across_the_configured_addresses() {
    let first = Scripted::default();
    let second = Scripted::default();
    let addrs = [serve(first.clone()).await, serve(second.clone()).await];
    let mut health = client(&addrs);
    for _ in 0..40 {
        health.check(check()).await.expect("served");
    }
    assert_eq!(first.calls() + second.calls(), 40);
    assert!(
        first.calls() > 0 && second.calls() > 0,
        "both replicas serve: {} and {}",
        first.calls(),
        second.calls()
    );
}

#[tokio::test]
async fn the_caller_key_and_the_trace_context_travel_with_the_call() {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // This test's runtime runs on this thread only, so the default stays in force for the call.
    let _default = tracing::subscriber::set_default(subscriber);

    let server = Scripted::default();
    let addr = serve(server.clone()).await;
    let span = tracing::info_span!("caller");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    client(&[addr])
        .check(check())
        .instrument(span)
        .await
        .expect("served");

    assert_eq!(
        server.header(0, "authorization").as_deref(),
        Some("Bearer test-key")
    );
    let traceparent = server.header(0, "traceparent").expect("a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent} continues trace {trace_id}"
    );
}
