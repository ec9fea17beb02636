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
//! [`Client::channel`] is the one place that turns an address and the `--tls-*` options into a
//! connection, for every command: plaintext `http://`, or TLS (mutual TLS with a client
//! certificate) when the address says `https://` or any TLS option is set.

use std::error::Error as _;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use roster_runtime::Service;
use roster_runtime::error::chain_text;
use serde_json::{Map, Value};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The flags every operator command takes. They are global: they may come before or after the
/// subcommand. No `Debug`: it would print the key.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Connection and output")]
pub struct ClientArgs {
    /// Address of the identity service: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "ROSTER_IDENTITY_ADDR",
        default_value = "localhost:50051",
        value_name = "ADDR"
    )]
    pub identity_addr: String,
    /// Address of the bulk-import service: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "ROSTER_BULK_IMPORT_ADDR",
        default_value = "localhost:50052",
        value_name = "ADDR"
    )]
    pub bulk_import_addr: String,
    /// Address of the notification service: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "ROSTER_NOTIFICATION_ADDR",
        default_value = "localhost:50053",
        value_name = "ADDR"
    )]
    pub notification_addr: String,
    /// Caller key, sent as `authorization: Bearer <key>`. Prefer the environment variable: a
    /// flag shows in the process list and the shell history.
    // A plain string, checked when a call needs it: an empty ROSTER_KEY counts as none, and
    // `roster keys` works whatever the variable holds.
    #[arg(
        long,
        global = true,
        env = "ROSTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,
    /// Print one JSON document on stdout; failures as one JSON document on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline of each call, e.g. 30s, 500ms, 2m (a plain number is seconds).
    #[arg(
        long,
        global = true,
        env = "ROSTER_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub timeout: Duration,
    /// Print each call's method, request id and trace id on stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS towards the services. Any of these options turns TLS on for every service (an address
/// without scheme then means `https://`); an `https://` address turns it on for its service.
/// An empty value counts as unset, like an empty `ROSTER_KEY`.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// PEM file of the CA certificates the servers' certificates must chain to (default: the
    /// system's roots).
    #[arg(
        long,
        global = true,
        env = "ROSTER_TLS_CA_FILE",
        value_name = "FILE",
        value_parser = any_path()
    )]
    tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; goes with --tls-key-file.
    #[arg(
        long,
        global = true,
        env = "ROSTER_TLS_CERT_FILE",
        value_name = "FILE",
        value_parser = any_path()
    )]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(
        long,
        global = true,
        env = "ROSTER_TLS_KEY_FILE",
        value_name = "FILE",
        value_parser = any_path()
    )]
    tls_key_file: Option<PathBuf>,
    /// Name the server's certificate must carry when it differs from the address's host, e.g.
    /// `identity.roster.svc` when port-forwarding to localhost.
    #[arg(long, global = true, env = "ROSTER_TLS_DOMAIN", value_name = "NAME")]
    tls_domain: Option<String>,
}

/// Any path, the empty one included (clap's own path parser refuses it), so that an empty
/// variable reaches [`TlsArgs`] and counts as unset.
fn any_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

fn non_empty(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|path| !path.as_os_str().is_empty())
}

impl TlsArgs {
    fn ca_file(&self) -> Option<&Path> {
        non_empty(&self.tls_ca_file)
    }

    fn cert_file(&self) -> Option<&Path> {
        non_empty(&self.tls_cert_file)
    }

    fn key_file(&self) -> Option<&Path> {
        non_empty(&self.tls_key_file)
    }

    fn domain(&self) -> Option<&str> {
        self.tls_domain
            .as_deref()
            .filter(|domain| !domain.is_empty())
    }

