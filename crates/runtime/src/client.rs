//! Calls from one Roster service to another (identity → notification, bulk-import → identity).
//!
//! A [`Client`] is the tower service that tonic's generated clients run on:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
//! use roster_runtime::client::{Client, ClientConfig, idempotent};
//!
//! let config = ClientConfig::new("notification", "http://notification:50053")
//!     .key(Some("the caller key".to_owned()));
//! let mut notification = NotificationServiceClient::new(Client::new(config)?);
//! # let request = roster_proto::notification::v1::SendEmailRequest::default();
//! // SendEmail carries a request_id, so sending it twice does nothing twice: retry it.
//! notification.send_email(idempotent(tonic::Request::new(request))).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Every call through it:
//!
//! - is balanced across every address of the configured URLs (one or several). Host names are
//!   resolved again every [`ClientConfig::resolve_interval`]: on Kubernetes, give the name of a
//!   headless Service (`clusterIP: None`), whose DNS answers with the address of every ready pod,
//!   and calls spread over the replicas and follow them as they come and go. (Behind a
//!   ClusterIP Service, kube-proxy balances connections, and gRPC keeps one connection.)
//! - has a deadline: the caller's own (`tonic::Request::set_timeout`) or the configured one,
//!   sent as `grpc-timeout` and enforced locally with DEADLINE_EXCEEDED;
//! - is retried when it fails with UNAVAILABLE — and only then, and only when marked with
//!   [`idempotent`] — up to [`ClientConfig::max_attempts`] attempts in all, with exponential
//!   backoff and jitter, within the one deadline;
//! - presents the configured caller key as `authorization: Bearer <key>`;
//! - runs in a client span whose W3C trace context goes along, so the callee's span joins the
//!   caller's trace;
//! - speaks TLS to `https://` URLs, checking the server against the configured CA file (or the
//!   system's roots) and presenting a client certificate when one is configured (mutual TLS).
//!
//! Retrying buffers the request message, so mark only unary (or server-streaming) calls.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tokio::sync::mpsc::Sender;
use tonic::body::Body;
use tonic::transport::channel::Change;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};
use tonic::{Code, Status};
use tower::ServiceExt;
use tracing::Instrument;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// First wait before a retry; it doubles with each further attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The longest `grpc-timeout` value: eight digits of milliseconds (about 27 hours).
const MAX_TIMEOUT_MILLIS: u128 = 99_999_999;

/// Where a client calls and how.
#[derive(Clone)]
pub struct ClientConfig {
    /// The called service's name, for logs and spans (`notification`, `identity`).
    pub peer: String,
    /// `http://host:port` or `https://host:port` URLs; calls are balanced across all of their
    /// addresses.
    pub urls: Vec<String>,
    /// The caller key presented as `authorization: Bearer <key>` (a secret: never logged).
    pub key: Option<String>,
    /// Deadline of a call that sets none itself, retries included.
    pub timeout: Duration,
    /// Deadline of opening one connection.
    pub connect_timeout: Duration,
    /// Attempts of an [`idempotent`] call that fails with UNAVAILABLE, the first included.
    pub max_attempts: u32,
    /// How often host names are resolved again, to follow replicas as they come and go.
    pub resolve_interval: Duration,
    /// TLS files for `https://` URLs.
    pub tls: ClientTls,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("peer", &self.peer)
            .field("urls", &self.urls)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

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
    fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    fn load(&self) -> Result<ClientTlsConfig, ClientError> {
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

impl ClientConfig {
    /// A client of `peer` at `urls`: one URL, or several separated by commas or white space.
    /// Deadline 10 s, connect timeout 5 s, 3 attempts, names resolved every 30 s, no key, no
    /// TLS files.
    pub fn new(peer: &str, urls: &str) -> Self {
        Self {
            peer: peer.to_owned(),
            urls: urls
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect(),
            key: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
            resolve_interval: Duration::from_secs(30),
            tls: ClientTls::default(),
        }
    }

    /// Presents `key` as `authorization: Bearer <key>`; `None` or an empty key sends none.
    pub fn key(mut self, key: Option<String>) -> Self {
        self.key = key.filter(|key| !key.is_empty());
        self
    }

    /// Deadline of a call that sets none itself.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// TLS files for `https://` URLs.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }
}

/// A client configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no address is configured")]
    NoAddress,
    #[error("{url:?} is not a usable address: {reason}")]
    Url { url: String, reason: String },
    #[error("the caller key must be printable ASCII")]
    Key,
    #[error("TLS: {0}")]
    Tls(String),
}

/// Marks a call as safe to send more than once (it has a request id, or only reads), so the
/// [`Client`] retries it when it fails with UNAVAILABLE.
pub fn idempotent<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    request.extensions_mut().insert(Idempotent);
    request
}

