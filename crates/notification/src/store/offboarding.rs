//! The emails of deleted accounts: those still waiting are cancelled, and the failed ones'
//! variables dropped (their purge, once identity purged the account, is retention's:
//! [`super::retention::Purge::OfPurgedAccount`]).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::actions::cancel_waiting_update;
use super::entities::notification;
use super::{Store, StoreError};
use crate::domain::notification::NO_VARIABLES;
use crate::domain::state::DeliveryState;

impl Store {
    /// Cancels every waiting (QUEUED or RETRYING) email of `accounts` and drops its variables,
    /// in one conditional UPDATE: a message a worker holds (SENDING) is left to its attempt,
    /// and a retry it ends in is cancelled by the next call. Returns how many it cancelled.
    pub async fn cancel_waiting_of(
        &self,
        accounts: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let updated = cancel_waiting_update(now)
            .filter(notification::Column::AccountId.is_in(accounts.iter().copied()))
            .exec(self.connection())
            .await?;
        Ok(updated.rows_affected)
    }

    /// Drops the variables of every FAILED email of `accounts`, in one UPDATE: they may hold
    /// secrets (a reset link), and a deleted account's email is not retried. A failed email
    /// keeps its variables otherwise, for RetryNotification. Returns how many it emptied.
    pub async fn forget_failed_of(&self, accounts: &[Uuid]) -> Result<u64, StoreError> {
        use notification::Column;
        let updated = notification::Entity::update_many()
            .col_expr(Column::Variables, Expr::value(NO_VARIABLES))
            .filter(Column::AccountId.is_in(accounts.iter().copied()))
            .filter(Column::State.eq(DeliveryState::Failed.as_str()))
            .filter(Column::Variables.ne(NO_VARIABLES))
            .exec(self.connection())
            .await?;
        Ok(updated.rows_affected)
    }
}
