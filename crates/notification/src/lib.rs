//! The notification service: durable email delivery over SMTP.

pub mod api;
pub mod store;

use std::sync::Arc;

use roster_proto::notification::v1::notification_service_server::NotificationServiceServer;
use roster_runtime::server::{RunningServer, ServerConfig, ServiceSet, open_database, serve};
use roster_runtime::{CommonSettings, KeyRing, Shutdown};
use serde::Deserialize;

/// Settings of the notification service (`ROSTER_NOTIFICATION__<KEY>`).
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {}

/// Opens the database and serves NotificationService until `shutdown` fires.
pub async fn start(
    common: &CommonSettings,
    _settings: Settings,
    keys: Arc<KeyRing>,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    let database = open_database::<store::Migrator>(common).await?;
    let mut services = ServiceSet::new();
    services.add(roster_runtime::grpc_service!(
        NotificationServiceServer<api::NotificationApi>,
        api::NotificationApi,
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
