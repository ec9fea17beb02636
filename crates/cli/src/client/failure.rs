//! How a failed command is shown: the gRPC code, the `ErrorInfo` reason, every field and
//! precondition violation, the call's ids and what to try next — as text, or as one JSON
//! document under `--json`.

use std::fmt;

use roster_runtime::error::chain_text;
use roster_runtime::metrics::code_name;
use serde_json::{Map, Value};
use tonic::{Code, Status};
use tonic_types::StatusExt;

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
