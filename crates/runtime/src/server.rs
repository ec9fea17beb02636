//! The server bootstrap every Roster service runs.
//!
//! It reads top to bottom: bind → TLS → health and reflection → metrics endpoint → plaintext
//! health listener → tower layers (tracing span with a request id and the caller's trace
//! context, call metrics, the server's deadline (not on request streams), load shedding over a
//! global concurrency limit, authentication) → serve until the shutdown signal → drain.
//! On shutdown, health turns NOT_SERVING first, the server stops accepting after the configured
//! drain delay, in-flight calls get the grace period to finish.
//!
//! Health is SERVING only while the server can work: its database answers and its schema holds
//! every migration of this binary. A server started on a database that `roster migrate` has not
//! migrated yet (`migrate_on_start = false`) is NOT_SERVING, so Kubernetes routes no call to it,
//! and turns SERVING on its own once the migrations are in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument;

use crate::auth::{AuthLayer, KeyRing};
use crate::db::ServiceDatabase;
use crate::deadline::DeadlineLayer;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::settings::CommonSettings;
use crate::shutdown::Shutdown;

/// Limits and timings of one gRPC server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen_addr: SocketAddr,
    pub request_timeout: Duration,
    pub concurrency_limit: usize,
    pub max_header_list_bytes: u32,
    /// Time between health turning NOT_SERVING and the listener closing, for load balancers.
    pub drain_delay: Duration,
    /// Time in-flight calls get to finish once the listener is closed.
    pub shutdown_grace: Duration,
    pub db_health_interval: Duration,
    /// Calls per second each caller key may make on average (0: no limit).
    pub rate_limit_per_second: u32,
    /// Calls a caller key may make at once before the average applies.
    pub rate_limit_burst: u32,
    /// Where `GET /metrics` is served; `None` turns the endpoint off.
    pub metrics_addr: Option<SocketAddr>,
    /// Where a plaintext listener serves `grpc.health.v1.Health` alone, for kubelet probes when
    /// the main port speaks TLS; `None` turns it off.
    pub health_addr: Option<SocketAddr>,
    /// TLS (and mutual TLS) of the gRPC listener; `None` serves plain HTTP/2.
    pub tls: Option<ServerTls>,
}

/// The PEM files of a TLS server.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// Reads the files into tonic's TLS configuration (rustls, ring provider).
    pub fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .map_err(|error| anyhow::anyhow!("cannot read {what} {}: {error}", path.display()))
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&self.cert_file, "tls_cert_file")?,
            read(&self.key_file, "tls_key_file")?,
        ));
        if let Some(ca) = &self.client_ca_file {
            config = config
                .client_ca_root(Certificate::from_pem(read(ca, "tls_client_ca_file")?))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}

impl From<&CommonSettings> for ServerConfig {
    fn from(settings: &CommonSettings) -> Self {
        Self {
            listen_addr: settings.listen_addr,
            request_timeout: settings.request_timeout(),
            concurrency_limit: settings.concurrency_limit,
            max_header_list_bytes: settings.max_header_list_bytes,
            drain_delay: Duration::from_secs(settings.drain_seconds),
            shutdown_grace: settings.shutdown_grace(),
            db_health_interval: settings.db_health_interval(),
            rate_limit_per_second: settings.rate_limit_per_second,
            rate_limit_burst: settings.rate_limit_burst,
            metrics_addr: settings.metrics_addr,
            health_addr: settings.health_addr,
            tls: match (&settings.tls_cert_file, &settings.tls_key_file) {
                (Some(cert_file), Some(key_file)) => Some(ServerTls {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                    client_ca_file: settings.tls_client_ca_file.clone(),
                }),
                _ => None,
            },
        }
    }
}

/// The gRPC services one server hosts, with their names for per-service health, and the
/// server's metrics registry.
#[derive(Default)]
pub struct ServiceSet {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    metrics: Metrics,
}

