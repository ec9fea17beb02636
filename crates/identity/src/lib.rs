//! The identity service: accounts, user profiles, the global username registry and credentials.
//!
//! `api` decodes gRPC requests and maps results; `domain` holds the pure types and rules
//! (usernames, emails, names); `store` is the only place that knows SQL.

pub mod api;
pub mod domain;
pub mod store;

use std::sync::Arc;

use roster_proto::identity::v1::account_service_server::AccountServiceServer;
use roster_proto::identity::v1::credential_service_server::CredentialServiceServer;
use roster_proto::identity::v1::profile_service_server::ProfileServiceServer;
use roster_runtime::server::{RunningServer, ServerConfig, ServiceSet, open_database, serve};
use roster_runtime::{CommonSettings, KeyRing, Shutdown};
use serde::Deserialize;

/// Settings of the identity service (`ROSTER_IDENTITY__<KEY>`).
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {}

/// Opens the database and serves AccountService, ProfileService and CredentialService until
/// `shutdown` fires.
pub async fn start(
    common: &CommonSettings,
    _settings: Settings,
    keys: Arc<KeyRing>,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    let database = open_database::<store::Migrator>(common).await?;
    let store = store::Store::new(database.clone());
    let mut services = ServiceSet::new();
    services
        .add(roster_runtime::grpc_service!(
            AccountServiceServer<api::AccountApi>,
            api::AccountApi::new(store.clone()),
            common
        ))
        .add(roster_runtime::grpc_service!(
            ProfileServiceServer<api::ProfileApi>,
            api::ProfileApi::new(store.clone()),
            common
        ))
        .add(roster_runtime::grpc_service!(
            CredentialServiceServer<api::CredentialApi>,
            api::CredentialApi,
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
