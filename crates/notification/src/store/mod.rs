//! The notification service's persistence: the email queue, the attempt history and the
//! idempotency keys. The only module that knows SQL; it takes and returns domain types.
//!
//! The queue's invariants live here, in the database, so any number of replicas can share it:
//! a message is claimed by one worker at a time through a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, one atomic `UPDATE … RETURNING` on SQLite, whose writers are serialised), a
//! worker's result is recorded only while it still holds the lease, and a lease that runs out
//! makes the message claimable again.
//!
//! - [`notifications`]: queueing (the notification and its idempotency key, atomically),
//!   reading, listing and the queue's depth.
//! - [`queue`]: the workers' claim and the recording of each attempt.
//! - [`actions`]: an operator's retry of a failed message and cancel of a waiting one, each
//!   one conditional `UPDATE`, and their idempotency keys.
//! - [`retention`]: deleting finished notifications with their attempts and keys.

pub mod actions;
mod convert;
pub mod entities;
mod migrations;
pub mod notifications;
mod offboarding;
pub mod queue;
pub mod retention;

// The attempt history is read directly by the end-to-end tests.
pub use entities::attempt;
pub use migrations::Migrator;
pub use notifications::Transaction;

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use uuid::Uuid;

/// Timestamps are kept to the microsecond, what PostgreSQL stores, so a value reads back
/// exactly as it was written on both backends (page tokens compare them).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] DbErr),
    /// A row holds a value no version of the service writes.
    #[error("stored {column} {value:?} is not one the service knows")]
    Corrupt { column: &'static str, value: String },
}

/// Handle on the notification service's database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Whether the database is PostgreSQL (statements shared by concurrent calls) rather than
    /// SQLite.
    pub fn is_postgres(&self) -> bool {
        roster_runtime::db::is_postgres(&self.db)
    }

    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Runs a PostgreSQL statement whose `RETURNING` gives one id per row: the ids.
    async fn ids_returned(
        &self,
        sql: String,
        values: Vec<sea_orm::Value>,
    ) -> Result<HashSet<Uuid>, StoreError> {
        Ok(self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?
            .iter()
            .map(|row| row.try_get_by_index::<Uuid>(0))
            .collect::<Result<_, _>>()?)
    }

    /// The pool (for the retention job's lease).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// `$first, …`: `count` numbered placeholders.
fn placeholders(first: usize, count: usize) -> String {
    let numbers: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    numbers.join(", ")
}
