//! Retention's SQL: deleting finished notifications with everything that refers to them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use super::entities::notification;
use super::{Store, StoreError};
use crate::domain::state::DeliveryState;

/// The tables whose rows belong to one notification, by a `notification_id` column: deleted
/// with it, before it. A new such table is one more line here.
pub const NOTIFICATION_CHILDREN: &[&str] = &[
    "notification_attempts",
    "notification_request_keys",
    "notification_action_keys",
];

/// Which finished notifications (SENT, FAILED, CANCELLED) a purge deletes.
#[derive(Clone, Copy, Debug)]
pub enum Purge {
    /// Those finished before `cutoff` (`notification_retention_days`).
    FinishedBefore(DateTime<Utc>),
    /// Every finished one of an account identity purged.
    OfPurgedAccount(Uuid),
}

impl Purge {
    fn condition(self) -> Condition {
        use notification::Column;
        let finished = DeliveryState::ALL
            .into_iter()
            .filter(|state| state.is_final())
            .map(DeliveryState::as_str);
        let condition = Condition::all().add(Column::State.is_in(finished));
        match self {
            Purge::FinishedBefore(cutoff) => condition.add(Column::UpdatedAt.lt(cutoff)),
            Purge::OfPurgedAccount(account) => condition.add(Column::AccountId.eq(account)),
        }
    }
}

impl Store {
    /// Deletes up to `limit` notifications that `which` names, each with its rows in
    /// [`NOTIFICATION_CHILDREN`], in one transaction. Returns the rows deleted per table
    /// (`notifications` and each child table).
    ///
    /// The notifications are picked and locked in the transaction (`FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL, so two replicas purging at once take different ones; SQLite's write lock,
    /// taken at `BEGIN`, on SQLite), so none changes state between the pick and the deletes.
    pub async fn purge_notifications(
        &self,
        which: Purge,
        limit: u64,
    ) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        use notification::Column;
        // Most runs find nothing: they read, and take no write lock.
        let any = notification::Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(which.condition())
            .into_tuple::<Uuid>()
            .one(&self.db)
            .await?;
        if any.is_none() {
            return Ok(BTreeMap::from([("notifications", 0)]));
        }
        let txn = self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?;
        let mut pick = notification::Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(which.condition())
            .order_by_asc(Column::UpdatedAt)
            .limit(limit);
        if roster_runtime::db::is_postgres(&self.db) {
            pick = pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let ids: Vec<Uuid> = pick.into_tuple().all(&txn).await?;
        let mut deleted = BTreeMap::new();
        if ids.is_empty() {
            txn.commit().await?;
            deleted.insert("notifications", 0);
            return Ok(deleted);
        }
        for table in NOTIFICATION_CHILDREN {
            let statement = Query::delete()
                .from_table(Alias::new(*table))
                .and_where(Expr::col(Alias::new("notification_id")).is_in(ids.iter().copied()))
                .to_owned();
            deleted.insert(*table, txn.execute(&statement).await?.rows_affected());
        }
        let notifications = notification::Entity::delete_many()
            .filter(Column::Id.is_in(ids))
            .filter(which.condition())
            .exec(&txn)
            .await?
            .rows_affected;
        deleted.insert("notifications", notifications);
        txn.commit().await?;
        Ok(deleted)
    }
}
