//! Identity's persistence: sea-orm entities, queries and migrations. The only module that knows
//! SQL.

mod accounts;
mod assignments;
mod batch;
mod credentials;
pub mod entities;
mod migrations;
mod profiles;

pub use accounts::AccountRecord;
pub use assignments::{extension_rows, role_names};
pub use credentials::LockSchedule;
pub use migrations::Migrator;
pub use profiles::{ACTIVE, DELETED, ProfileFilter, ProfileRecord, SUSPENDED, Standing};

use prost::Message;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
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

    /// Runs `work` in a transaction, once per `(scope, request_id)` (AIP-155): a repeated
    /// request returns the first response, encoded when it was produced, and writes nothing.
    /// An empty `request_id` runs `work` without that guarantee. Two concurrent twins both
    /// run `work`; the one whose key lands first commits and the other is rolled back and
    /// answers with the winner's response, also when the winner's change made its own `work`
    /// fail.
    pub async fn idempotent<R, F>(
        &self,
        scope: &str,
        request_id: &str,
        work: F,
    ) -> Result<R, IdentityError>
    where
        R: Message + Default,
        F: AsyncFnOnce(&DatabaseTransaction) -> Result<R, IdentityError>,
    {
        if !request_id.is_empty()
            && let Some(stored) = self.stored_response::<R>(scope, request_id).await?
        {
            return Ok(stored);
        }
        let txn = self.begin().await?;
        let response = match work(&txn).await {
            Ok(response) => response,
            Err(error) => {
                txn.rollback().await?;
                // A concurrent twin may have committed first, changing what `work` saw (a
                // stale etag now, a number held already): the twin's response is the answer.
                if !request_id.is_empty()
                    && let Some(stored) = self.stored_response::<R>(scope, request_id).await?
                {
                    return Ok(stored);
                }
                return Err(error);
            }
        };
        if !request_id.is_empty() {
            let inserted = idempotency_key::Entity::insert(idempotency_key::ActiveModel {
                scope: Set(scope.to_owned()),
                request_id: Set(request_id.to_owned()),
                response: Set(response.encode_to_vec()),
                created_at: Set(now()),
            })
            .on_conflict(
                OnConflict::columns([
                    idempotency_key::Column::Scope,
                    idempotency_key::Column::RequestId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            if inserted == 0 {
                txn.rollback().await?;
                return self
                    .stored_response::<R>(scope, request_id)
                    .await?
                    .ok_or_else(|| IdentityError::Corrupt("idempotency key vanished".into()));
            }
        }
        txn.commit().await?;
        Ok(response)
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting out the busy timeout behind other writers: a deferred transaction
    /// that read first would instead fail with SQLITE_BUSY when it tries to write after another
    /// writer committed. PostgreSQL ignores the mode.
    pub async fn begin(&self) -> Result<DatabaseTransaction, IdentityError> {
        Ok(self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?)
    }

    async fn stored_response<R: Message + Default>(
        &self,
        scope: &str,
        request_id: &str,
    ) -> Result<Option<R>, IdentityError> {
        let Some(row) =
            idempotency_key::Entity::find_by_id((scope.to_owned(), request_id.to_owned()))
                .one(&self.db)
                .await?
        else {
            return Ok(None);
        };
        R::decode(row.response.as_slice())
            .map(Some)
            .map_err(|error| IdentityError::Corrupt(format!("stored response: {error}")))
    }
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
