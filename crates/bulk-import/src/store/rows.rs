//! Reading staged rows: pages of them in file order, one row, and counts by action and outcome.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Statement,
};

use super::entities::{outcome, row};
use super::{Store, StoreError, convert, placeholder, rows_with_outcomes};
use crate::domain::import::{ActionCounts, ImportId, StagedRow};
use crate::domain::state::{RowAction, RowOutcome};

impl Store {
    /// A page of rows in file order after `after`, only those with `action` when given.
    pub async fn rows(
        &self,
        import_id: ImportId,
        action: Option<RowAction>,
        after: i64,
        limit: u64,
    ) -> Result<Vec<StagedRow>, StoreError> {
        let mut query = rows_with_outcomes()
            .filter(row::Column::ImportId.eq(import_id.0))
            .filter(row::Column::RowNumber.gt(after))
            .order_by_asc(row::Column::RowNumber)
            .limit(limit);
        if let Some(action) = action {
            query = query.filter(row::Column::Action.eq(action.code()));
        }
        Ok(query
            .select_also(outcome::Entity)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|(row, outcome)| convert::staged_row(row, outcome))
            .collect())
    }

    /// How many rows have each outcome (for tests and operators).
    pub async fn outcome_counts(
        &self,
        import_id: ImportId,
    ) -> Result<HashMap<i32, i64>, StoreError> {
        #[derive(FromQueryResult)]
        struct Counted {
            outcome: i32,
            rows: i64,
        }
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT COALESCE(done.outcome, {pending}) AS outcome, COUNT(*) AS rows \
             FROM import_rows staged LEFT JOIN import_outcomes done \
             ON done.import_id = staged.import_id AND done.row_number = staged.row_number \
             WHERE staged.import_id = {import} GROUP BY COALESCE(done.outcome, {pending})",
            pending = RowOutcome::Pending.code(),
            import = placeholder(backend, 1),
        );
        let statement = Statement::from_sql_and_values(backend, sql, [import_id.0.into()]);
        Ok(Counted::find_by_statement(statement)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|counted| (counted.outcome, counted.rows))
            .collect())
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
