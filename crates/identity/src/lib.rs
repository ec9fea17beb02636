//! The identity service: accounts, user profiles, the global username registry and credentials.
//!
//! Four rooms, data flowing one way:
//! - `api`: the gRPC handlers, transport only (decode, call one use case, encode);
//! - `app`: the use cases, one function per operation, each owning its transaction and
//!   idempotency; gRPC, the reset page and the bulk import's batch calls all go through it;
//! - `domain`: pure types and rules (ids, profiles and their patches, accounts and policies,
//!   usernames and the registry's decision, the batch planner, errors);
//! - `store`: sea-orm, the only place that knows SQL; it takes and returns domain types.
//!
//! Beside them: `hashing` (the argon2id pool), `relay` (the outbox worker), `retention` (the
//! purge of what has outlived its use), `events` (the audit log's workers) and `reset_page`
//! (the password-reset page over HTTP, which calls `app` like the handlers do); the SCIM
//! endpoint is a transport in `api`.

pub mod api;
pub mod app;
pub mod domain;
pub mod events;
pub mod hashing;
pub mod relay;
pub mod reset_page;
pub mod retention;
pub mod store;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use roster_proto::identity::v1::account_service_server::AccountServiceServer;
use roster_proto::identity::v1::credential_service_server::CredentialServiceServer;
use roster_proto::identity::v1::event_service_server::EventServiceServer;
use roster_proto::identity::v1::profile_service_server::ProfileServiceServer;
use roster_runtime::peer::{Peer, PeerKeys, PeerSettings, PeerTls};
use roster_runtime::server::{RunningServer, ServerConfig, ServiceSet, open_database, serve};
use roster_runtime::settings::SettingsError;
use roster_runtime::{CommonSettings, Service, SharedKeyRing, Shutdown};
use serde::{Deserialize, Serialize};

/// Deadline of one call to NotificationService unless configured.
pub const NOTIFICATION_TIMEOUT_SECONDS: u64 = 10;

/// How long after its deletion a profile can be brought back, unless configured otherwise.
pub const DEFAULT_PROFILE_RESTORE_DAYS: u64 = 30;
/// Days after DeleteAccount before the account's personal data is purged, by default.
pub const DEFAULT_ACCOUNT_RETENTION_DAYS: u64 = 30;

