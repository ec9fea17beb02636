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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
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
pub struct Loader {
    service: Service,
    file: Option<PathBuf>,
    overrides: Vec<(String, String)>,
    /// The variables to read instead of the process's environment (tests).
    environment: Option<HashMap<String, String>>,
}

impl Loader {
    pub fn new(service: Service) -> Self {
        Self {
            service,
            file: None,
            overrides: Vec::new(),
            environment: None,
        }
    }

    /// Reads these variables instead of the process's environment.
    #[cfg(test)]
    fn environment(mut self, variables: &[(&str, &str)]) -> Self {
        self.environment = Some(
            variables
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        );
        self
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

    /// Builds the layered configuration and reads the common settings and the service's own
    /// (`T`'s `Serialize` tells which keys it reads). Fails on a key neither reads.
    pub fn load<T: DeserializeOwned + Serialize>(
        self,
    ) -> Result<(CommonSettings, T), SettingsError> {
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
                    .try_parsing(true)
                    .source(self.environment.clone()),
            )
            .build()?;
        // config's own values deserialize leniently the way a variable needs (`12345` is a
        // string where a string is wanted); the JSON form is for walking the keys.
        let values: config::Value = config.get(table)?;
        let common: CommonSettings = self.deserialize(values.clone())?;
        let specific: T = self.deserialize(values)?;
        let present: serde_json::Value = config.get(table)?;
        let known = [to_json(&common), to_json(&specific)];
        self.check_keys(&present, &known)?;
        common.validate(self.service)?;
        Ok((common, specific))
    }

    /// Refuses keys that no setting reads: in the service's table (from the file or from
    /// `ROSTER_<SERVICE>__` variables), tables of the file that are no service's, and
    /// `ROSTER_<X>__` variables whose `<X>` is no service.
    fn check_keys(
        &self,
        present: &serde_json::Value,
        known: &[serde_json::Value],
    ) -> Result<(), SettingsError> {
        let mut known_keys = BTreeSet::new();
        for value in known {
            leaf_keys(value, "", &|_| true, &mut known_keys);
        }
        let is_table = |path: &str| {
            let prefix = format!("{path}.");
            known_keys.iter().any(|key| key.starts_with(&prefix))
        };
        let mut present_keys = BTreeSet::new();
        leaf_keys(present, "", &is_table, &mut present_keys);
        // What a misspelt key may have meant: every key, and every table (`hashing`).
        let mut candidates = known_keys.clone();
        for key in &known_keys {
            let mut table = key.as_str();
            while let Some((parent, _)) = table.rsplit_once('.') {
                candidates.insert(parent.to_owned());
                table = parent;
            }
        }

        let variables: Vec<String> = match &self.environment {
            Some(variables) => variables.keys().cloned().collect(),
            None => std::env::vars_os()
                .filter_map(|(name, _)| name.into_string().ok())
                .collect(),
        };
        let prefix = self.service.env_prefix();
        let variable_of = |key: &str| format!("{prefix}{}", key.to_uppercase().replace('.', "__"));
        let table = self.service.config_key();
        let file = self
            .file
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "the built-in defaults".to_owned());

        let mut unknown = Vec::new();
        for key in present_keys.iter().filter(|key| !known_keys.contains(*key)) {
            let variable = variables
                .iter()
                .find(|name| name.eq_ignore_ascii_case(&variable_of(key)));
            let suggestion = nearest(key, candidates.iter().map(String::as_str));
            unknown.push(match variable {
                Some(variable) => UnknownKey {
                    written: variable.clone(),
                    suggestion: suggestion.map(|key| variable_of(&key)),
                },
                None => UnknownKey {
                    written: format!("{key} in [{table}] of {file}"),
                    suggestion,
                },
            });
        }

