//! Queued notifications: the writes of a `SendEmail` (a notification and its idempotency key, in
//! one [`Transaction`] the use case owns), reading one back, listing an account's, and the
//! queue's depth for the metrics.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
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

    /// Stores a new notification.
    pub async fn insert(&self, notification: Notification) -> Result<(), StoreError> {
        notification::Entity::insert(notification::ActiveModel::from(notification::Model::from(
            notification,
        )))
        .exec_without_returning(&self.0)
        .await?;
        Ok(())
    }

    /// Records that `(scope, request_id)` created `notification_id`, in one
    /// `INSERT … ON CONFLICT DO NOTHING`: false (and nothing written) when the key is held
    /// already, by an earlier request or a concurrent twin.
    pub async fn add_request_key(
        &self,
        scope: &str,
        request_id: &str,
        notification_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserted = request_key::Entity::insert(request_key::ActiveModel {
            scope: Set(scope.to_owned()),
            request_id: Set(request_id.to_owned()),
            notification_id: Set(notification_id),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([request_key::Column::Scope, request_key::Column::RequestId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.0)
        .await?;
        Ok(inserted > 0)
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
