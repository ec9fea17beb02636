//! Queued notifications: the write of a `SendEmail` (a notification and its idempotency key,
//! atomically), reading one back, listing an account's, the queue's depth for the metrics, and
//! the [`Transaction`] an operator's retry or cancel runs in.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseTransaction, DbBackend, EntityTrait, IdenStatic, Iterable, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionTrait, Value,
};
use uuid::Uuid;

use super::convert::all;
use super::entities::{notification, request_key};
use super::{Store, StoreError};
use crate::domain::notification::{Cursor, Notification};
use crate::domain::state::DeliveryState;

/// A database transaction: what is written through it becomes visible at [`Transaction::commit`]
/// and is dropped by [`Transaction::rollback`] (or by dropping it).
pub struct Transaction(DatabaseTransaction);

impl Transaction {
    /// The connection the transaction's statements run on.
    pub(super) fn connection(&self) -> &DatabaseTransaction {
        &self.0
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        Ok(self.0.rollback().await?)
    }
}

impl Store {
    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Transaction, StoreError> {
        Ok(Transaction(self.db.begin().await?))
    }

    /// Queues `notification` as the one `(scope, request_id)` created, unless that key is held
    /// already (by an earlier request, or by a concurrent twin, whose end the key's insert
    /// waits for): true when it was queued, false when nothing was written.
    ///
    /// On PostgreSQL this is one statement and one round trip: the key's
    /// `INSERT … ON CONFLICT DO NOTHING` in a data-modifying `WITH`, and the notification's
    /// insert only when the key's inserted a row (the key's foreign key is checked at the end
    /// of the statement, when both rows exist). SQLite, which has no data-modifying `WITH`,
    /// writes both in one transaction and rolls it back when the key was held.
    pub async fn enqueue(
        &self,
        notification: &Notification,
        scope: &str,
        request_id: &str,
    ) -> Result<bool, StoreError> {
        let row = notification::ActiveModel::from(notification::Model::from(notification.clone()));
        if !roster_runtime::db::is_postgres(&self.db) {
            let txn = self.db.begin().await?;
            notification::Entity::insert(row)
                .exec_without_returning(&txn)
                .await?;
            let key = request_key::ActiveModel {
                scope: Set(scope.to_owned()),
                request_id: Set(request_id.to_owned()),
                notification_id: Set(notification.id),
                created_at: Set(notification.created_at),
            };
            if insert_key(key, &txn).await? {
                txn.commit().await?;
                return Ok(true);
            }
            txn.rollback().await?;
            return Ok(false);
        }
        let mut values: Vec<Value> = vec![
            scope.into(),
            request_id.into(),
            notification.id.into(),
            notification.created_at.into(),
        ];
        values.extend(
            notification::Column::iter()
                .map(|column| row.get(column).into_value().expect("every column is set")),
        );
        let sql = ENQUEUE_ON_POSTGRES.as_str();
        let inserted = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?
            .rows_affected();
        Ok(inserted > 0)
    }