/// Settings of the identity service (`ROSTER_IDENTITY__<KEY>`). (`Serialize` lists the keys it
/// reads, to tell unknown ones; the `Debug` form hides the key.)
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// argon2id cost and pool (`ROSTER_IDENTITY__HASHING__MEMORY_KIB`, …).
    pub hashing: hashing::HashingSettings,
    /// Where the password-reset page listens; `off` turns the page off.
    #[serde(deserialize_with = "roster_runtime::settings::optional_address")]
    pub reset_http_addr: Option<SocketAddr>,
    /// Public URL of the reset page: links are built from it, never from request headers.
    pub reset_base_url: String,
    /// Where the SCIM 2.0 endpoint listens; `off` turns it off.
    #[serde(deserialize_with = "roster_runtime::settings::optional_address")]
    pub scim_addr: Option<SocketAddr>,
    /// Public URL of the SCIM endpoint's `/scim/v2`, as identity providers reach it: resource
    /// locations are built from it, never from request headers.
    pub scim_base_url: String,
    /// SCIM requests per second per token, on average (0: no limit); more are answered 429.
    pub scim_requests_per_second: u32,
    /// SCIM requests per token at once above that average.
    pub scim_request_burst: u32,
    /// How long after its deletion a profile can still be brought back: UndeleteProfile works
    /// within it, and a SCIM client that creates the same username with the same external id
    /// within it gets the same profile.
    pub profile_restore_days: u64,
    /// How long after DeleteAccount an account can be undeleted; then its personal data is
    /// purged (profiles' names, emails and credentials), keeping the usernames retired.
    pub account_retention_days: u64,
    /// How long a reset link works.
    pub reset_token_ttl_seconds: u64,
    /// How identity reaches NotificationService (`[identity.notification]`:
    /// `url`, `key`/`key_file`, `timeout_seconds`, `tls.*`). The flat `notification_*` keys
    /// below are the same settings as earlier releases spelt them, still read.
    pub notification: PeerSettings,
    /// NotificationService address: one URL, or several separated by commas, balanced across
    /// (a host name is re-resolved, so a headless Service's name reaches every replica); unset
    /// keeps emails in the outbox until it is set. `https://` URLs use TLS.
    pub notification_url: Option<String>,
    /// Key identity presents to NotificationService (a secret; from the environment), needed
    /// when `notification_url` is set.
    pub notification_key: Option<String>,
    /// A file holding that key, for a Secret mounted as a file (instead of `notification_key`).
    pub notification_key_file: Option<PathBuf>,
    /// Deadline of one call to NotificationService.
    pub notification_timeout_seconds: u64,
    /// How long, from when it was written, an email stays in the outbox while NotificationService
    /// refuses it as invalid (INVALID_ARGUMENT) or its outbox row cannot be read; the next
    /// such failure after it gives the email up. Long enough for a rolling upgrade to finish
    /// (an older notification may refuse what a newer identity writes).
    pub outbox_give_up_seconds: u64,
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
    /// NATS server(s) to publish the audit log to (`nats://host:4222`, several separated by
    /// commas); unset: events are only read over gRPC.
    pub events_nats_url: Option<String>,
    /// The JetStream stream that keeps the events (created when missing).
    pub events_stream: String,
    /// The stream's retention policy: `limits`, `interest` or `workqueue`.
    pub events_stream_retention: String,
    /// How long the stream keeps an event, in hours (0: as long as its other limits allow).
    pub events_stream_max_age_hours: u64,
    /// JetStream's duplicate window, in seconds: an event re-sent within it is dropped.
    pub events_duplicate_window_seconds: u64,
    /// How long the database keeps an event, in days.
    pub event_retention_days: u64,
    /// How long a quiet WatchEvents stream waits before a heartbeat, in seconds.
    pub events_heartbeat_seconds: u64,
    /// WatchEvents streams one key may have open at once on a replica; more are refused
    /// RESOURCE_EXHAUSTED. Each open stream looks at the log a few times a second, so without
    /// a bound one key could make every other account's changes cost thousands of queries.
    pub events_watches_per_key: u32,
    /// How long a `request_id` (and a batch item's idempotency key) is remembered, in hours:
    /// a request repeated within it answers the first answer; after it, it runs as a new one.
    pub request_id_retention_hours: u64,
    /// How often the retention job runs (on one replica at a time), in seconds.
    pub retention_interval_seconds: u64,
}

/// How long a `request_id` is remembered unless configured: longer than any client's retries.
pub const DEFAULT_REQUEST_ID_RETENTION_HOURS: u64 = 48;

