//! An operator's hand on the queue: retrying a FAILED message and cancelling a waiting one.
//!
//! Each is one conditional `UPDATE … WHERE state IN (…)`, decided by the database under the
//! row's lock and never from an earlier read: a worker's claim (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, one serialised `UPDATE` on SQLite) and a cancel cannot both win, so a message is
//! either being sent or cancelled, never both. The workers claim only QUEUED and RETRYING
//! messages and record an attempt only while the message is still SENDING, so a CANCELLED one is
//! never sent by any worker on any replica.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entities::{action_key, notification};
use super::notifications::Transaction;
use super::{Store, StoreError};
use crate::domain::notification::NO_VARIABLES;
use crate::domain::state::DeliveryState;

/// What an operator did to a message, as its idempotency key records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Retry,
    Cancel,
}

impl Action {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
        }
    }
}

impl Store {
    /// The notification that `(scope, action, request_id)` acted on, if that key was used.
    pub async fn by_action(
        &self,
        scope: &str,
        action: Action,
        request_id: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        Ok(action_key::Entity::find_by_id((
            scope.to_owned(),
            action.as_str().to_owned(),
            request_id.to_owned(),
        ))
        .one(&self.db)
        .await?
        .map(|key| key.notification_id))
    }
}

impl Transaction {
    /// Queues a FAILED message again, due at `now`, with a new attempt budget (the attempts made
    /// so far no longer count against it) and its Message-ID unchanged. False, and nothing
    /// written, when the message is not FAILED or its variables were already discarded.
    pub async fn requeue_failed(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        use notification::Column;
        let updated = notification::Entity::update_many()
            .col_expr(Column::State, Expr::value(DeliveryState::Queued.as_str()))
            .col_expr(Column::AttemptsBeforeRetry, Expr::col(Column::Attempts))
            .col_expr(Column::NextAttemptAt, Expr::value(Some(now)))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(id))
            .filter(Column::State.is_in(DeliveryState::RETRYABLE.map(DeliveryState::as_str)))
            .filter(Column::Variables.ne(NO_VARIABLES))
            .exec(self.connection())
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Cancels a message no worker holds (QUEUED or RETRYING) and drops its variables. False,
    /// and nothing written, in any other state, including SENDING.
    pub async fn cancel_waiting(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let updated = cancel_waiting_update(now)
            .filter(notification::Column::Id.eq(id))
            .exec(self.connection())
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Records that `(scope, action, request_id)` acted on `notification_id`, in one
    /// `INSERT … ON CONFLICT DO NOTHING`: false (and nothing written) when the key is held
    /// already, by an earlier request or a concurrent twin.
    pub async fn add_action_key(
        &self,
        scope: &str,
        action: Action,
        request_id: &str,
        notification_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserted = action_key::Entity::insert(action_key::ActiveModel {
            scope: Set(scope.to_owned()),
            operation: Set(action.as_str().to_owned()),
            request_id: Set(request_id.to_owned()),
            notification_id: Set(notification_id),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                action_key::Column::Scope,
                action_key::Column::Operation,
                action_key::Column::RequestId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(self.connection())
        .await?;
        Ok(inserted > 0)
    }
}

/// The update that cancels waiting (QUEUED or RETRYING) messages and drops their variables, for
/// the messages the caller's filter adds; a message a worker holds (SENDING) is never matched.
pub(super) fn cancel_waiting_update(
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<notification::Entity> {
    use notification::Column;
    notification::Entity::update_many()
        .col_expr(
            Column::State,
            Expr::value(DeliveryState::Cancelled.as_str()),
        )
        .col_expr(
            Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(Column::Variables, Expr::value(NO_VARIABLES))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::State.is_in(DeliveryState::WAITING.map(DeliveryState::as_str)))
}
