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
//!
//! The parts: `config` (the server's limits, timings and TLS files), `health` (the health status
//! following the database) and `calls` (what every call gets: its span, its metrics labels, the
//! status of an oversized message).

mod calls;
mod config;
mod health;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument;

use crate::auth::{AuthLayer, SharedKeyRing};
use crate::db::ServiceDatabase;
use crate::deadline::DeadlineLayer;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::settings::CommonSettings;
use crate::shutdown::Shutdown;

pub use config::{ServerConfig, ServerTls};

use calls::{DESCRIPTOR_SETS, call_span, hosted_methods, message_limit_is_resource_exhausted};
use health::{DatabaseWatch, set_status};

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
    /// The service's own tasks that end on the shutdown signal and must finish what they
    /// started first (a delivery worker's batch): awaited after the server has stopped.
    finishing: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Waits until the server has stopped (after the shutdown signal and the drain), and the
    /// tasks handed to [`RunningServer::finish_on_stop`] have ended.
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.task.await??;
        if let Some(task) = self.health_task {
            task.await??;
        }
        if let Some(task) = self.metrics_task {
            let _ = task.await;
        }
        for task in self.finishing {
            let _ = task.await;
        }
        Ok(())
    }

    /// Tasks that end on the shutdown signal, after finishing the work they started: the
    /// process waits for them before it exits, instead of cutting them off mid-way.
    pub fn finish_on_stop(&mut self, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        self.finishing.extend(tasks);
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
    keys: SharedKeyRing,
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
        finishing: Vec::new(),
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

/// Opens the service's database and, when configured, applies its pending migrations. The
/// result, given to [`serve`], makes health follow the schema against `M`.
///
/// Migrations run on a connection of their own, closed before the service's pool opens: a
/// SQLite connection that read the schema before a migration changed it goes on describing the
/// statements it prepares by the old schema (a `RETURNING` names a column the migration added
/// by its quoted text, so the row cannot be read by column name), so no connection the service
/// uses may predate its migrations.
pub async fn open_database<M: sea_orm_migration::MigratorTrait + 'static>(
    settings: &CommonSettings,
) -> anyhow::Result<ServiceDatabase> {
    let open = |max_connections| async move {
        crate::db::connect(&settings.database_url, max_connections)
            .await
            .map_err(|error| anyhow::anyhow!("cannot open the database: {error}"))
    };
    if settings.migrate_on_start {
        let migrations = open(1).await?;
        crate::db::migrate::<M>(&migrations)
            .await
            .map_err(|error| anyhow::anyhow!("migrations failed: {error}"))?;
        migrations
            .close()
            .await
            .map_err(|error| anyhow::anyhow!("closing the migrations' connection: {error}"))?;
    }
    let database = open(settings.db_max_connections).await?;
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