    /// The TLS options that are set, as flags (for messages).
    fn set_flags(&self) -> Vec<&'static str> {
        [
            ("--tls-ca-file", self.ca_file().is_some()),
            ("--tls-cert-file", self.cert_file().is_some()),
            ("--tls-key-file", self.key_file().is_some()),
            ("--tls-domain", self.domain().is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }

    /// Reads the files into tonic's TLS configuration.
    fn config(&self) -> anyhow::Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new();
        config = match self.ca_file() {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, "--tls-ca-file")?)),
            None => config.with_native_roots(),
        };
        match (self.cert_file(), self.key_file()) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read(cert, "--tls-cert-file")?,
                    read(key, "--tls-key-file")?,
                ));
            }
            (None, None) => {}
            _ => anyhow::bail!(
                "--tls-cert-file (ROSTER_TLS_CERT_FILE) and --tls-key-file (ROSTER_TLS_KEY_FILE) \
                 go together: set both to present a client certificate, or neither"
            ),
        }
        if let Some(domain) = self.domain() {
            config = config.domain_name(domain);
        }
        Ok(config)
    }

    /// What to check when a call breaks in the connection rather than being answered: a TLS
    /// server closes a plaintext connection, and a mutual-TLS server one without a client
    /// certificate (or with one it does not trust) once the handshake is over, so these
    /// surface on the first call, not when connecting.
    fn connection_hint(&self) -> &'static str {
        if self.cert_file().is_some() {
            "the connection broke during the call: check that the service trusts the CA that \
             signed --tls-cert-file"
        } else {
            "the connection broke during the call: a service serving TLS needs an https:// \
             address or --tls-ca-file, and one serving mutual TLS (the production overlay) also \
             --tls-cert-file and --tls-key-file"
        }
    }
}

fn read(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
}

/// Whether to speak TLS to `addr`, and the URI to connect to: an `https://` address or any TLS
/// option means TLS, and an address without scheme takes the scheme that fits.
fn resolve_uri(addr: &str, flag: &str, tls: &TlsArgs) -> anyhow::Result<(String, bool)> {
    let set = tls.set_flags();
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
fn endpoint(addr: &str, flag: &str, tls: &TlsArgs) -> anyhow::Result<Endpoint> {
    let (uri, use_tls) = resolve_uri(addr, flag, tls)?;
    let endpoint = Endpoint::from_shared(uri)
        .with_context(|| format!("{flag} {addr:?} is not an address (host:port)"))?;
    if !use_tls {
        return Ok(endpoint);
    }
    endpoint.tls_config(tls.config()?).context(
        "the TLS options are not usable: --tls-ca-file, --tls-cert-file and --tls-key-file take \
         PEM files, --tls-domain a DNS name or an IP address",
    )
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `--request-id` on every command with side effects.
#[derive(clap::Args, Clone, Debug)]
pub struct RequestIdArg {
    /// Idempotency key (AIP-155): repeating the command with the same id returns the first
    /// result and does nothing twice. Default: a new UUID, printed when the outcome is unknown.
    #[arg(long, value_parser = parse_request_id, value_name = "ID")]
    pub request_id: Option<String>,
}

impl RequestIdArg {
    /// The given request id, or a new one.
    pub fn get(&self) -> String {
        self.request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    }
}

fn parse_request_id(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 128 || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err("a request id is 1 to 128 printable ASCII characters".into());
    }
    Ok(value.to_owned())
}

/// The connection settings of one `roster` invocation, and the trace its calls belong to.
pub struct Client {
    args: ClientArgs,
    trace_id: String,
}

impl Client {
    pub fn new(args: ClientArgs) -> Self {
        Self {
            args,
            trace_id: new_trace_id(),
        }
    }

    /// True under `--json`.
    pub fn json(&self) -> bool {
        self.args.json
    }

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
        let endpoint = endpoint(addr, flag, &self.args.tls)?
            .connect_timeout(self.args.timeout.min(Duration::from_secs(10)));
        endpoint.connect().await.with_context(|| {
            format!(
                "cannot reach {} at {} (set {flag} or {variable})",
                service.name(),
                endpoint.uri()
            )
        })
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
        self.invoke(method, request_id, message, Some(self.args.timeout), send)
            .await
    }

    /// [`Client::call`] without a deadline, for a call that lasts as long as its data: an
    /// upload streams a file of any size. Such calls end by their own rules (the server's idle
    /// timeout and size limit), never at `--timeout`; so do server streams ([`Client::stream`]),
    /// a watch following an import to its end.
    pub async fn call_unbounded<T, R>(
        &self,
        method: &'static str,
        request_id: Option<&str>,
        message: T,
        send: impl AsyncFnOnce(tonic::Request<T>) -> Result<tonic::Response<R>, Status>,
    ) -> anyhow::Result<R> {
        self.invoke(method, request_id, message, None, send).await
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
            connection_hint: self.args.tls.connection_hint(),
        })
    }

    async fn invoke<T, R>(
        &self,
        method: &'static str,
        request_id: Option<&str>,
        message: T,
        deadline: Option<Duration>,
        send: impl AsyncFnOnce(tonic::Request<T>) -> Result<tonic::Response<R>, Status>,
    ) -> anyhow::Result<R> {
        self.invoke_with_ids(method, request_id, message, deadline, send)
            .await
            .map(|(response, _)| response)
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
                    .then(|| self.args.tls.connection_hint()),
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

/// A call that the server (or the transport) refused.
#[derive(Debug)]
pub struct RpcFailure {
    pub method: &'static str,
    pub status: Status,
    pub request_id: String,
    pub trace_id: String,
    /// True for calls with side effects, whose outcome is unknown after a transport failure.
    pub mutating: bool,
    /// What to check when the call broke in the connection instead of being answered.
    pub connection_hint: Option<&'static str>,
    /// True when the call had a `--timeout` deadline and it passed: only then can a longer
    /// one help.
    pub deadline_passed: bool,
}

impl fmt::Display for RpcFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.method,
            code_name(self.status.code()),
            self.status.message()
        )
    }
}

