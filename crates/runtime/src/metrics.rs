//! Prometheus metrics: one registry per server, exposed as the Prometheus text format on
//! `GET /metrics` (plain HTTP on `metrics_addr`).
//!
//! The gRPC series are those of go-grpc-middleware's Prometheus provider (formerly
//! go-grpc-prometheus), with the same names, labels and label values, so its Grafana dashboards
//! and alert rules work on Roster unchanged:
//!
//! - `grpc_server_started_total{grpc_type, grpc_service, grpc_method}`: calls started.
//! - `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`: calls
//!   finished, by status code. The code is read from the response headers (an error answered at
//!   once) or from the trailers (every streamed response, and every success); a call whose client
//!   went away or whose deadline passed before the status was sent counts as `Canceled`.
//! - `grpc_server_msg_received_total{grpc_type, grpc_service, grpc_method}` and
//!   `grpc_server_msg_sent_total{…}`: messages read from the request and written to the response,
//!   counted from the gRPC message framing of the bodies (a unary call that fails sends none).
//! - `grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}`: a histogram of the time
//!   from the request until the status was sent (for a streaming call, until the stream ended),
//!   in the provider's default buckets.
//! - `roster_db_pool_connections`, `roster_db_pool_idle_connections`,
//!   `roster_db_pool_max_connections`: the database pool's use.
//!
//! `grpc_type` is `unary`, `client_stream`, `server_stream` or `bidi_stream`, read from the
//! method's descriptor; `grpc_service` is the full service name (`roster.identity.v1.ProfileService`);
//! `grpc_code` is the code as grpc-go spells it (`OK`, `NotFound`, `Unavailable`, …). A path the
//! server does not host is counted with `unknown` for type, service and method, so a caller
//! cannot grow the series without bound.
//!
//! A service adds its own series through the [`Metrics`] handle of its
//! [`ServiceSet`](crate::server::ServiceSet): gauges whose value is read from the database when
//! Prometheus scrapes ([`Metrics::on_scrape`]), counters ([`Metrics::counter`],
//! [`Metrics::register`]) and the import progress series ([`Metrics::import_progress`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use sea_orm::{DatabaseConnection, DbBackend};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Code;

use crate::descriptors::declared_methods;

pub use prometheus_client;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// How long the scrape hooks (database queries) may take before the scrape answers without
/// their fresh values.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Latency buckets, in seconds: Prometheus' default buckets, which go-grpc-middleware's
/// `grpc_server_handling_seconds` uses, so quantiles compare across a fleet of mixed servers.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label value of every part of a call to a path the server does not host.
const UNKNOWN: &str = "unknown";

/// One server's metrics registry. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    hooks: Mutex<Vec<ScrapeHook>>,
    grpc: GrpcSeries,
    imports: OnceLock<ImportProgress>,
}

/// The gRPC call series (see the module documentation).
#[derive(Clone)]
struct GrpcSeries {
    started: Family<MethodLabels, Counter>,
    handled: Family<CallLabels, Counter>,
    received: Family<MethodLabels, Counter>,
    sent: Family<MethodLabels, Counter>,
    handling: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

/// The labels naming a method: what every gRPC series but `grpc_server_handled_total` has.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

impl MethodLabels {
    fn unknown() -> Self {
        Self {
            grpc_type: UNKNOWN,
            grpc_service: UNKNOWN.to_owned(),
            grpc_method: UNKNOWN.to_owned(),
        }
    }

    fn with_code(&self, code: Code) -> CallLabels {
        CallLabels {
            grpc_type: self.grpc_type,
            grpc_service: self.grpc_service.clone(),
            grpc_method: self.grpc_method.clone(),
            grpc_code: grpc_code_label(code),
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry holding the gRPC call series.
    pub fn new() -> Self {
        let grpc = GrpcSeries {
            started: Family::default(),
            handled: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            handling: Family::new_with_constructor(latency_histogram),
        };
        let mut registry = Registry::default();
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            grpc.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status code",
            grpc.handled.clone(),
        );
        registry.register(
            "grpc_server_msg_received",
            "RPC messages received by the server",
            grpc.received.clone(),
        );
        registry.register(
            "grpc_server_msg_sent",
            "RPC messages sent by the server",
            grpc.sent.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from an RPC's request to its status (for a stream, to its end), in seconds",
            grpc.handling.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                hooks: Mutex::new(Vec::new()),
                grpc,
                imports: OnceLock::new(),
            }),
        }
    }

