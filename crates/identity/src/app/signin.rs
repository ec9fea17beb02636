//! Sign-in checks for the platform's sign-in service: a username and password verified at
//! the cost of one argon2 verification whatever the outcome, behind a throttle decided in the
//! database; a lock and its clearing are audit events. An admin reads a profile's throttle and
//! clears it (ClearSignInThrottle, GetSignInState).

use std::time::Duration;

use chrono::{DateTime, Utc};
use roster_runtime::Caller;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::credentials::Passwords;
use super::events::origin;
use super::{RequestId, Seen, account_scope, once, request_scope};
use crate::domain::error::IdentityError;
use crate::domain::event::{self, EventType};
use crate::domain::ids::ProfileId;
use crate::domain::profile::{Profile, ProfileStatus};
use crate::domain::username::{Username, UsernameError};
use crate::store::{LockSchedule, StoreError, ThrottleState, now};

/// A profile's sign-in throttle as GetSignInState tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInState {
    /// Counted attempts since the last right password or clearing: wrong passwords, and
    /// attempts refused while locked are not counted.
    pub failures: u32,
    /// The last counted attempt, if any.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// When the lock ends; `None` when sign-in is not locked now.
    pub locked_until: Option<DateTime<Utc>>,
}

impl From<Option<ThrottleState>> for SignInState {
    fn from(state: Option<ThrottleState>) -> Self {
        match state {
            None => Self {
                failures: 0,
                last_failure_at: None,
                locked_until: None,
            },
            Some(state) => Self {
                failures: state.failures.max(0) as u32,
                last_failure_at: Some(state.last_failure_at),
                locked_until: state.locked_until.filter(|_| state.locked()),
            },
        }
    }
}

/// What ClearSignInThrottle cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearedThrottle {
    /// Counted attempts forgotten.
    pub failures: u32,
    /// True when sign-in was locked and the lock was lifted.
    pub unlocked: bool,
}

