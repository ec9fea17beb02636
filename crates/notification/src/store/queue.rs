//! The workers' side of the queue: claiming due messages under a lease, and recording each
//! attempt only while its worker still holds that lease.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement, TransactionTrait,
    Value,
};
use uuid::Uuid;

use super::convert::all;
use super::entities::{attempt, notification};
use super::{Store, StoreError};
use crate::domain::attempt::{Attempt, Finished, Outcome};
use crate::domain::notification::{NO_VARIABLES, Notification};
use crate::domain::state::DeliveryState;

/// What recording an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recording {
    /// The attempt is in the history and the message moved on.
    Recorded,
    /// Nothing was recorded: the worker no longer holds the message (its lease ran out and
    /// another worker claimed it, or it is no longer SENDING). The message as it is now;
    /// `None` when it does not exist.
    NotHeld(Option<Box<Notification>>),
}

impl Store {
    /// Claims up to `limit` due messages for `owner` until `lease_until`: each becomes SENDING
    /// with its attempt count raised by one. Due are QUEUED and RETRYING messages whose time
    /// has come, and SENDING ones whose lease ran out (their worker died).
    ///
    /// The claim and the reading of the claimed messages are one transaction: when they cannot
    /// be read, the claim is rolled back, so no message is left SENDING with an attempt counted
    /// that no worker makes.
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Notification>, StoreError> {
        self.claim_except(owner, now, lease_until, limit, &HashSet::new())
            .await
    }

