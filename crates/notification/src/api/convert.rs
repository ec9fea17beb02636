//! Domain values to protobuf messages and back, and the service's error to a gRPC status.

use roster_proto::notification::v1 as pb;
use roster_runtime::ApiError;
use roster_runtime::error::FieldViolation;
use tonic::Status;

use crate::app::NotificationError;
use crate::domain::notification::Notification;
use crate::domain::state::DeliveryState;

/// The one mapping of the service's error to what callers see.
impl From<NotificationError> for ApiError {
    fn from(error: NotificationError) -> Self {
        match error {
            NotificationError::Invalid(errors) => ApiError::invalid_fields(
                errors
                    .into_iter()
                    .map(|error| FieldViolation::new(error.field, error.description))
                    .collect(),
            ),
            NotificationError::NotFound => ApiError::NotFound {
                resource: "notification",
            },
            NotificationError::AccountNotPermitted(refusal) => refusal,
            NotificationError::AccountDeleted => ApiError::FailedPrecondition {
                reason: "ACCOUNT_DELETED",
                message: error.to_string(),
                subject: "account".into(),
            },
            NotificationError::NotFailed(_)
            | NotificationError::NotWaiting(_)
            | NotificationError::VariablesDiscarded => ApiError::FailedPrecondition {
                reason: match error {
                    NotificationError::NotFailed(_) => "NOTIFICATION_NOT_FAILED",
                    NotificationError::NotWaiting(_) => "NOTIFICATION_NOT_WAITING",
                    _ => "NOTIFICATION_VARIABLES_DISCARDED",
                },
                message: error.to_string(),
                subject: "notification".to_owned(),
            },
            NotificationError::RequestIdReused => ApiError::invalid(
                "request_id",
                "was used for this operation on another notification; use a new request_id",
            ),
            NotificationError::RequestIdOfAnotherEmail => ApiError::invalid(
                "request_id",
                "was sent before with another email (account, recipient, template, locale, \
                 display name or variables); nothing was queued: send this email under a new \
                 request_id",
            ),
            error @ (NotificationError::RequestKeyVanished
            | NotificationError::EnqueueLost
            | NotificationError::Variables(_)
            | NotificationError::Store(_)) => ApiError::internal(error),
        }
    }
}

/// Lets a handler answer a use case's error with `?`, through the mapping above.
impl From<NotificationError> for Status {
    fn from(error: NotificationError) -> Self {
        ApiError::from(error).into()
    }
}

/// The state filter of a list request; `None` for all states.
pub(super) fn state_from_proto(state: pb::NotificationState) -> Option<DeliveryState> {
    match state {
        pb::NotificationState::Unspecified => None,
        pb::NotificationState::Queued => Some(DeliveryState::Queued),
        pb::NotificationState::Sending => Some(DeliveryState::Sending),
        pb::NotificationState::Sent => Some(DeliveryState::Sent),
        pb::NotificationState::Retrying => Some(DeliveryState::Retrying),
        pb::NotificationState::Failed => Some(DeliveryState::Failed),
        pb::NotificationState::Cancelled => Some(DeliveryState::Cancelled),
    }
}

fn state_to_proto(state: DeliveryState) -> pb::NotificationState {
    match state {
        DeliveryState::Queued => pb::NotificationState::Queued,
        DeliveryState::Sending => pb::NotificationState::Sending,
        DeliveryState::Sent => pb::NotificationState::Sent,
        DeliveryState::Retrying => pb::NotificationState::Retrying,
        DeliveryState::Failed => pb::NotificationState::Failed,
        DeliveryState::Cancelled => pb::NotificationState::Cancelled,
    }
}

fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub(super) fn to_proto(notification: &Notification) -> pb::Notification {
    pb::Notification {
        id: notification.id.to_string(),
        account_id: notification.account_id.to_string(),
        recipient: notification.recipient.clone(),
        template: notification.template.clone(),
        locale: notification.locale.clone(),
        state: state_to_proto(notification.state) as i32,
        attempts: notification.attempts,
        last_error: notification.last_error.clone().unwrap_or_default(),
        message_id: notification
            .shown_message_id()
            .unwrap_or_default()
            .to_owned(),
        create_time: Some(timestamp(notification.created_at)),
        update_time: Some(timestamp(notification.updated_at)),
        next_attempt_time: notification.due_at().map(timestamp),
        sent_time: notification.delivered_at().map(timestamp),
    }
}
