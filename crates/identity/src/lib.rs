//! The identity service: accounts, user profiles, the global username registry and credentials.
//!
//! `api` decodes gRPC requests and maps results; `domain` holds the pure types and rules
//! (usernames, emails, names); `store` is the only place that knows SQL.

pub mod api;
pub mod domain;
pub mod emails;
pub mod hashing;
pub mod passwords;
pub mod relay;
pub mod reset_page;
pub mod store;
pub mod suggest;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use roster_proto::identity::v1::account_service_server::AccountServiceServer;
use roster_proto::identity::v1::credential_service_server::CredentialServiceServer;
use roster_proto::identity::v1::profile_service_server::ProfileServiceServer;
use roster_runtime::server::{RunningServer, ServerConfig, ServiceSet, open_database, serve};
use roster_runtime::{CommonSettings, KeyRing, Shutdown};
use serde::Deserialize;

/// Settings of the identity service (`ROSTER_IDENTITY__<KEY>`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// argon2id cost and pool (`ROSTER_IDENTITY__HASHING__MEMORY_KIB`, …).
    pub hashing: hashing::HashingSettings,
    /// Where the password-reset page listens; unset turns the page off.
    pub reset_http_addr: Option<SocketAddr>,
    /// Public URL of the reset page: links are built from it, never from request headers.
    pub reset_base_url: String,
    /// How long a reset link works.
    pub reset_token_ttl_seconds: u64,
    /// NotificationService address: one URL, or several separated by commas, balanced across
    /// (a host name is re-resolved, so a headless Service's name reaches every replica); unset
    /// keeps emails in the outbox until it is set. `https://` URLs use TLS.
    pub notification_url: Option<String>,
    /// Key identity presents to NotificationService (a secret; from the environment).
    pub notification_key: Option<String>,
    /// Deadline of one call to NotificationService.
    pub notification_timeout_seconds: u64,
    /// CA certificates (PEM) NotificationService's certificate must chain to; system roots
    /// when unset.
    pub notification_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) identity presents to NotificationService for mutual TLS.
    pub notification_tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `notification_tls_cert_file`.
    pub notification_tls_key_file: Option<PathBuf>,
    /// Name NotificationService's certificate carries, when not the URL's host.
    pub notification_tls_domain: Option<String>,
    /// Failed sign-ins of one username before it is throttled.
    pub signin_max_failures: u32,
    /// First throttle delay; it doubles with every further failure.
    pub signin_lock_seconds: u64,
    /// Longest throttle delay: a throttle never becomes a permanent lock.
    pub signin_max_lock_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            hashing: hashing::HashingSettings::default(),
            reset_http_addr: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            reset_base_url: "http://localhost:8080/reset".to_owned(),
            reset_token_ttl_seconds: 3600,
            notification_url: None,
            notification_key: None,
            notification_timeout_seconds: 10,
            notification_tls_ca_file: None,
            notification_tls_cert_file: None,
            notification_tls_key_file: None,
            notification_tls_domain: None,
            signin_max_failures: 5,
            signin_lock_seconds: 30,
            signin_max_lock_seconds: 900,
        }
    }
}

/// A running identity service.
pub struct Started {
    pub server: RunningServer,
    /// Where the reset page listens, when it is on.
    pub reset_addr: Option<SocketAddr>,
}

/// Opens the database and serves AccountService, ProfileService and CredentialService until
/// `shutdown` fires.
pub async fn start(
    common: &CommonSettings,
    settings: Settings,
    keys: Arc<KeyRing>,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    Ok(start_all(common, settings, keys, shutdown).await?.server)
}

/// [`start`], also telling where the reset page listens.
pub async fn start_all(
    common: &CommonSettings,
    settings: Settings,
    keys: Arc<KeyRing>,
    shutdown: Shutdown,
) -> anyhow::Result<Started> {
    let database = open_database::<store::Migrator>(common).await?;
    let store = store::Store::new(database.clone());
    let hasher = hashing::Hasher::start(&settings.hashing)?;
    let passwords = passwords::Passwords::new(store.clone(), hasher, settings.clone());
    relay::spawn(store.clone(), &settings, shutdown.clone())?;
    let reset_addr = match settings.reset_http_addr {
        Some(addr) => Some(reset_page::serve(addr, passwords.clone(), shutdown.clone()).await?),
        None => None,
    };
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
            api::CredentialApi::new(passwords),
            common
        ));
    let server = serve(
        ServerConfig::from(common),
        services,
        keys,
        Some(database),
        shutdown,
    )
    .await?;
    Ok(Started { server, reset_addr })
}
