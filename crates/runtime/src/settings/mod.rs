//! Layered configuration with the `config` crate.
//!
//! Sources, later ones winning: built-in defaults, then an optional TOML file (one table per
//! service: `[identity]`, `[bulk_import]`, `[notification]`), then environment variables
//! `ROSTER_<SERVICE>__<KEY>` such as `ROSTER_IDENTITY__DATABASE_URL`. Every service reads the
//! [`CommonSettings`] and its own settings type from its table. Invalid configuration fails at
//! start with a message naming the key, and so does a key that no settings type reads (a
//! misspelt `ROSTER_IDENTITY__NOTIFICATON_URL`, a table `[identiy]` in the file): the message
//! names it as it was written and suggests the nearest key that exists.
//!
//! Secrets that can be given as a value can also be given as a file (`<key>_file`, for Secrets
//! mounted as files): [`secret`] reads either.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The three services of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Identity,
    BulkImport,
    Notification,
}

impl Service {
    pub const ALL: [Service; 3] = [
        Service::Identity,
        Service::BulkImport,
        Service::Notification,
    ];

    /// The name used on the command line and in logs: `identity`, `bulk-import`, `notification`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::BulkImport => "bulk-import",
            Service::Notification => "notification",
        }
    }

    /// The configuration table and environment segment: `identity`, `bulk_import`, `notification`.
    pub fn config_key(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::BulkImport => "bulk_import",
            Service::Notification => "notification",
        }
    }

    /// The environment-variable prefix of this service's keys, e.g. `ROSTER_BULK_IMPORT__`.
    pub fn env_prefix(self) -> String {
        format!("ROSTER_{}__", self.config_key().to_uppercase())
    }

    /// The default gRPC port.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Identity => 50051,
            Service::BulkImport => 50052,
            Service::Notification => 50053,
        }
    }

    /// The default port of the Prometheus endpoint: 9091, 9092, 9093, one per service, so the
    /// embedded suite (`roster dev`, all three in one process) serves three endpoints side by
    /// side. In a container, where one service runs, the manifests set 9090.
    pub fn default_metrics_port(self) -> u16 {
        match self {
            Service::Identity => 9091,
            Service::BulkImport => 9092,
            Service::Notification => 9093,
        }
    }

    /// Parses a command-line service name.
    pub fn parse(name: &str) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == name)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal (development).
    Pretty,
    /// One JSON object per line (production).
    Json,
}