    /// Adds a metric (any `prometheus_client` metric or family) under `name`.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.inner
            .registry
            .lock()
            .expect("metrics registry lock")
            .register(name, help, metric);
    }

    /// A new counter under `name` (exposed as `name_total`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.register(name, help, counter.clone());
        counter
    }

    /// A new integer gauge under `name`.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.register(name, help, gauge.clone());
        gauge
    }

    /// A new floating-point gauge under `name` (ages, ratios).
    pub fn gauge_f64(&self, name: &str, help: &str) -> Gauge<f64, AtomicU64> {
        let gauge = Gauge::<f64, AtomicU64>::default();
        self.register(name, help, gauge.clone());
        gauge
    }
    /// Runs `hook` before every scrape, so gauges read from the database (queue depth, jobs per
    /// state) are fresh when Prometheus reads them. A hook slower than a few seconds is left
    /// behind and its gauges keep their last values.
    pub fn on_scrape<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: ScrapeHook = Arc::new(move || Box::pin(hook()));
        self.inner
            .hooks
            .lock()
            .expect("metrics hooks lock")
            .push(hook);
    }

    /// The import progress series (registered on first use): what bulk-import reports as it
    /// validates and applies rows.
    pub fn import_progress(&self) -> ImportProgress {
        self.inner
            .imports
            .get_or_init(|| {
                let progress = ImportProgress {
                    rows: Family::default(),
                    jobs: Family::default(),
                };
                self.register(
                    "roster_import_rows_processed",
                    "Import rows processed, by the state they reached",
                    progress.rows.clone(),
                );
                self.register(
                    "roster_imports",
                    "Import jobs, by state",
                    progress.jobs.clone(),
                );
                progress
            })
            .clone()
    }

    /// Reports the pool of `database`: open, idle and maximum connections.
    pub fn watch_pool(&self, database: &DatabaseConnection) {
        let open = self.gauge(
            "roster_db_pool_connections",
            "Connections open in the database pool (in use and idle)",
        );
        let idle = self.gauge(
            "roster_db_pool_idle_connections",
            "Idle connections in the database pool",
        );
        let max = self.gauge(
            "roster_db_pool_max_connections",
            "Largest number of connections the database pool opens",
        );
        let database = database.clone();
        self.on_scrape(move || {
            if let Some(pool) = pool_use(&database) {
                open.set(i64::from(pool.open));
                idle.set(pool.idle as i64);
                max.set(i64::from(pool.max));
            }
            std::future::ready(())
        });
    }

    /// Runs the scrape hooks, then writes every series in the Prometheus text format.
    pub async fn encode(&self) -> String {
        let hooks: Vec<ScrapeHook> = self.inner.hooks.lock().expect("metrics hooks lock").clone();
        let refresh = futures::future::join_all(hooks.iter().map(|hook| hook()));
        if tokio::time::timeout(HOOK_TIMEOUT, refresh).await.is_err() {
            tracing::warn!("metrics scrape hooks are slow; serving the last values");
        }
        let mut text = String::new();
        let registry = self.inner.registry.lock().expect("metrics registry lock");
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The tower layer that counts and times the calls of a server hosting `methods`.
    pub fn layer(&self, methods: HostedMethods) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
            methods: Arc::new(methods),
        }
    }
}

/// Import progress, for bulk-import to report: rows processed per state, and jobs per state.
#[derive(Clone, Debug)]
pub struct ImportProgress {
    rows: Family<[(&'static str, String); 1], Counter>,
    jobs: Family<[(&'static str, String); 1], Gauge>,
}

impl ImportProgress {
    /// Counts `rows` more rows that reached `state` — bulk-import reports `validated` (staged
    /// with their preview), `applied` and `failed` (written, or refused, by identity):
    /// `roster_import_rows_processed_total{state}`.
    pub fn rows_processed(&self, state: &str, rows: u64) {
        self.rows
            .get_or_create(&[("state", state.to_owned())])
            .inc_by(rows);
    }

    /// Sets how many jobs are in `state` now: `roster_imports{state}` (from an
    /// [`Metrics::on_scrape`] hook that counts them in the database).
    pub fn set_jobs(&self, state: &str, jobs: i64) {
        self.jobs
            .get_or_create(&[("state", state.to_owned())])
            .set(jobs);
    }
}

struct PoolUse {
    open: u32,
    idle: usize,
    max: u32,
}

fn pool_use(database: &DatabaseConnection) -> Option<PoolUse> {
    match database.get_database_backend() {
        DbBackend::Postgres => {
            let pool = database.get_postgres_connection_pool();
            Some(PoolUse {
                open: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            })
        }
        DbBackend::Sqlite => {
            let pool = database.get_sqlite_connection_pool();
            Some(PoolUse {
                open: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            })
        }
        _ => None,
    }
}

/// How a method streams, as go-grpc-middleware's `grpc_type` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcType {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    /// The type of a method whose request (`client_streaming`) and response
    /// (`server_streaming`) are, or are not, streams.
    pub fn of(client_streaming: bool, server_streaming: bool) -> Self {
        match (client_streaming, server_streaming) {
            (false, false) => Self::Unary,
            (true, false) => Self::ClientStream,
            (false, true) => Self::ServerStream,
            (true, true) => Self::BidiStream,
        }
    }

    /// The label value: `unary`, `client_stream`, `server_stream`, `bidi_stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ClientStream => "client_stream",
            Self::ServerStream => "server_stream",
            Self::BidiStream => "bidi_stream",
        }
    }
}

/// The methods a server hosts, by `/package.Service/Method` path, with their streaming type:
/// what the call series label by name. Any other path is counted as `unknown`.
#[derive(Clone, Debug, Default)]
pub struct HostedMethods {
    methods: HashMap<String, (GrpcType, MethodLabels)>,
}

impl HostedMethods {
    /// Whether `path` is a hosted method.
    pub fn contains(&self, path: &str) -> bool {
        self.methods.contains_key(path)
    }

