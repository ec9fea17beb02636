//! The notification service's persistence: the email queue, the attempt history and the
//! idempotency keys. The only module that knows SQL.
//!
//! The queue's invariants live here, in the database, so any number of replicas can share it:
//! a message is claimed by one worker at a time through a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, one atomic `UPDATE … RETURNING` on SQLite, whose writers are serialised), a
//! worker's result is recorded only while it still holds the lease, and a lease that runs out
//! makes the message claimable again.

pub mod entities;
mod migrations;

pub use entities::{attempt, notification, request_key};
pub use migrations::Migrator;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};
use uuid::Uuid;

use crate::domain::state::DeliveryState;

/// Timestamps are kept to the microsecond, what PostgreSQL stores, so a value reads back
/// exactly as it was written on both backends (page tokens compare them).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A notification to queue.
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub id: Uuid,
    pub account_id: Uuid,
    pub recipient: String,
    pub template: String,
    pub locale: String,
    pub requested_locale: String,
    /// The variables as a JSON object.
    pub variables: String,
    pub account_display_name: String,
    pub message_id: String,
}

/// What [`Store::enqueue`] did.
#[derive(Clone, Debug)]
pub enum Enqueued {
    /// A new notification was queued.
    Created(notification::Model),
    /// The request id was used before: this is the first request's notification, as it is now.
    Replayed(notification::Model),
}

/// Where a page of a list starts: after this notification in newest-first order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The mail server accepted the message.
    Sent,
    /// A temporary failure; the next attempt is due at `next_attempt_at`.
    Retry {
        next_attempt_at: DateTime<Utc>,
        error: String,
        smtp_code: Option<u16>,
    },
    /// A permanent failure, or the retries are exhausted.
    Failed {
        error: String,
        smtp_code: Option<u16>,
    },
}

