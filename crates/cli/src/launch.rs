//! Starting and migrating one service from its layered configuration.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use roster_runtime::server::RunningServer;
use roster_runtime::settings::Loader;
use roster_runtime::{CommonSettings, KeyRing, Service, Shutdown, db, telemetry};

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

/// Adds the keys file's keys to `keys` and starts the service `settings` describe.
pub async fn start(
    service: Service,
    common: &CommonSettings,
    settings: Settings,
    mut keys: KeyRing,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    if let Some(path) = &common.keys_file {
        keys.extend(KeyRing::load(path)?);
    }
    if keys.is_empty() {
        tracing::warn!(
            service = service.name(),
            "no caller keys are configured: every call but health and reflection is refused"
        );
    }
    let keys = Arc::new(keys);
    match settings {
        Settings::Identity(settings) => {
            roster_identity::start(common, settings, keys, shutdown).await
        }
        Settings::BulkImport(settings) => {
            roster_bulk_import::start(common, settings, keys, shutdown).await
        }
        Settings::Notification(settings) => {
            roster_notification::start(common, settings, keys, shutdown).await
        }
    }
    .with_context(|| format!("{} did not start", service.name()))
}

/// `roster serve <service>`: runs until SIGTERM or SIGINT, then drains and exits.
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
