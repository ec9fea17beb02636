//! The bulk-import service: the spreadsheet workflow of DESIGN.md §5.
//!
//! `api` decodes gRPC requests, calls one use case and encodes the result; `app` holds the use
//! cases (one function per operation, owning its transaction); `domain` holds the pure rules
//! (the import life cycle, encodings, CSV reading and writing, columns, what becomes of each
//! row); `store` is the only place that knows SQL; `jobs` runs validation and the apply in the
//! background, one replica per import at a time through a lease in the database; `identity` is
//! the client of identity's batch calls, the only way bulk-import reads or writes profiles.

pub mod api;
pub mod app;
pub mod domain;
pub mod identity;
pub mod jobs;
pub mod store;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_proto::imports::v1::import_service_server::ImportServiceServer;
use roster_runtime::client::ClientConfig;
use roster_runtime::peer::{PeerKeys, PeerSettings, PeerTls};
use roster_runtime::server::{RunningServer, ServerConfig, ServiceSet, open_database, serve};
use roster_runtime::{CommonSettings, Service, SharedKeyRing, Shutdown};
use serde::{Deserialize, Serialize};

/// Where identity serves unless configured.
pub const IDENTITY_URL: &str = "http://127.0.0.1:50051";

/// Deadline of one call to identity unless configured.
pub const IDENTITY_TIMEOUT_SECONDS: u64 = 30;

/// How often the retention job runs unless configured.
pub const RETENTION_INTERVAL_SECONDS: u64 = 60;

