//! The sign-in throttle: failed attempts per username, admitted and counted in one statement.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, EntityTrait};

use super::StoreError;
use super::entities::signin_throttle;
use super::{Store, now};

impl Store {
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
        conn: &impl ConnectionTrait,
        key: &str,
        schedule: &LockSchedule,
    ) -> Result<Option<i32>, StoreError> {
        let statement = admit_statement(key, schedule, false);
        failures_of(conn.query_one(&statement).await?)
    }

    /// [`admit_signin_attempt`](Self::admit_signin_attempt) for an attempt that neither meets a
    /// lock nor sets one: counted only while `key` is not locked and its count stays below the
    /// limit, and then its count; `None` with nothing counted otherwise, so that the caller
    /// counts it with `admit_signin_attempt` and records what the lock brings. One statement
    /// outside any transaction, as no event can come of it.
    pub async fn admit_signin_attempt_below_lock(
        &self,
        conn: &impl ConnectionTrait,
        key: &str,
        schedule: &LockSchedule,
    ) -> Result<Option<i32>, StoreError> {
        if schedule.lock_at(1).is_some() {
            return Ok(None);
        }
        let statement = admit_statement(key, schedule, true);
        failures_of(conn.query_one(&statement).await?)
    }

    /// Forgets the failed sign-ins of `key` after a successful one; the count it had (this
    /// attempt included), if any.
    pub async fn clear_signin_failures(
        &self,
        conn: &impl ConnectionTrait,
        key: &str,
    ) -> Result<Option<i32>, StoreError> {
        let statement = Query::delete()
            .from_table(signin_throttle::Entity)
            .and_where(Expr::col(signin_throttle::Column::Canonical).eq(key))
            .returning_col(signin_throttle::Column::Failures)
            .to_owned();
        failures_of(conn.query_one(&statement).await?)
    }

    /// [`clear_signin_failures`](Self::clear_signin_failures) where the count is below
    /// `max_failures`, so that no lock came of it: true when it forgot them. False, with nothing
    /// changed, when `key` counts none or reached a lock — the caller then clears it with
    /// `clear_signin_failures` and records the unlocking.
    pub async fn clear_signin_failures_below(
        &self,
        conn: &impl ConnectionTrait,
        key: &str,
        max_failures: i32,
    ) -> Result<bool, StoreError> {
        let statement = Query::delete()
            .from_table(signin_throttle::Entity)
            .and_where(Expr::col(signin_throttle::Column::Canonical).eq(key))
            .and_where(Expr::col(signin_throttle::Column::Failures).lt(max_failures))
            .to_owned();
        Ok(conn.execute(&statement).await?.rows_affected() == 1)
    }
}

/// What the throttle holds for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleState {
    /// Counted attempts since the last right password or clearing.
    pub failures: i32,
    /// The last counted attempt.
    pub last_failure_at: DateTime<Utc>,
    /// When the lock ends, whether or not it is over.
    pub locked_until: Option<DateTime<Utc>>,
}

impl ThrottleState {
    /// True while the lock holds.
    pub fn locked(&self) -> bool {
        self.locked_until.is_some_and(|until| until > now())
    }
}

impl From<signin_throttle::Model> for ThrottleState {
    fn from(row: signin_throttle::Model) -> Self {
        Self {
            failures: row.failures,
            last_failure_at: row.last_failure_at,
            locked_until: row.locked_until,
        }
    }
}

impl Store {
    /// What the throttle holds for `key`; `None` when it counts no attempt.
    pub async fn signin_state(&self, key: &str) -> Result<Option<ThrottleState>, StoreError> {
        Ok(signin_throttle::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
            .map(ThrottleState::from))
    }

    /// Forgets every counted attempt of `key` and lifts its lock, in one statement; what it
    /// held, if anything.
    pub async fn clear_signin_throttle(
        &self,
        conn: &impl ConnectionTrait,
        key: &str,
    ) -> Result<Option<ThrottleState>, StoreError> {
        let statement = Query::delete()
            .from_table(signin_throttle::Entity)
            .and_where(Expr::col(signin_throttle::Column::Canonical).eq(key))
            .returning(Query::returning().columns([
                signin_throttle::Column::Canonical,
                signin_throttle::Column::Failures,
                signin_throttle::Column::LastFailureAt,
                signin_throttle::Column::LockedUntil,
            ]))
            .to_owned();
        let Some(row) = conn.query_one(&statement).await? else {
            return Ok(None);
        };
        Ok(Some(ThrottleState {
            failures: row.try_get("", "failures")?,
            last_failure_at: row.try_get("", "last_failure_at")?,
            locked_until: row.try_get("", "locked_until")?,
        }))
    }
}

/// The statement of [`Store::admit_signin_attempt`]; with `below_lock` that of
/// [`Store::admit_signin_attempt_below_lock`], which counts only an attempt that stays below the
/// limit (and whose first attempt, when no row exists, must not lock: checked by its caller).
fn admit_statement(
    key: &str,
    schedule: &LockSchedule,
    below_lock: bool,
) -> sea_orm::sea_query::InsertStatement {
    use sea_orm::sea_query::CaseStatement;
    let at = now();
    let stored_failures = Expr::col((signin_throttle::Entity, signin_throttle::Column::Failures));
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
    let mut admitted = stored_lock.clone().is_null().or(stored_lock.lte(at));
    if below_lock {
        admitted = admitted.and(count.clone().lt(schedule.max_failures));
    }
    Query::insert()
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
                .action_and_where(admitted)
                .to_owned(),
        )
        .returning_col(signin_throttle::Column::Failures)
        .to_owned()
}

/// The `failures` a statement returned, if it returned a row.
fn failures_of(row: Option<sea_orm::QueryResult>) -> Result<Option<i32>, StoreError> {
    row.map(|row| row.try_get::<i32>("", "failures"))
        .transpose()
        .map_err(StoreError::from)
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