impl std::error::Error for RpcFailure {}

/// The canonical name of a gRPC code, as in the gRPC specification.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What to tell the operator beyond the server's message.
fn hints(failure: Option<&RpcFailure>, status: &Status) -> Vec<String> {
    let mut hints = Vec::new();
    let unknown_outcome = matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    );
    if let Some(failure) = failure.filter(|failure| failure.mutating && unknown_outcome) {
        hints.push(format!(
            "the outcome is unknown: repeat the command with --request-id {} to retry without \
             doing it twice",
            failure.request_id
        ));
    }
    let connection_hint = failure.and_then(|failure| failure.connection_hint);
    if let Some(hint) = connection_hint {
        hints.push(hint.into());
    }
    let deadline_passed = failure.is_some_and(|failure| failure.deadline_passed);
    match status.code() {
        // The CLI cancels nothing itself: a CANCELLED answer past the deadline is the server
        // giving up at the deadline the CLI sent (a broken connection is CANCELLED too, with
        // its own hint). Before it, or without one, a longer --timeout changes nothing.
        Code::DeadlineExceeded | Code::Cancelled
            if connection_hint.is_none() && deadline_passed =>
        {
            hints.push("raise --timeout if the call needs longer".into())
        }
        Code::DeadlineExceeded if connection_hint.is_none() && failure.is_some() => hints.push(
            "the service ended the call at its own time limit (its request_timeout_seconds), \
             not at --timeout"
                .into(),
        ),
        Code::Unauthenticated => hints.push("check the caller key (ROSTER_KEY or --key)".into()),
        _ => {}
    }
    hints
}