/// Settings every service has. (`Serialize` lists the keys it reads, to tell unknown ones.)
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CommonSettings {
    /// Address the gRPC server binds, e.g. `0.0.0.0:50051`. Port 0 picks a free port.
    #[serde(deserialize_with = "address")]
    pub listen_addr: SocketAddr,
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`.
    pub database_url: String,
    /// Apply pending migrations at start (dev); production runs `roster migrate` instead.
    pub migrate_on_start: bool,
    /// Log output format.
    pub log_format: LogFormat,
    /// How long in-flight calls may take to finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// How long health reports NOT_SERVING before the listener closes (0 on Kubernetes, where
    /// the preStop pause does this).
    pub drain_seconds: u64,
    /// Upper bound of one call whose request is a single message (unary or server streaming,
    /// until its response starts). Calls with a request stream (uploads) have their own limits.
    pub request_timeout_seconds: u64,
    /// Calls served at once; further calls are refused with RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
    /// Largest request or response message, after decompression.
    pub max_message_bytes: usize,
    /// Maximum size of the request header list; larger requests are refused.
    pub max_header_list_bytes: u32,
    /// Path of the TOML file holding the caller keys (as SHA-256 hashes).
    pub keys_file: Option<PathBuf>,
    /// How often, in seconds, the keys file is looked at for a change, which is then put in
    /// force without a restart (SIGHUP reloads it at once whatever this says); 0 turns the
    /// looking off.
    pub keys_reload_seconds: u64,
    /// How often the database is pinged for the health status.
    pub db_health_interval_seconds: u64,
    /// Largest number of pooled database connections.
    pub db_max_connections: u32,
    /// Calls per second each caller key may make on average; beyond, RESOURCE_EXHAUSTED
    /// (0: no limit).
    pub rate_limit_per_second: u32,
    /// Calls a caller key may make at once before the average applies.
    pub rate_limit_burst: u32,
    /// Address of the Prometheus text endpoint (`GET /metrics`, plain HTTP); `off` turns it off.
    /// Defaults to `0.0.0.0:9091` (identity), `:9092` (bulk-import), `:9093` (notification).
    #[serde(deserialize_with = "optional_address")]
    pub metrics_addr: Option<SocketAddr>,
    /// Address of a second gRPC listener, always plaintext, that serves `grpc.health.v1.Health`
    /// and nothing else: the same statuses as the main port (NOT_SERVING while the database is
    /// unreachable and while draining), no service RPCs, no reflection, no authentication.
    /// It exists for kubelet's native gRPC probes, which speak plaintext and present no client
    /// certificate, so they cannot reach a main port that speaks TLS or mutual TLS. `off` (the
    /// default) turns it off; it must differ from `listen_addr` and `metrics_addr`.
    #[serde(deserialize_with = "optional_address")]
    pub health_addr: Option<SocketAddr>,
    /// PEM certificate chain the gRPC server presents; with `tls_key_file`, turns TLS on.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (a secret: mount it from a Secret).
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that sign client certificates; when set, every client must present
    /// one (mutual TLS). Needs `tls_cert_file`.
    pub tls_client_ca_file: Option<PathBuf>,
}

impl CommonSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// How often the keys file is looked at for a change; `None` when only SIGHUP reloads it.
    pub fn keys_reload_interval(&self) -> Option<Duration> {
        (self.keys_reload_seconds > 0).then(|| Duration::from_secs(self.keys_reload_seconds))
    }

    pub fn db_health_interval(&self) -> Duration {
        Duration::from_secs(self.db_health_interval_seconds.max(1))
    }
}

/// Reads a socket address, `IP:port`; anything else is refused saying what an address looks
/// like (`9090` alone is a port, not an address).
pub fn address<'de, D>(deserializer: D) -> Result<SocketAddr, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse_address(&text, "").map_err(serde::de::Error::custom)
}

/// Reads an optional socket address: empty or `off` is none, otherwise as [`address`].
pub fn optional_address<'de, D>(deserializer: D) -> Result<Option<SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_address(text, " (or `off`)")
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn parse_address(text: &str, or: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    text.parse().map_err(|_| {
        let port = text.parse::<u16>().ok();
        match port {
            Some(port) => format!(
                "{text:?} is a port, not an address: write IP:port, like 0.0.0.0:{port} (every \
                 interface) or 127.0.0.1:{port}{or}"
            ),
            None => format!(
                "{text:?} is not an address: write IP:port, like 0.0.0.0:9090 or [::]:9090{or}"
            ),
        }
    })
}

/// A secret given as a value (`name`, e.g. `notification_key`) or in a file (`name_file`, a
/// mounted Secret): the value, or the file's contents without surrounding white space. `None`
/// when neither is set (an empty value counts as unset); both at once is refused, naming the
/// two keys.
pub fn secret(
    service: Service,
    name: &str,
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, SettingsError> {
    let env = |key: &str| format!("{}{}", service.env_prefix(), key.to_uppercase());
    let value = value.map(str::trim).filter(|value| !value.is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(SettingsError::Key {
            key: env(name),
            message: format!(
                "set together with {}; give only one of them",
                env(&format!("{name}_file"))
            ),
        }),
        (Some(value), None) => Ok(Some(value.to_owned())),
        (None, Some(path)) => {
            let contents = std::fs::read_to_string(path).map_err(|error| SettingsError::Key {
                key: env(&format!("{name}_file")),
                message: format!("cannot read {}: {error}", path.display()),
            })?;
            let contents = contents.trim();
            if contents.is_empty() {
                return Err(SettingsError::Key {
                    key: env(&format!("{name}_file")),
                    message: format!("{} is empty", path.display()),
                });
            }
            Ok(Some(contents.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// A configuration problem found at start.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Invalid(config::ConfigError),
    #[error("configuration key {key}: {message}")]
    Key { key: String, message: String },
    /// Keys that no setting reads: misspelt, or meant for another service.
    #[error("{}", UnknownKey::list(.0))]
    Unknown(Vec<UnknownKey>),
}

// Not `#[from]`: the message holds the cause already, so it is no `source` too (a report of the
// chain would print it twice).
impl From<config::ConfigError> for SettingsError {
    fn from(error: config::ConfigError) -> Self {
        SettingsError::Invalid(error)
    }
}

/// A configuration key that no setting reads, as it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKey {
    /// `ROSTER_IDENTITY__NOTIFICATON_URL`, or `notificaton_url in [identity] of roster.toml`.
    pub written: String,
    /// The nearest key that exists, written the same way, when one is near.
    pub suggestion: Option<String>,
}

impl UnknownKey {
    fn list(keys: &[UnknownKey]) -> String {
        keys.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown configuration key {}", self.written)?;
        match &self.suggestion {
            Some(suggestion) => write!(f, ": did you mean {suggestion}?"),
            None => write!(f, ": no setting has this name (the README lists them)"),
        }
    }
}

/// Loads configuration for `service`: defaults, then `file` (when given), then the environment.
impl CommonSettings {
    fn validate(&self, service: Service) -> Result<(), SettingsError> {
        let invalid = |name: &str, message: &str| SettingsError::Key {
            key: format!("{}{}", service.env_prefix(), name.to_uppercase()),
            message: message.to_owned(),
        };
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if self.concurrency_limit == 0 {
            return Err(invalid("concurrency_limit", "must be at least 1"));
        }
        if self.max_message_bytes < 1024 {
            return Err(invalid("max_message_bytes", "must be at least 1024"));
        }
        if self.request_timeout_seconds == 0 {
            return Err(invalid("request_timeout_seconds", "must be at least 1"));
        }
        if self.db_max_connections == 0 {
            return Err(invalid("db_max_connections", "must be at least 1"));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(invalid("tls_key_file", "must be set with tls_cert_file"));
            }
            (None, Some(_)) => {
                return Err(invalid("tls_cert_file", "must be set with tls_key_file"));
            }
            _ => {}
        }
        if self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none() {
            return Err(invalid(
                "tls_client_ca_file",
                "mutual TLS needs tls_cert_file and tls_key_file",
            ));
        }
        if let Some(health) = self.health_addr {
            let others = [
                ("listen_addr", Some(self.listen_addr)),
                ("metrics_addr", self.metrics_addr),
            ];
            for (name, other) in others {
                if let Some(other) = other.filter(|other| same_socket(health, *other)) {
                    return Err(invalid(
                        "health_addr",
                        &format!(
                            "{health} clashes with {name} ({other}): the plaintext health \
                             listener needs a port of its own"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether two listeners would fight over one socket: the same port (not 0, which picks a free
/// one) on the same address, or on any address when either binds them all.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

mod loader;

pub use loader::Loader;

#[cfg(test)]
mod tests;
