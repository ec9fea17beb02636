//! The emails of deleted accounts: those still waiting are cancelled (their purge, once
//! identity purged the account, is retention's: [`super::retention::Purge::OfPurgedAccount`]).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::actions::cancel_waiting_update;
use super::entities::notification;
use super::{Store, StoreError};

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
}
