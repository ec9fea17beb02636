//! Offboarding: DeleteAccount and UndeleteAccount, and the purge of personal data that can no
//! longer come back — a deleted account's after `account_retention_days`, a profile deleted
//! on its own after `profile_restore_days`.
//!
//! A deleted account is closed everywhere: its profiles are deleted (usernames retired, as
//! always), keys limited to it act on nothing (every service learns the deleted accounts
//! within seconds: identity from its database, the others from identity), its SCIM tokens
//! are refused, and nothing in it changes until UndeleteAccount brings it back as it was.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use roster_runtime::metrics::Metrics;
use roster_runtime::metrics::prometheus_client::metrics::counter::Counter;
use roster_runtime::settings::CommonSettings;
use roster_runtime::{Caller, SharedKeyRing, Shutdown};

use super::events::origin;
use super::{Identity, RequestId, Seen, every_account, once, request_scope};
use crate::domain::account::Account;
use crate::domain::error::IdentityError;
use crate::domain::event::{self, NewEvent, Origin, Source};
use crate::domain::ids::{AccountId, ProfileId};
use crate::store::StoreError;

/// Accounts whose purge one step begins, and profiles it purges, at most.
pub const PURGE_BATCH: u64 = 500;
/// Steps of one purge run, at most: a run does bounded work, the next run goes on.
const PURGE_STEPS: usize = 20;

/// What a purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Accounts whose purge began: they can no longer be undeleted.
    pub accounts: Vec<AccountId>,
    /// Profiles whose personal data was removed, with their accounts.
    pub profiles: Vec<(AccountId, ProfileId)>,
}

/// Who a purge is attributed to in the audit log.
fn system_origin() -> Origin {
    Origin {
        actor: "system".to_owned(),
        caller: String::new(),
        source: Source::System,
        request_id: String::new(),
        trace_id: roster_runtime::telemetry::current_trace_id(),
    }
}

impl Identity {
    /// DeleteAccount: deletes the account and every profile it has, in one transaction. Only
    /// a key of every account may (a key limited to accounts is PERMISSION_DENIED whatever
    /// the id, so it learns nothing). Deleting a deleted account answers it as it is.
    pub async fn delete_account(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: AccountId,
        expected: Option<i64>,
    ) -> Result<Account, IdentityError> {
        every_account(caller, "delete")?;
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        once(
            store,
            &request_scope(caller, "DeleteAccount"),
            request_id,
            Seen::Checked,
            async |txn| {
                let current = self.locked_account(txn, id, expected).await?;
                if current.deleted_at.is_some() {
                    return Ok(current);
                }
                let (deleted, profiles) = store.delete_account(txn, &current).await?;
                let events = vec![event::account_deleted(&deleted, profiles)];
                store.append_events(txn, &origin, events).await?;
                Ok(deleted)
            },
        )
        .await
    }

    /// UndeleteAccount: brings a deleted account back before its purge, with exactly the
    /// profiles its deletion took, each as it was (profiles deleted before stay deleted).
    pub async fn undelete_account(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: AccountId,
        expected: Option<i64>,
    ) -> Result<Account, IdentityError> {
        every_account(caller, "undelete")?;
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        once(
            store,
            &request_scope(caller, "UndeleteAccount"),
            request_id,
            Seen::Checked,
            async |txn| {
                let current = self.locked_account(txn, id, expected).await?;
                let Some(deleted_at) = current.deleted_at else {
                    return Err(IdentityError::Precondition(
                        "the account is not deleted; only a deleted account can be undeleted"
                            .into(),
                    ));
                };
                if current.purged_at.is_some() {
                    return Err(IdentityError::Precondition(format!(
                        "the account's personal data was purged: an account can be undeleted \
                         for {} days after its deletion, and this one was deleted at {}",
                        self.account_retention.num_days(),
                        deleted_at.to_rfc3339(),
                    )));
                }
                let (restored, profiles) = store.undelete_account(txn, &current).await?;
                let events = vec![event::account_restored(&current, &restored, profiles)];
                store.append_events(txn, &origin, events).await?;
                Ok(restored)
            },
        )
        .await
    }

    /// When a deleted account's personal data is purged (`None` for an open account).
    pub fn account_purge_time(&self, account: &Account) -> Option<DateTime<Utc>> {
        account
            .deleted_at
            .map(|deleted_at| deleted_at + self.account_retention)
    }

