//! The apply's reads and writes: the rows still to write, their recorded outcomes, and the end
//! of the apply.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::entities::{import, row};
use super::leases::renew;
use super::{
    Store, StoreError, change_import, convert, delete_lease, now_millis, skip_pending_rows,
    touch_import,
};
use crate::domain::import::{ImportId, RowResult, StagedRow};
use crate::domain::state::{ImportState, RowAction, RowOutcome};

impl Store {
    /// The rows still to write whose numbers are above `after` and at most `upto`, in file
    /// order.
    pub async fn pending_rows(
        &self,
        import_id: ImportId,
        after: i64,
        upto: i64,
    ) -> Result<Vec<StagedRow>, StoreError> {
        let rows = row::Entity::find()
            .filter(row::Column::ImportId.eq(import_id.0))
            .filter(row::Column::RowNumber.gt(after))
            .filter(row::Column::RowNumber.lte(upto))
            .filter(row::Column::Action.is_in([RowAction::Create.code(), RowAction::Update.code()]))
            .filter(row::Column::Outcome.eq(RowOutcome::Pending.code()))
            .order_by_asc(row::Column::RowNumber)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(convert::staged_row).collect())
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
        if !renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        let (mut applied, mut failed) = (0i64, 0i64);
        for chunk in results.chunks(OUTCOME_CHUNK) {
            for outcome in record_outcome_chunk(&txn, import_id, owner, chunk).await? {
                match RowOutcome::from_code(outcome) {
                    RowOutcome::Applied => applied += 1,
                    RowOutcome::Failed => failed += 1,
                    _ => {}
                }
            }
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

/// Records `results` with one `UPDATE … FROM (VALUES …)`, for rows still pending (or skipped
/// by a cancel); returns the outcome codes of the rows it changed.
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
    let placeholder = |index: usize| match backend {
        DbBackend::Postgres => format!("${index}"),
        _ => "?".to_owned(),
    };
    // Bound in the order the placeholders appear: the owner, the rows, the import, the range.
    let mut values: Vec<sea_orm::Value> = vec![owner.into()];
    let mut rows = Vec::with_capacity(results.len());
    for result in results {
        let first = values.len() + 1;
        values.push(result.row_number.into());
        values.push(result.outcome.code().into());
        values.push(result.message.as_str().into());
        values.push(result.profile_id.clone().into());
        rows.push(format!(
            "({}, {}, {}, {})",
            placeholder(first),
            placeholder(first + 1),
            placeholder(first + 2),
            placeholder(first + 3)
        ));
    }
    // The rows' range bounds the statement's reads whatever plan the database picks: joined
    // on the import alone, it was planned (without statistics) as a scan of all its rows.
    let first = results.iter().map(|result| result.row_number).min();
    let last = results.iter().map(|result| result.row_number).max();
    values.push(import_id.0.into());
    values.push(first.unwrap_or(0).into());
    values.push(last.unwrap_or(0).into());
    let sql = format!(
        "UPDATE import_rows SET outcome = given.column2, outcome_message = given.column3, \
         applied_by = {owner}, profile_id = COALESCE(given.column4, import_rows.profile_id) \
         FROM (VALUES {rows}) AS given \
         WHERE import_rows.import_id = {import} AND import_rows.row_number = given.column1 \
         AND import_rows.row_number BETWEEN {first} AND {last} \
         AND import_rows.outcome IN ({pending}, {skipped}) \
         RETURNING import_rows.outcome",
        owner = placeholder(1),
        rows = rows.join(", "),
        import = placeholder(values.len() - 2),
        first = placeholder(values.len() - 1),
        last = placeholder(values.len()),
        pending = RowOutcome::Pending.code(),
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