    /// The streaming type of the hosted method at `path`.
    pub fn grpc_type(&self, path: &str) -> Option<GrpcType> {
        self.methods.get(path).map(|(grpc_type, _)| *grpc_type)
    }

    fn labels(&self, path: &str) -> MethodLabels {
        self.methods
            .get(path)
            .map_or_else(MethodLabels::unknown, |(_, labels)| labels.clone())
    }
}

/// The methods of `services` found in the encoded file descriptor sets, with the streaming type
/// their descriptors declare.
pub fn hosted_methods(descriptor_sets: &[&[u8]], services: &[&str]) -> HostedMethods {
    let services: HashSet<&str> = services.iter().copied().collect();
    let methods = declared_methods(descriptor_sets)
        .into_iter()
        .filter(|method| services.contains(method.service.as_str()))
        .map(|method| {
            let grpc_type = GrpcType::of(
                method.descriptor.client_streaming(),
                method.descriptor.server_streaming(),
            );
            let labels = MethodLabels {
                grpc_type: grpc_type.as_str(),
                grpc_service: method.service.clone(),
                grpc_method: method.descriptor.name().to_owned(),
            };
            (method.path(), (grpc_type, labels))
        })
        .collect();
    HostedMethods { methods }
}

/// Serves `GET /metrics` on `addr` until `stop` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|| async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )],
                    metrics.encode().await,
                )
            }),
        )
        .into_make_service();
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    Ok((local_addr, task))
}

/// Tower layer counting and timing gRPC calls (see the module documentation).
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    methods: Arc<HostedMethods>,
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
        let request = request.map(|body| {
            tonic::body::Body::new(CountedRequest {
                inner: body,
                messages: MessageCounter::default(),
                received,
            })
        });
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
                    None => Ok(response.map(|body| {
                        tonic::body::Body::new(ObservedBody {
                            inner: body,
                            messages: MessageCounter::default(),
                            sent,
                            call: Some(call),
                        })
                    })),
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
struct Call {
    series: GrpcSeries,
    labels: MethodLabels,
    started: Instant,
    span: tracing::Span,
    finished: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
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

/// Counts the messages of a gRPC body from its framing: each message is a compression flag, a
/// four-byte big-endian length and that many bytes, however the body's frames split them.
#[derive(Debug, Default)]
struct MessageCounter {
    /// How many bytes of the current message's five-byte prefix were read.
    prefix_read: usize,
    /// The length bytes of the current message's prefix.
    length: [u8; 4],
    /// Bytes of the current message's payload still to come (after a complete prefix).
    payload_left: usize,
}

impl MessageCounter {
    /// Reads `data`, the next bytes of the body; returns how many messages it completed.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut completed = 0;
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skipped = self.payload_left.min(data.len());
                self.payload_left -= skipped;
                data = &data[skipped..];
                if self.payload_left == 0 {
                    completed += 1;
                }
                continue;
            }
            // The compression flag is byte 0 of the prefix; the length follows.
            if self.prefix_read > 0 {
                self.length[self.prefix_read - 1] = data[0];
            }
            self.prefix_read += 1;
            data = &data[1..];
            if self.prefix_read == 5 {
                self.prefix_read = 0;
                self.payload_left = u32::from_be_bytes(self.length) as usize;
                if self.payload_left == 0 {
                    completed += 1;
                }
            }
        }
        completed
    }
}

/// A request body that counts the messages the server reads from it.
struct CountedRequest {
    inner: tonic::body::Body,
    messages: MessageCounter,
    received: Counter,
}

