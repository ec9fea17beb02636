//! Reading staged rows: pages of them in file order, one row, and counts by action and outcome.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect};

use super::entities::row;
use super::{Store, StoreError, convert};
use crate::domain::import::{ActionCounts, ImportId, StagedRow};
use crate::domain::state::RowAction;

impl Store {
    /// A page of rows in file order after `after`, only those with `action` when given.
    pub async fn rows(
        &self,
        import_id: ImportId,
        action: Option<RowAction>,
        after: i64,
        limit: u64,
    ) -> Result<Vec<StagedRow>, StoreError> {
        let mut query = row::Entity::find()
            .filter(row::Column::ImportId.eq(import_id.0))
            .filter(row::Column::RowNumber.gt(after))
            .order_by_asc(row::Column::RowNumber)
            .limit(limit);
        if let Some(action) = action {
            query = query.filter(row::Column::Action.eq(action.code()));
        }
        Ok(query
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::staged_row)
            .collect())
    }

    /// How many rows have each outcome (for tests and operators).
    pub async fn outcome_counts(
        &self,
        import_id: ImportId,
    ) -> Result<HashMap<i32, i64>, StoreError> {
        row::Entity::find()
            .select_only()
            .column(row::Column::Outcome)
            .column_as(row::Column::RowNumber.count(), "rows")
            .filter(row::Column::ImportId.eq(import_id.0))
            .group_by(row::Column::Outcome)
            .into_tuple::<(i32, i64)>()
            .all(&self.db)
            .await
            .map(|pairs| pairs.into_iter().collect())
            .map_err(StoreError::from)
    }

    /// How many rows have each action.
    pub async fn action_counts(&self, import_id: ImportId) -> Result<ActionCounts, StoreError> {
        #[derive(FromQueryResult)]
        struct Counted {
            action: i32,
            rows: i64,
        }
        let counted = row::Entity::find()
            .select_only()
            .column(row::Column::Action)
            .column_as(row::Column::RowNumber.count(), "rows")
            .filter(row::Column::ImportId.eq(import_id.0))
            .group_by(row::Column::Action)
            .into_model::<Counted>()
            .all(&self.db)
            .await?;
        let mut counts = ActionCounts::default();
        for Counted { action, rows } in counted {
            counts.total += rows;
            match RowAction::from_code(action) {
                Some(RowAction::Create) => counts.create += rows,
                Some(RowAction::Update) => counts.update += rows,
                Some(RowAction::Unchanged) => counts.unchanged += rows,
                Some(RowAction::Error) | None => counts.error += rows,
            }
        }
        Ok(counts)
    }
}
