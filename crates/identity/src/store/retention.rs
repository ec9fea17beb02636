//! Retention's SQL: deleting, a batch at a time, what has outlived its use.
//!
//! Each purge is one statement that picks up to `limit` rows by the rule and deletes them,
//! re-checking the rule in the DELETE itself: two replicas purging at once never delete a row
//! that stopped matching, and the count each gets back is what it deleted.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::{Store, StoreError};

impl Store {
    /// Deletes up to `limit` idempotency keys (the kept answers of single calls and of each
    /// item of a batch call) recorded before `cutoff`: a request repeated after that runs again.
    pub async fn purge_idempotency_keys(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "idempotency_keys",
            "scope, request_id",
            "created_at < $1",
            vec![cutoff.into()],
            limit,
        )
        .await
    }

    /// Deletes up to `limit` reset tokens that expired before `now`: used, revoked or not, such
    /// a token is refused exactly like one that never existed.
    pub async fn purge_reset_tokens(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "reset_tokens",
            "token_hash",
            "expires_at < $1",
            vec![now.into()],
            limit,
        )
        .await
    }

    /// Deletes up to `limit` sign-in throttle rows whose last failure was before `cutoff` and
    /// whose lock (if any) has ended by `now`: the username starts again from no failures.
    pub async fn purge_signin_throttle(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "signin_throttle",
            "canonical",
            "last_failure_at < $1 AND (locked_until IS NULL OR locked_until <= $2)",
            vec![cutoff.into(), now.into()],
            limit,
        )
        .await
    }

    /// Deletes up to `limit` outbox rows delivered to the notification service before
    /// `cutoff` (their payload is gone already; notification keeps the message itself).
    pub async fn purge_delivered_outbox(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "outbox",
            "id",
            "delivered_at IS NOT NULL AND delivered_at < $1",
            vec![cutoff.into()],
            limit,
        )
        .await
    }

    /// `DELETE FROM table WHERE (key) IN (up to `limit` keys of rows matching `condition`)
    /// AND condition`; the condition's parameters are `$1`, `$2`, … (rewritten for SQLite).
    async fn delete_batch(
        &self,
        table: &str,
        key: &str,
        condition: &str,
        values: Vec<Value>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN \
             (SELECT {key} FROM {table} WHERE {condition} LIMIT {limit}) AND {condition}"
        );
        Ok(self
            .db
            .execute_raw(roster_runtime::db::statement(&self.db, &sql, values))
            .await?
            .rows_affected())
    }
}
