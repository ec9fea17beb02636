//! Starting and migrating one service from its layered configuration.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use roster_runtime::server::RunningServer;
use roster_runtime::settings::Loader;
use roster_runtime::{CommonSettings, KeyRing, Service, Shutdown, db, telemetry};

/// Loads `service`'s configuration from `loader`, adds the keys file's keys to `keys`, and
/// starts the service.
pub async fn start(
    service: Service,
    loader: Loader,
    mut keys: KeyRing,
    shutdown: Shutdown,
) -> anyhow::Result<(CommonSettings, RunningServer)> {
    macro_rules! start_with {
        ($krate:ident) => {{
            let (common, settings) = loader.load::<$krate::Settings>()?;
            if let Some(path) = &common.keys_file {
                keys.extend(KeyRing::load(path)?);
            }
            if keys.is_empty() {
                tracing::warn!(
                    service = service.name(),
                    "no caller keys are configured: every call but health and reflection is refused"
                );
            }
            let server = $krate::start(&common, settings, Arc::new(keys), shutdown)
                .await
                .with_context(|| format!("{} did not start", service.name()))?;
            (common, server)
        }};
    }
    Ok(match service {
        Service::Identity => start_with!(roster_identity),
        Service::BulkImport => start_with!(roster_bulk_import),
        Service::Notification => start_with!(roster_notification),
    })
}

/// `roster serve <service>`: runs until SIGTERM or SIGINT, then drains and exits.
pub async fn serve(service: Service, config: Option<&Path>) -> anyhow::Result<()> {
    let loader = Loader::new(service).file(config);
    let (common, _) = Loader::new(service)
        .file(config)
        .load::<serde_ignored::Ignored>()?;
    let _telemetry = telemetry::init(&format!("roster-{}", service.name()), common.log_format);
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let (_, server) = start(service, loader, KeyRing::default(), shutdown).await?;
    server.stopped().await?;
    tracing::info!(service = service.name(), "stopped");
    Ok(())
}

/// `roster migrate <service>`: applies the pending migrations and exits.
pub async fn migrate(service: Service, config: Option<&Path>) -> anyhow::Result<()> {
    let (common, _) = Loader::new(service)
        .file(config)
        .load::<serde_ignored::Ignored>()?;
    let _telemetry = telemetry::init(&format!("roster-{}", service.name()), common.log_format);
    let database = db::connect(&common.database_url, 1).await?;
    match service {
        Service::Identity => db::migrate::<roster_identity::store::Migrator>(&database).await?,
        Service::BulkImport => {
            db::migrate::<roster_bulk_import::store::Migrator>(&database).await?
        }
        Service::Notification => {
            db::migrate::<roster_notification::store::Migrator>(&database).await?
        }
    }
    tracing::info!(service = service.name(), "migrations applied");
    Ok(())
}

mod serde_ignored {
    /// Settings type that reads nothing, for when only the common settings are needed.
    #[derive(serde::Deserialize)]
    pub struct Ignored {}
}