/// Settings of the bulk-import service (`ROSTER_BULK_IMPORT__<KEY>`). (`Serialize` lists the
/// keys it reads, to tell unknown ones; the `Debug` form hides the key.)
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// How bulk-import reaches identity (`[bulk_import.identity]`: `url`, `key`/`key_file`,
    /// `timeout_seconds`, `tls.*`). The flat `identity_*` keys below are the same settings as
    /// earlier releases spelt them, still read.
    pub identity: PeerSettings,
    /// Where identity serves gRPC, e.g. `http://identity:50051`: one URL or several separated
    /// by commas. Calls are balanced over every address the names resolve to (a headless
    /// Service's pods); `https://` speaks TLS.
    pub identity_url: String,
    /// The key bulk-import calls identity with (needs the `profiles` scope). Secret: from the
    /// environment (`ROSTER_BULK_IMPORT__IDENTITY_KEY`) or `identity_key_file`.
    pub identity_key: String,
    /// A file holding the key, for secrets mounted as files.
    pub identity_key_file: Option<PathBuf>,
    /// Deadline of one call to identity, retries on UNAVAILABLE included.
    pub identity_timeout_seconds: u64,
    /// PEM CA certificate(s) identity's certificate must chain to (`https://` URLs); the
    /// system's roots when unset.
    pub identity_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to identity (mutual TLS).
    pub identity_tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `identity_tls_cert_file`.
    pub identity_tls_key_file: Option<PathBuf>,
    /// Name identity's certificate must carry, when it differs from the URL's host.
    pub identity_tls_domain: Option<String>,
    /// Largest accepted file, in bytes.
    pub max_file_bytes: u64,
    /// Longest cell, in characters.
    pub max_field_chars: usize,
    /// Longest row, in bytes (a longer one is a file error: usually a quote left open).
    pub max_row_bytes: usize,
    /// How long an import that is not submitted lives before it is purged.
    pub import_ttl_seconds: u64,
    /// How long a replica's claim on an import lasts without a heartbeat.
    pub lease_seconds: u64,
    /// How often a worker looks for work.
    pub poll_interval_millis: u64,
    /// How long a submitted import is kept once it ended (COMPLETED, COMPLETED_WITH_ERRORS,
    /// FAILED, CANCELLED), in days: then it is deleted with its rows and report.
    pub import_retention_days: u64,
    /// How often the retention job runs (on one replica at a time), in seconds.
    pub retention_interval_seconds: u64,
    /// The earlier name of `retention_interval_seconds`, still read: it applies when
    /// `retention_interval_seconds` is left at its default.
    pub purge_interval_seconds: Option<u64>,
    /// An upload that receives no chunk for this long is aborted: FAILED, its data removed.
    /// The sweep applies the same bound to uploads whose replica died.
    pub upload_idle_timeout_seconds: u64,
    /// How often each replica looks for abandoned uploads (UPLOADING, nothing received for
    /// longer than the idle timeout) and fails them, removing their data.
    pub upload_sweep_interval_seconds: u64,
    /// Imports one replica works on at once.
    pub max_jobs: usize,
    /// WatchImport streams one key may have open at once on a replica; more are refused
    /// RESOURCE_EXHAUSTED (each looks at its import four times a second).
    pub watches_per_key: usize,
    /// Rows per validation batch (1 to 1000).
    pub validate_batch_size: usize,
    /// Rows per BatchUpsertProfiles call (1 to 1000).
    pub apply_batch_size: usize,
    /// BatchUpsertProfiles calls one import has in flight at once (1 to 8): batches whose rows
    /// free no extension number go to identity together, each in its own transaction.
    pub apply_batches_in_flight: usize,
    /// Attempts of an identity call that fails transiently before the job gives up.
    pub identity_attempts: u32,
    /// Tests only, never read from configuration: a pause of the apply before each group of
    /// batches (off by default).
    #[serde(skip)]
    pub apply_pause: jobs::ApplyPause,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            identity: PeerSettings::default(),
            identity_url: IDENTITY_URL.to_owned(),
            identity_key: String::new(),
            identity_key_file: None,
            identity_timeout_seconds: IDENTITY_TIMEOUT_SECONDS,
            identity_tls_ca_file: None,
            identity_tls_cert_file: None,
            identity_tls_key_file: None,
            identity_tls_domain: None,
            max_file_bytes: 512 * 1024 * 1024,
            max_field_chars: 1000,
            max_row_bytes: 1024 * 1024,
            import_ttl_seconds: 7 * 24 * 3600,
            lease_seconds: 30,
            poll_interval_millis: 1000,
            import_retention_days: 30,
            retention_interval_seconds: RETENTION_INTERVAL_SECONDS,
            purge_interval_seconds: None,
            upload_idle_timeout_seconds: 60,
            upload_sweep_interval_seconds: 60,
            max_jobs: 2,
            watches_per_key: 16,
            validate_batch_size: 1000,
            apply_batch_size: 500,
            apply_batches_in_flight: 4,
            identity_attempts: 8,
            apply_pause: jobs::ApplyPause::default(),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("identity", &self.identity)
            .field("identity_url", &self.identity_url)
            .field("identity_key", &"<redacted>")
            .field("identity_key_file", &self.identity_key_file)
            .field("identity_timeout_seconds", &self.identity_timeout_seconds)
            .field("identity_tls_ca_file", &self.identity_tls_ca_file)
            .field("identity_tls_cert_file", &self.identity_tls_cert_file)
            .field("identity_tls_key_file", &self.identity_tls_key_file)
            .field("identity_tls_domain", &self.identity_tls_domain)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("import_ttl_seconds", &self.import_ttl_seconds)
            .field("import_retention_days", &self.import_retention_days)
            .field("retention_interval", &self.retention_interval())
            .field("lease_seconds", &self.lease_seconds)
            .field(
                "upload_idle_timeout_seconds",
                &self.upload_idle_timeout_seconds,
            )
            .field(
                "upload_sweep_interval_seconds",
                &self.upload_sweep_interval_seconds,
            )
            .field("max_jobs", &self.max_jobs)
            .field("validate_batch_size", &self.validate_batch_size)
            .field("apply_batch_size", &self.apply_batch_size)
            .field("apply_batches_in_flight", &self.apply_batches_in_flight)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// How bulk-import calls identity, with `identity_key` or the contents of
    /// `identity_key_file`. Without either, identity would refuse every call, and bulk-import
    /// does not start.
    fn identity_client(&self) -> anyhow::Result<ClientConfig> {
        // A flat key left at its default is unset, so that the nested key may set it.
        let legacy = PeerSettings {
            url: Some(self.identity_url.clone()).filter(|url| url != IDENTITY_URL),
            key: Some(self.identity_key.clone()),
            key_file: self.identity_key_file.clone(),
            timeout_seconds: Some(self.identity_timeout_seconds)
                .filter(|seconds| *seconds != IDENTITY_TIMEOUT_SECONDS),
            tls: PeerTls {
                ca_file: self.identity_tls_ca_file.clone(),
                cert_file: self.identity_tls_cert_file.clone(),
                key_file: self.identity_tls_key_file.clone(),
                domain: self.identity_tls_domain.clone(),
            },
        };
        let mut peer = self.identity.resolve(
            PeerKeys {
                service: Service::BulkImport,
                peer: "identity",
            },
            legacy,
        )?;
        peer.url.get_or_insert_with(|| IDENTITY_URL.to_owned());
        let config = peer
            .client("identity", Duration::from_secs(IDENTITY_TIMEOUT_SECONDS))
            .ok_or_else(|| anyhow::anyhow!("bulk-import has no identity URL"))?;
        config.key.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "bulk-import has no key to call identity with: set \
                 ROSTER_BULK_IMPORT__IDENTITY_KEY or ROSTER_BULK_IMPORT__IDENTITY_KEY_FILE to a \
                 key identity accepts (scope `profiles`)"
            )
        })?;
        Ok(config)
    }

    /// The pause between retention runs: `retention_interval_seconds`, or the earlier
    /// `purge_interval_seconds` when only that one is set.
    pub fn retention_interval(&self) -> Duration {
        let seconds = match self.purge_interval_seconds {
            Some(seconds) if self.retention_interval_seconds == RETENTION_INTERVAL_SECONDS => {
                seconds
            }
            _ => self.retention_interval_seconds,
        };
        Duration::from_secs(seconds)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let batch = 1..=identity::MAX_BATCH;
        anyhow::ensure!(
            batch.contains(&self.validate_batch_size),
            "ROSTER_BULK_IMPORT__VALIDATE_BATCH_SIZE must be 1 to 1000"
        );
        anyhow::ensure!(
            batch.contains(&self.apply_batch_size),
            "ROSTER_BULK_IMPORT__APPLY_BATCH_SIZE must be 1 to 1000"
        );
        anyhow::ensure!(
            (1..=8).contains(&self.apply_batches_in_flight),
            "ROSTER_BULK_IMPORT__APPLY_BATCHES_IN_FLIGHT must be 1 to 8"
        );
        anyhow::ensure!(
            self.lease_seconds >= 1,
            "ROSTER_BULK_IMPORT__LEASE_SECONDS must be at least 1"
        );
        anyhow::ensure!(
            self.upload_idle_timeout_seconds >= 1,
            "ROSTER_BULK_IMPORT__UPLOAD_IDLE_TIMEOUT_SECONDS must be at least 1"
        );
        anyhow::ensure!(
            self.upload_sweep_interval_seconds >= 1,
            "ROSTER_BULK_IMPORT__UPLOAD_SWEEP_INTERVAL_SECONDS must be at least 1"
        );
        anyhow::ensure!(
            self.retention_interval() >= Duration::from_secs(1),
            "ROSTER_BULK_IMPORT__RETENTION_INTERVAL_SECONDS must be at least 1"
        );
        anyhow::ensure!(
            self.import_retention_days >= 1,
            "ROSTER_BULK_IMPORT__IMPORT_RETENTION_DAYS must be at least 1"
        );
        anyhow::ensure!(
            self.max_field_chars >= 1 && self.max_row_bytes >= 4096,
            "ROSTER_BULK_IMPORT__MAX_FIELD_CHARS must be at least 1 and \
             ROSTER_BULK_IMPORT__MAX_ROW_BYTES at least 4096"
        );
        Ok(())
    }
}

