//! Where a client's calls go: each configured URL's addresses, resolved again every
//! `resolve_interval`, kept in step with the balanced channel's endpoints.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tonic::transport::channel::Change;
use tonic::transport::{ClientTlsConfig, Endpoint, Uri};

use super::{ClientConfig, ClientError};

/// One configured URL.
pub(super) struct Target {
    url: String,
    origin: Uri,
    https: bool,
    host: String,
    port: u16,
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
}

impl Target {
    pub(super) fn parse(
        url: &str,
        config: &ClientConfig,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let origin: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        let https = match origin.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("the scheme must be http:// or https://")),
        };
        if !https && config.tls.is_set() {
            return Err(invalid("TLS files are configured: use an https:// URL"));
        }
        let host = origin
            .host()
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = origin.port_u16().unwrap_or(if https { 443 } else { 80 });
        let domain = config.tls.domain.clone().unwrap_or_else(|| host.clone());
        Ok(Self {
            url: url.to_owned(),
            origin,
            https,
            host,
            port,
            tls: if https {
                tls.cloned().map(|tls| tls.domain_name(domain))
            } else {
                None
            },
            connect_timeout: config.connect_timeout,
        })
    }

    async fn resolve(&self) -> std::io::Result<HashSet<SocketAddr>> {
        Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect())
    }

    /// The endpoint of one of this URL's addresses: connected by IP, but presenting the URL's
    /// host as `:authority` and checking the certificate against it.
    fn endpoint(&self, addr: SocketAddr) -> Result<Endpoint, tonic::transport::Error> {
        let scheme = if self.https { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .origin(self.origin.clone())
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        Ok(endpoint)
    }
}

/// Keeps the balanced channel's endpoints equal to the targets' addresses, resolving host
/// names every `interval`, until the channel is dropped. A name that does not resolve keeps
/// its last addresses.
pub(super) async fn discover(
    peer: String,
    targets: Vec<Target>,
    changes: Sender<Change<(usize, SocketAddr), Endpoint>>,
    interval: Duration,
) {
    let mut current: HashSet<(usize, SocketAddr)> = HashSet::new();
    loop {
        let mut wanted = HashSet::new();
        for (index, target) in targets.iter().enumerate() {
            match target.resolve().await {
                Ok(addrs) if !addrs.is_empty() => {
                    wanted.extend(addrs.into_iter().map(|addr| (index, addr)));
                }
                result => {
                    let error = result.err().map(|error| error.to_string());
                    tracing::warn!(%peer, url = %target.url, ?error, "no address found; keeping the last ones");
                    wanted.extend(current.iter().filter(|(at, _)| *at == index));
                }
            }
        }
        for key in current.difference(&wanted) {
            if changes.send(Change::Remove(*key)).await.is_err() {
                return;
            }
        }
        for &(index, addr) in wanted.difference(&current) {
            match targets[index].endpoint(addr) {
                Ok(endpoint) => {
                    if changes
                        .send(Change::Insert((index, addr), endpoint))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) => tracing::warn!(%peer, %addr, %error, "address not usable"),
            }
        }
        if wanted != current {
            tracing::debug!(%peer, addresses = ?wanted.iter().map(|(_, addr)| addr).collect::<Vec<_>>(), "balancing");
        }
        current = wanted;
        tokio::select! {
            () = changes.closed() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
