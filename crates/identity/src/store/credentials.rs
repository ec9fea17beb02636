//! Password credentials and history, reset tokens, the outbox and the sign-in throttle.

use chrono::{DateTime, Duration, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::{credential, outbox, password_history, reset_token, signin_throttle};
use super::{Store, now};
use crate::domain::error::IdentityError;
use crate::domain::ids::ProfileId;
use crate::domain::outbox::{LeasedEmail, OutboxEmail};

impl Store {
    /// The profile's current password hash.
    pub async fn credential(
        &self,
        conn: &impl ConnectionTrait,
        profile_id: ProfileId,
    ) -> Result<Option<String>, StoreError> {
        Ok(credential::Entity::find_by_id(profile_id.0)
            .one(conn)
            .await?
            .map(|row| row.hash))
    }

    /// The profile's last `count` password hashes, newest first.
    pub async fn password_history(
        &self,
        conn: &impl ConnectionTrait,
        profile_id: ProfileId,
        count: u32,
    ) -> Result<Vec<String>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        Ok(password_history::Entity::find()
            .filter(password_history::Column::ProfileId.eq(profile_id.0))
            .order_by_desc(password_history::Column::CreatedAt)
            .limit(u64::from(count))
            .all(conn)
            .await?
            .into_iter()
            .map(|row| row.hash)
            .collect())
    }

    /// Sets the profile's password, records it in the history and revokes every reset token.
    pub async fn set_password(
        &self,
        txn: &DatabaseTransaction,
        profile_id: ProfileId,
        hash: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        credential::Entity::insert(credential::ActiveModel {
            profile_id: Set(profile_id.0),
            hash: Set(hash.to_owned()),
            updated_at: Set(at),
        })
        .on_conflict(
            OnConflict::column(credential::Column::ProfileId)
                .update_columns([credential::Column::Hash, credential::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        password_history::Entity::insert(password_history::ActiveModel {
            id: Set(Uuid::now_v7()),
            profile_id: Set(profile_id.0),
            hash: Set(hash.to_owned()),
            created_at: Set(at),
        })
        .exec_without_returning(txn)
        .await?;
        self.revoke_reset_tokens(txn, profile_id).await
    }

    /// Replaces a hash made with older parameters, if the password did not change meanwhile.
    pub async fn upgrade_hash(
        &self,
        profile_id: ProfileId,
        old: &str,
        new: &str,
    ) -> Result<(), StoreError> {
        credential::Entity::update_many()
            .col_expr(credential::Column::Hash, Expr::val(new.to_owned()))
            .filter(credential::Column::ProfileId.eq(profile_id.0))
            .filter(credential::Column::Hash.eq(old))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn revoke_reset_tokens(
        &self,
        txn: &DatabaseTransaction,
        profile_id: ProfileId,
    ) -> Result<(), StoreError> {
        reset_token::Entity::update_many()
            .col_expr(reset_token::Column::RevokedAt, Expr::val(Some(now())))
            .filter(reset_token::Column::ProfileId.eq(profile_id.0))
            .filter(reset_token::Column::UsedAt.is_null())
            .filter(reset_token::Column::RevokedAt.is_null())
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Stores a new reset token (by hash), revoking the profile's earlier ones.
    pub async fn issue_reset_token(
        &self,
        txn: &DatabaseTransaction,
        profile_id: ProfileId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.revoke_reset_tokens(txn, profile_id).await?;
        reset_token::Entity::insert(reset_token::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            profile_id: Set(profile_id.0),
            expires_at: Set(expires_at),
            used_at: Set(None),
            revoked_at: Set(None),
            created_at: Set(now()),
        })
        .exec_without_returning(txn)
        .await?;
        Ok(())
    }

    /// The profile a usable token belongs to: not used, not revoked, not expired.
    pub async fn usable_reset_token(
        &self,
        conn: &impl ConnectionTrait,
        token_hash: &str,
    ) -> Result<Option<ProfileId>, StoreError> {
        Ok(reset_token::Entity::find_by_id(token_hash.to_owned())
            .filter(reset_token::Column::UsedAt.is_null())
            .filter(reset_token::Column::RevokedAt.is_null())
            .filter(reset_token::Column::ExpiresAt.gt(now()))
            .one(conn)
            .await?
            .map(|row| ProfileId(row.profile_id)))
    }

    /// Marks a token used; false when it was no longer usable (a concurrent completion won).
    pub async fn use_reset_token(
        &self,
        txn: &DatabaseTransaction,
        token_hash: &str,
    ) -> Result<bool, StoreError> {
        let result = reset_token::Entity::update_many()
            .col_expr(reset_token::Column::UsedAt, Expr::val(Some(now())))
            .filter(reset_token::Column::TokenHash.eq(token_hash))
            .filter(reset_token::Column::UsedAt.is_null())
            .filter(reset_token::Column::RevokedAt.is_null())
            .filter(reset_token::Column::ExpiresAt.gt(now()))
            .exec(txn)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Writes an email to the outbox, in the caller's transaction.
    pub async fn enqueue_email(
        &self,
        txn: &DatabaseTransaction,
        email: &OutboxEmail,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        outbox::Entity::insert(outbox_row(id, email)?)
            .exec_without_returning(txn)
            .await?;
        Ok(id)
    }

    /// Writes many emails to the outbox, in the caller's transaction, a few statements for all.
    pub async fn enqueue_emails(
        &self,
        txn: &DatabaseTransaction,
        emails: &[OutboxEmail],
    ) -> Result<(), StoreError> {
        // Nine columns a row: far below SQLite's and PostgreSQL's bind-parameter caps.
        for chunk in emails.chunks(200) {
            let rows = chunk
                .iter()
                .map(|email| outbox_row(Uuid::now_v7(), email))
                .collect::<Result<Vec<_>, _>>()?;
            outbox::Entity::insert_many(rows)
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
    }

    /// Leases up to `limit` due outbox rows to `owner` until `lease_until`. A row whose lease
    /// ran out (its relay died) is due again. Safe with any number of relays: the conditions are
    /// re-checked on each row as it is updated.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<LeasedEmail>, StoreError> {
        let at = now();
        let due = || {
            Expr::col(outbox::Column::DeliveredAt)
                .is_null()
                .and(Expr::col(outbox::Column::NextAttemptAt).lte(at))
                .and(
                    Expr::col(outbox::Column::LeaseUntil)
                        .is_null()
                        .or(Expr::col(outbox::Column::LeaseUntil).lt(at)),
                )
        };
        let candidates = Query::select()
            .column(outbox::Column::Id)
            .from(outbox::Entity)
            .and_where(due())
            .order_by(outbox::Column::NextAttemptAt, sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        Ok(outbox::Entity::update_many()
            .col_expr(
                outbox::Column::LeaseOwner,
                Expr::val(Some(owner.to_owned())),
            )
            .col_expr(outbox::Column::LeaseUntil, Expr::val(Some(lease_until)))
            .filter(outbox::Column::Id.in_subquery(candidates))
            .filter(due())
            .exec_with_returning(&self.db)
            .await?
            .into_iter()
            .map(|row| LeasedEmail {
                id: row.id,
                payload: row.payload,
                attempts: row.attempts,
            })
            .collect())
    }

    /// Marks an outbox row delivered and drops its payload (which may hold a reset link).
    pub async fn outbox_delivered(&self, id: Uuid) -> Result<(), StoreError> {
        release_outbox(id)
            .col_expr(outbox::Column::DeliveredAt, Expr::val(Some(now())))
            .col_expr(outbox::Column::Payload, Expr::val("{}"))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records a failed hand-over; the row is due again at `retry_at`.
    pub async fn outbox_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_retry(id, error, retry_at, 1).await
    }

    /// Records a hand-over that NotificationService refused for identity's key: a
    /// configuration error, so it is not counted as an attempt (the backoff does not grow while
    /// the key is being fixed). The row is due again at `retry_at`.
    pub async fn outbox_refused(
        &self,
        id: Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_retry(id, error, retry_at, 0).await
    }

    async fn outbox_retry(
        &self,
        id: Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
        attempts: i32,
    ) -> Result<(), StoreError> {
        release_outbox(id)
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(attempts),
            )
            .col_expr(outbox::Column::LastError, Expr::val(Some(error.to_owned())))
            .col_expr(outbox::Column::NextAttemptAt, Expr::val(retry_at))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// How many outbox emails were not handed over yet, and when the oldest of them was
    /// written: the outbox's depth and age, for the metrics.
    pub async fn outbox_stats(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        use sea_orm::PaginatorTrait;
        let waiting = || outbox::Entity::find().filter(outbox::Column::DeliveredAt.is_null());
        let depth = waiting().count(&self.db).await?;
        let oldest = waiting()
            .select_only()
            .column(outbox::Column::CreatedAt)
            .order_by_asc(outbox::Column::CreatedAt)
            .into_tuple::<DateTime<Utc>>()
            .one(&self.db)
            .await?;
        Ok((depth, oldest))
    }

    /// When the sign-in lock of `key` ends, if it is locked now.
    pub async fn signin_locked_until(
        &self,
        key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(signin_throttle::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
            .and_then(|row| row.locked_until)
            .filter(|until| *until > now()))
    }

    /// Admits one sign-in attempt on `key` if `key` is not locked, counting it as a failure
    /// until it proves right (a right password then [`clear_signin_failures`](Self::clear_signin_failures)).
    /// Returns the attempt's count, or `None` when `key` is locked.
    ///
    /// One statement both decides and counts, under the row's lock in the database, so any
    /// number of concurrent attempts on any number of replicas are each either counted or
    /// refused: no more than the limit are ever evaluated. The attempt that reaches the limit
    /// sets the lock at once — before its password is even checked — so that the attempts racing
    /// it are refused; `schedule` gives the end of the lock for each count from the limit on.
    pub async fn admit_signin_attempt(
        &self,
        key: &str,
        schedule: &LockSchedule,
    ) -> Result<Option<i32>, StoreError> {
        use sea_orm::sea_query::CaseStatement;
        let at = now();
        let stored_failures =
            Expr::col((signin_throttle::Entity, signin_throttle::Column::Failures));
        let stored_lock = Expr::col((
            signin_throttle::Entity,
            signin_throttle::Column::LockedUntil,
        ));
        let count = stored_failures.add(1);
        let mut lock = CaseStatement::new().case(
            count.clone().lt(schedule.max_failures),
            Expr::val(None::<DateTime<Utc>>),
        );
        for (step, until) in schedule.steps.iter().enumerate() {
            lock = lock.case(
                count.clone().eq(schedule.max_failures + step as i32),
                Expr::val(Some(*until)),
            );
        }
        let lock = lock.finally(Expr::val(Some(schedule.longest)));
        let statement = Query::insert()
            .into_table(signin_throttle::Entity)
            .columns([
                signin_throttle::Column::Canonical,
                signin_throttle::Column::Failures,
                signin_throttle::Column::LastFailureAt,
                signin_throttle::Column::LockedUntil,
            ])
            .values_panic([
                key.into(),
                1i32.into(),
                at.into(),
                schedule.lock_at(1).into(),
            ])
            .on_conflict(
                OnConflict::column(signin_throttle::Column::Canonical)
                    .value(signin_throttle::Column::Failures, count)
                    .value(signin_throttle::Column::LastFailureAt, Expr::val(at))
                    .value(signin_throttle::Column::LockedUntil, lock)
                    .action_and_where(stored_lock.clone().is_null().or(stored_lock.lte(at)))
                    .to_owned(),
            )
            .returning_col(signin_throttle::Column::Failures)
            .to_owned();
        let row = self.db.query_one(&statement).await?;
        row.map(|row| row.try_get::<i32>("", "failures"))
            .transpose()
            .map_err(StoreError::from)
    }

    /// Forgets the failed sign-ins of `key` after a successful one.
    pub async fn clear_signin_failures(&self, key: &str) -> Result<(), StoreError> {
        signin_throttle::Entity::delete_by_id(key.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// When a sign-in lock ends for each count of failed attempts from the limit on: the first lock
/// lasts `lock`, each further failure doubles it, up to `longest`.
#[derive(Clone, Debug)]
pub struct LockSchedule {
    /// Counted attempts that set the first lock.
    pub max_failures: i32,
    /// The lock's end at `max_failures`, `max_failures + 1`, …, until it reaches `longest`.
    pub steps: Vec<DateTime<Utc>>,
    /// The lock's end for every count beyond `steps`.
    pub longest: DateTime<Utc>,
}

impl LockSchedule {
    /// The schedule for attempts made now.
    pub fn starting_now(max_failures: u32, lock: Duration, longest: Duration) -> Self {
        let at = now();
        let longest = longest.max(lock);
        let mut steps = Vec::new();
        let mut delay = lock;
        while delay < longest && steps.len() < 32 {
            steps.push(at + delay);
            delay = delay.checked_mul(2).unwrap_or(longest);
        }
        Self {
            // A limit of 0 would lock before the first attempt: the least is one attempt.
            max_failures: max_failures.clamp(1, i32::MAX as u32) as i32,
            steps,
            longest: at + longest,
        }
    }

    /// The lock the `count`-th counted attempt sets, if any.
    pub fn lock_at(&self, count: i32) -> Option<DateTime<Utc>> {
        if count < self.max_failures {
            return None;
        }
        let step = (count - self.max_failures) as usize;
        Some(self.steps.get(step).copied().unwrap_or(self.longest))
    }
}

/// A new outbox row `id` holding `email`, due now.
/// The update that ends a relay's lease on one outbox row; callers add what became of it.
fn release_outbox(id: Uuid) -> sea_orm::UpdateMany<outbox::Entity> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::LeaseOwner, Expr::val(None::<String>))
        .col_expr(outbox::Column::LeaseUntil, Expr::val(None::<DateTime<Utc>>))
        .filter(outbox::Column::Id.eq(id))
}

fn outbox_row(id: Uuid, email: &OutboxEmail) -> Result<outbox::ActiveModel, StoreError> {
    let at = now();
    Ok(outbox::ActiveModel {
        id: Set(id),
        payload: Set(serde_json::to_string(email)
            .map_err(|error| IdentityError::Corrupt(error.to_string()))?),
        attempts: Set(0),
        next_attempt_at: Set(at),
        lease_owner: Set(None),
        lease_until: Set(None),
        last_error: Set(None),
        delivered_at: Set(None),
        created_at: Set(at),
    })
}
