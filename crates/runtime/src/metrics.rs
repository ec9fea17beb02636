//! Prometheus metrics: one registry per server, exposed as the Prometheus text format on
//! `GET /metrics` (plain HTTP on `metrics_addr`).
//!
//! Every server has, from the bootstrap:
//!
//! - `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}`: finished calls by
//!   method and status code. The code is read from the response headers (an error answered at
//!   once) or from the trailers (every streamed response, and every success); a call whose
//!   client went away or whose deadline passed counts as `CANCELLED`.
//! - `grpc_server_handling_seconds{grpc_service, grpc_method}`: latency histogram, from the
//!   request until the status was sent (for a streaming response, until its end).
//! - `roster_db_pool_connections`, `roster_db_pool_idle_connections`,
//!   `roster_db_pool_max_connections`: the database pool's use.
//!
//! Methods that the server does not host are counted as `unknown`, so a caller cannot grow the
//! series without bound. A service adds its own series through the [`Metrics`] handle of its
//! [`ServiceSet`](crate::server::ServiceSet): gauges whose value is read from the database when
//! Prometheus scrapes ([`Metrics::on_scrape`]), and the import progress counters
//! ([`Metrics::import_progress`]).

use std::collections::HashSet;
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

pub use prometheus_client;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// How long the scrape hooks (database queries) may take before the scrape answers without
/// their fresh values.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Latency buckets, in seconds: from a cache hit to a slow batch call.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One server's metrics registry. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    hooks: Mutex<Vec<ScrapeHook>>,
    calls: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    imports: OnceLock<ImportProgress>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
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
        let calls = Family::<CallLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let mut registry = Registry::default();
        registry.register(
            "grpc_server_handled",
            "gRPC calls finished, by method and status code",
            calls.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a gRPC call's request to its status, by method",
            latency.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                hooks: Mutex::new(Vec::new()),
                calls,
                latency,
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

    /// The tower layer that counts and times the calls of a server hosting `methods`
    /// (`/package.Service/Method` paths).
    pub fn layer(&self, methods: HashSet<String>) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
            methods: Arc::new(methods),
        }
    }

    fn record(&self, service: &str, method: &str, code: Code, elapsed: Duration) {
        self.inner
            .calls
            .get_or_create(&CallLabels {
                grpc_service: service.to_owned(),
                grpc_method: method.to_owned(),
                grpc_code: code_name(code),
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&MethodLabels {
                grpc_service: service.to_owned(),
                grpc_method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
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

/// The `/package.Service/Method` paths of `services` found in the encoded file descriptor sets.
pub fn hosted_methods(descriptor_sets: &[&[u8]], services: &[&str]) -> HashSet<String> {
    use prost::Message;
    let services: HashSet<&str> = services.iter().copied().collect();
    let mut methods = HashSet::new();
    for encoded in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                let full = if package.is_empty() {
                    service.name().to_owned()
                } else {
                    format!("{package}.{}", service.name())
                };
                if !services.contains(full.as_str()) {
                    continue;
                }
                for method in &service.method {
                    methods.insert(format!("/{full}/{}", method.name()));
                }
            }
        }
    }
    methods
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
    methods: Arc<HashSet<String>>,
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
    methods: Arc<HashSet<String>>,
}

impl<S, B> tower::Service<http::Request<B>> for GrpcMetricsService<S>
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
        let path = request.uri().path();
        let (service, method) = if self.methods.contains(path) {
            let (service, method) = path[1..].split_once('/').unwrap_or((path, ""));
            (service.to_owned(), method.to_owned())
        } else {
            ("unknown".to_owned(), "unknown".to_owned())
        };
        let metrics = self.metrics.clone();
        // The service made ready by `poll_ready` goes into the future; tonic enters the call's
        // span only while polling it, so the inner layers (authentication, which records the
        // caller on the span) are called from inside the future, where the span is current.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // Dropped unfinished (deadline passed, client gone): counted as CANCELLED.
            let mut call = Call {
                metrics,
                service,
                method,
                started: Instant::now(),
                span: tracing::Span::current(),
                finished: false,
            };
            match inner.call(request).await {
                Ok(response) => match status_in(response.headers()) {
                    Some(code) => {
                        call.finish(code);
                        Ok(response)
                    }
                    None => Ok(response.map(|body| {
                        tonic::body::Body::new(ObservedBody {
                            inner: body,
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
    metrics: Metrics,
    service: String,
    method: String,
    started: Instant,
    span: tracing::Span,
    finished: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.metrics
            .record(&self.service, &self.method, code, self.started.elapsed());
        self.span.record("rpc.grpc.status_code", code as i32);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response body that reports the status in its trailers when it ends.
struct ObservedBody {
    inner: tonic::body::Body,
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
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|trailers| status_in(trailers).unwrap_or(Code::Unknown)),
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

/// The canonical upper-case name of a status code, as other gRPC implementations label it.
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
    fn hosted_methods_come_from_the_descriptors() {
        let methods = hosted_methods(
            &[roster_proto::FILE_DESCRIPTOR_SET],
            &["roster.notification.v1.NotificationService"],
        );
        assert!(methods.contains("/roster.notification.v1.NotificationService/SendEmail"));
        assert!(!methods.iter().any(|method| method.contains("identity")));
    }
}
