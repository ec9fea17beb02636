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
use super::{Store, StoreError, placeholders};
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
        if !roster_runtime::db::is_postgres(&self.db) {
            let row =
                notification::ActiveModel::from(notification::Model::from(notification.clone()));
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
        values.extend(column_values(notification));
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

    /// [`Store::enqueue`] of several SendEmail calls: for each `(notification, scope,
    /// request_id)`, whether it was queued. On PostgreSQL in one statement: the keys go in as
    /// one `INSERT … ON CONFLICT DO NOTHING`, in key order (concurrent statements lock keys in
    /// the same order), and exactly the notifications whose keys went in follow; a key held
    /// already, by an earlier request or by a twin earlier in the same statement, writes nothing
    /// for its call. All or nothing: an error writes nothing for any. SQLite, which has no
    /// data-modifying `WITH`, takes each call's transaction in turn.
    pub async fn enqueue_together(
        &self,
        calls: &[(&Notification, &str, &str)],
    ) -> Result<Vec<bool>, StoreError> {
        if !roster_runtime::db::is_postgres(&self.db) {
            let mut queued = Vec::with_capacity(calls.len());
            for (notification, scope, request_id) in calls {
                queued.push(self.enqueue(notification, scope, request_id).await?);
            }
            return Ok(queued);
        }
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by_key(|&index| (calls[index].1, calls[index].2));
        let width = notification::Column::iter().count();
        let mut values: Vec<Value> = Vec::with_capacity(calls.len() * (4 + width));
        let mut keys = Vec::with_capacity(calls.len());
        let mut rows = Vec::with_capacity(calls.len());
        for &index in &order {
            let (notification, scope, request_id) = calls[index];
            keys.push(format!("({})", placeholders(values.len() + 1, 4)));
            values.extend([
                scope.into(),
                request_id.into(),
                notification.id.into(),
                notification.created_at.into(),
            ]);
            rows.push(format!("({})", placeholders(values.len() + 1, width)));
            values.extend(column_values(notification));
        }
        let sql = format!(
            "WITH key AS (INSERT INTO notification_request_keys \
                 (scope, request_id, notification_id, created_at) VALUES {} \
                 ON CONFLICT (scope, request_id) DO NOTHING RETURNING notification_id) \
             INSERT INTO notifications ({columns}) SELECT * FROM (VALUES {}) AS new ({columns}) \
             WHERE new.id IN (SELECT notification_id FROM key) RETURNING id",
            keys.join(", "),
            rows.join(", "),
            columns = COLUMNS.as_str(),
        );
        let queued = self.ids_returned(sql, values).await?;
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
    format!(
        "WITH key AS (INSERT INTO notification_request_keys \
             (scope, request_id, notification_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, request_id) DO NOTHING RETURNING 1) \
         INSERT INTO notifications ({}) SELECT {} WHERE EXISTS (SELECT 1 FROM key)",
        COLUMNS.as_str(),
        placeholders(5, notification::Column::iter().count()),
    )
});

/// The notifications table's columns, quoted, in the entity's order ([`column_values`]'s).
static COLUMNS: LazyLock<String> = LazyLock::new(|| {
    notification::Column::iter()
        .map(|column| format!("\"{}\"", column.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
});

/// `notification`'s values, one per column in [`COLUMNS`]' order.
fn column_values(notification: &Notification) -> impl Iterator<Item = Value> {
    let row = notification::ActiveModel::from(notification::Model::from(notification.clone()));
    notification::Column::iter()
        .map(move |column| row.get(column).into_value().expect("every column is set"))
}

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