impl http_body::Body for CountedRequest {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let completed = this.messages.feed(data);
            if completed > 0 {
                this.received.inc_by(completed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts the messages sent and reports the status in its trailers when
/// it ends.
struct ObservedBody {
    inner: tonic::body::Body,
    messages: MessageCounter,
    sent: Counter,
    call: Option<Call>,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let completed = this.messages.feed(data);
                    if completed > 0 {
                        this.sent.inc_by(completed);
                    }
                }
                frame
                    .trailers_ref()
                    .map(|trailers| status_in(trailers).unwrap_or(Code::Unknown))
            }
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            // A gRPC response that ends without a status is a broken one.
            Poll::Ready(None) => Some(Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(mut call) = this.call.take()
        {
            call.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in headers or trailers.
fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    Some(Code::from_bytes(value.as_bytes()))
}

/// The name of a status code in the `grpc_code` label: as grpc-go's `codes.Code` prints it,
/// which go-grpc-middleware's series and the alert rules written for them use (`OK`,
/// `Canceled`, `InvalidArgument`, `Unavailable`, …).
pub fn grpc_code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The canonical upper-case name of a status code, as the gRPC specification writes it
/// (`NOT_FOUND`): the spelling of bulk-import's reports and of log lines, not of the metrics.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn import_progress_and_scrape_hooks_reach_the_text() {
        let metrics = Metrics::new();
        let progress = metrics.import_progress();
        progress.rows_processed("created", 40);
        metrics.import_progress().rows_processed("created", 2);
        progress.rows_processed("error", 1);
        let depth = metrics.gauge("roster_test_depth", "A gauge refreshed on scrape");
        metrics.on_scrape(move || {
            depth.set(7);
            std::future::ready(())
        });
        let text = metrics.encode().await;
        assert!(
            text.contains("roster_import_rows_processed_total{state=\"created\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("roster_import_rows_processed_total{state=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains("roster_test_depth 7"), "{text}");
    }

    #[test]
    fn hosted_methods_and_their_streaming_type_come_from_the_descriptors() {
        let methods = hosted_methods(
            &[roster_proto::FILE_DESCRIPTOR_SET],
            &[
                "roster.notification.v1.NotificationService",
                "roster.imports.v1.ImportService",
            ],
        );
        assert!(methods.contains("/roster.notification.v1.NotificationService/SendEmail"));
        assert!(!methods.contains("/roster.identity.v1.ProfileService/GetProfile"));
        for (method, grpc_type) in [
            ("SubmitImport", GrpcType::Unary),
            ("UploadImport", GrpcType::ClientStream),
            ("DownloadTemplate", GrpcType::ServerStream),
            ("WatchImport", GrpcType::ServerStream),
        ] {
            assert_eq!(
                methods.grpc_type(&format!("/roster.imports.v1.ImportService/{method}")),
                Some(grpc_type),
                "{method}"
            );
        }
        let reflection = hosted_methods(
            &[tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET],
            &["grpc.reflection.v1.ServerReflection"],
        );
        assert_eq!(
            reflection.grpc_type("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some(GrpcType::BidiStream)
        );
    }

    #[test]
    fn unhosted_paths_share_one_label_set() {
        let methods = hosted_methods(
            &[roster_proto::FILE_DESCRIPTOR_SET],
            &["roster.notification.v1.NotificationService"],
        );
        for path in [
            "/evil.Service/Anything",
            "/roster.identity.v1.ProfileService/GetProfile",
            "/",
            "",
        ] {
            assert_eq!(methods.labels(path), MethodLabels::unknown(), "{path}");
        }
    }

    /// `count` messages of `size` bytes each, framed as gRPC frames them.
    fn framed(sizes: &[usize]) -> Vec<u8> {
        let mut body = Vec::new();
        for size in sizes {
            body.push(0);
            body.extend_from_slice(&u32::try_from(*size).unwrap().to_be_bytes());
            body.extend(std::iter::repeat_n(7u8, *size));
        }
        body
    }

    #[test]
    fn messages_are_counted_however_the_frames_split_them() {
        let body = framed(&[0, 3, 300, 1, 70_000]);
        for split in [1, 2, 4, 5, 6, 7, 64, 1000, body.len()] {
            let mut counter = MessageCounter::default();
            let total: u64 = body.chunks(split).map(|chunk| counter.feed(chunk)).sum();
            assert_eq!(total, 5, "split every {split} bytes");
        }
        let mut counter = MessageCounter::default();
        assert_eq!(
            counter.feed(&body[..body.len() - 1]),
            4,
            "the last one is not complete"
        );
        assert_eq!(counter.feed(&body[body.len() - 1..]), 1);
    }

    #[test]
    fn codes_are_labelled_as_grpc_go_prints_them() {
        assert_eq!(grpc_code_label(Code::Ok), "OK");
        assert_eq!(grpc_code_label(Code::Cancelled), "Canceled");
        assert_eq!(grpc_code_label(Code::Unavailable), "Unavailable");
        assert_eq!(grpc_code_label(Code::DeadlineExceeded), "DeadlineExceeded");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }
}
