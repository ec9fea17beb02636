//! The one error of the notification service's use cases; `api` maps it to a gRPC status.

use roster_runtime::ApiError;

use crate::domain::FieldError;
use crate::store::StoreError;

/// Why a use case did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The request is malformed: every violation, in the request's field names.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    /// No such notification, or one the caller may not know exists.
    #[error("notification not found")]
    NotFound,
    /// The caller key may not act on the account: the runtime's refusal, worded as in every
    /// service.
    #[error(transparent)]
    AccountNotPermitted(ApiError),
    /// An idempotency key was held when it was written, yet gone when read back.
    #[error("idempotency key vanished")]
    RequestKeyVanished,
    /// The variables could not be stored as JSON.
    #[error("encoding the variables: {0}")]
    Variables(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}