/// A finished attempt, recorded only while its worker still holds the lease.
#[derive(Clone, Debug)]
pub struct Finished<'a> {
    pub id: Uuid,
    pub owner: &'a str,
    /// The attempt's number (the `attempts` count the claim set).
    pub number: i32,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Handle on the notification service's database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Queues `new` once per `(scope, request_id)` (AIP-155). A repeat, or the loser of two
    /// concurrent twins, gets the first notification back and queues nothing.
    pub async fn enqueue(
        &self,
        scope: &str,
        request_id: &str,
        new: NewNotification,
    ) -> Result<Enqueued, DbErr> {
        if let Some(existing) = self.by_request(scope, request_id).await? {
            return Ok(Enqueued::Replayed(existing));
        }
        let now = now();
        let txn = self.db.begin().await?;
        let model = notification::Model {
            id: new.id,
            account_id: new.account_id,
            recipient: new.recipient,
            template: new.template,
            locale: new.locale,
            requested_locale: new.requested_locale,
            variables: new.variables,
            account_display_name: new.account_display_name,
            state: DeliveryState::Queued.as_str().to_owned(),
            attempts: 0,
            last_error: None,
            message_id: new.message_id,
            next_attempt_at: Some(now),
            lease_owner: None,
            lease_until: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
        };
        notification::Entity::insert(notification::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await?;
        let inserted = request_key::Entity::insert(request_key::ActiveModel {
            scope: Set(scope.to_owned()),
            request_id: Set(request_id.to_owned()),
            notification_id: Set(model.id),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([request_key::Column::Scope, request_key::Column::RequestId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return self
                .by_request(scope, request_id)
                .await?
                .map(Enqueued::Replayed)
                .ok_or_else(|| DbErr::RecordNotFound("idempotency key vanished".into()));
        }
        txn.commit().await?;
        Ok(Enqueued::Created(model))
    }

    async fn by_request(
        &self,
        scope: &str,
        request_id: &str,
    ) -> Result<Option<notification::Model>, DbErr> {
        let Some(key) = request_key::Entity::find_by_id((scope.to_owned(), request_id.to_owned()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        self.find(key.notification_id).await
    }

    /// One notification by id.
    pub async fn find(&self, id: Uuid) -> Result<Option<notification::Model>, DbErr> {
        notification::Entity::find_by_id(id).one(&self.db).await
    }

    /// Up to `limit` of an account's notifications, newest first, after `cursor`.
    pub async fn list(
        &self,
        account_id: Uuid,
        state: Option<DeliveryState>,
        cursor: Option<Cursor>,
        limit: u64,
    ) -> Result<Vec<notification::Model>, DbErr> {
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
        query
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// Claims up to `limit` due messages for `owner` until `lease_until`: each becomes SENDING
    /// with its attempt count raised by one. Due are QUEUED and RETRYING messages whose time
    /// has come, and SENDING ones whose lease ran out (their worker died).
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<notification::Model>, DbErr> {
        use notification::Column;
        if roster_runtime::db::is_postgres(&self.db) {
            // Rows another worker has locked are skipped, not waited for: replicas never
            // queue up behind one another and never claim the same message.
            let txn = self.db.begin().await?;
            let ids: Vec<Uuid> = notification::Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(due(now))
                .order_by_asc(Column::CreatedAt)
                .order_by_asc(Column::Id)
                .limit(limit)
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
            Ok(claimed)
        } else {
            // SQLite runs one writer at a time, so a single UPDATE whose subquery picks the
            // due rows is atomic: no other worker can claim the same rows in between.
            let due_ids = notification::Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(due(now))
                .order_by_asc(Column::CreatedAt)
                .order_by_asc(Column::Id)
                .limit(limit)
                .into_query();
            let mut update = claim_update(owner, now, lease_until)
                .filter(Column::Id.in_subquery(due_ids))
                .into_query();
            update.returning_all();
            let statement = self.db.get_database_backend().build(&update);
            notification::Entity::find()
                .from_raw_sql(statement)
                .all(&self.db)
                .await
        }
    }

    /// Records a finished attempt and moves the message on, if `owner` still holds its lease.
    /// Returns false (and records nothing) when the lease was lost.
    pub async fn finish(&self, finished: Finished<'_>) -> Result<bool, DbErr> {
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
        let (outcome, smtp_code, error) = match &finished.outcome {
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
                ("sent", None, None)
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
                ("retry", *smtp_code, Some(error.clone()))
            }
            Outcome::Failed { error, smtp_code } => {
                update = update
                    .col_expr(Column::State, Expr::value(DeliveryState::Failed.as_str()))
                    .col_expr(
                        Column::NextAttemptAt,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .col_expr(Column::LastError, Expr::value(Some(error.clone())))
                    .col_expr(Column::Variables, Expr::value("{}"));
                ("failed", *smtp_code, Some(error.clone()))
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
            outcome: Set(outcome.to_owned()),
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
    pub async fn attempts(&self, id: Uuid) -> Result<Vec<attempt::Model>, DbErr> {
        attempt::Entity::find()
            .filter(attempt::Column::NotificationId.eq(id))
            .order_by_asc(attempt::Column::Number)
            .all(&self.db)
            .await
    }

    /// How many messages are not delivered yet (queued, being sent or waiting for a retry), and
    /// when the oldest of them was queued: the queue's depth and age, for the metrics.
    pub async fn queue_stats(&self) -> Result<(u64, Option<DateTime<Utc>>), DbErr> {
        use notification::Column;
        use sea_orm::PaginatorTrait;
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

/// Messages a worker may take now.
fn due(now: DateTime<Utc>) -> Condition {
    use notification::Column;
    Condition::any()
        .add(
            Condition::all()
                .add(Column::State.is_in(DeliveryState::WAITING.map(DeliveryState::as_str)))
                .add(Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(Column::State.eq(DeliveryState::Sending.as_str()))
                .add(Column::LeaseUntil.lte(now)),
        )
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

#[cfg(test)]
mod tests;
