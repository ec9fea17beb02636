//! What one gRPC server is configured with: its address, limits and timings, its other
//! listeners, and the PEM files of its TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::settings::CommonSettings;

/// Limits and timings of one gRPC server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen_addr: SocketAddr,
    pub request_timeout: Duration,
    pub concurrency_limit: usize,
    pub max_header_list_bytes: u32,
    /// Time between health turning NOT_SERVING and the listener closing, for load balancers.
    pub drain_delay: Duration,
    /// Time in-flight calls get to finish once the listener is closed.
    pub shutdown_grace: Duration,
    pub db_health_interval: Duration,
    /// Calls per second each caller key may make on average (0: no limit).
    pub rate_limit_per_second: u32,
    /// Calls a caller key may make at once before the average applies.
    pub rate_limit_burst: u32,
    /// Where `GET /metrics` is served; `None` turns the endpoint off.
    pub metrics_addr: Option<SocketAddr>,
    /// Where a plaintext listener serves `grpc.health.v1.Health` alone, for kubelet probes when
    /// the main port speaks TLS; `None` turns it off.
    pub health_addr: Option<SocketAddr>,
    /// TLS (and mutual TLS) of the gRPC listener; `None` serves plain HTTP/2.
    pub tls: Option<ServerTls>,
}

/// The PEM files of a TLS server.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// Reads the files into tonic's TLS configuration (rustls, ring provider).
    pub fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .map_err(|error| anyhow::anyhow!("cannot read {what} {}: {error}", path.display()))
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&self.cert_file, "tls_cert_file")?,
            read(&self.key_file, "tls_key_file")?,
        ));
        if let Some(ca) = &self.client_ca_file {
            config = config
                .client_ca_root(Certificate::from_pem(read(ca, "tls_client_ca_file")?))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}

impl From<&CommonSettings> for ServerConfig {
    fn from(settings: &CommonSettings) -> Self {
        Self {
            listen_addr: settings.listen_addr,
            request_timeout: settings.request_timeout(),
            concurrency_limit: settings.concurrency_limit,
            max_header_list_bytes: settings.max_header_list_bytes,
            drain_delay: Duration::from_secs(settings.drain_seconds),
            shutdown_grace: settings.shutdown_grace(),
            db_health_interval: settings.db_health_interval(),
            rate_limit_per_second: settings.rate_limit_per_second,
            rate_limit_burst: settings.rate_limit_burst,
            metrics_addr: settings.metrics_addr,
            health_addr: settings.health_addr,
            tls: match (&settings.tls_cert_file, &settings.tls_key_file) {
                (Some(cert_file), Some(key_file)) => Some(ServerTls {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                    client_ca_file: settings.tls_client_ca_file.clone(),
                }),
                _ => None,
            },
        }
    }
}
