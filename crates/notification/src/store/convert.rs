//! Rows to domain types: the entity models never leave the store.

use super::StoreError;
use super::entities::{attempt, notification};
use crate::domain::attempt::{Attempt, OutcomeKind};
use crate::domain::notification::Notification;
use crate::domain::state::DeliveryState;

impl TryFrom<notification::Model> for Notification {
    type Error = StoreError;

    fn try_from(model: notification::Model) -> Result<Self, StoreError> {
        let state = DeliveryState::parse(&model.state).ok_or_else(|| StoreError::Corrupt {
            column: "notifications.state",
            value: model.state.clone(),
        })?;
        Ok(Self {
            id: model.id,
            account_id: model.account_id,
            recipient: model.recipient,
            template: model.template,
            locale: model.locale,
            requested_locale: model.requested_locale,
            variables: model.variables,
            account_display_name: model.account_display_name,
            state,
            attempts: model.attempts,
            attempts_before_retry: model.attempts_before_retry,
            last_error: model.last_error,
            message_id: model.message_id,
            next_attempt_at: model.next_attempt_at,
            lease_owner: model.lease_owner,
            lease_until: model.lease_until,
            created_at: model.created_at,
            updated_at: model.updated_at,
            sent_at: model.sent_at,
        })
    }
}

impl From<Notification> for notification::Model {
    fn from(notification: Notification) -> Self {
        Self {
            id: notification.id,
            account_id: notification.account_id,
            recipient: notification.recipient,
            template: notification.template,
            locale: notification.locale,
            requested_locale: notification.requested_locale,
            variables: notification.variables,
            account_display_name: notification.account_display_name,
            state: notification.state.as_str().to_owned(),
            attempts: notification.attempts,
            attempts_before_retry: notification.attempts_before_retry,
            last_error: notification.last_error,
            message_id: notification.message_id,
            next_attempt_at: notification.next_attempt_at,
            lease_owner: notification.lease_owner,
            lease_until: notification.lease_until,
            created_at: notification.created_at,
            updated_at: notification.updated_at,
            sent_at: notification.sent_at,
        }
    }
}

impl TryFrom<attempt::Model> for Attempt {
    type Error = StoreError;

    fn try_from(model: attempt::Model) -> Result<Self, StoreError> {
        let outcome = OutcomeKind::parse(&model.outcome).ok_or_else(|| StoreError::Corrupt {
            column: "notification_attempts.outcome",
            value: model.outcome.clone(),
        })?;
        Ok(Self {
            notification_id: model.notification_id,
            number: model.number,
            worker: model.worker,
            outcome,
            smtp_code: model.smtp_code,
            error: model.error,
            started_at: model.started_at,
            finished_at: model.finished_at,
        })
    }
}

/// Every row of `models` as a domain value.
pub(super) fn all<M, T>(models: Vec<M>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<M, Error = StoreError>,
{
    models.into_iter().map(T::try_from).collect()
}
