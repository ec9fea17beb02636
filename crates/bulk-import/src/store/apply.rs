//! The apply's reads and writes: the rows still to write, their recorded outcomes, and the end
//! of the apply.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use super::entities::{import, outcome, row};
use super::leases::renew;
use super::{
    Store, StoreError, change_import, convert, delete_lease, now_millis, placeholder,
    rows_with_outcomes, skip_pending_rows, touch_import,
};
use crate::domain::import::{ImportId, RowResult, StagedRow};
use crate::domain::state::{ImportState, RowAction, RowOutcome};
use uuid::Uuid;

impl Store {
    /// The rows still to write whose numbers are above `after` and at most `upto`, in file
    /// order.
    pub async fn pending_rows(
        &self,
        import_id: ImportId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<StagedRow>, StoreError> {
        let rows = rows_with_outcomes()
            .filter(row::Column::ImportId.eq(import_id.0))
            .filter(row::Column::RowNumber.gt(after))
            .filter(row::Column::RowNumber.lte(upto))
            .filter(row::Column::Action.is_in([RowAction::Create.code(), RowAction::Update.code()]))
            .filter(outcome::Column::RowNumber.is_null())
            .order_by_asc(row::Column::RowNumber)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| convert::staged_row(row, None))
            .collect())
    }

    /// The highest row number staged for an import; none when it has no rows.
    pub async fn last_row_number(&self, import_id: ImportId) -> Result<Option<i64>, StoreError> {
        let last = row::Entity::find()
            .select_only()
            .column_as(row::Column::RowNumber.max(), "last")
            .filter(row::Column::ImportId.eq(import_id.0))
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?;
        Ok(last.flatten())
    }

    /// Records a batch's outcomes and adds them to the import's counts, if `owner` still holds
    /// the lease; false when it lost it.
    pub async fn record_outcomes(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
        results: &[RowResult],
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        // The import's row before the outcomes, in the order a cancel takes them (its update
        // of the row, then SKIPPED for every row without an outcome): the other order had each
        // wait for the other — the cancel for an outcome not committed yet, this for the row —
        // until PostgreSQL broke the deadlock with an error.
        if roster_runtime::db::is_postgres(&self.db) {
            import::Entity::find_by_id(import_id.0)
                .select_only()
                .column(import::Column::Id)
                .lock_exclusive()
                .into_tuple::<Uuid>()
                .one(&txn)
                .await?;
        }
        let (mut applied, mut failed) = (0i64, 0i64);
        for chunk in results.chunks(OUTCOME_CHUNK) {
            for outcome in record_outcome_chunk(&txn, import_id, owner, chunk).await? {
                match RowOutcome::from_code(outcome) {
                    // An update found already made counts as applied: the profile holds
                    // what the row asks.
                    RowOutcome::Applied | RowOutcome::Unchanged => applied += 1,
                    RowOutcome::Failed => failed += 1,
                    _ => {}
                }
            }
        }
        // The lease after the outcomes, so that its row (which the heartbeat renews too) is
        // locked for the commit only. A lost lease rolls the outcomes back.
        if !renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        touch_import(import_id, now_millis())
            .col_expr(
                import::Column::AppliedCount,
                Expr::col(import::Column::AppliedCount).add(applied),
            )
            .col_expr(
                import::Column::FailedCount,
                Expr::col(import::Column::FailedCount).add(failed),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Ends the apply: the rows never to be written are SKIPPED and the import reaches its final
    /// state. False when `owner` lost the lease or the import is no longer APPLYING.
    pub async fn finish_apply(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
        failure: Option<&str>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        if !renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        let Some(current) = import::Entity::find_by_id(import_id.0).one(&txn).await? else {
            return Ok(false);
        };
        if convert::state_of(current.state) != ImportState::Applying {
            delete_lease(&txn, import_id.0).await?;
            txn.commit().await?;
            return Ok(false);
        }
        skip_pending_rows(&txn, import_id.0).await?;
        let state =
            ImportState::after_apply(failure.is_some(), current.error_count, current.failed_count);
        change_import(import_id, now_millis())
            .col_expr(import::Column::State, Expr::value(state.code()))
            .col_expr(
                import::Column::ErrorMessage,
                Expr::value(failure.unwrap_or("")),
            )
            .exec(&txn)
            .await?;
        delete_lease(&txn, import_id.0).await?;
        txn.commit().await?;
        Ok(true)
    }
}

/// Row outcomes recorded per statement (four bound values each): a 500-row batch in one.
const OUTCOME_CHUNK: usize = 500;

/// Records `results` with one multi-row `INSERT … ON CONFLICT`: rows without an outcome get
/// theirs, rows skipped by a cancel get theirs instead, rows recorded already are left alone;
/// returns the outcome codes of the rows it recorded. Results only come from identity's
/// answers to requests sent while the import was APPLYING (the apply reads the state right
/// before each one), so a skipped row turns applied only when identity wrote it in a request
/// on its way when the cancel came.
async fn record_outcome_chunk(
    txn: &DatabaseTransaction,
    import_id: ImportId,
    owner: &str,
    results: &[RowResult],
) -> Result<Vec<i32>, StoreError> {
    #[derive(FromQueryResult)]
    struct Recorded {
        outcome: i32,
    }
    let backend = txn.get_database_backend();
    // The import and the owner are bound once for all rows.
    let placeholder = |index: usize| placeholder(backend, index);
    let mut values: Vec<sea_orm::Value> = vec![import_id.0.into(), owner.into()];
    let mut rows = Vec::with_capacity(results.len());
    for result in results {
        let first = values.len() + 1;
        values.push(result.row_number.into());
        values.push(result.outcome.code().into());
        values.push(result.message.as_str().into());
        values.push(result.profile_id.clone().into());
        rows.push(format!(
            "({import}, {}, {}, {}, {}, {owner})",
            placeholder(first),
            placeholder(first + 1),
            placeholder(first + 2),
            placeholder(first + 3),
            import = placeholder(1),
            owner = placeholder(2),
        ));
    }
    let sql = format!(
        "INSERT INTO import_outcomes \
         (import_id, row_number, outcome, message, profile_id, applied_by) VALUES {rows} \
         ON CONFLICT (import_id, row_number) DO UPDATE SET outcome = excluded.outcome, \
         message = excluded.message, profile_id = excluded.profile_id, \
         applied_by = excluded.applied_by WHERE import_outcomes.outcome = {skipped} \
         RETURNING outcome",
        rows = rows.join(", "),
        skipped = RowOutcome::Skipped.code(),
    );
    let statement = sea_orm::Statement::from_sql_and_values(backend, sql, values);
    Ok(Recorded::find_by_statement(statement)
        .all(txn)
        .await?
        .into_iter()
        .map(|recorded| recorded.outcome)
        .collect())
}
