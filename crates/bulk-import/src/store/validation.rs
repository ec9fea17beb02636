//! Validation's writes: staging planned rows, the repeated values that make rows errors, and
//! the end of validation (VALIDATED with its counts, or INVALID).

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement, TransactionTrait,
};

use super::convert::{json, planned_row, repeated_column, row_claims};
use super::entities::{claim, import, row};
use super::leases::renew;
use super::{
    Store, StoreError, change_import, delete_chunks, delete_claims, delete_lease, delete_rows,
    now_millis, placeholder, touch_import,
};
use crate::domain::import::{ActionCounts, Claimed, ImportId, ReadFormat, RepeatedValue};
use crate::domain::rows::{PlannedRow, RowError};
use crate::domain::state::{ImportState, RowAction};

impl Store {
    /// Forgets what an earlier, interrupted validation staged, if `owner` still holds the
    /// lease: in the transaction that renews it, so that a replica whose lease was taken over
    /// cannot delete what the new holder staged. False when the lease was lost.
    pub async fn restart_validation(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        if !renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        delete_rows(&txn, import_id.0).await?;
        import::Entity::update_many()
            .col_expr(import::Column::TotalRowCount, Expr::value(0i64))
            .filter(import::Column::Id.eq(import_id.0))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Stages validated rows and moves the row count on, if `owner` still holds the lease.
    pub async fn stage_rows(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
        rows: Vec<PlannedRow>,
        columns: &[&str],
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let count = rows.len() as i64;
        let claims = row_claims(import_id.0, &rows);
        if !rows.is_empty() {
            row::Entity::insert_many(rows.into_iter().map(|row| planned_row(import_id.0, row)))
                .exec_without_returning(&txn)
                .await?;
        }
        // A statement's values stay under SQLite's limit of 32,766 whatever the cells hold.
        for claims in claims.chunks(CLAIMS_PER_STATEMENT) {
            claim::Entity::insert_many(claims.iter().cloned())
                .exec_without_returning(&txn)
                .await?;
        }
        // The lease (and then the import's row) only after the rows: the renewal locks the
        // lease's row until the commit, and batches staged at once would otherwise take turns
        // for their whole inserts. A lost lease rolls the rows back.
        if !renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        touch_import(import_id, now_millis())
            .col_expr(
                import::Column::TotalRowCount,
                Expr::col(import::Column::TotalRowCount).add(count),
            )
            .col_expr(import::Column::Columns, Expr::value(json(columns)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// A page of the rows whose `value` (claimed username, profile id or extension number)
    /// appears on more than one row, ordered by that value and row, after `after`.
    pub async fn repeated_values(
        &self,
        import_id: ImportId,
        value: RepeatedValue,
        after: Option<(String, i64)>,
        limit: u64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let Some(column) = repeated_column(value) else {
            let page = self
                .repeated_claims(import_id, Claimed::Extension, after, limit)
                .await?;
            return Ok(page
                .into_iter()
                .map(|claim| (claim.value, claim.row_number))
                .collect());
        };
        let repeated = Query::select()
            .column(column)
            .from(row::Entity)
            .and_where(row::Column::ImportId.eq(import_id.0))
            .and_where(column.is_not_null())
            .group_by_col(column)
            .and_having(Expr::col(column).count().gt(1))
            .to_owned();
        let mut query = row::Entity::find()
            .select_only()
            .column(column)
            .column(row::Column::RowNumber)
            .filter(row::Column::ImportId.eq(import_id.0))
            .filter(column.in_subquery(repeated))
            .order_by_asc(column)
            .order_by_asc(row::Column::RowNumber)
            .limit(limit);
        if let Some((value, row_number)) = after {
            query = query.filter(
                Condition::any().add(column.gt(value.clone())).add(
                    Condition::all()
                        .add(column.eq(value))
                        .add(row::Column::RowNumber.gt(row_number)),
                ),
            );
        }
        Ok(query.into_tuple().all(&self.db).await?)
    }

    /// The row whose profile holds extension `number` already and keeps it, if any.
    pub async fn extension_keeper(
        &self,
        import_id: ImportId,
        number: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(claim::Entity::find()
            .select_only()
            .column(claim::Column::RowNumber)
            .filter(claim::Column::ImportId.eq(import_id.0))
            .filter(claim::Column::Kind.eq(Claimed::Extension.code()))
            .filter(claim::Column::Value.eq(number))
            .filter(claim::Column::Held.eq(true))
            .order_by_asc(claim::Column::RowNumber)
            .into_tuple()
            .one(&self.db)
            .await?)
    }

    /// A page of the extension numbers that rows give while another profile holds them, in
    /// order of row and number, after `after` (a row and a number): the number, the row, and
    /// the holder's id and username. Read through the partial index `import_claims_taken`,
    /// each page from where the last one ended.
    pub async fn taken_numbers(
        &self,
        import_id: ImportId,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Vec<(String, i64, String, String)>, StoreError> {
        let mut query = claim::Entity::find()
            .select_only()
            .column(claim::Column::Value)
            .column(claim::Column::RowNumber)
            .column(claim::Column::HolderId)
            .column(claim::Column::HolderUsername)
            .filter(claim::Column::ImportId.eq(import_id.0))
            .filter(claim::Column::Kind.eq(Claimed::Extension.code()))
            .filter(claim::Column::HolderId.is_not_null())
            .order_by_asc(claim::Column::RowNumber)
            .order_by_asc(claim::Column::Value)
            .limit(limit);
        if let Some((row_number, value)) = after {
            query = query
                // The range the index is read from; the condition below is the exact one.
                .filter(claim::Column::RowNumber.gte(row_number))
                .filter(
                    Condition::any()
                        .add(claim::Column::RowNumber.gt(row_number))
                        .add(
                            Condition::all()
                                .add(claim::Column::RowNumber.eq(row_number))
                                .add(claim::Column::Value.gt(value)),
                        ),
                );
        }
        let page: Vec<(String, i64, Option<String>, Option<String>)> =
            query.into_tuple().all(&self.db).await?;
        Ok(page
            .into_iter()
            .map(|(number, row, holder, username)| {
                (
                    number,
                    row,
                    holder.unwrap_or_default(),
                    username.unwrap_or_default(),
                )
            })
            .collect())
    }

    /// The first row of the import that names profile `profile_id`, with its action, and
    /// whether that row gives extension `number` (its profile keeps it).
    pub async fn row_of_profile(
        &self,
        import_id: ImportId,
        profile_id: &str,
        number: &str,
    ) -> Result<Option<(i64, RowAction, bool)>, StoreError> {
        let Some((row_number, action)) = row::Entity::find()
            .select_only()
            .column(row::Column::RowNumber)
            .column(row::Column::Action)
            .filter(row::Column::ImportId.eq(import_id.0))
            .filter(row::Column::ProfileId.eq(profile_id))
            .order_by_asc(row::Column::RowNumber)
            .into_tuple::<(i64, i32)>()
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let keeps = claim::Entity::find_by_id((
            import_id.0,
            Claimed::Extension.code(),
            number.to_owned(),
            row_number,
        ))
        .one(&self.db)
        .await?
        .is_some();
        let action = RowAction::from_code(action).unwrap_or(RowAction::Error);
        Ok(Some((row_number, action, keeps)))
    }

    /// A page of the rows whose username shares its skeleton with another row's (they are
    /// the same or look alike), ordered by skeleton and row, after `after`: the skeleton, the
    /// row and the canonical username it claims.
    pub async fn confusable_claims(
        &self,
        import_id: ImportId,
        after: Option<(String, i64)>,
        limit: u64,
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        let page = self
            .repeated_claims(import_id, Claimed::Skeleton, after, limit)
            .await?;
        Ok(page
            .into_iter()
            .map(|claim| {
                (
                    claim.value,
                    claim.row_number,
                    claim.claim.unwrap_or_default(),
                )
            })
            .collect())
    }

    /// A page of the claims of `kind` whose value another row of the import claims too,
    /// ordered by value and row, after `after`, each with the canonical username its row
    /// claims.
    ///
    /// One ordered pass over the primary key, whatever the table's statistics: a claim is
    /// repeated when the claim before or after it in that order has its value. (A grouping
    /// subquery was planned, on a table without statistics, as a loop that aggregated the
    /// whole import once per claim: over a minute for 30,000 rows.)
    async fn repeated_claims(
        &self,
        import_id: ImportId,
        kind: Claimed,
        after: Option<(String, i64)>,
        limit: u64,
    ) -> Result<Vec<RepeatedClaim>, StoreError> {
        let backend = self.db.get_database_backend();
        let bound = |index| placeholder(backend, index);
        let sql = format!(
            "SELECT around.\"value\" AS \"value\", around.row_number AS row_number, \
             staged.claim AS claim FROM (SELECT \"value\", row_number, \
             LAG(\"value\") OVER w AS prior_value, LEAD(\"value\") OVER w AS next_value \
             FROM import_claims WHERE import_id = {import} AND kind = {kind} \
             AND \"value\" >= {value} WINDOW w AS (ORDER BY \"value\", row_number)) around \
             JOIN import_rows staged ON staged.import_id = {import} \
             AND staged.row_number = around.row_number \
             WHERE (around.prior_value = around.\"value\" OR around.next_value = around.\"value\") \
             AND (around.\"value\" > {value} OR around.row_number > {row}) \
             ORDER BY around.\"value\", around.row_number LIMIT {limit}",
            import = bound(1),
            kind = bound(2),
            value = bound(3),
            row = bound(4),
        );
        let (value, row) = after.unwrap_or((String::new(), i64::MIN));
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [
                import_id.0.into(),
                kind.code().into(),
                value.into(),
                row.into(),
            ],
        );
        Ok(RepeatedClaim::find_by_statement(statement)
            .all(&self.db)
            .await?)
    }

    /// Makes a row an error, adding `error` to those it has (the checks after staging), while
    /// `owner` holds the import's lease: one transaction, so that a replica whose lease was
    /// taken over cannot add errors to what the new holder staged, nor lose one it added. False
    /// when the lease was lost; a row that is not there is left so.
    pub async fn add_row_error(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
        row_number: i64,
        error: RowError,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        if !renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        let errors: Option<String> = row::Entity::find()
            .select_only()
            .column(row::Column::Errors)
            .filter(row::Column::ImportId.eq(import_id.0))
            .filter(row::Column::RowNumber.eq(row_number))
            .into_tuple()
            .one(&txn)
            .await?;
        if let Some(errors) = errors {
            let mut errors: Vec<RowError> = serde_json::from_str(&errors).unwrap_or_default();
            errors.push(error);
            row::Entity::update_many()
                .col_expr(row::Column::Action, Expr::value(RowAction::Error.code()))
                .col_expr(row::Column::Errors, Expr::value(json(&errors)))
                .col_expr(row::Column::Changes, Expr::value("[]"))
                .filter(row::Column::ImportId.eq(import_id.0))
                .filter(row::Column::RowNumber.eq(row_number))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Ends validation: VALIDATED with the counts and an expiry, or INVALID with a message;
    /// either way with the `format` the file was found in. The file's pieces and the lease go.
    /// False when `owner` lost the lease or the import was cancelled meanwhile.
    pub async fn finish_validation(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
        result: Result<ActionCounts, String>,
        format: ReadFormat,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        if !renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        let now = now_millis();
        let mut update = change_import(import_id, now)
            .col_expr(
                import::Column::Delimiter,
                Expr::value(format.delimiter.map(String::from)),
            )
            .col_expr(
                import::Column::LineEnding,
                Expr::value(format.line_ending.map(str::to_owned)),
            )
            .filter(import::Column::State.eq(ImportState::Validating.code()));
        update = match &result {
            Ok(counts) => update
                .col_expr(
                    import::Column::State,
                    Expr::value(ImportState::Validated.code()),
                )
                .col_expr(import::Column::TotalRowCount, Expr::value(counts.total))
                .col_expr(import::Column::CreateCount, Expr::value(counts.create))
                .col_expr(import::Column::UpdateCount, Expr::value(counts.update))
                .col_expr(
                    import::Column::UnchangedCount,
                    Expr::value(counts.unchanged),
                )
                .col_expr(import::Column::ErrorCount, Expr::value(counts.error)),
            Err(message) => update
                .col_expr(
                    import::Column::State,
                    Expr::value(ImportState::Invalid.code()),
                )
                .col_expr(import::Column::ErrorMessage, Expr::value(message.as_str())),
        };
        let updated = update.exec(&txn).await?.rows_affected == 1;
        if result.is_err() {
            delete_rows(&txn, import_id.0).await?;
        }
        // Needed only to find repeats, which are found by now.
        delete_claims(&txn, import_id.0).await?;
        delete_chunks(&txn, import_id.0).await?;
        delete_lease(&txn, import_id.0).await?;
        txn.commit().await?;
        Ok(updated)
    }
}

/// Claims inserted by one statement: four values each.
const CLAIMS_PER_STATEMENT: usize = 4_000;

/// A claim that another row makes too, with its row's canonical username.
#[derive(FromQueryResult)]
struct RepeatedClaim {
    value: String,
    row_number: i64,
    claim: Option<String>,
}
