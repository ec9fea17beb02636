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
//!
//! The parts: `tls` (the TLS files of a client), `retry` (the retries of idempotent calls) and
//! `discovery` (the URLs' addresses, resolved again and again, behind the balanced channel).

mod discovery;
mod retry;
mod tls;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::Instrument;

pub use tls::{ClientTls, SettingName, TlsError, TlsSettingNames};

use discovery::{Target, discover};
use retry::{as_status, call_with_retries};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    /// How TLS errors name the settings that gave the files.
    pub tls_names: TlsSettingNames,
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
            tls_names: TlsSettingNames::default(),
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

    /// How TLS errors name the settings that gave the files.
    pub fn tls_names(mut self, names: TlsSettingNames) -> Self {
        self.tls_names = names;
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
    // Not `#[source]`: the message holds the cause already (a report of the chain would print
    // it twice), and callers print this error alone.
    #[error("TLS: {}", crate::error::report(.0))]
    Tls(TlsError),
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
            Some(
                config
                    .tls
                    .load(&config.tls_names)
                    .map_err(ClientError::Tls)?,
            )
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
        let span = crate::telemetry::rpc_span!(
            "grpc.client",
            "client",
            request.uri().path(),
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

#[cfg(test)]
mod tests;