impl ServiceSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The metrics registry this server exposes on `/metrics`, for the service's own series
    /// (gauges refreshed on scrape, import progress).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds a generated tonic server (already configured with message limits and compression).
    pub fn add<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Error = std::convert::Infallible,
                Response = http::Response<tonic::body::Body>,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// The fully qualified names of the hosted services.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// A server that is accepting calls.
pub struct RunningServer {
    /// The bound address (useful when the configured port was 0).
    pub local_addr: SocketAddr,
    /// The health reporter, for tests and for services that flip their own status.
    pub health: HealthReporter,
    /// Where `GET /metrics` answers, when the endpoint is on.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the plaintext health listener answers, when it is on.
    pub health_addr: Option<SocketAddr>,
    /// The server's metrics registry.
    pub metrics: Metrics,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics_task: Option<JoinHandle<()>>,
    health_task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl RunningServer {
    /// Waits until the server has stopped (after the shutdown signal and the drain).
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.task.await??;
        if let Some(task) = self.health_task {
            task.await??;
        }
        if let Some(task) = self.metrics_task {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Binds `config.listen_addr` and serves `services` until `shutdown` fires.
///
/// When `database` is given, it drives the health status, checked before the server reports
/// itself and then every `db_health_interval`: NOT_SERVING while a ping fails or while the
/// schema lacks some of the service's migrations, SERVING once both are right.
pub async fn serve(
    config: ServerConfig,
    services: ServiceSet,
    keys: Arc<KeyRing>,
    database: Option<ServiceDatabase>,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot bind {}: {error}", config.listen_addr))?;
    let local_addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    let names: Vec<&'static str> = services.names.clone();
    let metrics = services.metrics;
    match database {
        Some(database) => {
            metrics.watch_pool(database.connection());
            let mut watch = DatabaseWatch::new(database, health.clone(), names.clone());
            watch.check(config.db_health_interval, &shutdown).await;
            tokio::spawn(watch.run(config.db_health_interval, shutdown.clone()));
        }
        None => set_status(&health, &names, ServingStatus::Serving).await,
    }

    // Reflection lists only what this server hosts, though it can describe every Roster type
    // and the google.rpc error details (ErrorInfo, BadRequest, …), so that grpcurl prints a
    // refusal's details as JSON instead of raw bytes.
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(roster_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in &names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    // The health listener's probes must see what the main port's clients see: both serve the one
    // reporter.
    let health_only = health_service.clone();
    let mut routes = services.routes;
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let (metrics_addr, metrics_task) = match config.metrics_addr {
        Some(addr) => {
            let stop = drained(shutdown.clone(), config.drain_delay);
            // Metrics are for watching the service, never a reason for it not to serve: an
            // address already in use is logged and the service runs without the endpoint.
            match crate::metrics::serve(addr, metrics.clone(), stop).await {
                Ok((bound, task)) => (Some(bound), Some(task)),
                Err(error) => {
                    tracing::error!(%addr, %error, "metrics endpoint is off: cannot bind");
                    (None, None)
                }
            }
        }
        None => (None, None),
    };

    // Unlike metrics, the health listener is what the probes ask: a pod that cannot serve it would
    // be restarted in a loop, so a failed bind stops the start with the reason.
    let (health_addr, health_task) = match config.health_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|error| anyhow::anyhow!("cannot bind health_addr {addr}: {error}"))?;
            let bound = listener.local_addr()?;
            let stop = drained(shutdown.clone(), config.drain_delay);
            // No TLS, no authentication, no reflection, none of the service RPCs: any other path
            // is UNIMPLEMENTED.
            let server = tonic::transport::Server::builder()
                .timeout(config.request_timeout)
                .http2_max_header_list_size(config.max_header_list_bytes)
                .add_service(health_only)
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop,
                );
            let task = tokio::spawn(
                until_grace_ends(server, shutdown.clone(), config.shutdown_grace)
                    .instrument(tracing::info_span!("health", addr = %bound)),
            );
            (Some(bound), Some(task))
        }
        None => (None, None),
    };

