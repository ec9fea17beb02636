//! Starting and migrating one service from its layered configuration.

use std::path::Path;

use anyhow::Context;
use roster_runtime::auth::reload::{self, KeysFile};
use roster_runtime::server::RunningServer;
use roster_runtime::settings::Loader;
use roster_runtime::{CommonSettings, KeyRing, Service, SharedKeyRing, Shutdown, db, telemetry};

/// One service's own settings, read with the common ones.
pub enum Settings {
    Identity(roster_identity::Settings),
    BulkImport(roster_bulk_import::Settings),
    Notification(roster_notification::Settings),
}

/// Reads `service`'s whole configuration from `loader`: a key that neither the common settings
/// nor the service's own read stops here, before anything starts.
pub fn load(service: Service, loader: Loader) -> anyhow::Result<(CommonSettings, Settings)> {
    Ok(match service {
        Service::Identity => {
            let (common, settings) = loader.load()?;
            (common, Settings::Identity(settings))
        }
        Service::BulkImport => {
            let (common, settings) = loader.load()?;
            (common, Settings::BulkImport(settings))
        }
        Service::Notification => {
            let (common, settings) = loader.load()?;
            (common, Settings::Notification(settings))
        }
    })
}

/// Adds the keys file's keys to `keys` (the keys given in code) and starts the service `settings`
/// describe; the keys file is then read again whenever it changes and on SIGHUP, each ring read
/// from it joined by the keys given in code.
pub async fn start(
    service: Service,
    common: &CommonSettings,
    settings: Settings,
    keys: KeyRing,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    let (keys_file, ring) = match &common.keys_file {
        Some(path) => {
            let (file, ring) = KeysFile::open(path, keys)?;
            (Some(file), ring)
        }
        None => (None, keys),
    };
    if ring.is_empty() {
        tracing::warn!(
            service = service.name(),
            "no caller keys are configured: every call but health and reflection is refused"
        );
    }
    let keys = SharedKeyRing::new(ring);
    let server = match settings {
        Settings::Identity(settings) => {
            roster_identity::start(common, settings, keys.clone(), shutdown.clone()).await
        }
        Settings::BulkImport(settings) => {
            roster_bulk_import::start(common, settings, keys.clone(), shutdown.clone()).await
        }
        Settings::Notification(settings) => {
            roster_notification::start(common, settings, keys.clone(), shutdown.clone()).await
        }
    }
    .with_context(|| format!("{} did not start", service.name()))?;
    if let Some(file) = keys_file {
        reload::watch(
            file,
            keys,
            common.keys_reload_interval(),
            &server.metrics,
            shutdown,
        );
    }
    Ok(server)
}

/// `roster serve <service>`: runs until SIGTERM or SIGINT, then drains and exits (SIGHUP reads
/// the keys file again).
pub async fn serve(service: Service, config: Option<&Path>) -> anyhow::Result<()> {
    let (common, settings) = load(service, Loader::new(service).file(config))?;
    let _telemetry = telemetry::init(&format!("roster-{}", service.name()), common.log_format);
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let server = start(service, &common, settings, KeyRing::default(), shutdown).await?;
    server.stopped().await?;
    tracing::info!(service = service.name(), "stopped");
    Ok(())
}

/// `roster migrate <service>`: applies the pending migrations and exits. The whole configuration
/// is read, so a misspelt key is refused here too rather than migrating the default database.
pub async fn migrate(service: Service, config: Option<&Path>) -> anyhow::Result<()> {
    let (common, _) = load(service, Loader::new(service).file(config))?;
    let _telemetry = telemetry::init(&format!("roster-{}", service.name()), common.log_format);
    let database = db::connect(&common.database_url, 1)
        .await
        .context("cannot open the database")?;
    match service {
        Service::Identity => db::migrate::<roster_identity::store::Migrator>(&database).await,
        Service::BulkImport => db::migrate::<roster_bulk_import::store::Migrator>(&database).await,
        Service::Notification => {
            db::migrate::<roster_notification::store::Migrator>(&database).await
        }
    }
    .context("migrations failed")?;
    Ok(())
}
