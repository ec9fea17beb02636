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
//!
//! The parts: `hosted` (the methods a server hosts and their labels), `layer` and `body` (the
//! tower layer that counts and times each call, and the bodies that count its messages), `codes`
//! (status codes as the series and the reports name them), `pool` (the database pool's series),
//! `imports` (the import progress series) and `endpoint` (`GET /metrics`).

mod body;
mod codes;
mod endpoint;
mod hosted;
mod imports;
mod layer;
mod pool;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

pub use codes::{code_name, grpc_code_label};
pub use endpoint::serve;
pub use hosted::{GrpcType, HostedMethods, hosted_methods};
pub use imports::ImportProgress;
pub use layer::{GrpcMetricsLayer, GrpcMetricsService};
pub use prometheus_client;

use hosted::{CallLabels, MethodLabels};

type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// How long the scrape hooks (database queries) may take before the scrape answers without
/// their fresh values.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Latency buckets, in seconds: Prometheus' default buckets, which go-grpc-middleware's
/// `grpc_server_handling_seconds` uses, so quantiles compare across a fleet of mixed servers.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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

/// The names and help texts of the [`GrpcSeries`], in the order of its fields:
/// go-grpc-middleware's names.
const GRPC_SERIES: [(&str, &str); 5] = [
    ("grpc_server_started", "RPCs started on the server"),
    (
        "grpc_server_handled",
        "RPCs completed on the server, whatever their status code",
    ),
    (
        "grpc_server_msg_received",
        "RPC messages received by the server",
    ),
    ("grpc_server_msg_sent", "RPC messages sent by the server"),
    (
        "grpc_server_handling_seconds",
        "Time from an RPC's request to its status (for a stream, to its end), in seconds",
    ),
];

impl GrpcSeries {
    /// The series, registered in `registry`.
    fn registered_in(registry: &mut Registry) -> Self {
        let [started, handled, received, sent, handling] = GRPC_SERIES;
        let histograms = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        Self {
            started: registered(registry, started, Family::default()),
            handled: registered(registry, handled, Family::default()),
            received: registered(registry, received, Family::default()),
            sent: registered(registry, sent, Family::default()),
            handling: registered(registry, handling, histograms),
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Adds `metric` to `registry` under `name` with its `help` text, and gives it back: the handle
/// through which it is updated.
fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    (name, help): (&str, &str),
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
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
        let mut registry = Registry::default();
        let grpc = GrpcSeries::registered_in(&mut registry);
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                hooks: Mutex::new(Vec::new()),
                grpc,
                imports: OnceLock::new(),
            }),
        }
    }

    /// The registry, locked for one read or one addition.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.registry.lock().expect("metrics registry lock")
    }

    /// Adds a metric (any `prometheus_client` metric or family) under `name`.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry().register(name, help, metric);
    }

    /// Adds `metric` under `name` and gives it back, to be updated through the handle.
    fn registered<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        registered(&mut self.registry(), (name, help), metric)
    }

    /// A new counter under `name` (exposed as `name_total`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.registered(name, help, Counter::default())
    }

    /// A new integer gauge under `name`.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.registered(name, help, Gauge::default())
    }

    /// A new floating-point gauge under `name` (ages, ratios).
    pub fn gauge_f64(&self, name: &str, help: &str) -> Gauge<f64, AtomicU64> {
        self.registered(name, help, Gauge::default())
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

    /// Runs the scrape hooks, then writes every series in the Prometheus text format.
    pub async fn encode(&self) -> String {
        let hooks: Vec<ScrapeHook> = self.inner.hooks.lock().expect("metrics hooks lock").clone();
        let refresh = futures::future::join_all(hooks.iter().map(|hook| hook()));
        if tokio::time::timeout(HOOK_TIMEOUT, refresh).await.is_err() {
            tracing::warn!("metrics scrape hooks are slow; serving the last values");
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry())
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

#[cfg(test)]
mod tests;