impl Default for Settings {
    fn default() -> Self {
        Self {
            hashing: hashing::HashingSettings::default(),
            notification: PeerSettings::default(),
            reset_http_addr: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            reset_base_url: "http://localhost:8080/reset".to_owned(),
            reset_token_ttl_seconds: 3600,
            scim_addr: Some(SocketAddr::from(([0, 0, 0, 0], 8081))),
            scim_base_url: "http://localhost:8081/scim/v2".to_owned(),
            scim_requests_per_second: 50,
            scim_request_burst: 100,
            profile_restore_days: DEFAULT_PROFILE_RESTORE_DAYS,
            account_retention_days: DEFAULT_ACCOUNT_RETENTION_DAYS,
            notification_url: None,
            notification_key: None,
            notification_key_file: None,
            notification_timeout_seconds: NOTIFICATION_TIMEOUT_SECONDS,
            outbox_give_up_seconds: 24 * 3600,
            notification_tls_ca_file: None,
            notification_tls_cert_file: None,
            notification_tls_key_file: None,
            notification_tls_domain: None,
            signin_max_failures: 5,
            signin_lock_seconds: 30,
            signin_max_lock_seconds: 900,
            events_nats_url: None,
            events_stream: "ROSTER_EVENTS".to_owned(),
            events_stream_retention: "limits".to_owned(),
            events_stream_max_age_hours: 400 * 24,
            events_duplicate_window_seconds: 600,
            event_retention_days: 400,
            events_heartbeat_seconds: 15,
            events_watches_per_key: 16,
            request_id_retention_hours: DEFAULT_REQUEST_ID_RETENTION_HOURS,
            retention_interval_seconds: 60,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("hashing", &self.hashing)
            .field("reset_http_addr", &self.reset_http_addr)
            .field("reset_base_url", &self.reset_base_url)
            .field("reset_token_ttl_seconds", &self.reset_token_ttl_seconds)
            .field("scim_addr", &self.scim_addr)
            .field("scim_base_url", &self.scim_base_url)
            .field("notification", &self.notification)
            .field("notification_url", &self.notification_url)
            .field(
                "notification_key",
                &self.notification_key.as_ref().map(|_| "<redacted>"),
            )
            .field("notification_key_file", &self.notification_key_file)
            .field("notification_tls_ca_file", &self.notification_tls_ca_file)
            .field(
                "notification_tls_cert_file",
                &self.notification_tls_cert_file,
            )
            .field("notification_tls_key_file", &self.notification_tls_key_file)
            .field("notification_tls_domain", &self.notification_tls_domain)
            .field("outbox_give_up_seconds", &self.outbox_give_up_seconds)
            .field("signin_max_failures", &self.signin_max_failures)
            .field("events_nats_url", &self.events_nats_url)
            .field("events_stream", &self.events_stream)
            .field("event_retention_days", &self.event_retention_days)
            .field("profile_restore_days", &self.profile_restore_days)
            .field("account_retention_days", &self.account_retention_days)
            .field(
                "request_id_retention_hours",
                &self.request_id_retention_hours,
            )
            .field(
                "retention_interval_seconds",
                &self.retention_interval_seconds,
            )
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Refuses retention settings that would purge at once or never run.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let at_least_one = |name: &str, value: u64| {
            if value >= 1 {
                return Ok(());
            }
            Err(SettingsError::Key {
                key: format!("{}{}", Service::Identity.env_prefix(), name.to_uppercase()),
                message: format!("is {value}; it must be at least 1"),
            })
        };
        at_least_one(
            "request_id_retention_hours",
            self.request_id_retention_hours,
        )?;
        at_least_one(
            "retention_interval_seconds",
            self.retention_interval_seconds,
        )?;
        at_least_one("outbox_give_up_seconds", self.outbox_give_up_seconds)?;
        at_least_one(
            "events_watches_per_key",
            u64::from(self.events_watches_per_key),
        )
    }

    /// Publication to NATS JetStream as configured; `None` when `events_nats_url` is unset.
    pub fn events_nats(&self) -> Result<Option<events::nats::NatsSettings>, SettingsError> {
        use async_nats::jetstream::stream::RetentionPolicy;
        let Some(url) = self
            .events_nats_url
            .clone()
            .filter(|url| !url.trim().is_empty())
        else {
            return Ok(None);
        };
        let retention = match self.events_stream_retention.as_str() {
            "limits" => RetentionPolicy::Limits,
            "interest" => RetentionPolicy::Interest,
            "workqueue" => RetentionPolicy::WorkQueue,
            other => {
                return Err(SettingsError::Key {
                    key: "identity.events_stream_retention".into(),
                    message: format!("is {other:?}; it must be limits, interest or workqueue"),
                });
            }
        };
        if self.events_stream.is_empty()
            || !self
                .events_stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SettingsError::Key {
                key: "identity.events_stream".into(),
                message: format!(
                    "is {:?}; a stream name is letters, digits, _ and -",
                    self.events_stream
                ),
            });
        }
        Ok(Some(events::nats::NatsSettings {
            url,
            stream: self.events_stream.clone(),
            retention,
            max_age: Duration::from_secs(self.events_stream_max_age_hours.saturating_mul(3600)),
            duplicate_window: Duration::from_secs(self.events_duplicate_window_seconds.max(1)),
        }))
    }

    /// NotificationService as configured: the nested `notification.*` keys, each unset one
    /// taken from its flat `notification_*` twin (a flat timeout left at its default is unset).
    pub fn notification_peer(&self) -> Result<Peer, SettingsError> {
        let legacy = PeerSettings {
            url: self.notification_url.clone(),
            key: self.notification_key.clone(),
            key_file: self.notification_key_file.clone(),
            timeout_seconds: Some(self.notification_timeout_seconds)
                .filter(|seconds| *seconds != NOTIFICATION_TIMEOUT_SECONDS),
            tls: PeerTls {
                ca_file: self.notification_tls_ca_file.clone(),
                cert_file: self.notification_tls_cert_file.clone(),
                key_file: self.notification_tls_key_file.clone(),
                domain: self.notification_tls_domain.clone(),
            },
        };
        self.notification.resolve(
            PeerKeys {
                service: Service::Identity,
                peer: "notification",
            },
            legacy,
        )
    }
}

