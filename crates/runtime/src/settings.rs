//! Layered configuration with the `config` crate.
//!
//! Sources, later ones winning: built-in defaults, then an optional TOML file (one table per
//! service: `[identity]`, `[bulk_import]`, `[notification]`), then environment variables
//! `ROSTER_<SERVICE>__<KEY>` such as `ROSTER_IDENTITY__DATABASE_URL`. Every service reads the
//! [`CommonSettings`] and its own settings type from its table. Invalid configuration fails at
//! start with a message naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

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
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal (development).
    Pretty,
    /// One JSON object per line (production).
    Json,
}

/// Settings every service has.
#[derive(Clone, Debug, Deserialize)]
pub struct CommonSettings {
    /// Address the gRPC server binds, e.g. `0.0.0.0:50051`. Port 0 picks a free port.
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
    #[serde(deserialize_with = "optional_addr")]
    pub metrics_addr: Option<SocketAddr>,
    /// Address of a second gRPC listener, always plaintext, that serves `grpc.health.v1.Health`
    /// and nothing else: the same statuses as the main port (NOT_SERVING while the database is
    /// unreachable and while draining), no service RPCs, no reflection, no authentication.
    /// It exists for kubelet's native gRPC probes, which speak plaintext and present no client
    /// certificate, so they cannot reach a main port that speaks TLS or mutual TLS. `off` (the
    /// default) turns it off; it must differ from `listen_addr` and `metrics_addr`.
    #[serde(deserialize_with = "optional_addr")]
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

    pub fn db_health_interval(&self) -> Duration {
        Duration::from_secs(self.db_health_interval_seconds.max(1))
    }
}

/// Reads an optional socket address: empty or `off` is none.
fn optional_addr<'de, D>(deserializer: D) -> Result<Option<SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an address like 0.0.0.0:9090 or `off`"
        ))
    })
}

/// A configuration problem found at start.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("configuration key {key}: {message}")]
    Key { key: String, message: String },
}

/// Loads configuration for `service`: defaults, then `file` (when given), then the environment.
pub struct Loader {
    service: Service,
    file: Option<PathBuf>,
    overrides: Vec<(String, String)>,
}

impl Loader {
    pub fn new(service: Service) -> Self {
        Self {
            service,
            file: None,
            overrides: Vec::new(),
        }
    }

    /// Reads this TOML file after the defaults and before the environment.
    pub fn file(mut self, path: Option<&Path>) -> Self {
        self.file = path.map(Path::to_path_buf);
        self
    }

    /// Sets a default that the file and the environment can still override (e.g. dev paths).
    pub fn default_value(mut self, key: &str, value: impl Into<String>) -> Self {
        self.overrides.push((key.to_owned(), value.into()));
        self
    }