    let layers = tower::ServiceBuilder::new()
        .layer(metrics.layer(hosted_methods(&names)))
        // The server's deadline, for every call but those whose request is a stream (uploads);
        // a deadline the client sends is enforced by tonic on every call.
        .layer(DeadlineLayer::new(config.request_timeout, &DESCRIPTOR_SETS))
        .map_response(message_limit_is_resource_exhausted)
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            config.concurrency_limit,
        ))
        .layer(AuthLayer::new(
            keys,
            Arc::new(RateLimiter::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
        ));

    let signal = {
        let health = health.clone();
        let names = names.clone();
        let shutdown = shutdown.clone();
        let drain_delay = config.drain_delay;
        async move {
            shutdown.wait().await;
            set_status(&health, &names, ServingStatus::NotServing).await;
            tracing::info!(?drain_delay, "health is NOT_SERVING; draining");
            tokio::time::sleep(drain_delay).await;
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .http2_max_header_list_size(config.max_header_list_bytes)
        .trace_fn(call_span)
        .layer(layers)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, signal);

    let task = tokio::spawn(
        until_grace_ends(server, shutdown, config.shutdown_grace)
            .instrument(tracing::info_span!("server", addr = %local_addr)),
    );
    tracing::info!(
        addr = %local_addr,
        tls = config.tls.is_some(),
        mutual_tls = config.tls.as_ref().is_some_and(|tls| tls.client_ca_file.is_some()),
        metrics = ?metrics_addr,
        health = ?health_addr,
        services = ?names,
        "serving"
    );
    Ok(RunningServer {
        local_addr,
        health,
        metrics_addr,
        health_addr,
        metrics,
        task,
        metrics_task,
        health_task,
    })
}

/// Resolves once the shutdown signal has fired and the drain delay after it has passed, as the
/// main port stops taking calls: when the metrics and health listeners close.
async fn drained(shutdown: Shutdown, drain_delay: Duration) {
    shutdown.wait().await;
    tokio::time::sleep(drain_delay).await;
}

/// Runs `server` until it has drained, or until the grace period after the shutdown signal is
/// over: calls still running then (a health `Watch` stream, a slow call) are cut off.
async fn until_grace_ends(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    shutdown: Shutdown,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async { shutdown.wait().await; tokio::time::sleep(grace).await; } => {
            // The drain delay is part of the wait above.
            tokio::time::timeout(Duration::from_millis(50), &mut server)
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(?grace, "grace period over; abandoning in-flight calls");
                    Ok(())
                })
        }
    }
}