    /// [`Store::enqueue`] of several SendEmail calls in one statement (PostgreSQL only; false
    /// on SQLite, which has no data-modifying `WITH`, for every one without writing): for each
    /// `(notification, scope, request_id)`, whether it was queued. The keys go in as one
    /// `INSERT … ON CONFLICT DO NOTHING`, in key order (concurrent statements lock keys in the
    /// same order), and exactly the notifications whose keys went in follow; a key held already,
    /// by an earlier request or by a twin earlier in the same statement, writes nothing for its
    /// call. All or nothing: an error writes nothing for any.
    pub async fn enqueue_together(
        &self,
        calls: &[(&Notification, &str, &str)],
    ) -> Result<Vec<bool>, StoreError> {
        if !roster_runtime::db::is_postgres(&self.db) || calls.is_empty() {
            return Ok(vec![false; calls.len()]);
        }
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by_key(|&index| (calls[index].1, calls[index].2));
        let columns: Vec<String> = notification::Column::iter()
            .map(|column| format!("\"{}\"", column.as_str()))
            .collect();
        let mut values: Vec<Value> = Vec::with_capacity(calls.len() * (4 + columns.len()));
        let mut keys = Vec::with_capacity(calls.len());
        let mut rows = Vec::with_capacity(calls.len());
        for &index in &order {
            let (notification, scope, request_id) = calls[index];
            let first = values.len() + 1;
            keys.push(format!(
                "(${first}, ${}, ${}, ${})",
                first + 1,
                first + 2,
                first + 3
            ));
            values.extend([
                scope.into(),
                request_id.into(),
                notification.id.into(),
                notification.created_at.into(),
            ]);
            let row =
                notification::ActiveModel::from(notification::Model::from(notification.clone()));
            let first = values.len() + 1;
            rows.push(format!(
                "({})",
                (first..first + columns.len())
                    .map(|n| format!("${n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            values.extend(
                notification::Column::iter()
                    .map(|column| row.get(column).into_value().expect("every column is set")),
            );
        }
        let sql = format!(
            "WITH key AS (INSERT INTO notification_request_keys \
                 (scope, request_id, notification_id, created_at) VALUES {} \
                 ON CONFLICT (scope, request_id) DO NOTHING RETURNING notification_id) \
             INSERT INTO notifications ({columns}) SELECT * FROM (VALUES {}) AS new ({columns}) \
             WHERE new.id IN (SELECT notification_id FROM key) RETURNING id",
            keys.join(", "),
            rows.join(", "),
            columns = columns.join(", "),
        );
        let mut queued = std::collections::HashSet::new();
        for row in self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?
        {
            queued.insert(row.try_get_by_index::<Uuid>(0)?);
        }
        Ok(calls
            .iter()
            .map(|(notification, _, _)| queued.contains(&notification.id))
            .collect())
    }

    /// The notification that `(scope, request_id)` created, as it is now.
    pub async fn by_request(
        &self,
        scope: &str,
        request_id: &str,
    ) -> Result<Option<Notification>, StoreError> {
        let Some(key) = request_key::Entity::find_by_id((scope.to_owned(), request_id.to_owned()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        self.find(key.notification_id).await
    }

    /// One notification by id.
    pub async fn find(&self, id: Uuid) -> Result<Option<Notification>, StoreError> {
        notification::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Notification::try_from)
            .transpose()
    }

    /// Up to `limit` of an account's notifications, newest first, after `cursor`.
    pub async fn list(
        &self,
        account_id: Uuid,
        state: Option<DeliveryState>,
        cursor: Option<Cursor>,
        limit: u64,
    ) -> Result<Vec<Notification>, StoreError> {
        use notification::Column;
        let mut query = notification::Entity::find().filter(Column::AccountId.eq(account_id));
        if let Some(state) = state {
            query = query.filter(Column::State.eq(state.as_str()));
        }
        if let Some(cursor) = cursor {
            query = query.filter(
                Condition::any()
                    .add(Column::CreatedAt.lt(cursor.created_at))
                    .add(
                        Condition::all()
                            .add(Column::CreatedAt.eq(cursor.created_at))
                            .add(Column::Id.lt(cursor.id)),
                    ),
            );
        }
        all(query
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// How many messages are not delivered yet (queued, being sent or waiting for a retry), and
    /// when the oldest of them was queued: the queue's depth and age, for the metrics.
    pub async fn queue_stats(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        use notification::Column;
        let undelivered = || {
            notification::Entity::find().filter(
                Column::State.is_in(
                    [
                        DeliveryState::Queued,
                        DeliveryState::Sending,
                        DeliveryState::Retrying,
                    ]
                    .map(DeliveryState::as_str),
                ),
            )
        };
        let depth = undelivered().count(&self.db).await?;
        let oldest = undelivered()
            .select_only()
            .column(Column::CreatedAt)
            .order_by_asc(Column::CreatedAt)
            .into_tuple::<DateTime<Utc>>()
            .one(&self.db)
            .await?;
        Ok((depth, oldest))
    }
}

/// [`Store::enqueue`]'s statement on PostgreSQL, written once: $1–$4 the request key's scope,
/// request id, notification id and time, then the notification's columns in the entity's order.
static ENQUEUE_ON_POSTGRES: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = notification::Column::iter()
        .map(|column| format!("\"{}\"", column.as_str()))
        .collect();
    let placeholders: Vec<String> = (5..5 + columns.len()).map(|n| format!("${n}")).collect();
    format!(
        "WITH key AS (INSERT INTO notification_request_keys \
             (scope, request_id, notification_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, request_id) DO NOTHING RETURNING 1) \
         INSERT INTO notifications ({}) SELECT {} WHERE EXISTS (SELECT 1 FROM key)",
        columns.join(", "),
        placeholders.join(", ")
    )
});

/// Records that `key` created its notification, in one `INSERT … ON CONFLICT DO NOTHING`:
/// false (and nothing written) when the key is held already.
async fn insert_key(
    key: request_key::ActiveModel,
    txn: &DatabaseTransaction,
) -> Result<bool, StoreError> {
    let inserted = request_key::Entity::insert(key)
        .on_conflict(
            OnConflict::columns([request_key::Column::Scope, request_key::Column::RequestId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(inserted > 0)
}
