//! Bulk-import's persistence: imports, the uploaded file's pieces, the staged rows, and the
//! leases that give one replica at a time the work on an import. The only module that knows SQL.
//!
//! Rows are written and read in pages, never all at once: an import of a million rows stays a
//! database matter, not a memory one.

pub mod entities;
mod migrations;

use std::collections::HashMap;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

pub use migrations::Migrator;

/// The longest `error_message` stored, in characters (as the API documents it).
const MAX_MESSAGE_CHARS: usize = 1024;

use crate::domain::state::{ImportState, RowAction, RowOutcome};
use entities::{chunk, import, lease, row};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Handle on bulk-import's database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// What an import's counters are after validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionCounts {
    pub total: i64,
    pub create: i64,
    pub update: i64,
    pub unchanged: i64,
    pub error: i64,
}

/// One row's outcome, as the apply records it.
#[derive(Clone, Debug)]
pub struct RowResult {
    pub row_number: i64,
    pub outcome: RowOutcome,
    pub profile_id: Option<String>,
    pub message: String,
}

/// How validation found the file's rows and lines; `None` for what it did not get to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadFormat {
    pub delimiter: Option<char>,
    pub line_ending: Option<&'static str>,
}

/// Why a state change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    WrongState(ImportState),
    Expired,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db.begin().await
    }

    // ----- imports -----

    /// Inserts a new import (state UPLOADING). With a request key already used, returns the
    /// import that key created instead (AIP-155), and `false`.
    pub async fn create_import(
        &self,
        model: import::Model,
    ) -> Result<(import::Model, bool), DbErr> {
        if let Some(key) = &model.request_key
            && let Some(existing) = self.import_by_request_key(key).await?
        {
            return Ok((existing, false));
        }
        let active: import::ActiveModel = model.clone().into();
        match import::Entity::insert(active)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok((model, true)),
            Err(error) => match &model.request_key {
                // A concurrent twin inserted the same key first.
                Some(key) => match self.import_by_request_key(key).await? {
                    Some(existing) => Ok((existing, false)),
                    None => Err(error),
                },
                None => Err(error),
            },
        }
    }

    async fn import_by_request_key(&self, key: &str) -> Result<Option<import::Model>, DbErr> {
        import::Entity::find()
            .filter(import::Column::RequestKey.eq(key))
            .one(&self.db)
            .await
    }

    pub async fn import(&self, id: Uuid) -> Result<Option<import::Model>, DbErr> {
        import::Entity::find_by_id(id).one(&self.db).await
    }

    /// A page of an account's imports, newest first, after the import `after`.
    pub async fn list_imports(
        &self,
        account_id: Uuid,
        state: Option<ImportState>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<import::Model>, DbErr> {
        let mut query = import::Entity::find()
            .filter(import::Column::AccountId.eq(account_id))
            .order_by_desc(import::Column::Id)
            .limit(limit);
        if let Some(state) = state {
            query = query.filter(import::Column::State.eq(state.code()));
        }
        if let Some(after) = after {
            query = query.filter(import::Column::Id.lt(after));
        }
        query.all(&self.db).await
    }

    /// Stores the next piece of an import's file and records that the upload is alive (its
    /// `updated_at`, which the sweep of abandoned uploads reads). False, storing nothing, when
    /// the import is no longer UPLOADING: cancelled, or failed by a sweep meanwhile. The check
    /// and the insert are one transaction behind the import row's update, so no piece can land
    /// after [`Store::abort_upload`] removed the others.
    pub async fn append_chunk(
        &self,
        import_id: Uuid,
        seq: i32,
        data: Vec<u8>,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let alive = import::Entity::update_many()
            .col_expr(import::Column::UpdatedAt, Expr::value(now_millis()))
            .filter(import::Column::Id.eq(import_id))
            .filter(import::Column::State.eq(ImportState::Uploading.code()))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !alive {
            txn.rollback().await?;
            return Ok(false);
        }
        chunk::Entity::insert(chunk::ActiveModel {
            import_id: Set(import_id),
            seq: Set(seq),
            data: Set(data),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Ends an upload that will not complete: FAILED with `reason`, and every piece of its file
    /// deleted, in one transaction. Only an import still UPLOADING changes — and, with
    /// `idle_before`, only one that received nothing since then — through one conditional
    /// UPDATE, so of several replicas (or a replica and the uploading call) racing, exactly one
    /// ends it. True when this call did.
    pub async fn abort_upload(
        &self,
        import_id: Uuid,
        reason: &str,
        idle_before: Option<i64>,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let reason: String = reason.chars().take(MAX_MESSAGE_CHARS).collect();
        let mut update = import::Entity::update_many()
            .col_expr(
                import::Column::State,
                Expr::value(ImportState::Failed.code()),
            )
            .col_expr(import::Column::ErrorMessage, Expr::value(reason))
            .col_expr(import::Column::UpdatedAt, Expr::value(now_millis()))
            .col_expr(
                import::Column::Version,
                Expr::col(import::Column::Version).add(1),
            )
            .filter(import::Column::Id.eq(import_id))
            .filter(import::Column::State.eq(ImportState::Uploading.code()));
        if let Some(before) = idle_before {
            update = update.filter(import::Column::UpdatedAt.lt(before));
        }
        if update.exec(&txn).await?.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        delete_chunks(&txn, import_id).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// UPLOADING imports that received nothing since `before` (milliseconds): abandoned by a
    /// client, or by a replica that died while receiving them.
    pub async fn stale_uploads(&self, before: i64, limit: u64) -> Result<Vec<Uuid>, DbErr> {
        import::Entity::find()
            .select_only()
            .column(import::Column::Id)
            .filter(import::Column::State.eq(ImportState::Uploading.code()))
            .filter(import::Column::UpdatedAt.lt(before))
            .order_by_asc(import::Column::UpdatedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await
    }

    /// The `seq`th piece of an import's file.
    pub async fn chunk(&self, import_id: Uuid, seq: i32) -> Result<Option<Vec<u8>>, DbErr> {
        Ok(chunk::Entity::find_by_id((import_id, seq))
            .one(&self.db)
            .await?
            .map(|chunk| chunk.data))
    }

    /// Ends the upload: VALIDATING with the encoding found (and a lease for the workers to
    /// claim), or INVALID with what was wrong. `given` says the request named the encoding.
    /// False, changing nothing, when the import is no longer UPLOADING (cancelled meanwhile).
    pub async fn finish_upload(
        &self,
        import_id: Uuid,
        file_bytes: i64,
        result: Result<&str, &str>,
        given: bool,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let now = now_millis();
        let (state, encoding, message) = match result {
            Ok(encoding) => (ImportState::Validating, Some(encoding.to_owned()), ""),
            Err(message) => (ImportState::Invalid, None, message),
        };
        let updated = import::Entity::update_many()
            .col_expr(import::Column::State, Expr::value(state.code()))
            .col_expr(import::Column::Encoding, Expr::value(encoding))
            .col_expr(import::Column::EncodingGiven, Expr::value(given))
            .col_expr(import::Column::FileBytes, Expr::value(file_bytes))
            .col_expr(import::Column::ErrorMessage, Expr::value(message))
            .col_expr(import::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                import::Column::Version,
                Expr::col(import::Column::Version).add(1),
            )
            .filter(import::Column::Id.eq(import_id))
            .filter(import::Column::State.eq(ImportState::Uploading.code()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        if state == ImportState::Validating {
            insert_lease(&txn, import_id).await?;
        } else {
            delete_chunks(&txn, import_id).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Starts the apply of a VALIDATED import that has not expired, sending welcome emails to
    /// the profiles it creates when `welcome_emails`. An import created while no trace was
    /// recorded takes `trace_context` (the submit's `traceparent`) for its apply.
    pub async fn submit(
        &self,
        import_id: Uuid,
        request_id: &str,
        welcome_emails: bool,
        trace_context: &str,
    ) -> Result<Result<import::Model, Refused>, DbErr> {
        let txn = self.db.begin().await?;
        let now = now_millis();
        let Some(current) = import::Entity::find_by_id(import_id).one(&txn).await? else {
            return Ok(Err(Refused::NotFound));
        };
        let state = state_of(&current);
        if !request_id.is_empty() && current.submit_request_id.as_deref() == Some(request_id) {
            return Ok(Ok(current));
        }
        if state != ImportState::Validated {
            return Ok(Err(Refused::WrongState(state)));
        }
        if current.expire_at.is_some_and(|expire| expire <= now) {
            return Ok(Err(Refused::Expired));
        }
        let updated = import::Entity::update_many()
            .col_expr(
                import::Column::State,
                Expr::value(ImportState::Applying.code()),
            )
            .col_expr(
                import::Column::SubmitRequestId,
                Expr::value(Some(request_id.to_owned()).filter(|id| !id.is_empty())),
            )
            .col_expr(import::Column::ExpireAt, Expr::value(Option::<i64>::None))
            .col_expr(import::Column::WelcomeEmails, Expr::value(welcome_emails))
            .col_expr(
                import::Column::TraceContext,
                Expr::value(if current.trace_context.is_empty() {
                    trace_context
                } else {
                    current.trace_context.as_str()
                }),
            )
            .col_expr(import::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                import::Column::Version,
                Expr::col(import::Column::Version).add(1),
            )
            .filter(import::Column::Id.eq(import_id))
            .filter(import::Column::State.eq(ImportState::Validated.code()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            let state = self.import(import_id).await?.map(|model| state_of(&model));
            return Ok(Err(state.map_or(Refused::NotFound, Refused::WrongState)));
        }
        insert_lease(&txn, import_id).await?;
        let model = import::Entity::find_by_id(import_id).one(&txn).await?;
        txn.commit().await?;
        Ok(model.ok_or(Refused::NotFound))
    }

    /// Cancels an import that has not finished. Rows not applied yet are skipped; an import
    /// cancelled before submit keeps its expiry, so it is purged like any unsubmitted one.
    pub async fn cancel(
        &self,
        import_id: Uuid,
        request_id: &str,
    ) -> Result<Result<import::Model, Refused>, DbErr> {
        let txn = self.db.begin().await?;
        let Some(current) = import::Entity::find_by_id(import_id).one(&txn).await? else {
            return Ok(Err(Refused::NotFound));
        };
        let state = state_of(&current);
        if state == ImportState::Cancelled
            || (!request_id.is_empty() && current.cancel_request_id.as_deref() == Some(request_id))
        {
            return Ok(Ok(current));
        }
        if !state.cancellable() {
            return Ok(Err(Refused::WrongState(state)));
        }
        let updated = import::Entity::update_many()
            .col_expr(
                import::Column::State,
                Expr::value(ImportState::Cancelled.code()),
            )
            .col_expr(
                import::Column::CancelRequestId,
                Expr::value(Some(request_id.to_owned()).filter(|id| !id.is_empty())),
            )
            .col_expr(import::Column::UpdatedAt, Expr::value(now_millis()))
            .col_expr(
                import::Column::Version,
                Expr::col(import::Column::Version).add(1),
            )
            .filter(import::Column::Id.eq(import_id))
            .filter(import::Column::State.eq(state.code()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Box::pin(self.cancel(import_id, request_id)).await;
        }
        row::Entity::update_many()
            .col_expr(
                row::Column::Outcome,
                Expr::value(RowOutcome::Skipped.code()),
            )
            .filter(row::Column::ImportId.eq(import_id))
            .filter(row::Column::Outcome.eq(RowOutcome::Pending.code()))
            .exec(&txn)
            .await?;
        // A worker applying a batch right now records that batch's outcomes before it sees the
        // cancel (and then drops the lease itself), so its rows are reported as applied.
        if state != ImportState::Applying {
            delete_lease(&txn, import_id).await?;
        }
        delete_chunks(&txn, import_id).await?;
        let model = import::Entity::find_by_id(import_id).one(&txn).await?;
        txn.commit().await?;
        Ok(model.ok_or(Refused::NotFound))
    }

    /// Drops the lease of an import that needs no worker any more.
    pub async fn drop_lease(&self, import_id: Uuid) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        delete_lease(&txn, import_id).await?;
        txn.commit().await
    }

    /// Imports whose expiry has passed and that no worker is busy with.
    pub async fn expired_imports(&self, now: i64, limit: u64) -> Result<Vec<Uuid>, DbErr> {
        import::Entity::find()
            .select_only()
            .column(import::Column::Id)
            .filter(import::Column::ExpireAt.lt(now))
            .filter(
                import::Column::State
                    .is_not_in([ImportState::Validating.code(), ImportState::Applying.code()]),
            )
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await
    }

    /// Deletes an import with its file, rows and lease.
    pub async fn purge(&self, import_id: Uuid) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        row::Entity::delete_many()
            .filter(row::Column::ImportId.eq(import_id))
            .exec(&txn)
            .await?;
        delete_chunks(&txn, import_id).await?;
        delete_lease(&txn, import_id).await?;
        import::Entity::delete_by_id(import_id).exec(&txn).await?;
        txn.commit().await
    }

    // ----- leases -----

    /// Imports a worker may claim now: their lease is free or expired.
    pub async fn claimable(&self, now: i64, limit: u64) -> Result<Vec<Uuid>, DbErr> {
        lease::Entity::find()
            .select_only()
            .column(lease::Column::ImportId)
            .filter(
                Condition::any()
                    .add(lease::Column::Owner.is_null())
                    .add(lease::Column::ExpiresAt.lt(now)),
            )
            .order_by_asc(lease::Column::HeartbeatAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await
    }

    /// Takes the lease of an import if it is free or expired; true when this owner got it.
    /// One conditional UPDATE, so two replicas racing for it cannot both win.
    pub async fn try_claim(
        &self,
        import_id: Uuid,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<bool, DbErr> {
        let now = now_millis();
        let result = lease::Entity::update_many()
            .col_expr(lease::Column::Owner, Expr::value(owner))
            .col_expr(lease::Column::ExpiresAt, Expr::value(now + ttl_ms))
            .col_expr(lease::Column::HeartbeatAt, Expr::value(now))
            .col_expr(
                lease::Column::Claims,
                Expr::col(lease::Column::Claims).add(1),
            )
            .filter(lease::Column::ImportId.eq(import_id))
            .filter(
                Condition::any()
                    .add(lease::Column::Owner.is_null())
                    .add(lease::Column::ExpiresAt.lt(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Extends the lease while `owner` holds it; false when it was lost. Run inside every
    /// transaction that records progress, it fences out a replica whose lease was taken over.
    pub async fn renew(
        &self,
        conn: &impl ConnectionTrait,
        import_id: Uuid,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<bool, DbErr> {
        let now = now_millis();
        let result = lease::Entity::update_many()
            .col_expr(lease::Column::ExpiresAt, Expr::value(now + ttl_ms))
            .col_expr(lease::Column::HeartbeatAt, Expr::value(now))
            .filter(lease::Column::ImportId.eq(import_id))
            .filter(lease::Column::Owner.eq(owner))
            .exec(conn)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Gives the lease up, for another replica to claim at once.
    pub async fn release(&self, import_id: Uuid, owner: &str) -> Result<(), DbErr> {
        lease::Entity::update_many()
            .col_expr(lease::Column::Owner, Expr::value(Option::<String>::None))
            .col_expr(lease::Column::ExpiresAt, Expr::value(0i64))
            .filter(lease::Column::ImportId.eq(import_id))
            .filter(lease::Column::Owner.eq(owner))
            .exec(&self.db)
            .await
            .map(|_| ())
    }

    pub async fn lease(&self, import_id: Uuid) -> Result<Option<lease::Model>, DbErr> {
        lease::Entity::find_by_id(import_id).one(&self.db).await
    }

    // ----- validation -----

    /// Forgets what an earlier, interrupted validation staged.
    pub async fn restart_validation(&self, import_id: Uuid) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        row::Entity::delete_many()
            .filter(row::Column::ImportId.eq(import_id))
            .exec(&txn)
            .await?;
        import::Entity::update_many()
            .col_expr(import::Column::TotalRowCount, Expr::value(0i64))
            .filter(import::Column::Id.eq(import_id))
            .exec(&txn)
            .await?;
        txn.commit().await
    }

    /// Stages validated rows and moves the row count on, if `owner` still holds the lease.
    pub async fn stage_rows(
        &self,
        import_id: Uuid,
        owner: &str,
        ttl_ms: i64,
        rows: Vec<row::Model>,
        columns: &str,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        if !self.renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        let count = rows.len() as i64;
        if !rows.is_empty() {
            row::Entity::insert_many(rows.into_iter().map(row::ActiveModel::from))
                .exec_without_returning(&txn)
                .await?;
        }
        import::Entity::update_many()
            .col_expr(
                import::Column::TotalRowCount,
                Expr::col(import::Column::TotalRowCount).add(count),
            )
            .col_expr(import::Column::Columns, Expr::value(columns))
            .col_expr(import::Column::UpdatedAt, Expr::value(now_millis()))
            .filter(import::Column::Id.eq(import_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// A page of the rows whose `column` value (claim or profile id) appears on more than one
    /// row, ordered by that value and row, after `after`.
    pub async fn repeated_values(
        &self,
        import_id: Uuid,
        column: row::Column,
        after: Option<(String, i64)>,
        limit: u64,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        let repeated = Query::select()
            .column(column)
            .from(row::Entity)
            .and_where(row::Column::ImportId.eq(import_id))
            .and_where(column.is_not_null())
            .group_by_col(column)
            .and_having(Expr::col(column).count().gt(1))
            .to_owned();
        let mut query = row::Entity::find()
            .select_only()
            .column(column)
            .column(row::Column::RowNumber)
            .filter(row::Column::ImportId.eq(import_id))
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
        query.into_tuple().all(&self.db).await
    }

    pub async fn row(&self, import_id: Uuid, row_number: i64) -> Result<Option<row::Model>, DbErr> {
        row::Entity::find_by_id((import_id, row_number))
            .one(&self.db)
            .await
    }

    /// Makes a row an error with these errors (after the duplicate checks).
    pub async fn set_row_errors(
        &self,
        import_id: Uuid,
        row_number: i64,
        errors: &str,
    ) -> Result<(), DbErr> {
        row::Entity::update_many()
            .col_expr(row::Column::Action, Expr::value(RowAction::Error.code()))
            .col_expr(row::Column::Errors, Expr::value(errors))
            .col_expr(row::Column::Changes, Expr::value("[]"))
            .filter(row::Column::ImportId.eq(import_id))
            .filter(row::Column::RowNumber.eq(row_number))
            .exec(&self.db)
            .await
            .map(|_| ())
    }

    /// How many rows have each action.
    pub async fn action_counts(&self, import_id: Uuid) -> Result<ActionCounts, DbErr> {
        #[derive(FromQueryResult)]
        struct Counted {
            action: i32,
            rows: i64,
        }
        let counted = row::Entity::find()
            .select_only()
            .column(row::Column::Action)
            .column_as(row::Column::RowNumber.count(), "rows")
            .filter(row::Column::ImportId.eq(import_id))
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

    /// How many imports are in each state now (states without any are absent).
    pub async fn imports_by_state(&self) -> Result<HashMap<ImportState, i64>, DbErr> {
        #[derive(FromQueryResult)]
        struct Counted {
            state: i32,
            imports: i64,
        }
        let counted = import::Entity::find()
            .select_only()
            .column(import::Column::State)
            .column_as(import::Column::Id.count(), "imports")
            .group_by(import::Column::State)
            .into_model::<Counted>()
            .all(&self.db)
            .await?;
        Ok(counted
            .into_iter()
            .filter_map(|Counted { state, imports }| {
                Some((ImportState::from_code(state)?, imports))
            })
            .collect())
    }

    /// Ends validation: VALIDATED with the counts and an expiry, or INVALID with a message;
    /// either way with the `format` the file was found in. The file's pieces and the lease go.
    /// False when `owner` lost the lease or the import was cancelled meanwhile.
    pub async fn finish_validation(
        &self,
        import_id: Uuid,
        owner: &str,
        ttl_ms: i64,
        result: Result<ActionCounts, String>,
        format: ReadFormat,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        if !self.renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        let now = now_millis();
        let mut update = import::Entity::update_many()
            .col_expr(import::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                import::Column::Delimiter,
                Expr::value(format.delimiter.map(String::from)),
            )
            .col_expr(
                import::Column::LineEnding,
                Expr::value(format.line_ending.map(str::to_owned)),
            )
            .col_expr(
                import::Column::Version,
                Expr::col(import::Column::Version).add(1),
            )
            .filter(import::Column::Id.eq(import_id))
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
            row::Entity::delete_many()
                .filter(row::Column::ImportId.eq(import_id))
                .exec(&txn)
                .await?;
        }
        delete_chunks(&txn, import_id).await?;
        delete_lease(&txn, import_id).await?;
        txn.commit().await?;
        Ok(updated)
    }

    // ----- apply -----

    /// The rows still to write whose numbers are above `after` and at most `upto`, in file
    /// order.
    pub async fn pending_rows(
        &self,
        import_id: Uuid,
        after: i64,
        upto: i64,
    ) -> Result<Vec<row::Model>, DbErr> {
        row::Entity::find()
            .filter(row::Column::ImportId.eq(import_id))
            .filter(row::Column::RowNumber.gt(after))
            .filter(row::Column::RowNumber.lte(upto))
            .filter(row::Column::Action.is_in([RowAction::Create.code(), RowAction::Update.code()]))
            .filter(row::Column::Outcome.eq(RowOutcome::Pending.code()))
            .order_by_asc(row::Column::RowNumber)
            .all(&self.db)
            .await
    }

    /// The highest row number staged for an import; none when it has no rows.
    pub async fn last_row_number(&self, import_id: Uuid) -> Result<Option<i64>, DbErr> {
        row::Entity::find()
            .select_only()
            .column_as(row::Column::RowNumber.max(), "last")
            .filter(row::Column::ImportId.eq(import_id))
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await
            .map(Option::flatten)
    }

    pub async fn record_outcomes(
        &self,
        import_id: Uuid,
        owner: &str,
        ttl_ms: i64,
        results: &[RowResult],
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        if !self.renew(&txn, import_id, owner, ttl_ms).await? {
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
        import::Entity::update_many()
            .col_expr(
                import::Column::AppliedCount,
                Expr::col(import::Column::AppliedCount).add(applied),
            )
            .col_expr(
                import::Column::FailedCount,
                Expr::col(import::Column::FailedCount).add(failed),
            )
            .col_expr(import::Column::UpdatedAt, Expr::value(now_millis()))
            .filter(import::Column::Id.eq(import_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Ends the apply: the rows never to be written are SKIPPED and the import reaches its final
    /// state. False when `owner` lost the lease or the import is no longer APPLYING.
    pub async fn finish_apply(
        &self,
        import_id: Uuid,
        owner: &str,
        ttl_ms: i64,
        failure: Option<&str>,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        if !self.renew(&txn, import_id, owner, ttl_ms).await? {
            return Ok(false);
        }
        let Some(current) = import::Entity::find_by_id(import_id).one(&txn).await? else {
            return Ok(false);
        };
        if state_of(&current) != ImportState::Applying {
            delete_lease(&txn, import_id).await?;
            txn.commit().await?;
            return Ok(false);
        }
        row::Entity::update_many()
            .col_expr(
                row::Column::Outcome,
                Expr::value(RowOutcome::Skipped.code()),
            )
            .filter(row::Column::ImportId.eq(import_id))
            .filter(row::Column::Outcome.eq(RowOutcome::Pending.code()))
            .exec(&txn)
            .await?;
        let state = match failure {
            Some(_) => ImportState::Failed,
            None if current.error_count == 0 && current.failed_count == 0 => ImportState::Completed,
            None => ImportState::CompletedWithErrors,
        };
        import::Entity::update_many()
            .col_expr(import::Column::State, Expr::value(state.code()))
            .col_expr(
                import::Column::ErrorMessage,
                Expr::value(failure.unwrap_or("")),
            )
            .col_expr(import::Column::UpdatedAt, Expr::value(now_millis()))
            .col_expr(
                import::Column::Version,
                Expr::col(import::Column::Version).add(1),
            )
            .filter(import::Column::Id.eq(import_id))
            .exec(&txn)
            .await?;
        delete_lease(&txn, import_id).await?;
        txn.commit().await?;
        Ok(true)
    }

    // ----- reading rows -----

    /// A page of rows in file order after `after`, only those with `action` when given.
    pub async fn rows(
        &self,
        import_id: Uuid,
        action: Option<RowAction>,
        after: i64,
        limit: u64,
    ) -> Result<Vec<row::Model>, DbErr> {
        let mut query = row::Entity::find()
            .filter(row::Column::ImportId.eq(import_id))
            .filter(row::Column::RowNumber.gt(after))
            .order_by_asc(row::Column::RowNumber)
            .limit(limit);
        if let Some(action) = action {
            query = query.filter(row::Column::Action.eq(action.code()));
        }
        query.all(&self.db).await
    }

    /// How many rows have each outcome (for tests and operators).
    pub async fn outcome_counts(&self, import_id: Uuid) -> Result<HashMap<i32, i64>, DbErr> {
        row::Entity::find()
            .select_only()
            .column(row::Column::Outcome)
            .column_as(row::Column::RowNumber.count(), "rows")
            .filter(row::Column::ImportId.eq(import_id))
            .group_by(row::Column::Outcome)
            .into_tuple::<(i32, i64)>()
            .all(&self.db)
            .await
            .map(|pairs| pairs.into_iter().collect())
    }
}

/// The state of a stored import (an unknown code reads as FAILED, never as a live state).
/// Row outcomes recorded per statement (four bound values each).
const OUTCOME_CHUNK: usize = 200;

/// Records `results` with one `UPDATE … FROM (VALUES …)`, for rows still pending (or skipped
/// by a cancel); returns the outcome codes of the rows it changed.
async fn record_outcome_chunk(
    txn: &DatabaseTransaction,
    import_id: Uuid,
    owner: &str,
    results: &[RowResult],
) -> Result<Vec<i32>, DbErr> {
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
    values.push(import_id.into());
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

pub fn state_of(model: &import::Model) -> ImportState {
    ImportState::from_code(model.state).unwrap_or(ImportState::Failed)
}

async fn insert_lease(txn: &DatabaseTransaction, import_id: Uuid) -> Result<(), DbErr> {
    delete_lease(txn, import_id).await?;
    lease::Entity::insert(lease::ActiveModel {
        import_id: Set(import_id),
        owner: Set(None),
        expires_at: Set(0),
        heartbeat_at: Set(0),
        claims: Set(0),
    })
    .exec_without_returning(txn)
    .await
    .map(|_| ())
}

async fn delete_lease(txn: &DatabaseTransaction, import_id: Uuid) -> Result<(), DbErr> {
    lease::Entity::delete_by_id(import_id)
        .exec(txn)
        .await
        .map(|_| ())
}

async fn delete_chunks(txn: &DatabaseTransaction, import_id: Uuid) -> Result<(), DbErr> {
    chunk::Entity::delete_many()
        .filter(chunk::Column::ImportId.eq(import_id))
        .exec(txn)
        .await
        .map(|_| ())
}