#[derive(Clone, Copy, Debug)]
struct Idempotent;

/// A balanced, authenticated, traced channel to one service (see the module documentation).
/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    peer: Arc<str>,
    authorization: Option<http::HeaderValue>,
    timeout: Duration,
    max_attempts: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `config`'s addresses. Connections are opened on first use, so a service
    /// starts while the services it calls are still starting. Must run inside a Tokio runtime:
    /// a background task resolves the addresses and ends when the last clone is dropped.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.urls.is_empty() {
            return Err(ClientError::NoAddress);
        }
        let tls = if config.tls.is_set() || config.urls.iter().any(|url| url.starts_with("https:"))
        {
            Some(config.tls.load()?)
        } else {
            None
        };
        let targets = config
            .urls
            .iter()
            .map(|url| Target::parse(url, &config, tls.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let authorization = config
            .key
            .as_ref()
            .map(|key| {
                let mut value = http::HeaderValue::try_from(format!("Bearer {key}"))
                    .map_err(|_| ClientError::Key)?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()?;
        let (channel, changes) = Channel::balance_channel(64);
        tokio::spawn(discover(
            config.peer.clone(),
            targets,
            changes,
            config.resolve_interval,
        ));
        Ok(Self {
            channel,
            peer: config.peer.into(),
            authorization,
            timeout: config.timeout,
            max_attempts: config.max_attempts.max(1),
        })
    }
}

impl tower::Service<http::Request<Body>> for Client {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let name = request.uri().path().trim_start_matches('/').to_owned();
        let (service, method) = name.split_once('/').unwrap_or((&name, ""));
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %name,
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            peer.service = %self.peer,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let headers = request.headers_mut();
        if let Some(authorization) = &self.authorization
            && !headers.contains_key(http::header::AUTHORIZATION)
        {
            headers.insert(http::header::AUTHORIZATION, authorization.clone());
        }
        crate::telemetry::inject_span_context(&span, headers);
        let deadline = match headers.get("grpc-timeout").and_then(parse_grpc_timeout) {
            Some(deadline) => deadline,
            None => {
                let millis = self.timeout.as_millis().min(MAX_TIMEOUT_MILLIS);
                headers.insert(
                    "grpc-timeout",
                    http::HeaderValue::try_from(format!("{millis}m"))
                        .expect("digits are a header value"),
                );
                self.timeout
            }
        };
        let attempts = if request.extensions().get::<Idempotent>().is_some() {
            self.max_attempts
        } else {
            1
        };
        // The channel made ready by `poll_ready` serves this call; a fresh clone the next.
        let clone = self.channel.clone();
        let channel = std::mem::replace(&mut self.channel, clone);
        let peer = self.peer.clone();
        Box::pin(
            async move {
                let call = async move {
                    if attempts > 1 {
                        call_with_retries(channel, request, attempts).await
                    } else {
                        let mut channel = channel;
                        channel.call(request).await.map_err(as_status)
                    }
                };
                let started = tokio::time::Instant::now();
                let late = || {
                    Box::new(Status::deadline_exceeded(format!(
                        "{peer} did not answer within {deadline:?}"
                    ))) as BoxError
                };
                let result = match tokio::time::timeout(deadline, call).await {
                    // The server enforces the same deadline and may answer CANCELLED a moment
                    // before the local timer fires: past the deadline, the caller's view wins.
                    Ok(Err(error))
                        if started.elapsed() >= deadline
                            && error
                                .downcast_ref::<Status>()
                                .is_some_and(|status| status.code() == Code::Cancelled) =>
                    {
                        Err(late())
                    }
                    Ok(result) => result,
                    Err(_) => Err(late()),
                };
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .map(|code| Code::from_bytes(code.as_bytes())),
                    Err(error) => error.downcast_ref::<Status>().map(Status::code),
                };
                if let Some(code) = code {
                    tracing::Span::current().record("rpc.grpc.status_code", code as i32);
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Sends `request` up to `attempts` times while it fails with UNAVAILABLE.
async fn call_with_retries(
    channel: Channel,
    request: http::Request<Body>,
    attempts: u32,
) -> Result<http::Response<Body>, BoxError> {
    let (parts, body) = request.into_parts();
    let message = body.collect().await.map_err(Box::new)?.to_bytes();
    let request = http::Request::from_parts(parts, message);
    let policy = RetryUnavailable {
        attempts_left: attempts,
        backoff: FIRST_BACKOFF,
    };
    tower::retry::Retry::new(policy, Replayable(channel))
        .oneshot(request)
        .await
}

/// The retry policy: UNAVAILABLE only, a bounded number of attempts, exponential backoff with
/// jitter.
#[derive(Clone, Debug)]
struct RetryUnavailable {
    attempts_left: u32,
    backoff: Duration,
}

impl tower::retry::Policy<http::Request<Bytes>, http::Response<Body>, BoxError>
    for RetryUnavailable
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut http::Request<Bytes>,
        result: &mut Result<http::Response<Body>, BoxError>,
    ) -> Option<Self::Future> {
        let unavailable = match result {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .is_some_and(|code| Code::from_bytes(code.as_bytes()) == Code::Unavailable),
            Err(error) => error
                .downcast_ref::<Status>()
                .is_some_and(|status| status.code() == Code::Unavailable),
        };
        if !unavailable || self.attempts_left <= 1 {
            return None;
        }
        self.attempts_left -= 1;
        let wait = self.backoff.mul_f64(rand::random::<f64>() * 0.5 + 0.75);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        tracing::debug!(?wait, "UNAVAILABLE; retrying");
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &http::Request<Bytes>) -> Option<http::Request<Bytes>> {
        let mut copy = http::Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// The channel, taking a buffered request message that can be sent again.
#[derive(Clone)]
struct Replayable(Channel);

impl tower::Service<http::Request<Bytes>> for Replayable {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(as_status)
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let response = self
            .0
            .call(request.map(|message| Body::new(http_body_util::Full::new(message))));
        Box::pin(async move { response.await.map_err(as_status) })
    }
}

/// A transport failure as the status the caller sees (UNAVAILABLE for a refused or broken
/// connection), so the retry policy and the generated client read one type.
fn as_status(error: impl Into<BoxError>) -> BoxError {
    Box::new(Status::from_error(error.into()))
}

/// Reads a `grpc-timeout` value: up to eight digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// One configured URL.
struct Target {
    url: String,
    origin: Uri,
    https: bool,
    host: String,
    port: u16,
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
}

impl Target {
    fn parse(
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
async fn discover(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read() {
        let read = |text: &'static str| parse_grpc_timeout(&http::HeaderValue::from_static(text));
        assert_eq!(read("250m"), Some(Duration::from_millis(250)));
        assert_eq!(read("3S"), Some(Duration::from_secs(3)));
        assert_eq!(read("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(read("123456789m"), None);
        assert_eq!(read("m"), None);
        assert_eq!(read("10x"), None);
    }

    #[test]
    fn several_urls_are_read_from_one_setting() {
        let config = ClientConfig::new("identity", "http://a:1, http://b:2 http://c:3");
        assert_eq!(config.urls, ["http://a:1", "http://b:2", "http://c:3"]);
    }

    #[test]
    fn tls_files_need_an_https_url() {
        let config = ClientConfig::new("identity", "http://a:1").tls(ClientTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientTls::default()
        });
        let error = Target::parse(&config.urls[0], &config, None).err().unwrap();
        assert!(error.to_string().contains("https://"), "{error}");
    }

    #[test]
    fn the_key_is_never_printed() {
        let config = ClientConfig::new("identity", "http://a:1").key(Some("s3cret".into()));
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
