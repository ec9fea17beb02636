//! Password rules in action: checking candidates, reset tokens, completing a reset and
//! verifying sign-ins. Shared by the gRPC handlers and the reset page.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Settings;
use crate::domain::error::IdentityError;
use crate::domain::policy::{Personal, Rule};
use crate::domain::username::Username;
use crate::emails;
use crate::hashing::{HashError, Hasher};
use crate::store::{ACTIVE, AccountRecord, DELETED, ProfileRecord, Store, now};

/// The one message every unusable reset token gets: unknown, expired, used or superseded.
pub const INVALID_TOKEN: &str =
    "this password reset link is no longer valid; ask your administrator for a new one";

/// Why a password operation did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("{INVALID_TOKEN}")]
    InvalidToken,
    #[error("the password does not satisfy the account's policy")]
    Policy(Vec<Rule>),
    #[error("too many failed sign-ins; retry later")]
    Throttled(Duration),
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// A reset link was issued.
pub struct IssuedReset {
    pub profile_id: Uuid,
    pub email: String,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Password operations over the store and the hashing pool.
#[derive(Clone)]
pub struct Passwords {
    store: Store,
    hasher: Hasher,
    settings: Settings,
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

    /// Every rule `password` fails for `profile` (or for a future profile of `account`).
    pub async fn check(
        &self,
        account: &AccountRecord,
        profile: Option<&ProfileRecord>,
        password: &SecretString,
    ) -> Result<Vec<Rule>, PasswordError> {
        let personal = profile.map_or_else(Personal::default, |record| Personal {
            username: &record.profile.username,
            first_name: &record.profile.first_name,
            last_name: &record.profile.last_name,
            email: &record.profile.email,
        });
        let mut violations = account.policy.check(password.expose_secret(), personal);
        if let (Some(record), Some(rule)) = (profile, account.policy.reused_rule()) {
            let history = self
                .store
                .password_history(
                    self.store.connection(),
                    record.profile.id,
                    account.policy.history_count,
                )
                .await?;
            for hash in history {
                if self.hasher.verify(password.clone(), hash).await?.matches {
                    violations.push(rule);
                    break;
                }
            }
        }
        Ok(violations)
    }

    /// Issues a reset token for `profile` and writes the email to the outbox, both in `txn`.
    pub async fn issue_reset(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        account: &AccountRecord,
        profile: &ProfileRecord,
    ) -> Result<IssuedReset, IdentityError> {
        if profile.profile.status == DELETED {
            return Err(IdentityError::Precondition(
                "the profile is deleted; its password cannot be reset".into(),
            ));
        }
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let expires_at = now()
            + chrono::Duration::seconds(
                self.settings.reset_token_ttl_seconds.min(30 * 86400) as i64
            );
        self.store
            .issue_reset_token(txn, profile.profile.id, &token_hash(&token), expires_at)
            .await?;
        // The token travels in the fragment: browsers send neither it nor its page's fragment
        // to servers, so it stays out of access logs and Referer headers.
        let link = format!("{}#token={token}", self.settings.reset_base_url);
        let variables = BTreeMap::from([
            ("first_name".to_owned(), profile.profile.first_name.clone()),
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
            profile_id: profile.profile.id,
            email: profile.profile.email.clone(),
            expires_at,
        })
    }

    /// The account and profile a usable token belongs to.
    pub async fn token_owner(
        &self,
        token: &str,
    ) -> Result<(AccountRecord, ProfileRecord), PasswordError> {
        let conn = self.store.connection();
        let profile_id = self
            .store
            .usable_reset_token(conn, &token_hash(token))
            .await?
            .ok_or(PasswordError::InvalidToken)?;
        let profile = self
            .store
            .profile(conn, profile_id)
            .await?
            .filter(|record| record.profile.status != DELETED)
            .ok_or(PasswordError::InvalidToken)?;
        let account = self
            .store
            .account(profile.profile.account_id)
            .await?
            .ok_or(PasswordError::InvalidToken)?;
        Ok((account, profile))
    }

