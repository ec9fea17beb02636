//! What every operator command shares: where the services are, the caller key, the deadline,
//! request and trace ids, and how a failed call is shown.
//!
//! Each call carries `authorization: Bearer <key>`, a `grpc-timeout`, an `x-request-id` (the
//! AIP-155 idempotency key for calls with side effects, so the servers' logs show the same id)
//! and a W3C `traceparent`. One command is one trace: all its calls share one trace id (each
//! call a span id of its own), which the servers adopt, log on every line of the call and quote
//! in INTERNAL errors, with or without trace export.
//! When a call fails, [`report`] prints the gRPC code, the `ErrorInfo` reason, every `BadRequest`
//! field violation and every `PreconditionFailure`, with the method and the request and trace
//! ids — as text, or as one JSON document on stderr under `--json`, its `details` generated from
//! the `google.rpc` descriptors as the responses are. A server stream that fails midway is
//! reported the same way ([`Streaming`]).
//!
//! - [`args`]: the options every command takes.
//! - [`connection`]: addresses and TLS options to a connection ([`Client::channel`]).
//! - [`failure`]: how a failed call is reported ([`report`]).

mod args;
mod connection;
mod failure;

pub use args::{ClientArgs, RequestIdArg, parse_duration};
pub use failure::{RpcFailure, report};

use std::error::Error as _;
use std::time::Duration;

use anyhow::Context as _;
use roster_runtime::client::ClientTls;
use tonic::Status;

use connection::connection_hint;

/// The connection settings of one `roster` invocation, and the trace its calls belong to.
pub struct Client {
    args: ClientArgs,
    /// The TLS options, with empty values dropped.
    tls: ClientTls,
    trace_id: String,
}

impl Client {
    pub fn new(args: ClientArgs) -> Self {
        Self {
            tls: args.tls.settings(),
            args,
            trace_id: new_trace_id(),
        }
    }

    /// True under `--json`.
    pub fn json(&self) -> bool {
        self.args.json
    }

    /// The caller key, checked.
    pub fn key(&self) -> anyhow::Result<&str> {
        let key = self
            .args
            .key
            .as_deref()
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .context(
                "no caller key: set ROSTER_KEY or pass --key (`roster dev` writes one to \
                 var/operator.key)",
            )?;
        if !key.chars().all(|c| c.is_ascii_graphic()) {
            anyhow::bail!(
                "the caller key (ROSTER_KEY or --key) must be printable ASCII without spaces"
            );
        }
        Ok(key)
    }

    /// Makes one call with the `--timeout` deadline: `method` is the gRPC path without the
    /// leading slash, `request_id` the call's idempotency key when it has side effects (`None`
    /// for reads, which get a fresh `x-request-id`). A failure comes back as an [`RpcFailure`].
    pub async fn call<T, R>(
        &self,
        method: &'static str,
        request_id: Option<&str>,
        message: T,
        send: impl AsyncFnOnce(tonic::Request<T>) -> Result<tonic::Response<R>, Status>,
    ) -> anyhow::Result<R> {
        self.call_within(Some(self.args.timeout), method, request_id, message, send)
            .await
    }

    /// [`Client::call`] for a call with side effects: `request_id` is both the call's
    /// `x-request-id` and the idempotency key (AIP-155) of the message `message` makes of it.
    pub async fn call_idempotent<T, R>(
        &self,
        method: &'static str,
        request_id: String,
        message: impl FnOnce(String) -> T,
        send: impl AsyncFnOnce(tonic::Request<T>) -> Result<tonic::Response<R>, Status>,
    ) -> anyhow::Result<R> {
        self.call(method, Some(&request_id), message(request_id.clone()), send)
            .await
    }

    /// [`Client::call`] with the given deadline; `None` for a call that lasts as long as its
    /// data: an upload streams a file of any size. Such calls end by their own rules (the
    /// server's idle timeout and size limit), never at `--timeout`; so do server streams
    /// ([`Client::stream`]), a watch following an import to its end.
    pub async fn call_within<T, R>(
        &self,
        deadline: Option<Duration>,
        method: &'static str,
        request_id: Option<&str>,
        message: T,
        send: impl AsyncFnOnce(tonic::Request<T>) -> Result<tonic::Response<R>, Status>,
    ) -> anyhow::Result<R> {
        self.invoke_with_ids(method, request_id, message, deadline, send)
            .await
            .map(|(response, _)| response)
    }