impl Passwords {
    /// Checks a sign-in by `caller`. `Ok(None)` for every refusal alike — unknown username, wrong
    /// password, suspended or deleted profile, a profile of an account the caller may not act
    /// on — each costing one argon2 verification. A username with too many recent failures is
    /// throttled, also for the right password.
    ///
    /// The throttle counts each attempt before its password is checked (see
    /// [`Store::admit_signin_attempt`]), so concurrent guesses cannot outrun it. Attempts of a key
    /// limited to some accounts on a username held outside them count against that key alone:
    /// such a key can neither verify nor lock out another account's user, and sees exactly what
    /// it sees for a username nobody holds.
    pub async fn verify(
        &self,
        caller: &Caller,
        username: &str,
        password: SecretString,
    ) -> Result<Option<Profile>, IdentityError> {
        let username = match Username::parse(username) {
            Ok(username) => username,
            // Over-long input is refused before any work: the limit is no secret.
            Err(error) if error.code() == UsernameError::TOO_LONG => {
                return Err(IdentityError::invalid("username", error.description()));
            }
            Err(_) => {
                self.hasher.verify_dummy(&caller.name, password).await?;
                return Ok(None);
            }
        };
        let canonical = username.canonical();
        let holder = self
            .store
            .active_holder(canonical, |account| caller.may_access(account))
            .await?;
        let key = throttle_key(caller, canonical, holder.is_some());
        let schedule = LockSchedule::starting_now(
            self.settings.signin_max_failures,
            chrono::Duration::seconds(self.settings.signin_lock_seconds.min(i64::MAX as u64) as i64),
            chrono::Duration::seconds(
                self.settings.signin_max_lock_seconds.min(i64::MAX as u64) as i64
            ),
        );
        if !self.admit(caller, holder.as_ref(), &key, &schedule).await? {
            let wait = self
                .store
                .signin_locked_until(&key)
                .await?
                .and_then(|until| (until - now()).to_std().ok())
                .unwrap_or_default();
            return Err(IdentityError::Throttled(wait.max(Duration::from_secs(1))));
        }
        let stored = match &holder {
            Some(record) if record.status == ProfileStatus::Active => {
                self.store
                    .credential(self.store.connection(), record.id)
                    .await?
            }
            _ => None,
        };
        let (Some(record), Some(stored)) = (holder, stored) else {
            self.hasher.verify_dummy(&caller.name, password).await?;
            return Ok(None);
        };
        let verification = self
            .hasher
            .verify(&caller.name, password.clone(), stored.clone())
            .await?;
        if !verification.matches {
            return Ok(None);
        }
        self.clear_failures(caller, &record, &key, &schedule)
            .await?;
        if verification.needs_rehash {
            match self.hasher.hash(&caller.name, password).await {
                Ok(upgraded) => {
                    self.store
                        .upgrade_hash(record.id, &stored, &upgraded)
                        .await?
                }
                Err(error) => tracing::warn!(%error, "password hash upgrade postponed"),
            }
        }
        Ok(Some(record))
    }
    /// Counts a sign-in attempt on `key` (see [`Store::admit_signin_attempt`]); false when
    /// `key` is locked. An attempt that locks a visible holder's sign-in records
    /// `roster.signin.locked` with the count, in the same transaction.
    async fn admit(
        &self,
        caller: &Caller,
        holder: Option<&Profile>,
        key: &str,
        schedule: &LockSchedule,
    ) -> Result<bool, IdentityError> {
        let Some(holder) = holder else {
            let conn = self.store.connection();
            return Ok(self
                .store
                .admit_signin_attempt(conn, key, schedule)
                .await?
                .is_some());
        };
        // Most attempts neither meet nor set a lock: one statement, no transaction.
        let conn = self.store.connection();
        if self
            .store
            .admit_signin_attempt_below_lock(conn, key, schedule)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        let txn = self.store.begin().await?;
        let Some(count) = self.store.admit_signin_attempt(&txn, key, schedule).await? else {
            return Ok(false);
        };
        if let Some(until) = schedule.lock_at(count) {
            let locked = event::signin_locked(holder, count as u32, until);
            self.store
                .append_events(&txn, &origin(caller, ""), vec![locked])
                .await?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        Ok(true)
    }

    /// Forgets `key`'s failures after a right password; when they had locked the holder's
    /// sign-in before this attempt, records `roster.signin.unlocked`.
    async fn clear_failures(
        &self,
        caller: &Caller,
        holder: &Profile,
        key: &str,
        schedule: &LockSchedule,
    ) -> Result<(), IdentityError> {
        // Failures below the limit locked nothing: one statement, no transaction.
        let conn = self.store.connection();
        if self
            .store
            .clear_signin_failures_below(conn, key, schedule.max_failures)
            .await?
        {
            return Ok(());
        }
        let txn = self.store.begin().await?;
        let count = self.store.clear_signin_failures(&txn, key).await?;
        if count.is_some_and(|count| schedule.lock_at(count).is_some()) {
            let unlocked = event::credential(holder, EventType::SignInUnlocked);
            self.store
                .append_events(&txn, &origin(caller, ""), vec![unlocked])
                .await?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}

impl Passwords {
    /// GetSignInState: the sign-in throttle of a profile the caller may see (deleted or not);
    /// another account's profile is NOT_FOUND, like one that does not exist.
    pub async fn signin_state(
        &self,
        caller: &Caller,
        id: ProfileId,
    ) -> Result<SignInState, IdentityError> {
        let profile = self
            .store
            .profile(self.store.connection(), id)
            .await?
            .filter(|record| caller.may_access(record.account_id.0))
            .ok_or(IdentityError::NotFound("profile"))?;
        Ok(self
            .store
            .signin_state(&profile.canonical_username)
            .await?
            .into())
    }

    /// ClearSignInThrottle: forgets the failed sign-ins counted against the profile's username
    /// and lifts its lock, so the right password signs in at once. Lifting a lock records
    /// `roster.signin.unlocked`. Idempotent on `request_id`.
    ///
    /// Only the username's own row is cleared. The rows a key limited to other accounts counts
    /// its attempts on this username in (see [`throttle_key`]) are that key's budget for
    /// guessing at a username it may not see: they never stop this profile's sign-in, and
    /// clearing them would hand that key fresh guesses.
    pub async fn clear_signin_throttle(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: ProfileId,
    ) -> Result<ClearedThrottle, IdentityError> {
        let store = &self.store;
        once(
            store,
            &request_scope(caller, "ClearSignInThrottle"),
            request_id,
            Seen::Profile(caller, id),
            async |txn| {
                let profile = store
                    .lock_profile(txn, id, account_scope(caller).as_ref())
                    .await?
                    .ok_or(IdentityError::NotFound("profile"))?;
                let cleared = store
                    .clear_signin_throttle(txn, &profile.canonical_username)
                    .await?;
                let unlocked = cleared.as_ref().is_some_and(ThrottleState::locked);
                if unlocked {
                    let event = event::credential(&profile, EventType::SignInUnlocked);
                    store
                        .append_events(txn, &origin(caller, request_id.id()), vec![event])
                        .await?;
                }
                Ok(ClearedThrottle {
                    failures: cleared.map_or(0, |state| state.failures.max(0) as u32),
                    unlocked,
                })
            },
        )
        .await
    }
}

/// The throttle row an attempt counts against: the canonical username, shared by every caller
/// that may see its holder; for a key limited to some accounts, a row of that key's own for
/// every username it may not see (held elsewhere, or by nobody — the two must look the same).
/// Canonical usernames hold no white space, so the space keeps the two kinds apart.
fn throttle_key(caller: &Caller, canonical: &str, holder_visible: bool) -> String {
    match caller.account_limit() {
        Some(_) if !holder_visible => format!("key:{} {canonical}", caller.name),
        _ => canonical.to_owned(),
    }
}