/// Opens the database, starts this replica's import worker and serves ImportService until
/// `shutdown` fires.
pub async fn start(
    common: &CommonSettings,
    settings: Settings,
    keys: SharedKeyRing,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    settings.validate()?;
    let identity = identity::Identity::new(settings.identity_client()?)?;
    let deleted = roster_runtime::auth::deleted::watch(
        settings.identity_client()?,
        keys.clone(),
        common
            .keys_reload_interval()
            .unwrap_or(Duration::from_secs(1)),
        shutdown.clone(),
    )
    .map_err(|error| anyhow::anyhow!("identity_url: {error}"))?;
    let database = open_database::<store::Migrator>(common).await?;
    let store = store::Store::new(database.connection().clone());
    let mut services = ServiceSet::new();
    let progress = services.metrics().import_progress();
    watch_imports(services.metrics(), &progress, store.clone());
    jobs::retention::start(
        store.clone(),
        jobs::retention::RetentionSettings {
            interval: settings.retention_interval(),
            finished_kept: Duration::from_secs(
                settings.import_retention_days.saturating_mul(24 * 3600),
            ),
        },
        services.metrics(),
        shutdown.clone(),
    );
    let wake = Arc::new(tokio::sync::Notify::new());
    jobs::Worker::new(
        store.clone(),
        identity.clone(),
        jobs::JobConfig {
            lease: Duration::from_secs(settings.lease_seconds),
            poll_interval: Duration::from_millis(settings.poll_interval_millis.max(10)),
            upload_idle_timeout: Duration::from_secs(settings.upload_idle_timeout_seconds),
            upload_sweep_interval: Duration::from_secs(settings.upload_sweep_interval_seconds),
            max_jobs: settings.max_jobs.max(1),
            validate_batch: settings.validate_batch_size,
            apply_batch: settings.apply_batch_size,
            apply_batches_in_flight: settings.apply_batches_in_flight,
            max_field_chars: settings.max_field_chars,
            max_row_bytes: settings.max_row_bytes,
            identity_attempts: settings.identity_attempts.max(1),
            apply_pause: settings.apply_pause.clone(),
        },
        progress,
        wake.clone(),
        shutdown.clone(),
    )
    .spawn();
    let app = app::ImportApp::new(
        store,
        app::AppConfig {
            max_file_bytes: settings.max_file_bytes,
            import_ttl: Duration::from_secs(settings.import_ttl_seconds),
            apply_batch_size: settings.apply_batch_size,
        },
        wake,
        keys.clone(),
    );
    app::offboarding::spawn(app.clone(), deleted, shutdown.clone());
    let api = api::ImportApi::new(
        app,
        identity,
        api::ApiConfig {
            upload_idle_timeout: Duration::from_secs(settings.upload_idle_timeout_seconds),
            watches_per_key: settings.watches_per_key.max(1),
            watch_interval: Duration::from_millis(250),
        },
        shutdown.clone(),
    );
    services.add(roster_runtime::grpc_service!(
        ImportServiceServer<api::ImportApi>,
        api,
        common
    ));
    serve(
        ServerConfig::from(common),
        services,
        keys,
        Some(database),
        shutdown,
    )
    .await
}

/// Imports per state, counted in the database when Prometheus scrapes (`roster_imports`): an
/// import stuck in VALIDATING or APPLYING shows there, whichever replica holds it.
fn watch_imports(
    metrics: &roster_runtime::metrics::Metrics,
    progress: &roster_runtime::metrics::ImportProgress,
    store: store::Store,
) {
    let progress = progress.clone();
    metrics.on_scrape(move || {
        let (store, progress) = (store.clone(), progress.clone());
        async move {
            match store.imports_by_state().await {
                Ok(counts) => {
                    for state in domain::state::ImportState::ALL {
                        let imports = counts.get(&state).copied().unwrap_or(0);
                        progress.set_jobs(state.name(), imports);
                    }
                }
                Err(error) => tracing::warn!(%error, "import metrics not read"),
            }
        }
    });
}
