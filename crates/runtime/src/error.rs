//! The one mapping from domain failures to `tonic::Status`.
//!
//! Services convert their domain errors into [`ApiError`]; only this module builds a `Status`.
//! Every status carries rich details (tonic-types): `BadRequest` with every field violation,
//! `ErrorInfo` with a stable reason, `PreconditionFailure` for state errors, `RetryInfo` when a
//! retry makes sense. Internal errors are logged with the call's trace id and reach the caller as
//! a generic INTERNAL quoting that id (the caller's own, when it sent a `traceparent`), never
//! with database text.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Roster error.
pub const ERROR_DOMAIN: &str = "roster";

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `email` or `items[3].username`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// A failure as callers see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: every violation is listed.
    #[error("invalid request: {violations:?}")]
    InvalidArgument {
        reason: &'static str,
        violations: Vec<FieldViolation>,
    },
    /// The resource does not exist, or the caller may not know it exists.
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    /// A unique value is held already.
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
        metadata: HashMap<String, String>,
    },
    /// The system is not in the state the call needs.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
        subject: String,
    },
    /// A concurrent change won (stale etag, conflicting request id).
    #[error("{message}")]
    Aborted {
        reason: &'static str,
        message: String,
    },
    /// The caller is known but may not do this.
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    /// No or an unknown caller key.
    #[error("{message}")]
    Unauthenticated { message: String },
    /// A limit was hit; the caller may retry after the delay.
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A dependency is down; retrying later may work.
    #[error("{message}")]
    Unavailable { message: String },
    /// The RPC exists in the contract but is not served by this build.
    #[error("{method} is not implemented")]
    Unimplemented { method: &'static str },
    /// A bug or an infrastructure failure. The cause is logged, never returned. (It is in the
    /// message, so it is no `source` as well: a report of the chain would print it twice.)
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument {
            reason: "INVALID_ARGUMENT",
            violations: vec![FieldViolation::new(field, description)],
        }
    }

    /// Several invalid fields at once.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        ApiError::InvalidArgument {
            reason: "INVALID_ARGUMENT",
            violations,
        }
    }

    /// Wraps any error as INTERNAL.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(error.into())
    }

    /// A stale or mismatching etag.
    pub fn stale_etag() -> Self {
        ApiError::Aborted {
            reason: "ETAG_MISMATCH",
            message: "the resource changed since it was read; read it again and retry".into(),
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument { .. } => Code::InvalidArgument,
            ApiError::NotFound { .. } => Code::NotFound,
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::FailedPrecondition { .. } => Code::FailedPrecondition,
            ApiError::Aborted { .. } => Code::Aborted,
            ApiError::PermissionDenied { .. } => Code::PermissionDenied,
            ApiError::Unauthenticated { .. } => Code::Unauthenticated,
            ApiError::ResourceExhausted { .. } => Code::ResourceExhausted,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Unimplemented { .. } => Code::Unimplemented,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// The stable `ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument { reason, .. }
            | ApiError::AlreadyExists { reason, .. }
            | ApiError::FailedPrecondition { reason, .. }
            | ApiError::Aborted { reason, .. }
            | ApiError::PermissionDenied { reason, .. }
            | ApiError::ResourceExhausted { reason, .. } => reason,
            ApiError::NotFound { .. } => "NOT_FOUND",
            ApiError::Unauthenticated { .. } => "UNAUTHENTICATED",
            ApiError::Unavailable { .. } => "UNAVAILABLE",
            ApiError::Unimplemented { .. } => "UNIMPLEMENTED",
            ApiError::Internal(_) => "INTERNAL",
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let code = error.code();
        let mut details = ErrorDetails::new();
        details.set_error_info(error.reason(), ERROR_DOMAIN, HashMap::new());
        let message = match error {
            ApiError::InvalidArgument { violations, .. } => {
                let summary = violations
                    .iter()
                    .map(|violation| format!("{}: {}", violation.field, violation.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                for violation in violations {
                    details.add_bad_request_violation(violation.field, violation.description);
                }
                format!("invalid request: {summary}")
            }
            ApiError::NotFound { resource } => format!("{resource} not found"),
            ApiError::AlreadyExists {
                reason,
                message,
                metadata,
            } => {
                details.set_error_info(reason, ERROR_DOMAIN, metadata);
                message
            }
            ApiError::FailedPrecondition {
                reason,
                message,
                subject,
            } => {
                details.add_precondition_failure_violation(reason, subject, message.clone());
                message
            }
            ApiError::ResourceExhausted {
                message,
                retry_after,
                ..
            } => {
                if retry_after.is_some() {
                    details.set_retry_info(retry_after);
                }
                message
            }
            ApiError::Internal(source) => {
                let trace_id = crate::telemetry::current_trace_id();
                tracing::error!(error = %source, trace_id = %trace_id, "internal error");
                return Status::with_error_details(
                    Code::Internal,
                    format!("internal error (trace id {trace_id})"),
                    details,
                );
            }
            ApiError::Unimplemented { method } => {
                format!("{method} is not available in this version of Roster")
            }
            ApiError::Aborted { message, .. }
            | ApiError::PermissionDenied { message, .. }
            | ApiError::Unauthenticated { message }
            | ApiError::Unavailable { message } => message,
        };
        deterministic(Status::with_error_details(code, message, details))
    }
}

/// The same status with its `ErrorInfo.metadata` encoded in key order. tonic-types keeps the
/// metadata in a `HashMap`, whose order differs from one status to the next; so that two
/// answers that say the same thing are the same bytes (a refusal of another account's object
/// must be byte-identical to that of an object that does not exist), the entries are written
/// sorted.
fn deterministic(status: Status) -> Status {
    use prost::Message;
    use prost::encoding::{WireType, encode_key, encode_varint, string};
    const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";
    let Ok(mut decoded) = tonic_types::pb::Status::decode(status.details()) else {
        return status;
    };
    let mut changed = false;
    for any in &mut decoded.details {
        if any.type_url != ERROR_INFO {
            continue;
        }
        let Ok(info) = tonic_types::pb::ErrorInfo::decode(any.value.as_slice()) else {
            continue;
        };
        if info.metadata.len() < 2 {
            continue;
        }
        let mut entries: Vec<(&String, &String)> = info.metadata.iter().collect();
        entries.sort();
        let mut bytes = Vec::new();
        if !info.reason.is_empty() {
            string::encode(1, &info.reason, &mut bytes);
        }
        if !info.domain.is_empty() {
            string::encode(2, &info.domain, &mut bytes);
        }
        for (key, value) in entries {
            encode_key(3, WireType::LengthDelimited, &mut bytes);
            encode_varint(
                (string::encoded_len(1, key) + string::encoded_len(2, value)) as u64,
                &mut bytes,
            );
            string::encode(1, key, &mut bytes);
            string::encode(2, value, &mut bytes);
        }
        any.value = bytes;
        changed = true;
    }
    if !changed {
        return status;
    }
    Status::with_details(
        status.code(),
        status.message().to_owned(),
        decoded.encode_to_vec().into(),
    )
}

/// Database errors are internal: their text is logged, never returned.
impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        ApiError::Internal(Box::new(error))
    }
}

