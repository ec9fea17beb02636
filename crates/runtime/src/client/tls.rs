//! The TLS files of a client: the CA its server's certificate must chain to, and the certificate
//! and key it presents for mutual TLS. They are read here, for the services' clients and the
//! CLI alike, and every error names the setting to fix the way whoever set it knows it: a
//! service by its settings key, the CLI by its flag ([`TlsSettingNames`]).

use std::fmt;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The PEM files of a TLS client.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CA certificates the server's certificate must chain to; the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain presented for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// Private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name the server's certificate must carry, when it differs from the URL's host.
    pub domain: Option<String>,
}

/// How the errors of [`ClientTls::load`] name the settings that gave each file.
#[derive(Clone, Debug)]
pub struct TlsSettingNames {
    pub ca_file: SettingName,
    pub cert_file: SettingName,
    pub key_file: SettingName,
}

/// The fields' own names (`ca_file`, `cert_file`, `key_file`), for files set in code.
impl Default for TlsSettingNames {
    fn default() -> Self {
        Self {
            ca_file: SettingName::new("ca_file"),
            cert_file: SettingName::new("cert_file"),
            key_file: SettingName::new("key_file"),
        }
    }
}

/// One setting as an error names it: by `name` (a settings key, a flag) where its file could not
/// be read, and by every way to set it (`name (also)`) where it is missing, since then the reader
/// has to set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingName {
    name: String,
    also: Option<String>,
}

impl SettingName {
    /// The setting `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            also: None,
        }
    }

    /// The same setting, which can also be set as `other` (a flag's environment variable).
    pub fn also(self, other: impl Into<String>) -> Self {
        Self {
            also: Some(other.into()),
            ..self
        }
    }
}

impl fmt::Display for SettingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.also {
            Some(also) => write!(f, "{} ({also})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// TLS files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {setting} {}", path.display())]
    Unreadable {
        setting: String,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{cert} and {key} go together: set both to present a client certificate, or neither")]
    HalfPair { cert: SettingName, key: SettingName },
}

impl ClientTls {
    pub(super) fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Reads the files into tonic's TLS configuration: the CA file's certificates (or the
    /// system's roots), the client certificate with its key, the domain. Errors name each
    /// setting as `names` say.
    pub fn load(&self, names: &TlsSettingNames) -> Result<ClientTlsConfig, TlsError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, &names.ca_file)?)),
            None => config.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read(cert, &names.cert_file)?,
                    read(key, &names.key_file)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(TlsError::HalfPair {
                    cert: names.cert_file.clone(),
                    key: names.key_file.clone(),
                });
            }
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain);
        }
        Ok(config)
    }
}

/// The contents of the file at `path`, given by the setting `setting`.
fn read(path: &Path, setting: &SettingName) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Unreadable {
        setting: setting.name.clone(),
        path: path.to_owned(),
        error,
    })
}
