//! The imports of deleted accounts still in progress, to cancel (their purge, once identity
//! purged the account, is retention's: [`super::retention::Expired::OfPurgedAccount`]).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entities::import;
use super::{Store, StoreError};
use crate::domain::import::ImportId;
use crate::domain::state::ImportState;

/// The states an import ends in.
const FINISHED: [ImportState; 4] = [
    ImportState::Completed,
    ImportState::CompletedWithErrors,
    ImportState::Failed,
    ImportState::Cancelled,
];

impl Store {
    /// Up to `limit` imports of `accounts` that have not finished, oldest first.
    pub async fn unfinished_imports(
        &self,
        accounts: &[Uuid],
        limit: u64,
    ) -> Result<Vec<ImportId>, StoreError> {
        let ids: Vec<Uuid> = import::Entity::find()
            .select_only()
            .column(import::Column::Id)
            .filter(import::Column::AccountId.is_in(accounts.iter().copied()))
            .filter(import::Column::State.is_not_in(FINISHED.map(ImportState::code)))
            .order_by_asc(import::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(ImportId).collect())
    }
}
