//! The workers' side of the queue: claiming due messages under a lease, and recording each
//! attempt only while its worker still holds that lease.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, Iterable, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, TransactionTrait,
};
use uuid::Uuid;

use super::convert::all;
use super::entities::{attempt, notification};
use super::{Store, StoreError};
use crate::domain::attempt::{Attempt, Finished, Outcome};
use crate::domain::notification::Notification;
use crate::domain::state::DeliveryState;

impl Store {
    /// Claims up to `limit` due messages for `owner` until `lease_until`: each becomes SENDING
    /// with its attempt count raised by one. Due are QUEUED and RETRYING messages whose time
    /// has come, and SENDING ones whose lease ran out (their worker died).
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Notification>, StoreError> {
        use notification::Column;
        if roster_runtime::db::is_postgres(&self.db) {
            // Rows another worker has locked are skipped, not waited for: replicas never
            // queue up behind one another and never claim the same message.
            let txn = self.db.begin().await?;
            let ids: Vec<Uuid> = due_ids(now, limit)
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .into_tuple()
                .all(&txn)
                .await?;
            if ids.is_empty() {
                txn.commit().await?;
                return Ok(Vec::new());
            }
            let claimed = claim_update(owner, now, lease_until)
                .filter(Column::Id.is_in(ids))
                .exec_with_returning(&txn)
                .await?;
            txn.commit().await?;
            all(claimed)
        } else {
            // SQLite runs one writer at a time, so a single UPDATE whose subquery picks the
            // due rows is atomic: no other worker can claim the same rows in between.
            let mut update = claim_update(owner, now, lease_until)
                .filter(Column::Id.in_subquery(due_ids(now, limit).into_query()))
                .into_query();
            // The columns by name, not `*`: a statement prepared before a migration added a
            // column would otherwise return more columns than its cached description.
            update.returning(Query::returning().columns(notification::Column::iter()));
            let statement = self.db.get_database_backend().build(&update);
            all(notification::Entity::find()
                .from_raw_sql(statement)
                .all(&self.db)
                .await?)
        }
    }

    /// Records a finished attempt and moves the message on, if `owner` still holds its lease.
    /// Returns false (and records nothing) when the lease was lost.
    pub async fn finish(&self, finished: Finished<'_>) -> Result<bool, StoreError> {
        use notification::Column;
        let mut update = notification::Entity::update_many()
            .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::value(finished.finished_at))
            .filter(Column::Id.eq(finished.id))
            .filter(Column::State.eq(DeliveryState::Sending.as_str()))
            .filter(Column::LeaseOwner.eq(finished.owner));
        let (smtp_code, error) = match &finished.outcome {
            Outcome::Sent => {
                update = update
                    .col_expr(Column::State, Expr::value(DeliveryState::Sent.as_str()))
                    .col_expr(Column::SentAt, Expr::value(Some(finished.finished_at)))
                    .col_expr(
                        Column::NextAttemptAt,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    // The variables may hold secrets (a reset link) and are no longer needed.
                    .col_expr(Column::Variables, Expr::value("{}"));
                (None, None)
            }
            Outcome::Retry {
                next_attempt_at,
                error,
                smtp_code,
            } => {
                update = update
                    .col_expr(Column::State, Expr::value(DeliveryState::Retrying.as_str()))
                    .col_expr(Column::NextAttemptAt, Expr::value(Some(*next_attempt_at)))
                    .col_expr(Column::LastError, Expr::value(Some(error.clone())));
                (*smtp_code, Some(error.clone()))
            }
            Outcome::Failed { error, smtp_code } => {
                update = update
                    .col_expr(Column::State, Expr::value(DeliveryState::Failed.as_str()))
                    .col_expr(
                        Column::NextAttemptAt,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    // The variables stay: RetryNotification renders the message again.
                    .col_expr(Column::LastError, Expr::value(Some(error.clone())));
                (*smtp_code, Some(error.clone()))
            }
        };
        let txn = self.db.begin().await?;
        if update.exec(&txn).await?.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        attempt::Entity::insert(attempt::ActiveModel {
            notification_id: Set(finished.id),
            number: Set(finished.number),
            worker: Set(finished.owner.to_owned()),
            outcome: Set(finished.outcome.kind().as_str().to_owned()),
            smtp_code: Set(smtp_code.map(i32::from)),
            error: Set(error),
            started_at: Set(finished.started_at),
            finished_at: Set(finished.finished_at),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// The attempt history of one notification, first attempt first.
    pub async fn attempts(&self, id: Uuid) -> Result<Vec<Attempt>, StoreError> {
        all(attempt::Entity::find()
            .filter(attempt::Column::NotificationId.eq(id))
            .order_by_asc(attempt::Column::Number)
            .all(&self.db)
            .await?)
    }
}

/// The ids of up to `limit` messages a worker may take now, oldest first.
fn due_ids(now: DateTime<Utc>, limit: u64) -> sea_orm::Select<notification::Entity> {
    use notification::Column;
    let due = Condition::any()
        .add(
            Condition::all()
                .add(Column::State.is_in(DeliveryState::WAITING.map(DeliveryState::as_str)))
                .add(Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(Column::State.eq(DeliveryState::Sending.as_str()))
                .add(Column::LeaseUntil.lte(now)),
        );
    notification::Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(due)
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .limit(limit)
}

/// The update that hands messages to `owner`.
fn claim_update(
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> sea_orm::UpdateMany<notification::Entity> {
    use notification::Column;
    notification::Entity::update_many()
        .col_expr(Column::State, Expr::value(DeliveryState::Sending.as_str()))
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(Column::LeaseOwner, Expr::value(Some(owner.to_owned())))
        .col_expr(Column::LeaseUntil, Expr::value(Some(lease_until)))
        .col_expr(
            Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(Column::UpdatedAt, Expr::value(now))
}