    /// The account, locked, at the version `expected` names.
    async fn locked_account(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        id: AccountId,
        expected: Option<i64>,
    ) -> Result<Account, IdentityError> {
        let account = self
            .store
            .lock_account(txn, id)
            .await?
            .ok_or(IdentityError::NotFound("account"))?;
        if expected.is_some_and(|version| version != account.version) {
            return Err(IdentityError::StaleEtag);
        }
        Ok(account)
    }

    /// One purge run (the `purge` job, every `retention_interval_seconds`), as of `now`: begins the purge of accounts deleted more than
    /// `account_retention_days` ago and purges profiles deleted on their own more than
    /// `profile_restore_days` ago and those of purged accounts, a batch per transaction, at
    /// most [`PURGE_STEPS`] batches. Each batch records its events (`roster.account.purged`,
    /// `roster.profile.purged`, actor `system`) in its own transaction.
    pub async fn purge(&self, now: DateTime<Utc>) -> Result<Purged, IdentityError> {
        let store = &self.store;
        let mut purged = Purged::default();
        for _ in 0..PURGE_STEPS {
            let txn = store.begin().await?;
            let accounts = store
                .begin_account_purges(&txn, now - self.account_retention, PURGE_BATCH)
                .await?;
            let profiles = store
                .purge_profiles(&txn, now - self.restore_window, PURGE_BATCH)
                .await?;
            let events: Vec<NewEvent> = accounts
                .iter()
                .map(|account| event::account_purged(*account))
                .chain(
                    profiles
                        .iter()
                        .map(|(account, profile)| event::profile_purged(*account, *profile)),
                )
                .collect();
            if !events.is_empty() {
                store.append_events(&txn, &system_origin(), events).await?;
            }
            txn.commit().await.map_err(StoreError::from)?;
            let done =
                (accounts.len() as u64) < PURGE_BATCH && (profiles.len() as u64) < PURGE_BATCH;
            purged.accounts.extend(accounts);
            purged.profiles.extend(profiles);
            if done {
                break;
            }
        }
        Ok(purged)
    }
}

/// Starts offboarding's workers: every `keys_reload_seconds` (every second when that is off)
/// the deleted accounts are put in force in `keys`, so a key limited to them acts on nothing;
/// every `purge_interval`, on one replica at a time (the `purge` job's lease), the purge runs.
pub fn spawn(
    identity: Identity,
    keys: SharedKeyRing,
    common: &CommonSettings,
    purge_interval: Duration,
    metrics: &Metrics,
    shutdown: &Shutdown,
) {
    let every = common
        .keys_reload_interval()
        .unwrap_or(Duration::from_secs(1));
    tokio::spawn(watch_deleted(
        identity.clone(),
        keys,
        every,
        shutdown.clone(),
    ));
    let accounts = metrics.counter(
        "roster_identity_accounts_purged",
        "Deleted accounts whose purge began (account_retention_days after their deletion)",
    );
    let profiles = metrics.counter(
        "roster_identity_profiles_purged",
        "Deleted profiles whose personal data was purged",
    );
    let db = identity.store.connection().clone();
    roster_runtime::retention::spawn(
        db,
        roster_runtime::retention::Schedule {
            interval: purge_interval,
            job: "purge",
        },
        roster_runtime::retention::JobLease::owner_name("identity"),
        shutdown.clone(),
        move || {
            let (identity, accounts, profiles) =
                (identity.clone(), accounts.clone(), profiles.clone());
            async move { purge_run(&identity, &accounts, &profiles).await }
        },
    );
}

/// Puts the deleted accounts in force in `keys` now and every `every`.
async fn watch_deleted(
    identity: Identity,
    keys: SharedKeyRing,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut failing = false;
    loop {
        match identity.store.deleted_accounts().await {
            Ok(ids) => {
                let closed: HashSet<uuid::Uuid> = ids.into_iter().collect();
                let count = closed.len();
                if keys.close_accounts(closed) {
                    tracing::info!(deleted = count, "deleted accounts put in force");
                }
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "deleted accounts not read; the last ones read stay in force");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One purge run, counted and logged.
async fn purge_run(
    identity: &Identity,
    accounts: &Counter,
    profiles: &Counter,
) -> Result<(), IdentityError> {
    let purged = identity.purge(crate::store::now()).await?;
    accounts.inc_by(purged.accounts.len() as u64);
    profiles.inc_by(purged.profiles.len() as u64);
    if !purged.accounts.is_empty() || !purged.profiles.is_empty() {
        tracing::info!(
            accounts = purged.accounts.len(),
            profiles = purged.profiles.len(),
            "personal data purged"
        );
    }
    Ok(())
}