    /// Sets a new password with a reset token: the token is used up, every other token of the
    /// profile revoked, the history extended and a "password changed" email queued.
    pub async fn complete_reset(
        &self,
        token: &str,
        password: SecretString,
    ) -> Result<(), PasswordError> {
        let (account, profile) = self.token_owner(token).await?;
        let violations = self.check(&account, Some(&profile), &password).await?;
        if !violations.is_empty() {
            return Err(PasswordError::Policy(violations));
        }
        let hash = self.hasher.hash(password).await?;
        let txn = self.store.begin().await?;
        if !self.store.use_reset_token(&txn, &token_hash(token)).await? {
            return Err(PasswordError::InvalidToken);
        }
        self.store
            .set_password(&txn, profile.profile.id, &hash)
            .await?;
        let variables = BTreeMap::from([
            ("first_name".to_owned(), profile.profile.first_name.clone()),
            ("change_time".to_owned(), now().to_rfc3339()),
        ]);
        self.store
            .enqueue_email(
                &txn,
                &emails::to_profile(&account, &profile, "password_changed", variables),
            )
            .await?;
        txn.commit().await.map_err(IdentityError::from)?;
        Ok(())
    }

    /// Checks a sign-in. `Ok(None)` for every refusal alike — unknown username, wrong password,
    /// suspended or deleted profile — each costing one argon2 verification. A username with
    /// too many recent failures is throttled, also for the right password.
    pub async fn verify(
        &self,
        username: &str,
        password: SecretString,
    ) -> Result<Option<ProfileRecord>, PasswordError> {
        let Ok(username) = Username::parse(username) else {
            self.hasher.verify_dummy(password).await?;
            return Ok(None);
        };
        let canonical = username.canonical();
        if let Some(throttle) = self.store.signin_throttle(canonical).await?
            && let Some(until) = throttle.locked_until
            && until > now()
        {
            let wait = (until - now()).to_std().unwrap_or_default();
            return Err(PasswordError::Throttled(wait.max(Duration::from_secs(1))));
        }
        let holder = self.store.active_holder(canonical).await?;
        let stored = match &holder {
            Some(record) if record.profile.status == ACTIVE => {
                self.store
                    .credential(self.store.connection(), record.profile.id)
                    .await?
            }
            _ => None,
        };
        let (Some(record), Some(stored)) = (holder, stored) else {
            self.hasher.verify_dummy(password).await?;
            self.record_failure(canonical).await?;
            return Ok(None);
        };
        let verification = self.hasher.verify(password.clone(), stored.clone()).await?;
        if !verification.matches {
            self.record_failure(canonical).await?;
            return Ok(None);
        }
        self.store.clear_signin_failures(canonical).await?;
        if verification.needs_rehash {
            match self.hasher.hash(password).await {
                Ok(upgraded) => {
                    self.store
                        .upgrade_hash(record.profile.id, &stored, &upgraded)
                        .await?
                }
                Err(error) => tracing::warn!(%error, "password hash upgrade postponed"),
            }
        }
        Ok(Some(record))
    }

    async fn record_failure(&self, canonical: &str) -> Result<(), PasswordError> {
        let failures = self
            .store
            .signin_throttle(canonical)
            .await?
            .map_or(0, |throttle| throttle.failures)
            + 1;
        let excess = failures - self.settings.signin_max_failures as i32;
        let locked_until = (excess >= 0).then(|| {
            let delay = self
                .settings
                .signin_lock_seconds
                .saturating_mul(1 << excess.min(20))
                .min(self.settings.signin_max_lock_seconds);
            now() + chrono::Duration::seconds(delay as i64)
        });
        self.store
            .record_signin_failure(canonical, failures, locked_until)
            .await?;
        Ok(())
    }
}

/// SHA-256 of a reset token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
