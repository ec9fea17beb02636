//! How a service reaches another Roster service, configured the same way in every service: a
//! table named after the peer (`[identity.notification]`, `[bulk_import.identity]`, or
//! `ROSTER_<SERVICE>__<PEER>__<KEY>`) with `url`, `key` or `key_file`, `timeout_seconds` and
//! `tls.ca_file`, `tls.cert_file`, `tls.key_file`, `tls.domain`.
//!
//! The flat keys of earlier releases (`notification_url`, `identity_tls_ca_file`, …) are still
//! read: a nested key that is unset takes the flat key's value, and the two set to different
//! values is refused at start naming both, so no configuration is read two ways.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{ClientConfig, ClientTls, SettingName, TlsSettingNames};
use crate::settings::{Service, SettingsError, secret};

/// The settings of one peer.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct PeerSettings {
    /// One URL, or several separated by commas, balanced across; `https://` uses TLS.
    pub url: Option<String>,
    /// The key this service presents to the peer (a secret; from the environment).
    pub key: Option<String>,
    /// A file holding that key, for a Secret mounted as a file (instead of `key`).
    pub key_file: Option<PathBuf>,
    /// Deadline of one call to the peer.
    pub timeout_seconds: Option<u64>,
    pub tls: PeerTls,
}

/// TLS towards a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct PeerTls {
    /// CA certificates (PEM) the peer's certificate must chain to; system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to the peer for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name the peer's certificate carries, when not the URL's host.
    pub domain: Option<String>,
}

impl std::fmt::Debug for PeerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSettings")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Where a peer's settings are read: the service, the peer's table name and the prefix of the
/// flat keys of earlier releases (`notification_` for `notification_url`).
#[derive(Clone, Copy, Debug)]
pub struct PeerKeys<'a> {
    pub service: Service,
    pub peer: &'a str,
}

impl PeerKeys<'_> {
    fn nested(&self, key: &str) -> String {
        format!(
            "{}{}__{}",
            self.service.env_prefix(),
            self.peer.to_uppercase(),
            key.replace('.', "__").to_uppercase()
        )
    }

    fn flat(&self, key: &str) -> String {
        format!(
            "{}{}_{}",
            self.service.env_prefix(),
            self.peer.to_uppercase(),
            key.replace('.', "_").to_uppercase()
        )
    }

    /// How TLS errors name the TLS files: each by the key that set it, the flat key of an
    /// earlier release (`legacy`) or the nested one (`nested`, also when neither did).
    fn tls_names(&self, nested: &PeerTls, legacy: &PeerTls) -> TlsSettingNames {
        let name = |key: &str, nested: bool, legacy: bool| {
            SettingName::new(if legacy && !nested {
                self.flat(key)
            } else {
                self.nested(key)
            })
        };
        TlsSettingNames {
            ca_file: name(
                "tls.ca_file",
                nested.ca_file.is_some(),
                legacy.ca_file.is_some(),
            ),
            cert_file: name(
                "tls.cert_file",
                nested.cert_file.is_some(),
                legacy.cert_file.is_some(),
            ),
            key_file: name(
                "tls.key_file",
                nested.key_file.is_some(),
                legacy.key_file.is_some(),
            ),
        }
    }
}

impl PeerSettings {
    /// These settings, each unset key taken from `legacy` (the flat keys); a key set both ways
    /// to different values is refused, naming both.
    pub fn or_legacy(
        &self,
        keys: PeerKeys<'_>,
        legacy: PeerSettings,
    ) -> Result<Self, SettingsError> {
        fn pick<T: PartialEq + Clone>(
            keys: PeerKeys<'_>,
            key: &str,
            nested: &Option<T>,
            flat: Option<T>,
        ) -> Result<Option<T>, SettingsError> {
            match (nested, flat) {
                (Some(nested), Some(flat)) if *nested != flat => Err(SettingsError::Key {
                    key: keys.nested(key),
                    message: format!(
                        "set together with {} to another value; give only {}",
                        keys.flat(key),
                        keys.nested(key)
                    ),
                }),
                (Some(nested), _) => Ok(Some(nested.clone())),
                (None, flat) => Ok(flat),
            }
        }
        Ok(Self {
            url: pick(keys, "url", &self.url, legacy.url)?,
            key: pick(keys, "key", &self.key, legacy.key)?,
            key_file: pick(keys, "key_file", &self.key_file, legacy.key_file)?,
            timeout_seconds: pick(
                keys,
                "timeout_seconds",
                &self.timeout_seconds,
                legacy.timeout_seconds,
            )?,
            tls: PeerTls {
                ca_file: pick(keys, "tls.ca_file", &self.tls.ca_file, legacy.tls.ca_file)?,
                cert_file: pick(
                    keys,
                    "tls.cert_file",
                    &self.tls.cert_file,
                    legacy.tls.cert_file,
                )?,
                key_file: pick(
                    keys,
                    "tls.key_file",
                    &self.tls.key_file,
                    legacy.tls.key_file,
                )?,
                domain: pick(keys, "tls.domain", &self.tls.domain, legacy.tls.domain)?,
            },
        })
    }

