//! The TLS files of a client: the CA its server's certificate must chain to, and the certificate
//! and key it presents for mutual TLS.

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::ClientError;

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

impl ClientTls {
    pub(super) fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    pub(super) fn load(&self) -> Result<ClientTlsConfig, ClientError> {
        let read = |path: &PathBuf| {
            std::fs::read(path)
                .map_err(|error| ClientError::Tls(format!("{}: {error}", path.display())))
        };
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => config.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(ClientError::Tls(
                    "a client certificate needs both its certificate and its key file".into(),
                ));
            }
        }
        Ok(config)
    }
}
