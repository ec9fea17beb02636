//! The bulk-import service: the spreadsheet workflow.

pub mod api;
pub mod store;

use std::sync::Arc;

use roster_proto::imports::v1::import_service_server::ImportServiceServer;
use roster_runtime::server::{RunningServer, ServerConfig, ServiceSet, open_database, serve};
use roster_runtime::{CommonSettings, KeyRing, Shutdown};
use serde::Deserialize;

/// Settings of the bulk-import service (`ROSTER_BULK_IMPORT__<KEY>`).
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {}

/// Opens the database and serves ImportService until `shutdown` fires.
pub async fn start(
    common: &CommonSettings,
    _settings: Settings,
    keys: Arc<KeyRing>,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    let database = open_database::<store::Migrator>(common).await?;
    let mut services = ServiceSet::new();
    services.add(roster_runtime::grpc_service!(
        ImportServiceServer<api::ImportApi>,
        api::ImportApi,
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