    /// The peer these settings describe, each unset key taken from `legacy` (the flat keys
    /// of earlier releases; see [`PeerSettings::or_legacy`]). The key is read from the nested
    /// `key`/`key_file` when either is set, else from the flat ones, and errors name the keys
    /// as they were written.
    pub fn resolve(&self, keys: PeerKeys<'_>, legacy: PeerSettings) -> Result<Peer, SettingsError> {
        let flat_key = (legacy.key.clone(), legacy.key_file.clone());
        let tls_names = keys.tls_names(&self.tls, &legacy.tls);
        let merged = PeerSettings {
            key: None,
            key_file: None,
            ..self.or_legacy(
                keys,
                PeerSettings {
                    key: None,
                    key_file: None,
                    ..legacy
                },
            )?
        };
        let nested_key = self
            .key
            .as_deref()
            .is_some_and(|key| !key.trim().is_empty())
            || self.key_file.is_some();
        let key = if nested_key {
            if flat_key
                .0
                .as_deref()
                .is_some_and(|key| !key.trim().is_empty())
                || flat_key.1.is_some()
            {
                return Err(SettingsError::Key {
                    key: keys.nested("key"),
                    message: format!(
                        "set together with {}; give only {}",
                        keys.flat("key"),
                        keys.nested("key")
                    ),
                });
            }
            secret(
                keys.service,
                &format!("{}__key", keys.peer),
                self.key.as_deref(),
                self.key_file.as_deref(),
            )?
        } else {
            secret(
                keys.service,
                &format!("{}_key", keys.peer),
                flat_key.0.as_deref(),
                flat_key.1.as_deref(),
            )?
        };
        Ok(Peer {
            url: merged.url.filter(|url| !url.trim().is_empty()),
            key,
            timeout_seconds: merged.timeout_seconds,
            tls: merged.tls,
            tls_names,
        })
    }
}

/// A peer as configured, its key read.
#[derive(Clone, Default)]
pub struct Peer {
    pub url: Option<String>,
    pub key: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub tls: PeerTls,
    /// How TLS errors name the keys that set `tls`.
    pub tls_names: TlsSettingNames,
}

