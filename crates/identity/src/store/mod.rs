//! Identity's persistence: sea-orm entities, queries and migrations. The only module that knows
//! SQL; it takes and returns domain types, and entity models never leave it.

mod accounts;
mod assignments;
mod batch;
mod credentials;
mod entities;
mod events;
mod migrations;
mod offboarding;
mod outbox;
mod profiles;
mod query;
mod registry;
mod retention;
mod scim_tokens;
mod signin;

pub use accounts::Listed;
pub use events::{EventFilter, Numbered};
pub use migrations::Migrator;
pub use profiles::{AtOnce, Keep, ProfileFilter};
pub use scim_tokens::NewScimTokenRow;
pub use signin::{LockSchedule, ThrottleState};

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm::{ConnectionTrait, DbBackend};

use crate::domain::error::IdentityError;
use entities::idempotency_key;

/// Handle on identity's database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The pool, for reads outside a transaction.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting out the busy timeout behind other writers: a deferred transaction
    /// that read first would instead fail with SQLITE_BUSY when it tries to write after another
    /// writer committed. PostgreSQL ignores the mode.
    pub async fn begin(&self) -> Result<DatabaseTransaction, StoreError> {
        Ok(self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?)
    }

    /// The answer kept for `(scope, request_id)`, if that request was answered before.
    pub async fn stored_response(
        &self,
        scope: &str,
        request_id: &str,
    ) -> Result<Option<KeptAnswer>, StoreError> {
        Ok(
            idempotency_key::Entity::find_by_id((scope.to_owned(), request_id.to_owned()))
                .one(&self.db)
                .await?
                .map(|row| KeptAnswer {
                    response: row.response,
                    digest: row.request_digest,
                }),
        )
    }

    /// Keeps `response` as the answer to `(scope, request_id)`, the request whose digest is
    /// `digest` (none for a batch's record), in `txn`; false when a concurrent twin's answer
    /// was kept first (the caller rolls back and answers with it).
    pub async fn keep_response(
        &self,
        txn: &DatabaseTransaction,
        scope: &str,
        request_id: &str,
        digest: Option<&[u8]>,
        response: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let inserted =
            idempotency_key::Entity::insert(kept_row(scope, request_id, digest, response))
                .on_conflict(
                    OnConflict::columns([
                        idempotency_key::Column::Scope,
                        idempotency_key::Column::RequestId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        Ok(inserted == 1)
    }
}

/// An answer kept for a request id, and the digest of the request it answered (`None` when it
/// was kept before digests were).
#[derive(Clone, Debug)]
pub struct KeptAnswer {
    pub response: Vec<u8>,
    pub digest: Option<Vec<u8>>,
}

/// The row that keeps `response` as the answer to `(scope, request_id)`, the request whose
/// digest is `digest`.
pub(super) fn kept_row(
    scope: &str,
    request_id: &str,
    digest: Option<&[u8]>,
    response: Vec<u8>,
) -> idempotency_key::ActiveModel {
    idempotency_key::ActiveModel {
        scope: Set(scope.to_owned()),
        request_id: Set(request_id.to_owned()),
        response: Set(response),
        created_at: Set(now()),
        request_digest: Set(digest.map(<[u8]>::to_vec)),
    }
}

/// A failed store operation: the database failed, or the operation met a domain failure it
/// decides in SQL (a username registered first, a version that moved on, a number held).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or is unreachable; the cause is logged, never returned.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Domain(#[from] IdentityError),
}

impl From<StoreError> for IdentityError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => IdentityError::Storage(Box::new(error)),
            StoreError::Domain(error) => error,
        }
    }
}

/// One data-modifying part of a PostgreSQL `WITH` statement: `INSERT INTO <table> (<columns>)
/// SELECT <values> FROM <source>`, once per row (`UNION ALL`), so that nothing is inserted when
/// `source` has no row. `rows` are models of one entity with the same columns set; their values
/// are pushed onto `values` and bound as parameters numbered after those already there
/// ([`roster_runtime::db::insert_parts`]).
pub(crate) fn insert_from<A: ActiveModelTrait>(
    rows: impl IntoIterator<Item = A>,
    source: &str,
    values: &mut Vec<sea_orm::Value>,
) -> Result<String, StoreError> {
    let (head, rows) = roster_runtime::db::insert_parts(rows, values)?;
    let selects: Vec<String> = rows
        .iter()
        .map(|row| format!("SELECT {row} FROM {source}"))
        .collect();
    Ok(format!("{head} {}", selects.join(" UNION ALL ")))
}

/// True when the connection is PostgreSQL (row locks and SKIP LOCKED exist there).
pub(crate) fn is_postgres(conn: &impl ConnectionTrait) -> bool {
    conn.get_database_backend() == DbBackend::Postgres
}

/// The current time at the precision both databases keep (microseconds), so a value returned
/// at creation equals the value read back later.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