/// A running identity service.
pub struct Started {
    pub server: RunningServer,
    /// Where the reset page listens, when it is on.
    pub reset_addr: Option<SocketAddr>,
    /// Where the SCIM endpoint listens, when it is on.
    pub scim_addr: Option<SocketAddr>,
}

/// Opens the database and serves AccountService, ProfileService and CredentialService until
/// `shutdown` fires.
pub async fn start(
    common: &CommonSettings,
    settings: Settings,
    keys: SharedKeyRing,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    Ok(start_all(common, settings, keys, shutdown).await?.server)
}

/// [`start`], also telling where the reset page listens.
pub async fn start_all(
    common: &CommonSettings,
    settings: Settings,
    keys: SharedKeyRing,
    shutdown: Shutdown,
) -> anyhow::Result<Started> {
    settings.validate()?;
    let relay = relay::RelayConfig::from_settings(&settings)?;
    let nats = settings.events_nats()?;
    let database = open_database::<store::Migrator>(common).await?;
    let store = store::Store::new(database.connection().clone());
    let hasher = hashing::Hasher::start(&settings.hashing)?;
    let passwords = app::credentials::Passwords::new(store.clone(), hasher, settings.clone());
    let identity = app::Identity::new(store.clone())
        .with_restore_days(settings.profile_restore_days)
        .with_account_retention_days(settings.account_retention_days);
    let mut services = ServiceSet::new();
    app::offboarding::spawn(
        identity.clone(),
        keys.clone(),
        common,
        Duration::from_secs(settings.retention_interval_seconds),
        services.metrics(),
        &shutdown,
    );
    relay::watch_outbox(services.metrics(), store.clone());
    let event_settings = events::EventSettings {
        retention_days: settings.event_retention_days,
        published: nats.is_some(),
        heartbeat: Duration::from_secs(settings.events_heartbeat_seconds.max(1)),
    };
    let feed = events::start(
        store.clone(),
        event_settings.clone(),
        services.metrics(),
        shutdown.clone(),
    );
    retention::start(
        store.clone(),
        retention::RetentionSettings {
            interval: Duration::from_secs(settings.retention_interval_seconds),
            request_ids: Duration::from_secs(
                settings.request_id_retention_hours.saturating_mul(3600),
            ),
            events: event_settings,
        },
        services.metrics(),
        shutdown.clone(),
    );
    if let Some(nats) = nats {
        events::nats::spawn(store.clone(), nats, feed.subscribe(), shutdown.clone());
    }
    if let Some(relay) = relay {
        relay.spawn(store.clone(), services.metrics(), shutdown.clone());
    } else {
        tracing::warn!("no notification_url: emails stay in the outbox until one is configured");
    }
    let reset_addr = match settings.reset_http_addr {
        Some(addr) => Some(reset_page::serve(addr, passwords.clone(), shutdown.clone()).await?),
        None => None,
    };
    let scim_addr = match settings.scim_addr {
        Some(addr) => Some(
            api::scim::serve(
                api::scim::ScimSettings {
                    addr,
                    base_url: settings.scim_base_url.clone(),
                    requests_per_second: settings.scim_requests_per_second,
                    burst: settings.scim_request_burst,
                    restore_days: settings.profile_restore_days,
                },
                identity.clone(),
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    services
        .add(roster_runtime::grpc_service!(
            AccountServiceServer<api::AccountApi>,
            api::AccountApi::new(identity.clone()),
            common
        ))
        .add(roster_runtime::grpc_service!(
            ProfileServiceServer<api::ProfileApi>,
            api::ProfileApi::new(identity.clone()),
            common
        ))
        .add(roster_runtime::grpc_service!(
            EventServiceServer<api::EventApi>,
            api::EventApi::new(
                identity,
                feed,
                settings.events_watches_per_key as usize,
                shutdown.clone()
            ),
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
    Ok(Started {
        server,
        reset_addr,
        scim_addr,
    })
}
