//! The one place that turns an address and the TLS options into a connection, for every
//! command: plaintext `http://`, or TLS (mutual TLS with a client certificate) when the address
//! says `https://` or any TLS option is set.
//!
//! The options are the runtime's [`ClientTls`] settings, whose files the runtime's loader reads;
//! every message names the flag (and variable) to fix.

use std::time::Duration;

use anyhow::Context as _;
use roster_runtime::Service;
use roster_runtime::client::{ClientTls, SettingName, TlsSettingNames};
use tonic::transport::{Channel, Endpoint};

use super::Client;

impl Client {
    /// A channel to `service`, connected now so that an unreachable address is reported as
    /// such, naming the flag and the variable that set it.
    pub async fn channel(&self, service: Service) -> anyhow::Result<Channel> {
        self.key()?;
        let (addr, flag, variable) = match service {
            Service::Identity => (
                &self.args.identity_addr,
                "--identity-addr",
                "ROSTER_IDENTITY_ADDR",
            ),
            Service::BulkImport => (
                &self.args.bulk_import_addr,
                "--bulk-import-addr",
                "ROSTER_BULK_IMPORT_ADDR",
            ),
            Service::Notification => (
                &self.args.notification_addr,
                "--notification-addr",
                "ROSTER_NOTIFICATION_ADDR",
            ),
        };
        let endpoint = endpoint(addr, flag, &self.tls)?
            .connect_timeout(self.args.timeout.min(Duration::from_secs(10)));
        endpoint.connect().await.with_context(|| {
            format!(
                "cannot reach {} at {} (set {flag} or {variable})",
                service.name(),
                endpoint.uri()
            )
        })
    }
}

/// The TLS options that are set, as flags (for messages).
fn set_flags(tls: &ClientTls) -> Vec<&'static str> {
    [
        ("--tls-ca-file", tls.ca_file.is_some()),
        ("--tls-cert-file", tls.cert_file.is_some()),
        ("--tls-key-file", tls.key_file.is_some()),
        ("--tls-domain", tls.domain.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect()
}

/// The TLS file options as the runtime's TLS errors name them: by flag, and with the variable
/// too where one is missing.
fn tls_names() -> TlsSettingNames {
    TlsSettingNames {
        ca_file: SettingName::new("--tls-ca-file").also("ROSTER_TLS_CA_FILE"),
        cert_file: SettingName::new("--tls-cert-file").also("ROSTER_TLS_CERT_FILE"),
        key_file: SettingName::new("--tls-key-file").also("ROSTER_TLS_KEY_FILE"),
    }
}

/// What to check when a call breaks in the connection rather than being answered: a TLS
/// server closes a plaintext connection, and a mutual-TLS server one without a client
/// certificate (or with one it does not trust) once the handshake is over, so these
/// surface on the first call, not when connecting.
pub(super) fn connection_hint(tls: &ClientTls) -> &'static str {
    if tls.cert_file.is_some() {
        "the connection broke during the call: check that the service trusts the CA that \
         signed --tls-cert-file"
    } else {
        "the connection broke during the call: a service serving TLS needs an https:// \
         address or --tls-ca-file, and one serving mutual TLS (the production overlay) also \
         --tls-cert-file and --tls-key-file"
    }
}

/// Whether to speak TLS to `addr`, and the URI to connect to: an `https://` address or any TLS
/// option means TLS, and an address without scheme takes the scheme that fits.
fn resolve_uri(addr: &str, flag: &str, tls: &ClientTls) -> anyhow::Result<(String, bool)> {
    let set = set_flags(tls);
    match addr.split_once("://") {
        None => Ok(if set.is_empty() {
            (format!("http://{addr}"), false)
        } else {
            (format!("https://{addr}"), true)
        }),
        Some(("https", _)) => Ok((addr.to_owned(), true)),
        Some(("http", rest)) if !set.is_empty() => anyhow::bail!(
            "{flag} {addr} is a plaintext address but {} asks for TLS: use https://{rest} (or \
             no scheme), or drop the TLS options",
            set.join(", ")
        ),
        Some(("http", _)) => Ok((addr.to_owned(), false)),
        Some(_) => anyhow::bail!("{flag} {addr:?}: the scheme must be http:// or https://"),
    }
}

/// The endpoint of the service at `addr` (set by `flag`), with TLS when the address or the TLS
/// options ask for it. Not connected yet; nothing is sent before the options are checked.
fn endpoint(addr: &str, flag: &str, tls: &ClientTls) -> anyhow::Result<Endpoint> {
    let (uri, use_tls) = resolve_uri(addr, flag, tls)?;
    let endpoint = Endpoint::from_shared(uri)
        .with_context(|| format!("{flag} {addr:?} is not an address (host:port)"))?;
    if !use_tls {
        return Ok(endpoint);
    }
    endpoint.tls_config(tls.load(&tls_names())?).context(
        "the TLS options are not usable: --tls-ca-file, --tls-cert-file and --tls-key-file take \
         PEM files, --tls-domain a DNS name or an IP address",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_address_or_a_tls_option_means_tls_and_a_bare_address_follows() {
        let plain = ClientTls::default();
        let ca = ClientTls {
            ca_file: Some("ca.pem".into()),
            ..ClientTls::default()
        };
        let resolve = |addr: &str, tls: &ClientTls| resolve_uri(addr, "--identity-addr", tls);
        assert_eq!(
            resolve("localhost:50051", &plain).unwrap(),
            ("http://localhost:50051".to_owned(), false)
        );
        assert_eq!(
            resolve("localhost:50051", &ca).unwrap(),
            ("https://localhost:50051".to_owned(), true)
        );
        assert_eq!(
            resolve("https://identity:50051", &plain).unwrap(),
            ("https://identity:50051".to_owned(), true)
        );
        let error = resolve("http://identity:50051", &ca)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--identity-addr") && error.contains("--tls-ca-file"),
            "{error}"
        );
        assert!(resolve("ftp://identity:50051", &plain).is_err());
    }
}