    /// Opens a server stream without a deadline (it lasts as long as its data); a failure while
    /// it streams is reported like one of the call itself.
    pub async fn stream<T, M>(
        &self,
        method: &'static str,
        message: T,
        send: impl AsyncFnOnce(
            tonic::Request<T>,
        ) -> Result<tonic::Response<tonic::Streaming<M>>, Status>,
    ) -> anyhow::Result<Streaming<M>> {
        let (stream, ids) = self
            .invoke_with_ids(method, None, message, None, send)
            .await?;
        Ok(Streaming {
            stream,
            method,
            ids,
            connection_hint: connection_hint(&self.tls),
        })
    }

    async fn invoke_with_ids<T, R>(
        &self,
        method: &'static str,
        request_id: Option<&str>,
        message: T,
        deadline: Option<Duration>,
        send: impl AsyncFnOnce(tonic::Request<T>) -> Result<tonic::Response<R>, Status>,
    ) -> anyhow::Result<(R, CallIds)> {
        let ids = CallIds {
            request_id: request_id
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            trace_id: self.trace_id.clone(),
        };
        if self.args.verbose {
            eprintln!(
                "→ {method}  request-id {}  trace-id {}",
                ids.request_id, ids.trace_id
            );
        }
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        let metadata = request.metadata_mut();
        metadata.insert(
            "authorization",
            format!("Bearer {}", self.key()?)
                .parse()
                .context("the caller key is not a valid header value")?,
        );
        metadata.insert(
            "x-request-id",
            ids.request_id.parse().context("invalid request id")?,
        );
        let span_id = format!("{:016x}", rand::random::<u64>() | 1);
        metadata.insert(
            "traceparent",
            format!("00-{}-{span_id}-01", ids.trace_id)
                .parse()
                .context("invalid traceparent")?,
        );
        let started = std::time::Instant::now();
        let answer = match deadline {
            // The server gives up at the deadline sent as grpc-timeout; this bound covers a
            // server or network that never answers at all.
            Some(deadline) => {
                tokio::time::timeout(deadline + Duration::from_secs(1), send(request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded(format!(
                            "no answer within --timeout {deadline:?}"
                        )))
                    })
            }
            None => send(request).await,
        };
        match answer {
            Ok(response) => Ok((response.into_inner(), ids)),
            Err(status) => Err(RpcFailure {
                method,
                // A status the server sent has no source; one made from a transport error has.
                connection_hint: status
                    .source()
                    .is_some()
                    .then(|| connection_hint(&self.tls)),
                status,
                request_id: ids.request_id,
                trace_id: ids.trace_id,
                mutating: request_id.is_some(),
                deadline_passed: deadline.is_some_and(|deadline| started.elapsed() >= deadline),
            }
            .into()),
        }
    }
}

/// A new W3C trace id: 32 lower-case hex digits, not all zero.
fn new_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>() | 1)
}

#[derive(Clone)]
struct CallIds {
    request_id: String,
    trace_id: String,
}

/// A server stream whose failures name its method and ids, like those of [`Client::call`].
pub struct Streaming<M> {
    stream: tonic::Streaming<M>,
    method: &'static str,
    ids: CallIds,
    connection_hint: &'static str,
}

impl<M> Streaming<M> {
    /// The next message, or `None` at the end of the stream.
    pub async fn message(&mut self) -> anyhow::Result<Option<M>> {
        self.stream.message().await.map_err(|status| {
            RpcFailure {
                method: self.method,
                connection_hint: status.source().is_some().then_some(self.connection_hint),
                status,
                request_id: self.ids.request_id.clone(),
                trace_id: self.ids.trace_id.clone(),
                mutating: false,
                deadline_passed: false,
            }
            .into()
        })
    }
}
