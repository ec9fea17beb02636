//! The emails of deleted accounts: those still waiting are cancelled (their purge, once
//! identity purged the account, is retention's: [`super::retention::Purge::OfPurgedAccount`]).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

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
        use notification::Column;
        let updated = notification::Entity::update_many()
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
            .filter(Column::AccountId.is_in(accounts.iter().copied()))
            .filter(Column::State.is_in(DeliveryState::WAITING.map(DeliveryState::as_str)))
            .exec(self.connection())
            .await?;
        Ok(updated.rows_affected)
    }
}