/// The methods a server hosting `names` answers, besides health and reflection, with their
/// streaming types: what the call metrics label by name.
fn hosted_methods(names: &[&'static str]) -> crate::metrics::HostedMethods {
    let mut hosted = names.to_vec();
    hosted.extend([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    crate::metrics::hosted_methods(&DESCRIPTOR_SETS, &hosted)
}

/// The descriptors of every method a server may host: Roster's, health's and reflection's.
const DESCRIPTOR_SETS: [&[u8]; 4] = [
    roster_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// tonic reports a request message over the size limit as OUT_OF_RANGE; the gRPC status-code
/// specification (and every other gRPC implementation) says RESOURCE_EXHAUSTED. Roster's own
/// handlers never answer OUT_OF_RANGE, so the rewrite touches only tonic's decode refusal.
fn message_limit_is_resource_exhausted(
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

async fn set_status(health: &HealthReporter, names: &[&str], status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in names {
        health.set_service_status(*name, status).await;
    }
}

/// What the health status follows: whether the database answers, and whether its schema holds
/// every migration of this binary.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Readiness {
    Ready,
    Unreachable,
    SchemaBehind { pending: Vec<String> },
}

/// Keeps the health status in step with the database, logging each change once.
struct DatabaseWatch {
    database: ServiceDatabase,
    health: HealthReporter,
    names: Vec<&'static str>,
    /// The state last reported; `None` before the first check.
    reported: Option<Readiness>,
    /// Whether the schema was found ahead of this binary already (it is logged once).
    ahead_logged: bool,
}

impl DatabaseWatch {
    fn new(database: ServiceDatabase, health: HealthReporter, names: Vec<&'static str>) -> Self {
        Self {
            database,
            health,
            names,
            reported: None,
            ahead_logged: false,
        }
    }

    /// Checks every `interval` until shutdown (when health belongs to the drain).
    async fn run(mut self, interval: Duration, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(interval) => {}
            }
            self.check(interval, &shutdown).await;
        }
    }

    /// Pings the database, reads its schema state, and reports a change — unless the shutdown
    /// has begun, whose NOT_SERVING stands.
    async fn check(&mut self, interval: Duration, shutdown: &Shutdown) {
        let timeout = interval.max(Duration::from_secs(1));
        let database = self.database.clone();
        let probe = async move {
            database.connection().ping().await?;
            database.schema().await
        };
        let mut failure = None;
        let readiness = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(schema)) => {
                if !schema.unknown.is_empty() && !self.ahead_logged {
                    self.ahead_logged = true;
                    tracing::warn!(
                        unknown = ?schema.unknown,
                        "the database schema has migrations this binary does not know (a newer \
                         version migrated it); serving"
                    );
                }
                if schema.is_behind() {
                    Readiness::SchemaBehind {
                        pending: schema.pending,
                    }
                } else {
                    Readiness::Ready
                }
            }
            Ok(Err(error)) => {
                failure = Some(error.to_string());
                Readiness::Unreachable
            }
            Err(_) => {
                failure = Some(format!("no answer within {timeout:?}"));
                Readiness::Unreachable
            }
        };
        if self.reported.as_ref() == Some(&readiness) || shutdown.is_triggered() {
            return;
        }
        let first = self.reported.is_none();
        match &readiness {
            Readiness::Ready if first => {}
            Readiness::Ready => tracing::info!("database ready again; health is SERVING"),
            Readiness::Unreachable => tracing::error!(
                error = failure.as_deref().unwrap_or_default(),
                "database unreachable; health is NOT_SERVING"
            ),
            Readiness::SchemaBehind { pending } => tracing::error!(
                ?pending,
                "the database schema lacks migrations of this binary; health is NOT_SERVING \
                 until `roster migrate` has applied them"
            ),
        }
        let status = if readiness == Readiness::Ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        set_status(&self.health, &self.names, status).await;
        self.reported = Some(readiness);
    }
}

/// The span of one call, named `package.Service/Method` as OpenTelemetry's RPC conventions
/// have it: the request id (the caller's `x-request-id` or a new one), the trace id (the
/// caller's W3C `traceparent`'s when valid, else a new one; with or without trace export), the
/// caller's name once authenticated, the status code once answered, and the caller's trace
/// context as parent.
fn call_span(request: &http::Request<()>) -> tracing::Span {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let path = request.uri().path();
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracing::info_span!(
        "grpc",
        otel.name = %name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
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

/// Opens the service's database and, when configured, applies its pending migrations. The
/// result, given to [`serve`], makes health follow the schema against `M`.
pub async fn open_database<M: sea_orm_migration::MigratorTrait + 'static>(
    settings: &CommonSettings,
) -> anyhow::Result<ServiceDatabase> {
    let database = crate::db::connect(&settings.database_url, settings.db_max_connections)
        .await
        .map_err(|error| anyhow::anyhow!("cannot open the database: {error}"))?;
    if settings.migrate_on_start {
        crate::db::migrate::<M>(&database)
            .await
            .map_err(|error| anyhow::anyhow!("migrations failed: {error}"))?;
    }
    Ok(ServiceDatabase::new::<M>(database))
}

/// Wraps a generated tonic server with the configured message-size limit (enforced after
/// decompression) and gzip support.
#[macro_export]
macro_rules! grpc_service {
    ($server:ty, $service:expr, $settings:expr) => {
        <$server>::new($service)
            .max_decoding_message_size($settings.max_message_bytes)
            .max_encoding_message_size($settings.max_message_bytes)
            .accept_compressed(::tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(::tonic::codec::CompressionEncoding::Gzip)
    };
}
