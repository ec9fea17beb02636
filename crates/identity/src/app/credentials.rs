//! Password rules in action: checking candidates, reset tokens, completing a reset and
//! verifying sign-ins. Shared by the gRPC handlers and the reset page.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::RequestId;
use super::emails;
use super::events::origin;
use crate::Settings;
use crate::domain::account::Account;
use crate::domain::email::EmailAddress;
use crate::domain::error::IdentityError;
use crate::domain::event::{self, EventType};
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::policy::{Personal, Rule};
use crate::domain::profile::{Profile, ProfileStatus};
use crate::hashing::{HashError, Hasher};
use crate::store::{Store, ThrottleState, now};
use roster_runtime::Caller;

pub use crate::domain::policy::INVALID_TOKEN;

impl From<HashError> for IdentityError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => IdentityError::HashingBusy,
            failed @ HashError::Failed(_) => IdentityError::Internal(failed.to_string()),
        }
    }
}

/// A reset link was issued.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct IssuedReset {
    pub profile_id: ProfileId,
    pub email: String,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Refuses a reset for a profile that changed since the admin confirmed it: a link must never
/// go to an address nobody confirmed.
fn still_as_confirmed(
    profile: &Profile,
    confirmed: &EmailAddress,
    expected: Option<i64>,
) -> Result<(), IdentityError> {
    if expected.is_some_and(|version| version != profile.version) {
        return Err(IdentityError::Changed {
            field: "etag",
            message: "the profile changed since it was confirmed; look it up again and confirm \
                      its email address before sending a reset"
                .into(),
        });
    }
    if profile.email.to_lowercase() != confirmed.as_str().to_lowercase() {
        return Err(IdentityError::Changed {
            field: "email",
            message: "the profile's email address is no longer the one confirmed; look the \
                      profile up again and confirm its address before sending a reset"
                .into(),
        });
    }
    Ok(())
}

/// Password operations over the store and the hashing pool.
#[derive(Clone)]
pub struct Passwords {
    pub(super) store: Store,
    pub(super) hasher: Hasher,
    pub(super) settings: Settings,
}