/// `messages` — an error's and its causes', outermost first — joined with ": ", each cause once.
/// Many errors end their message with their source's (thiserror's `#[error("…: {0}")]` on a
/// `#[source]`, as sea-orm and sqlx write theirs), so printing the whole chain would say a cause
/// twice or three times (`database "x" does not exist: database "x" does not exist`); a message
/// that the one kept before it already holds is left out.
pub fn chain_text(messages: impl IntoIterator<Item = String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    for message in messages {
        if message.is_empty() || kept.last().is_some_and(|last| last.contains(&message)) {
            continue;
        }
        kept.push(message);
    }
    kept.join(": ")
}

/// [`chain_text`] of `error` and its sources.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    chain_text(std::iter::successors(Some(error), |error| error.source()).map(ToString::to_string))
}

/// The `reason` of the `ErrorInfo` a status carries (`ACCOUNT_DELETED`, …), if any.
pub fn status_reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_reaches_the_caller() {
        let status: Status = ApiError::invalid_fields(vec![
            FieldViolation::new("first_name", "is required"),
            FieldViolation::new("email", "is not an email address"),
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status
            .get_details_bad_request()
            .expect("BadRequest details");
        assert_eq!(bad_request.field_violations.len(), 2);
    }

    #[test]
    fn internal_errors_hide_their_text() {
        let status: Status = ApiError::internal(std::io::Error::other(
            "relation \"profiles\" does not exist",
        ))
        .into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("profiles"));
    }

    #[test]
    fn each_cause_is_reported_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("error returned from database: {0}")]
        struct Driver(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("Connection Error: {0}")]
        struct Connection(#[source] Driver);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot migrate")]
        struct Migrate(#[source] Connection);

        let error = Migrate(Connection(Driver(std::io::Error::other(
            "database \"x\" does not exist",
        ))));
        assert_eq!(
            report(&error),
            "cannot migrate: Connection Error: error returned from database: database \"x\" \
             does not exist"
        );
    }

    #[test]
    fn error_info_metadata_is_the_same_bytes_every_time() {
        let status = || -> Status {
            ApiError::AlreadyExists {
                reason: "USERNAME_TAKEN",
                message: "taken".into(),
                metadata: (0..8)
                    .map(|n| (format!("key{n}"), format!("value{n}")))
                    .collect(),
            }
            .into()
        };
        let first = status();
        for _ in 0..20 {
            assert_eq!(status().details(), first.details());
        }
        let info = first.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata.len(), 8);
        assert_eq!(info.metadata["key3"], "value3");
    }

    #[test]
    fn reasons_travel_in_error_info() {
        let status: Status = ApiError::AlreadyExists {
            reason: "USERNAME_TAKEN",
            message: "taken".into(),
            metadata: HashMap::new(),
        }
        .into();
        assert_eq!(
            status.get_details_error_info().map(|info| info.reason),
            Some("USERNAME_TAKEN".to_owned())
        );
    }
}