        let services: Vec<&str> = Service::ALL
            .iter()
            .map(|service| service.config_key())
            .collect();
        if let Some(path) = &self.file {
            use config::Source as _;
            let top = config::File::from(path.as_path())
                .format(config::FileFormat::Toml)
                .collect()?;
            for (name, value) in top {
                if services.contains(&name.as_str()) {
                    continue;
                }
                let is_table = matches!(value.kind, config::ValueKind::Table(_));
                unknown.push(if is_table {
                    UnknownKey {
                        written: format!("[{name}] in {file}"),
                        suggestion: nearest(&name, services.iter().copied())
                            .map(|service| format!("[{service}]")),
                    }
                } else {
                    UnknownKey {
                        written: format!("{name} at the top of {file}"),
                        suggestion: Some(format!(
                            "{name} inside a service's table ({})",
                            services
                                .iter()
                                .map(|service| format!("[{service}]"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                });
            }
        }
        let service_segments: Vec<String> = services.iter().map(|key| key.to_uppercase()).collect();
        for name in &variables {
            let Some((segment, rest)) = name
                .strip_prefix("ROSTER_")
                .and_then(|name| name.split_once("__"))
            else {
                continue;
            };
            if service_segments.iter().any(|known| known == segment) {
                continue;
            }
            unknown.push(UnknownKey {
                written: name.clone(),
                suggestion: nearest(segment, service_segments.iter().map(String::as_str))
                    .map(|segment| format!("ROSTER_{segment}__{rest}")),
            });
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Unknown(unknown))
        }
    }

    /// Deserializes the service's table, naming the offending key on failure.
    fn deserialize<T: DeserializeOwned>(&self, values: config::Value) -> Result<T, SettingsError> {
        serde_path_to_error::deserialize(values).map_err(|error| {
            let path = error.path().to_string();
            SettingsError::Key {
                key: format!(
                    "{}{} ({}.{path})",
                    self.service.env_prefix(),
                    path.to_uppercase().replace('.', "__"),
                    self.service.config_key()
                ),
                message: without_key_suffix(error.into_inner().to_string()),
            }
        })
    }
}

/// config's message without the ` for key \`…\`` it ends with: the error names the key already.
fn without_key_suffix(mut message: String) -> String {
    if let Some(at) = message.rfind(" for key `")
        && message.ends_with('`')
    {
        message.truncate(at);
    }
    message
}

/// A settings value as JSON, to list its keys: every field is a key, `None` ones included.
fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Adds the dotted paths of `value`'s leaves under `prefix` to `keys`, going into a table only
/// where `is_table` says the path is one (an unknown table is one key, not its contents).
fn leaf_keys(
    value: &serde_json::Value,
    prefix: &str,
    is_table: &dyn Fn(&str) -> bool,
    keys: &mut BTreeSet<String>,
) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (name, value) in map {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if value.is_object() && is_table(&path) {
            leaf_keys(value, &path, is_table, keys);
        } else {
            keys.insert(path);
        }
    }
}

/// The candidate nearest to `key` when it is near enough to be the one meant: a typo or two
/// away (by Damerau–Levenshtein distance, case aside), or `key` with a part left off
/// (`database` for `database_url`).
fn nearest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let key = key.to_lowercase();
    let limit = (key.chars().count() / 3).max(2);
    candidates
        .filter_map(|candidate| {
            let lower = candidate.to_lowercase();
            let distance = strsim::damerau_levenshtein(&key, &lower);
            let extends =
                lower.starts_with(&format!("{key}_")) || lower.ends_with(&format!("_{key}"));
            (distance <= limit || extends).then_some((distance, candidate))
        })
        .min()
        .map(|(_, candidate)| candidate.to_owned())
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

    #[derive(Debug, Deserialize, Serialize)]
    struct Nothing {}

    #[test]
    fn invalid_value_names_the_key() {
        let error = load_file(
            Service::Notification,
            "bad",
            "[notification]\nshutdown_grace_seconds = \"soon\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("shutdown_grace_seconds"), "{error}");
    }

    #[test]
    fn file_overrides_defaults() {
        let (common, _) = load_file(
            Service::BulkImport,
            "ok",
            "[bulk_import]\nconcurrency_limit = 7\n",
        )
        .unwrap();
        assert_eq!(common.concurrency_limit, 7);
        assert_eq!(common.listen_addr.port(), 50052);
    }

    #[test]
    fn metrics_ports_differ_per_service_and_can_be_turned_off() {
        let ports: Vec<u16> = Service::ALL
            .into_iter()
            .map(|service| {
                let (common, _) = Loader::new(service).load::<Nothing>().unwrap();
                common.metrics_addr.expect("on by default").port()
            })
            .collect();
        assert_eq!(ports, [9091, 9092, 9093]);

        let (common, _) = load_file(
            Service::Identity,
            "metrics-off",
            "[identity]\nmetrics_addr = \"off\"\n",
        )
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
        let error = load_file(
            Service::Notification,
            "tls",
            "[notification]\ntls_key_file = \"/k.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("ROSTER_NOTIFICATION__TLS_CERT_FILE"),
            "{error}"
        );
    }

    #[test]
    fn semantic_check_names_the_environment_key() {
        let error = load_file(
            Service::Identity,
            "db",
            "[identity]\ndatabase_url = \"mysql://x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("ROSTER_IDENTITY__DATABASE_URL"), "{error}");
    }

    #[test]
    fn a_port_where_an_address_belongs_says_what_an_address_looks_like() {
        for toml in [
            "metrics_addr = 9090",
            "metrics_addr = \"9090\"",
            "listen_addr = 50051",
        ] {
            let error = load_file(Service::Identity, "port", &format!("[identity]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("is a port, not an address: write IP:port, like 0.0.0.0:"),
                "{toml}: {error}"
            );
        }
    }

    #[test]
    fn a_string_setting_takes_a_value_that_looks_like_a_number() {
        #[derive(Debug, Deserialize, Serialize)]
        struct Key {
            key: Option<String>,
        }
        let (_, settings) = Loader::new(Service::Identity)
            .environment(&[("ROSTER_IDENTITY__KEY", "12345")])
            .load::<Key>()
            .unwrap();
        assert_eq!(settings.key.as_deref(), Some("12345"));
    }

    #[test]
    fn peer_settings_nest_the_same_way_in_every_service() {
        #[derive(Debug, Default, Deserialize, Serialize)]
        #[serde(default)]
        struct Own {
            notification: crate::peer::PeerSettings,
        }
        let (_, own) = Loader::new(Service::Identity)
            .environment(&[
                ("ROSTER_IDENTITY__NOTIFICATION__URL", "https://n:50053"),
                ("ROSTER_IDENTITY__NOTIFICATION__TIMEOUT_SECONDS", "4"),
                ("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FILE", "/ca.pem"),
            ])
            .load::<Own>()
            .unwrap();
        assert_eq!(own.notification.url.as_deref(), Some("https://n:50053"));
        assert_eq!(own.notification.timeout_seconds, Some(4));
        assert_eq!(
            own.notification.tls.ca_file.as_deref(),
            Some(Path::new("/ca.pem"))
        );
        let error = Loader::new(Service::Identity)
            .environment(&[("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FIL", "/ca.pem")])
            .load::<Own>()
            .unwrap_err();
        let SettingsError::Unknown(unknown) = error else {
            panic!("{error}");
        };
        assert_eq!(
            unknown[0].suggestion.as_deref(),
            Some("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FILE")
        );
    }

    #[test]
    fn unknown_keys_are_refused_as_written_with_the_nearest_known_one() {
        #[derive(Debug, Default, Deserialize, Serialize)]
        #[serde(default)]
        struct Own {
            notification_url: Option<String>,
            hashing: Nested,
        }
        #[derive(Debug, Default, Deserialize, Serialize)]
        #[serde(default)]
        struct Nested {
            memory_kib: u32,
        }

        let error = Loader::new(Service::Identity)
            .environment(&[
                ("ROSTER_IDENTITY__NOTIFICATON_URL", "http://x"),
                ("ROSTER_IDENTITY__HASHING__MEMRY_KIB", "1"),
                ("ROSTER_IDENTITY__COMPLETELY_DIFFERENT", "1"),
                // Other services' keys, and the CLI's variables, are no concern of identity's.
                ("ROSTER_BULK_IMPORT__WHATEVER", "1"),
                ("ROSTER_IDENTITY_ADDR", "localhost:50051"),
                ("ROSTER_CONFIG_FILE", "roster.toml"),
            ])
            .load::<Own>()
            .unwrap_err();
        let SettingsError::Unknown(unknown) = error else {
            panic!("{error}");
        };
        assert_eq!(
            unknown,
            [
                UnknownKey {
                    written: "ROSTER_IDENTITY__COMPLETELY_DIFFERENT".into(),
                    suggestion: None,
                },
                UnknownKey {
                    written: "ROSTER_IDENTITY__HASHING__MEMRY_KIB".into(),
                    suggestion: Some("ROSTER_IDENTITY__HASHING__MEMORY_KIB".into()),
                },
                UnknownKey {
                    written: "ROSTER_IDENTITY__NOTIFICATON_URL".into(),
                    suggestion: Some("ROSTER_IDENTITY__NOTIFICATION_URL".into()),
                },
            ]
        );

        // A service that does not exist.
        let error = Loader::new(Service::Identity)
            .environment(&[("ROSTER_NOTIFCATION__WORKERS", "1")])
            .load::<Own>()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "ROSTER_NOTIFCATION__WORKERS: did you mean ROSTER_NOTIFICATION__WORKERS?"
            ),
            "{error}"
        );

        let (_, own) = Loader::new(Service::Identity)
            .environment(&[("ROSTER_IDENTITY__HASHING__MEMORY_KIB", "7")])
            .load::<Own>()
            .unwrap();
        assert_eq!(own.hashing.memory_kib, 7);
    }

    #[test]
    fn unknown_keys_and_tables_of_the_file_are_refused() {
        let error = load_file(
            Service::BulkImport,
            "unknown",
            "[bulk_import]\nconcurency_limit = 3\n\n[bulk-import]\nx = 1\n\n\
             [identity]\nanything = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("unknown configuration key concurency_limit in [bulk_import] of ")
                && error.contains("did you mean concurrency_limit?"),
            "{error}"
        );
        assert!(
            error.contains("[bulk-import] in ") && error.contains("did you mean [bulk_import]?"),
            "{error}"
        );
        // Identity's table is identity's business.
        assert!(!error.contains("anything"), "{error}");
    }

    #[test]
    fn a_secret_comes_from_its_value_or_its_file_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "  from-the-file\n").unwrap();
        let secret = |value: Option<&str>, file: Option<&Path>| {
            super::secret(Service::Identity, "notification_key", value, file)
        };
        assert_eq!(
            secret(Some("value"), None).unwrap().as_deref(),
            Some("value")
        );
        assert_eq!(
            secret(None, Some(&file)).unwrap().as_deref(),
            Some("from-the-file")
        );
        assert_eq!(secret(Some(""), None).unwrap(), None);
        let both = secret(Some("value"), Some(&file)).unwrap_err().to_string();
        assert!(
            both.contains("ROSTER_IDENTITY__NOTIFICATION_KEY: set together with")
                && both.contains("ROSTER_IDENTITY__NOTIFICATION_KEY_FILE"),
            "{both}"
        );
        let missing = secret(None, Some(&dir.path().join("absent")))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("ROSTER_IDENTITY__NOTIFICATION_KEY_FILE"),
            "{missing}"
        );
    }
}
