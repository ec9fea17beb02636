//! The one error of the notification service's use cases; `api` maps it to a gRPC status.

use roster_runtime::ApiError;

use crate::domain::FieldError;
use crate::domain::state::DeliveryState;
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
    /// Only a FAILED notification can be retried.
    #[error("the notification is {}; only a FAILED notification can be retried", .0.as_str())]
    NotFailed(DeliveryState),
    /// Only a notification that waits for delivery can be cancelled.
    #[error("{}", not_waiting(*.0))]
    NotWaiting(DeliveryState),
    /// A FAILED notification whose template variables were discarded when it failed (before
    /// failed messages kept them) cannot be rendered again.
    #[error(
        "the notification is FAILED but its template variables were discarded; send the email \
         again with SendEmail"
    )]
    VariablesDiscarded,
    /// The caller key may not act on the account: the runtime's refusal, worded as in every
    /// service.
    #[error(transparent)]
    AccountNotPermitted(ApiError),
    /// The request id was used before by the same caller for the same operation on another
    /// notification.
    #[error("request_id was used for another notification")]
    RequestIdReused,
    /// SendEmail's request id was sent before with another email.
    #[error("request_id was sent before with another email")]
    RequestIdOfAnotherEmail,
    /// The email's account was deleted: nothing is sent for it.
    #[error("the account is deleted: no email is sent for it until UndeleteAccount brings it back")]
    AccountDeleted,
    /// An idempotency key was held when it was written, yet gone when read back.
    #[error("idempotency key vanished")]
    RequestKeyVanished,
    /// The statement carrying this call's write ended without answering it (its task panicked).
    #[error("the email's write ended without an answer")]
    EnqueueLost,
    /// The variables could not be stored as JSON.
    #[error("encoding the variables: {0}")]
    Variables(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn not_waiting(state: DeliveryState) -> String {
    match state {
        DeliveryState::Sending => {
            "the notification is SENDING: a worker is sending it now, so it can no longer be \
             cancelled"
                .to_owned()
        }
        state => format!(
            "the notification is {}; only a QUEUED or RETRYING notification can be cancelled",
            state.as_str()
        ),
    }
}