    /// [`Store::claim`], leaving the messages of the `deleted` accounts where they are: a
    /// message of an account deleted since the last pass that cancels such messages (one
    /// retrying, or queued just before the deletion was known) waits for that pass, and is
    /// never sent.
    pub async fn claim_except(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
        deleted: &HashSet<Uuid>,
    ) -> Result<Vec<Notification>, StoreError> {
        use notification::Column;
        let txn = self.db.begin().await?;
        let claimed = if roster_runtime::db::is_postgres(&self.db) {
            // One statement. Each kind of due message is picked by its own index in due order
            // and locked, skipping rows another worker has locked (replicas never queue up
            // behind one another and never claim the same message); the earliest due of them
            // are updated and returned. Picking each kind by its index keeps a claim's cost
            // the same whatever the queue's depth: one condition over all three kinds, ordered
            // by another column, sorted every due message on each claim (11 ms at 10,000
            // waiting, growing with the backlog).
            // $8: the deleted accounts, as one array (the same statement whatever their number).
            let sql = "WITH queued AS (SELECT id, next_attempt_at AS due FROM notifications \
                     WHERE state = $1 AND next_attempt_at <= $4 \
                     AND account_id <> ALL($8::text::uuid[]) ORDER BY next_attempt_at \
                     LIMIT $5 FOR UPDATE SKIP LOCKED), \
                 retrying AS (SELECT id, next_attempt_at AS due FROM notifications \
                     WHERE state = $2 AND next_attempt_at <= $4 \
                     AND account_id <> ALL($8::text::uuid[]) ORDER BY next_attempt_at \
                     LIMIT $5 FOR UPDATE SKIP LOCKED), \
                 abandoned AS (SELECT id, lease_until AS due FROM notifications \
                     WHERE state = $3 AND lease_until <= $4 \
                     AND account_id <> ALL($8::text::uuid[]) ORDER BY lease_until \
                     LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 UPDATE notifications SET state = $3, attempts = attempts + 1, \
                     lease_owner = $6, lease_until = $7, next_attempt_at = NULL, updated_at = $4 \
                 WHERE id IN (SELECT id FROM (SELECT * FROM queued UNION ALL \
                     SELECT * FROM retrying UNION ALL SELECT * FROM abandoned) AS due \
                     ORDER BY due LIMIT $5) \
                 RETURNING *";
            let values: Vec<Value> = vec![
                DeliveryState::Queued.as_str().into(),
                DeliveryState::Retrying.as_str().into(),
                DeliveryState::Sending.as_str().into(),
                now.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
                owner.into(),
                lease_until.into(),
                format!(
                    "{{{}}}",
                    deleted
                        .iter()
                        .map(Uuid::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
                .into(),
            ];
            let mut claimed = notification::Entity::find()
                .from_raw_sql(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    values,
                ))
                .all(&txn)
                .await
                .map_err(StoreError::from)
                .and_then(all);
            if let Ok(claimed) = &mut claimed {
                claimed.sort_by_key(|message: &Notification| (message.created_at, message.id));
            }
            claimed
        } else {
            // SQLite runs one writer at a time, so a single UPDATE whose subquery picks the
            // due rows is atomic: no other worker can claim the same rows in between. Being
            // the transaction's first statement, it takes the write lock at once (waiting for
            // it under the busy timeout) and keeps it until the commit.
            //
            // It returns only the ids, read by position: a connection that read the schema
            // before a migration added a column prepares `RETURNING <that column>` with the
            // quoted text as the column's name (and `RETURNING *` with fewer columns than it
            // returns), so the rows are read with a SELECT instead, which SQLite prepares
            // against the current schema.
            let mut update = claim_update(owner, now, lease_until)
                .filter(Column::Id.in_subquery(due_ids(now, limit, deleted).into_query()))
                .into_query();
            update.returning_col(Column::Id);
            let statement = txn.get_database_backend().build(&update);
            let mut ids = Vec::new();
            for row in txn.query_all_raw(statement).await? {
                ids.push(row.try_get_by_index::<Uuid>(0)?);
            }
            if ids.is_empty() {
                Ok(Vec::new())
            } else {
                notification::Entity::find()
                    .filter(Column::Id.is_in(ids))
                    .order_by_asc(Column::CreatedAt)
                    .order_by_asc(Column::Id)
                    .all(&txn)
                    .await
                    .map_err(StoreError::from)
                    .and_then(all)
            }
        };
        match claimed {
            Ok(claimed) => {
                txn.commit().await?;
                Ok(claimed)
            }
            Err(error) => {
                txn.rollback().await?;
                Err(error)
            }
        }
    }

    /// Records a finished attempt and moves the message on, if `owner` still holds its lease.
    /// When it does not, nothing is recorded and the answer is the message as it is now, so
    /// the caller can say what happened instead of dropping the attempt silently.
    pub async fn finish(&self, finished: Finished<'_>) -> Result<Recording, StoreError> {
        Ok(self
            .finish_all(std::slice::from_ref(&finished))
            .await?
            .pop()
            .unwrap_or(Recording::Recorded))
    }

    /// [`Store::finish`] for the attempts of a claimed batch, in one transaction: one commit
    /// for the batch instead of one per message. The answers are in the order of `finished`.
    ///
    /// On PostgreSQL the batch is one statement and one round trip (see [`record_on_postgres`]);
    /// SQLite records the attempts one after another in one transaction.
    pub async fn finish_all(
        &self,
        finished: &[Finished<'_>],
    ) -> Result<Vec<Recording>, StoreError> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        if roster_runtime::db::is_postgres(&self.db) {
            return self.record_on_postgres(finished).await;
        }
        let txn = self.db.begin().await?;
        let mut recordings = Vec::with_capacity(finished.len());
        for finished in finished {
            recordings.push(record_attempt(&txn, finished).await?);
        }
        txn.commit().await?;
        Ok(recordings)
    }

    /// [`Store::finish_all`] on PostgreSQL, in one statement: an `UPDATE` per attempt that moves
    /// its message on while its worker still holds it (returning those), the attempts as a
    /// `VALUES` list, and the history's insert for exactly the returned ones. A message whose
    /// lease was lost is then read as it is now, to answer [`Recording::NotHeld`].
    async fn record_on_postgres(
        &self,
        finished: &[Finished<'_>],
    ) -> Result<Vec<Recording>, StoreError> {
        const COLUMNS: usize = 10;
        let mut values: Vec<Value> = Vec::with_capacity(finished.len() * COLUMNS + 3);
        values.push(DeliveryState::Sending.as_str().into());
        values.push(DeliveryState::Sent.as_str().into());
        values.push(NO_VARIABLES.into());
        let mut rows = Vec::with_capacity(finished.len());
        let mut moves = Vec::with_capacity(finished.len());
        for finished in finished {
            let Written {
                state,
                next_attempt_at,
                smtp_code,
                error,
            } = Written::of(&finished.outcome);
            // Each value bound as the next parameter; its placeholder, for the text.
            let mut bind = |value: Value| {
                values.push(value);
                format!("${}", values.len())
            };
            let id = bind(finished.id.into());
            let owner = bind(finished.owner.into());
            let number = bind(finished.number.into());
            let state = bind(state.as_str().into());
            let outcome = bind(finished.outcome.kind().as_str().into());
            let next_attempt_at = bind(next_attempt_at.into());
            let smtp_code = bind(smtp_code.into());
            let error = bind(error.into());
            let started_at = bind(finished.started_at.into());
            let finished_at = bind(finished.finished_at.into());
            rows.push(format!(
                "({id}, {owner}, {number}, {state}, {outcome}, {next_attempt_at}, {smtp_code}, \
                 {error}, {started_at}, {finished_at})"
            ));
            // The message moves on only while its worker holds it: SENDING ($1) under this
            // owner's lease.
            moves.push(format!(
                "m{index} AS (UPDATE notifications SET \
                     state = {state}, \
                     lease_owner = NULL, \
                     lease_until = NULL, \
                     next_attempt_at = {next_attempt_at}, \
                     updated_at = {finished_at}, \
                     sent_at = CASE WHEN {state} = $2 THEN {finished_at} ELSE sent_at END, \
                     variables = CASE WHEN {state} = $2 THEN $3 ELSE variables END, \
                     last_error = COALESCE({error}, last_error) \
                 WHERE id = {id} AND state = $1 AND lease_owner = {owner} \
                 RETURNING id)",
                index = moves.len()
            ));
        }
        // $1 SENDING, $2 SENT, $3 the emptied variables. A sent message drops its variables
        // (they may hold secrets) and keeps its last error; a failed or retrying one keeps its
        // variables (a retry renders it again) and takes the attempt's error.
        //
        // Each message is moved by an UPDATE of its own, `WHERE id = $n`: a primary-key probe
        // whatever the table's size. One UPDATE joined to the attempts' VALUES list was planned
        // by the table's size when the connection prepared it, and a connection that prepared it
        // while the queue was small (a few hundred rows; a new install, or the first minutes of
        // a benchmark) kept a sequential scan of the whole table with a hash join: 2.2–6.0 ms a
        // batch of 8 after 30,000 emails, growing with the table, where the probes take 0.8 ms.
        // Before that, `notifications.state = $1` as a condition of its own was planned as a
        // bitmap scan of an index led by the state, which reads every earlier version of every
        // SENDING row no vacuum has removed yet.
        let sql = format!(
            "WITH {}, \
             done (id, owner, number, state, outcome, next_attempt_at, smtp_code, error, \
                 started_at, finished_at) AS (VALUES {}) \
             INSERT INTO notification_attempts (notification_id, number, worker, outcome, \
                 smtp_code, error, started_at, finished_at) \
             SELECT done.id, done.number, done.owner, done.outcome, done.smtp_code, done.error, \
                 done.started_at, done.finished_at \
             FROM done WHERE done.id IN ({}) \
             RETURNING notification_id",
            moves.join(", "),
            rows.join(", "),
            (0..moves.len())
                .map(|index| format!("SELECT id FROM m{index}"))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        );
        let recorded = self.ids_returned(sql, values).await?;
        let mut recordings = Vec::with_capacity(finished.len());
        for finished in finished {
            recordings.push(if recorded.contains(&finished.id) {
                Recording::Recorded
            } else {
                Recording::NotHeld(self.find(finished.id).await?.map(Box::new))
            });
        }
        Ok(recordings)
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
fn due_ids(
    now: DateTime<Utc>,
    limit: u64,
    deleted: &HashSet<Uuid>,
) -> sea_orm::Select<notification::Entity> {
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
    let mut due_ids = notification::Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(due);
    if !deleted.is_empty() {
        due_ids = due_ids.filter(Column::AccountId.is_not_in(deleted.iter().copied()));
    }
    due_ids
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

/// What an attempt's outcome writes: the message's next state and due time, and the SMTP code
/// and error that the history keeps (the error also becomes the message's last error). Both
/// ways of recording attempts take it from here.
struct Written {
    state: DeliveryState,
    next_attempt_at: Option<DateTime<Utc>>,
    smtp_code: Option<i32>,
    error: Option<String>,
}

impl Written {
    fn of(outcome: &Outcome) -> Self {
        let (state, next_attempt_at, smtp_code, error) = match outcome {
            Outcome::Sent => (DeliveryState::Sent, None, None, None),
            Outcome::Retry {
                next_attempt_at,
                error,
                smtp_code,
            } => (
                DeliveryState::Retrying,
                Some(*next_attempt_at),
                *smtp_code,
                Some(error.clone()),
            ),
            Outcome::Failed { error, smtp_code } => {
                (DeliveryState::Failed, None, *smtp_code, Some(error.clone()))
            }
        };
        Self {
            state,
            next_attempt_at,
            smtp_code: smtp_code.map(i32::from),
            error,
        }
    }
}

/// Records one finished attempt in `txn` (see [`Store::finish`]).
async fn record_attempt(
    txn: &DatabaseTransaction,
    finished: &Finished<'_>,
) -> Result<Recording, StoreError> {
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
    let written = Written::of(&finished.outcome);
    update = update
        .col_expr(Column::State, Expr::value(written.state.as_str()))
        .col_expr(Column::NextAttemptAt, Expr::value(written.next_attempt_at));
    if written.state == DeliveryState::Sent {
        update = update
            .col_expr(Column::SentAt, Expr::value(Some(finished.finished_at)))
            // The variables may hold secrets (a reset link) and are no longer needed.
            .col_expr(Column::Variables, Expr::value(NO_VARIABLES));
    }
    // A failed message keeps its variables: RetryNotification renders it again.
    if let Some(error) = &written.error {
        update = update.col_expr(Column::LastError, Expr::value(Some(error.clone())));
    }
    if update.exec(txn).await?.rows_affected == 0 {
        let found = notification::Entity::find_by_id(finished.id)
            .one(txn)
            .await?
            .map(|model| Notification::try_from(model).map(Box::new))
            .transpose();
        // Nothing was written for this one: the batch's other records stand.
        return Ok(Recording::NotHeld(found?));
    }
    attempt::Entity::insert(attempt::ActiveModel {
        notification_id: Set(finished.id),
        number: Set(finished.number),
        worker: Set(finished.owner.to_owned()),
        outcome: Set(finished.outcome.kind().as_str().to_owned()),
        smtp_code: Set(written.smtp_code),
        error: Set(written.error),
        started_at: Set(finished.started_at),
        finished_at: Set(finished.finished_at),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(Recording::Recorded)
}
