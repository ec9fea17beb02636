//! The layered loader: built-in defaults, then an optional TOML file, then
//! `ROSTER_<SERVICE>__<KEY>` variables; and the refusal of every key no setting reads, naming
//! the nearest one that exists.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CommonSettings, Service, SettingsError, UnknownKey};

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
    pub(crate) fn environment(mut self, variables: &[(&str, &str)]) -> Self {
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
            .set_default(key("keys_reload_seconds"), 1)?
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
