//! Bulk-import's persistence: imports, the uploaded file's pieces, the staged rows, and the
//! leases that give one replica at a time the work on an import. The only module that knows SQL.
//!
//! It takes and returns the domain's types ([`crate::domain::import`]); entity models stay
//! inside. It holds no rules of the life cycle: a state change is one conditional UPDATE
//! (`WHERE state = …`) that reports whether the import was still where the caller found it.
//! Rows are written and read in pages, never all at once: an import of a million rows stays a
//! database matter, not a memory one.
//!
//! - [`imports`]: creating, reading, listing, submitting and cancelling imports.
//! - [`retention`]: deleting expired and old finished imports, their data a batch at a time.
//! - [`uploads`]: the file's pieces and the end of an upload.
//! - [`leases`]: which replica works on an import.
//! - [`validation`]: staging rows and ending validation.
//! - [`apply`]: the rows to write, their outcomes and the end of the apply. An outcome is a
//!   narrow `import_outcomes` row inserted once, not an update of the staged row (whose cells
//!   and plan make it many times wider, with four indexes).
//! - [`rows`]: reading staged rows and counting them.

mod apply;
mod convert;
pub mod entities;
mod imports;
mod leases;
mod migrations;
mod offboarding;
pub mod retention;
mod rows;
mod uploads;
mod validation;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, JoinType, QueryFilter, QuerySelect, RelationTrait, Select, SqliteTransactionMode,
    Statement, TransactionOptions, TransactionTrait, UpdateMany,
};
use uuid::Uuid;

pub use migrations::Migrator;

use crate::domain::import::ImportId;
use crate::domain::state::RowOutcome;
use entities::{chunk, claim, import, lease, outcome, row};

/// The longest `error_message` stored, in characters (as the API documents it).
const MAX_MESSAGE_CHARS: usize = 1024;

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A failure of the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Handle on bulk-import's database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// A transaction a use case runs several steps of the store in, and commits.
pub struct Tx {
    txn: DatabaseTransaction,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The pool (for the retention job's lease).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Starts a transaction; dropped without [`Tx::commit`], it rolls back. On SQLite it takes
    /// the write lock at once (`BEGIN IMMEDIATE`), waiting out the busy timeout behind other
    /// writers: the steps read the import before they change it, and a deferred transaction
    /// that read first fails with SQLITE_BUSY when another writer (a worker, the retention
    /// job) committed in between.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            txn: self
                .db
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                })
                .await?,
        })
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.txn.commit().await?)
    }
}

/// The one model `select` finds on `db`, if any, as `convert` makes it.
async fn one<E: EntityTrait, T>(
    select: Select<E>,
    db: &impl ConnectionTrait,
    convert: impl FnOnce(E::Model) -> T,
) -> Result<Option<T>, StoreError> {
    Ok(select.one(db).await?.map(convert))
}

/// The UPDATE of import `id` that records activity at `now` (its `updated_at`) without a change
/// of its etag: progress counts, the pieces of an upload.
fn touch_import(id: ImportId, now: i64) -> UpdateMany<import::Entity> {
    import::Entity::update_many()
        .col_expr(import::Column::UpdatedAt, Expr::value(now))
        .filter(import::Column::Id.eq(id.0))
}

/// The UPDATE of a change a caller can see on import `id`: `updated_at` becomes `now` and the
/// version (its etag) goes up by one. Callers add the columns they change and, for a step of the
/// life cycle, the state the import must still be in, so that the step stays one statement.
fn change_import(id: ImportId, now: i64) -> UpdateMany<import::Entity> {
    touch_import(id, now).col_expr(
        import::Column::Version,
        Expr::col(import::Column::Version).add(1),
    )
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

/// Marks the rows of an import that were not applied (yet) SKIPPED: they never will be. A row
/// whose outcome a worker records meanwhile keeps that outcome.
async fn skip_pending_rows(txn: &DatabaseTransaction, import_id: Uuid) -> Result<(), DbErr> {
    let import = placeholder(txn.get_database_backend(), 1);
    let sql = format!(
        "INSERT INTO import_outcomes (import_id, row_number, outcome, message) \
         SELECT staged.import_id, staged.row_number, {skipped}, '' FROM import_rows staged \
         WHERE staged.import_id = {import} AND NOT EXISTS (SELECT 1 FROM import_outcomes done \
         WHERE done.import_id = staged.import_id AND done.row_number = staged.row_number) \
         ON CONFLICT (import_id, row_number) DO NOTHING",
        skipped = RowOutcome::Skipped.code(),
    );
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        sql,
        [import_id.into()],
    ))
    .await
    .map(|_| ())
}

/// The `index`th (from 1) bound value of a raw statement on `backend`: `$1` or `?1`, numbered on
/// both, so that a value may be used more than once.
fn placeholder(backend: DbBackend, index: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${index}"),
        _ => format!("?{index}"),
    }
}

/// Staged rows, each with its outcome when it has one (`select_also(outcome::Entity)`).
fn rows_with_outcomes() -> Select<row::Entity> {
    row::Entity::find().join(JoinType::LeftJoin, outcome::Relation::Row.def().rev())
}

/// Deletes the rows an import staged and their outcomes.
async fn delete_rows(txn: &DatabaseTransaction, import_id: Uuid) -> Result<(), DbErr> {
    delete_claims(txn, import_id).await?;
    outcome::Entity::delete_many()
        .filter(outcome::Column::ImportId.eq(import_id))
        .exec(txn)
        .await?;
    row::Entity::delete_many()
        .filter(row::Column::ImportId.eq(import_id))
        .exec(txn)
        .await
        .map(|_| ())
}

async fn delete_claims(txn: &DatabaseTransaction, import_id: Uuid) -> Result<(), DbErr> {
    claim::Entity::delete_many()
        .filter(claim::Column::ImportId.eq(import_id))
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