    /// Builds the layered configuration and reads the common settings and the service's own.
    pub fn load<T: DeserializeOwned>(self) -> Result<(CommonSettings, T), SettingsError> {
        let table = self.service.config_key();
        let key = |name: &str| format!("{table}.{name}");
        let mut builder = config::Config::builder()
            .set_default(
                key("listen_addr"),
                format!("0.0.0.0:{}", self.service.default_port()),
            )?
            .set_default(
                key("database_url"),
                format!("sqlite://var/{table}.db?mode=rwc"),
            )?
            .set_default(key("migrate_on_start"), true)?
            .set_default(key("log_format"), "pretty")?
            .set_default(key("shutdown_grace_seconds"), 20)?
            .set_default(key("drain_seconds"), 0)?
            .set_default(key("request_timeout_seconds"), 30)?
            .set_default(key("concurrency_limit"), 256)?
            .set_default(key("max_message_bytes"), 8 * 1024 * 1024)?
            .set_default(key("max_header_list_bytes"), 16 * 1024)?
            .set_default(key("db_health_interval_seconds"), 2)?
            .set_default(key("db_max_connections"), 16)?
            .set_default(key("rate_limit_per_second"), 1000)?
            .set_default(key("rate_limit_burst"), 2000)?
            .set_default(
                key("metrics_addr"),
                format!("0.0.0.0:{}", self.service.default_metrics_port()),
            )?
            .set_default(key("health_addr"), "off")?;
        for (name, value) in &self.overrides {
            builder = builder.set_default(key(name), value.as_str())?;
        }
        if let Some(path) = &self.file {
            builder = builder.add_source(
                config::File::from(path.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let config = builder
            .add_source(
                config::Environment::with_prefix("ROSTER")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?;
        let values: serde_json::Value = config.get(table)?;
        let common: CommonSettings = self.deserialize(&values)?;
        let specific: T = self.deserialize(&values)?;
        common.validate(self.service)?;
        Ok((common, specific))
    }

    /// Deserializes the service's table, naming the offending key on failure.
    fn deserialize<T: DeserializeOwned>(
        &self,
        values: &serde_json::Value,
    ) -> Result<T, SettingsError> {
        serde_path_to_error::deserialize(values).map_err(|error| {
            let path = error.path().to_string();
            SettingsError::Key {
                key: format!(
                    "{}{} ({}.{path})",
                    self.service.env_prefix(),
                    path.to_uppercase().replace('.', "__"),
                    self.service.config_key()
                ),
                message: error.into_inner().to_string(),
            }
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Nothing {}

    #[test]
    fn invalid_value_names_the_key() {
        let dir = std::env::temp_dir().join(format!("roster-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[notification]\nshutdown_grace_seconds = \"soon\"\n").unwrap();
        let error = Loader::new(Service::Notification)
            .file(Some(&file))
            .load::<Nothing>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("shutdown_grace_seconds"), "{error}");
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("roster-settings-ok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ok.toml");
        std::fs::write(&file, "[bulk_import]\nconcurrency_limit = 7\n").unwrap();
        let (common, _) = Loader::new(Service::BulkImport)
            .file(Some(&file))
            .load::<Nothing>()
            .unwrap();
        assert_eq!(common.concurrency_limit, 7);
        assert_eq!(common.listen_addr.port(), 50052);
    }

    #[test]
    fn metrics_ports_differ_per_service_and_can_be_turned_off() {
        let dir = std::env::temp_dir().join(format!("roster-settings-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = Service::ALL
            .into_iter()
            .map(|service| {
                let (common, _) = Loader::new(service).load::<Nothing>().unwrap();
                common.metrics_addr.expect("on by default").port()
            })
            .collect();
        assert_eq!(ports, [9091, 9092, 9093]);

        let file = dir.join("off.toml");
        std::fs::write(&file, "[identity]\nmetrics_addr = \"off\"\n").unwrap();
        let (common, _) = Loader::new(Service::Identity)
            .file(Some(&file))
            .load::<Nothing>()
            .unwrap();
        assert_eq!(common.metrics_addr, None);
    }

    /// Loads `service` from a file holding `toml`.
    fn load_file(
        service: Service,
        name: &str,
        toml: &str,
    ) -> Result<(CommonSettings, Nothing), SettingsError> {
        let dir =
            std::env::temp_dir().join(format!("roster-settings-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        Loader::new(service).file(Some(&file)).load::<Nothing>()
    }

    #[test]
    fn health_addr_is_off_by_default_and_reads_off_empty_or_an_address() {
        let (common, _) = Loader::new(Service::Identity).load::<Nothing>().unwrap();
        assert_eq!(common.health_addr, None);
        for (name, value) in [
            ("health-off", "off"),
            ("health-empty", ""),
            ("health-upper", "OFF"),
        ] {
            let (common, _) = load_file(
                Service::Identity,
                name,
                &format!("[identity]\nhealth_addr = \"{value}\"\n"),
            )
            .unwrap();
            assert_eq!(common.health_addr, None, "{value:?}");
        }
        let (common, _) = load_file(
            Service::BulkImport,
            "health-on",
            "[bulk_import]\nhealth_addr = \"0.0.0.0:8086\"\n",
        )
        .unwrap();
        assert_eq!(common.health_addr, Some("0.0.0.0:8086".parse().unwrap()));

        let error = load_file(
            Service::BulkImport,
            "health-bad",
            "[bulk_import]\nhealth_addr = \"8086\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("ROSTER_BULK_IMPORT__HEALTH_ADDR"), "{error}");
    }

    #[test]
    fn health_addr_clashing_with_the_grpc_or_metrics_address_is_refused() {
        let clashes = [
            (
                "health-grpc",
                "health_addr = \"0.0.0.0:50053\"",
                "listen_addr",
            ),
            (
                "health-grpc-ip",
                "health_addr = \"127.0.0.1:50053\"",
                "listen_addr",
            ),
            (
                "health-metrics",
                "health_addr = \"0.0.0.0:9093\"",
                "metrics_addr",
            ),
            (
                "health-metrics-set",
                "health_addr = \"10.0.0.1:9090\"\nmetrics_addr = \"0.0.0.0:9090\"",
                "metrics_addr",
            ),
        ];
        for (name, lines, clash) in clashes {
            let error = load_file(
                Service::Notification,
                name,
                &format!("[notification]\n{lines}\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("ROSTER_NOTIFICATION__HEALTH_ADDR") && error.contains(clash),
                "{lines}: {error}"
            );
        }

        let (common, _) = load_file(
            Service::Notification,
            "health-own-port",
            "[notification]\nhealth_addr = \"0.0.0.0:8086\"\nmetrics_addr = \"off\"\n",
        )
        .unwrap();
        assert_eq!(common.health_addr.map(|addr| addr.port()), Some(8086));
    }

    #[test]
    fn tls_key_without_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("roster-settings-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tls.toml");
        std::fs::write(&file, "[notification]\ntls_key_file = \"/k.pem\"\n").unwrap();
        let error = Loader::new(Service::Notification)
            .file(Some(&file))
            .load::<Nothing>()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ROSTER_NOTIFICATION__TLS_CERT_FILE"),
            "{error}"
        );
    }

    #[test]
    fn semantic_check_names_the_environment_key() {
        let dir = std::env::temp_dir().join(format!("roster-settings-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("db.toml");
        std::fs::write(&file, "[identity]\ndatabase_url = \"mysql://x\"\n").unwrap();
        let error = Loader::new(Service::Identity)
            .file(Some(&file))
            .load::<Nothing>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("ROSTER_IDENTITY__DATABASE_URL"), "{error}");
    }
}