/// Prints a failed command's error on stderr: as text, or under `--json` as one JSON document
/// `{"error": {...}}`. gRPC failures show their code, reason, field and precondition violations.
pub fn report(error: &anyhow::Error, json: bool) {
    let failure = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<RpcFailure>());
    let status = failure.map(|failure| &failure.status).or_else(|| {
        error
            .chain()
            .find_map(|cause| cause.downcast_ref::<Status>())
    });
    if json {
        eprintln!("{}", error_json(error, failure, status));
        return;
    }
    eprintln!("roster: {}", summary(error));
    let Some(status) = status else {
        return;
    };
    let details = status.get_error_details();
    if let Some(info) = details.error_info() {
        eprintln!("  reason: {}", info.reason);
    }
    if let Some(bad_request) = details.bad_request() {
        for violation in &bad_request.field_violations {
            eprintln!(
                "  invalid field {}: {}",
                violation.field, violation.description
            );
        }
    }
    if let Some(precondition) = details.precondition_failure() {
        for violation in &precondition.violations {
            eprintln!(
                "  precondition {} failed for {:?}: {}",
                violation.r#type, violation.subject, violation.description
            );
        }
    }
    if let Some(delay) = details.retry_info().and_then(|info| info.retry_delay) {
        eprintln!("  retry after {:.1}s", delay.as_secs_f64());
    }
    if let Some(failure) = failure {
        eprintln!(
            "  request id {}, trace id {}",
            failure.request_id, failure.trace_id
        );
    }
    for hint in hints(failure, status) {
        eprintln!("  {hint}");
    }
}

/// The error chain on one line, each cause once ([`chain_text`]), except that a gRPC failure
/// with field violations leaves them to the lines that follow instead of repeating them all.
fn summary(error: &anyhow::Error) -> String {
    chain_text(
        error
            .chain()
            .map(|cause| match cause.downcast_ref::<RpcFailure>() {
                Some(failure) => {
                    let invalid = failure
                        .status
                        .get_error_details()
                        .bad_request()
                        .map_or(0, |bad_request| bad_request.field_violations.len());
                    if invalid == 0 {
                        failure.to_string()
                    } else {
                        format!(
                            "{}: {}: {invalid} invalid field(s)",
                            failure.method,
                            code_name(failure.status.code())
                        )
                    }
                }
                None => cause.to_string(),
            }),
    )
}

/// A failure as one JSON document: `message` (the whole error, as the text form's first line
/// says it) always; for a gRPC failure also `code`, the server's `status_message`, the
/// `ErrorInfo` `reason`, `details` (every `google.rpc` detail the status carries, as grpcurl
/// prints them, `@type` first), `hints`, and the call's `method`, `request_id` and `trace_id`.
fn error_json(
    error: &anyhow::Error,
    failure: Option<&RpcFailure>,
    status: Option<&Status>,
) -> Value {
    let mut body = Map::new();
    body.insert(
        "message".into(),
        chain_text(error.chain().map(ToString::to_string)).into(),
    );
    if let Some(status) = status {
        let error_details = status.get_error_details();
        body.insert("code".into(), code_name(status.code()).into());
        body.insert("status_message".into(), status.message().into());
        body.insert(
            "reason".into(),
            error_details
                .error_info()
                .map(|info| info.reason.clone())
                .into(),
        );
        body.insert("details".into(), details_json(status));
        body.insert("hints".into(), hints(failure, status).into());
    }
    if let Some(failure) = failure {
        body.insert("method".into(), failure.method.into());
        body.insert("request_id".into(), failure.request_id.clone().into());
        body.insert("trace_id".into(), failure.trace_id.clone().into());
    }
    let mut document = Map::new();
    document.insert("error".into(), Value::Object(body));
    Value::Object(document)
}

/// The status's details (`google.rpc.Status.details`), each `Any` unpacked by its type.
fn details_json(status: &Status) -> Value {
    if status.details().is_empty() {
        return Value::Array(Vec::new());
    }
    match crate::output::encoded_json("google.rpc.Status", status.details()) {
        Ok(mut decoded) => decoded["details"].take(),
        // Details this build cannot read are shown as they came (hex), rather than not at all.
        Err(_) => Value::Array(vec![Value::String(hex::encode(status.details()))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn an_https_address_or_a_tls_option_means_tls_and_a_bare_address_follows() {
        let plain = TlsArgs::default();
        let ca = TlsArgs {
            tls_ca_file: Some("ca.pem".into()),
            ..TlsArgs::default()
        };
        let resolve = |addr: &str, tls: &TlsArgs| resolve_uri(addr, "--identity-addr", tls);
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

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