impl Passwords {
    pub fn new(store: Store, hasher: Hasher, settings: Settings) -> Self {
        Self {
            store,
            hasher,
            settings,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The account a password call names.
    pub async fn account(&self, id: AccountId) -> Result<Account, IdentityError> {
        self.store
            .account(id)
            .await?
            .ok_or(IdentityError::NotFound("account"))
    }

    /// A profile of `account_id`, deleted or not; another account's is NOT_FOUND.
    pub async fn profile_in(
        &self,
        account_id: AccountId,
        id: ProfileId,
    ) -> Result<Profile, IdentityError> {
        self.store
            .profile(self.store.connection(), id)
            .await?
            .filter(|profile| profile.account_id == account_id)
            .ok_or(IdentityError::NotFound("profile"))
    }

    /// Every rule `password` fails for `profile` (or for a future profile of `account`) but the
    /// history: CheckPassword's answer, for a caller that holds no proof of being the profile's
    /// owner. Answering REUSED here would tell it, unthrottled and unrecorded, whether a guess is
    /// the profile's current password (the history holds it); the history is checked when a
    /// password is set ([`Passwords::complete_reset`]).
    pub fn check(
        account: &Account,
        profile: Option<&Profile>,
        password: &SecretString,
    ) -> Vec<Rule> {
        let personal = profile.map_or_else(Personal::default, |record| Personal {
            username: &record.username,
            first_name: &record.first_name,
            last_name: &record.last_name,
            email: &record.email,
        });
        // The strength estimator can take tens of milliseconds on a long password.
        roster_runtime::work::cpu_bound(|| account.policy.check(password.expose_secret(), personal))
    }

    /// Every rule `password` fails as `profile`'s new password, checked for `caller` (whose share
    /// of the hashing pool comparing with old passwords takes). The history costs an argon2
    /// verification per stored password, so it is compared only when every other rule passes:
    /// a candidate refused by the cheap rules costs no hashing, however often it is sent.
    async fn check_new(
        &self,
        caller: &Caller,
        account: &Account,
        profile: &Profile,
        password: &SecretString,
    ) -> Result<Vec<Rule>, IdentityError> {
        let mut violations = Self::check(account, Some(profile), password);
        if !violations.is_empty() {
            return Ok(violations);
        }
        if let Some(rule) = account.policy.reused_rule() {
            let history = self
                .store
                .password_history(
                    self.store.connection(),
                    profile.id,
                    account.policy.history_count,
                )
                .await?;
            for hash in history {
                if self
                    .hasher
                    .verify(&caller.name, password.clone(), hash)
                    .await?
                    .matches
                {
                    violations.push(rule);
                    break;
                }
            }
        }
        Ok(violations)
    }

    /// SendPasswordReset: issues a reset link for a profile the caller may act on, when the
    /// profile still has the email address (and the version) the admin confirmed.
    pub async fn send_reset(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: ProfileId,
        confirmed: &EmailAddress,
        expected: Option<i64>,
    ) -> Result<IssuedReset, IdentityError> {
        let store = &self.store;
        super::once(
            store,
            &super::request_scope(caller, "SendPasswordReset"),
            request_id,
            super::Seen::Profile(caller, id),
            async |txn| {
                // Locked, so that no change of the address can commit between this check and
                // the token's email.
                let profile = store
                    .lock_profile(txn, id, super::account_scope(caller).as_ref())
                    .await?
                    .ok_or(IdentityError::NotFound("profile"))?;
                still_as_confirmed(&profile, confirmed, expected)?;
                let account = store
                    .account_in(txn, profile.account_id)
                    .await?
                    .ok_or(IdentityError::NotFound("profile"))?;
                let issued = self.issue_reset(txn, &account, &profile).await?;
                let requested = event::credential(&profile, EventType::PasswordResetRequested);
                store
                    .append_events(txn, &origin(caller, request_id.id()), vec![requested])
                    .await?;
                Ok(issued)
            },
        )
        .await
    }

    /// Issues a reset token for `profile` and writes the email to the outbox, both in `txn`.
    pub async fn issue_reset(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        account: &Account,
        profile: &Profile,
    ) -> Result<IssuedReset, IdentityError> {
        profile.ensure_changeable(None)?;
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let expires_at = now()
            + chrono::Duration::seconds(
                self.settings.reset_token_ttl_seconds.min(30 * 86400) as i64
            );
        self.store
            .issue_reset_token(txn, profile.id, &token_hash(&token), expires_at)
            .await?;
        // The token travels in the fragment: browsers send neither it nor its page's fragment
        // to servers, so it stays out of access logs and Referer headers.
        let link = format!("{}#token={token}", self.settings.reset_base_url);
        let variables = BTreeMap::from([
            ("first_name".to_owned(), profile.first_name.clone()),
            ("reset_url".to_owned(), link),
            ("expire_time".to_owned(), expires_at.to_rfc3339()),
        ]);
        self.store
            .enqueue_email(
                txn,
                &emails::to_profile(account, profile, "password_reset", variables),
            )
            .await?;
        Ok(IssuedReset {
            profile_id: profile.id,
            email: profile.email.clone(),
            expires_at,
        })
    }

    /// The account and profile a usable token belongs to, when `caller` may act on that
    /// account. A token of another account's profile is invalid to a caller limited to some
    /// accounts, exactly like a token that does not exist: such a caller can neither set that
    /// password nor learn that the token is live.
    pub async fn token_owner(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<(Account, Profile), IdentityError> {
        let conn = self.store.connection();
        let profile_id = self
            .store
            .usable_reset_token(conn, &token_hash(token))
            .await?
            .ok_or(IdentityError::InvalidResetToken)?;
        let profile = self
            .store
            .profile(conn, profile_id)
            .await?
            // A suspended profile may not sign in, so its links set no password either (an
            // admin suspends an account whose mailbox may be another's); a deleted one never
            // changes again. Both answer as an unknown token.
            .filter(|record| record.status == ProfileStatus::Active)
            .filter(|record| caller.may_access(record.account_id.0))
            .ok_or(IdentityError::InvalidResetToken)?;
        let account = self
            .store
            .account(profile.account_id)
            .await?
            .ok_or(IdentityError::InvalidResetToken)?;
        Ok((account, profile))
    }

    /// Sets a new password with a reset token, for `caller` (see [`Passwords::token_owner`]):
    /// the token is used up, every other token of the profile revoked, the history extended, the
    /// failed sign-ins counted against the profile's username forgotten and its lock lifted
    /// (the link's holder proved the mailbox; the guesses counted were at the old password),
    /// and a "password changed" email queued. Idempotent on `request_id` when one is sent: a
    /// retry after a lost answer finds the token used, and is answered the first answer.
    pub async fn complete_reset(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        token: &str,
        password: SecretString,
    ) -> Result<ResetCompleted, IdentityError> {
        let scope = super::request_scope(caller, "CompletePasswordReset");
        let seen = super::Seen::Checked;
        if let Some(kept) = super::kept_answer(&self.store, &scope, request_id, seen).await? {
            return Ok(kept);
        }
        // The token, the policy and the hash before the transaction: a connection is not held
        // while the hashing pool is waited for.
        let (account, profile, hash) = match self.new_password(caller, token, password).await {
            Ok(prepared) => prepared,
            // A twin sent at the same time may have used the token meanwhile.
            Err(error) => {
                return match super::kept_answer(&self.store, &scope, request_id, seen).await? {
                    Some(kept) => Ok(kept),
                    None => Err(error),
                };
            }
        };
        let store = &self.store;
        super::once_new(store, &scope, request_id, seen, async |txn| {
            if !store.use_reset_token(txn, &token_hash(token)).await? {
                return Err(IdentityError::InvalidResetToken);
            }
            store.set_password(txn, profile.id, &hash).await?;
            // The user, holding the link, changed their own password.
            let by_user = Caller::clone(caller).acting_for(format!("profile {}", profile.id));
            let mut events = vec![event::credential(&profile, EventType::PasswordChanged)];
            let cleared = store
                .clear_signin_throttle(txn, &profile.canonical_username)
                .await?;
            if cleared.as_ref().is_some_and(ThrottleState::locked) {
                events.push(event::credential(&profile, EventType::SignInUnlocked));
            }
            store
                .append_events(txn, &origin(&by_user, request_id.id()), events)
                .await?;
            let variables = BTreeMap::from([
                ("first_name".to_owned(), profile.first_name.clone()),
                ("change_time".to_owned(), now().to_rfc3339()),
            ]);
            store
                .enqueue_email(
                    txn,
                    &emails::to_profile(&account, &profile, "password_changed", variables),
                )
                .await?;
            Ok(ResetCompleted {})
        })
        .await
    }

    /// The profile a reset token names, its account, and the hash of `password` once it passes
    /// every rule of the account's policy.
    async fn new_password(
        &self,
        caller: &Caller,
        token: &str,
        password: SecretString,
    ) -> Result<(Account, Profile, String), IdentityError> {
        let (account, profile) = self.token_owner(caller, token).await?;
        let violations = self
            .check_new(caller, &account, &profile, &password)
            .await?;
        if !violations.is_empty() {
            return Err(IdentityError::PasswordPolicy(violations));
        }
        let hash = self.hasher.hash(&caller.name, password).await?;
        Ok((account, profile, hash))
    }
}

/// A reset completed: the answer kept for a request id, which says nothing else.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ResetCompleted {}

/// The longest password taken, whatever the transport: far above any policy's maximum, so
/// that no strength estimate or hash ever runs over a huge value.
pub const MAX_PASSWORD_CHARS: usize = 4096;

/// Whether `password` is longer than [`MAX_PASSWORD_CHARS`]: bytes first, so that not even the
/// count of characters runs over a huge value.
pub fn password_too_long(password: &str) -> bool {
    password.len() > 4 * MAX_PASSWORD_CHARS || password.chars().count() > MAX_PASSWORD_CHARS
}

/// SHA-256 of a reset token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