impl Peer {
    /// The client of the peer named `name` (`None`: no URL set), with `default_timeout` when
    /// no timeout is set.
    pub fn client(&self, name: &str, default_timeout: Duration) -> Option<ClientConfig> {
        let url = self.url.as_deref()?;
        Some(
            ClientConfig::new(name, url)
                .key(self.key.clone())
                .timeout(self.timeout_seconds.map_or(default_timeout, |seconds| {
                    Duration::from_secs(seconds.max(1))
                }))
                .tls(ClientTls {
                    ca_file: self.tls.ca_file.clone(),
                    cert_file: self.tls.cert_file.clone(),
                    key_file: self.tls.key_file.clone(),
                    domain: self.tls.domain.clone(),
                })
                .tls_names(self.tls_names.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: PeerKeys<'static> = PeerKeys {
        service: Service::Identity,
        peer: "notification",
    };

    #[test]
    fn a_nested_key_wins_and_an_unset_one_takes_the_flat_value() {
        let nested = PeerSettings {
            url: Some("http://n:1".into()),
            ..PeerSettings::default()
        };
        let flat = PeerSettings {
            timeout_seconds: Some(7),
            tls: PeerTls {
                domain: Some("n.example".into()),
                ..PeerTls::default()
            },
            ..PeerSettings::default()
        };
        let merged = nested.or_legacy(KEYS, flat).unwrap();
        assert_eq!(merged.url.as_deref(), Some("http://n:1"));
        assert_eq!(merged.timeout_seconds, Some(7));
        assert_eq!(merged.tls.domain.as_deref(), Some("n.example"));
    }

    #[test]
    fn a_key_set_both_ways_to_different_values_is_refused_naming_both() {
        let nested = PeerSettings {
            tls: PeerTls {
                ca_file: Some("a.pem".into()),
                ..PeerTls::default()
            },
            ..PeerSettings::default()
        };
        let flat = PeerSettings {
            tls: PeerTls {
                ca_file: Some("b.pem".into()),
                ..PeerTls::default()
            },
            ..PeerSettings::default()
        };
        let error = nested.or_legacy(KEYS, flat).unwrap_err().to_string();
        assert!(
            error.contains("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FILE")
                && error.contains("ROSTER_IDENTITY__NOTIFICATION_TLS_CA_FILE"),
            "{error}"
        );
        let same = PeerSettings {
            url: Some("http://n:1".into()),
            ..PeerSettings::default()
        };
        assert!(same.or_legacy(KEYS, same.clone()).is_ok());
    }

    #[test]
    fn no_url_is_no_client_and_the_timeout_defaults() {
        let none = PeerSettings::default()
            .resolve(KEYS, PeerSettings::default())
            .unwrap();
        assert!(
            none.client("notification", Duration::from_secs(3))
                .is_none()
        );
        let some = PeerSettings {
            url: Some("http://a:1,http://b:2".into()),
            key: Some("k".into()),
            ..PeerSettings::default()
        }
        .resolve(KEYS, PeerSettings::default())
        .unwrap();
        let client = some.client("notification", Duration::from_secs(3)).unwrap();
        assert_eq!(client.urls.len(), 2);
        assert_eq!(client.timeout, Duration::from_secs(3));
        assert_eq!(client.key.as_deref(), Some("k"));
    }

    #[test]
    fn tls_errors_name_each_file_by_the_key_that_set_it() {
        let nested = PeerSettings {
            url: Some("https://n:1".into()),
            tls: PeerTls {
                cert_file: Some("/nonexistent/cert.pem".into()),
                ..PeerTls::default()
            },
            ..PeerSettings::default()
        };
        let legacy = PeerSettings {
            tls: PeerTls {
                key_file: Some("/nonexistent/key.pem".into()),
                ..PeerTls::default()
            },
            ..PeerSettings::default()
        };
        let client = nested
            .resolve(KEYS, legacy)
            .unwrap()
            .client("notification", Duration::from_secs(3))
            .unwrap();
        let names = &client.tls_names;
        assert_eq!(
            names.ca_file,
            SettingName::new("ROSTER_IDENTITY__NOTIFICATION__TLS__CA_FILE")
        );
        assert_eq!(
            names.cert_file,
            SettingName::new("ROSTER_IDENTITY__NOTIFICATION__TLS__CERT_FILE")
        );
        assert_eq!(
            names.key_file,
            SettingName::new("ROSTER_IDENTITY__NOTIFICATION_TLS_KEY_FILE")
        );
        let error = client.tls.load(names).unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot read ROSTER_IDENTITY__NOTIFICATION__TLS__CERT_FILE /nonexistent/cert.pem"
        );
    }

    #[test]
    fn a_flat_key_is_read_and_refused_under_its_own_name() {
        let flat = PeerSettings {
            key: Some("k".into()),
            key_file: Some("k.txt".into()),
            ..PeerSettings::default()
        };
        let error = PeerSettings::default()
            .resolve(KEYS, flat)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("ROSTER_IDENTITY__NOTIFICATION_KEY: set together with"),
            "{error}"
        );
        let both = PeerSettings {
            key: Some("nested".into()),
            ..PeerSettings::default()
        }
        .resolve(
            KEYS,
            PeerSettings {
                key: Some("flat".into()),
                ..PeerSettings::default()
            },
        );
        assert!(both.is_err());
    }
}
