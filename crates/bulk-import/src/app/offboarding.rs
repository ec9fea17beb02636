//! What bulk-import does when identity deletes an account: the account's imports still in
//! progress are cancelled (rows not applied are skipped, as CancelImport does), and once
//! identity has purged the account, its imports — files, rows and reports — are deleted.
//! Keys limited to a deleted account are refused by the key ring meanwhile (see
//! `roster_runtime::auth::deleted`), and no new import of it is accepted.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use roster_runtime::auth::deleted::{DeletedAccount, DeletedAccounts, follow_changes};
use roster_runtime::{Caller, Shutdown};
use tokio::sync::watch;
use uuid::Uuid;

use super::{ImportApp, ImportError};
use crate::store::retention::Expired;

/// Accounts named in one query, at most.
const ACCOUNTS_PER_QUERY: usize = 500;
/// Imports read per query.
const IMPORTS_PER_QUERY: u64 = 100;
/// How often purge times are looked at even when the deleted accounts did not change.
const PURGE_PAUSE: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offboarded {
    /// Imports cancelled because their account was deleted.
    pub cancelled: usize,
    /// Imports deleted because their account was purged.
    pub purged: usize,
}

impl ImportApp {
    /// Cancels every unfinished import of `accounts` and, of those purged by `now`, retires
    /// every import no worker is busy with (a worker finishing a cancelled import lets it go
    /// within a batch, and the next pass retires it): gone for every call at once, its rows
    /// and file pieces deleted by the retention job a batch at a time.
    pub async fn offboard(
        &self,
        accounts: &[DeletedAccount],
        now: SystemTime,
    ) -> Result<Offboarded, ImportError> {
        let caller = Caller::internal("offboarding");
        let mut done = Offboarded::default();
        let ids: Vec<Uuid> = accounts.iter().map(|account| account.id).collect();
        for chunk in ids.chunks(ACCOUNTS_PER_QUERY) {
            let mut seen = HashSet::new();
            loop {
                let unfinished = self
                    .store
                    .unfinished_imports(chunk, IMPORTS_PER_QUERY)
                    .await?;
                let fresh: Vec<_> = unfinished
                    .into_iter()
                    .filter(|id| seen.insert(*id))
                    .collect();
                if fresh.is_empty() {
                    break;
                }
                for id in fresh {
                    match self.cancel(&caller, id, "").await {
                        Ok(_) => done.cancelled += 1,
                        // Gone or finished meanwhile: nothing left to cancel.
                        Err(ImportError::NotFound | ImportError::Refused(_)) => {}
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        let purged: Vec<Uuid> = accounts
            .iter()
            .filter(|account| account.is_purged(now))
            .map(|account| account.id)
            .collect();
        for account in purged {
            loop {
                let retired = self
                    .store
                    .retire_imports(Expired::OfPurgedAccount { account }, IMPORTS_PER_QUERY)
                    .await?;
                done.purged += retired as usize;
                if retired < IMPORTS_PER_QUERY {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// Whether `account` was deleted (from identity, as last read).
    pub(crate) fn is_deleted(&self, account: Uuid) -> bool {
        self.closed.closed_accounts().contains(&account)
    }
}

/// Runs [`ImportApp::offboard`] whenever the deleted accounts change, and every minute for
/// the purges that come due.
pub fn spawn(app: ImportApp, deleted: watch::Receiver<DeletedAccounts>, shutdown: Shutdown) {
    follow_changes(deleted, PURGE_PAUSE, shutdown, move |accounts| {
        let app = app.clone();
        async move {
            match app.offboard(&accounts, SystemTime::now()).await {
                Ok(done) if done != Offboarded::default() => {
                    tracing::info!(
                        cancelled = done.cancelled,
                        purged = done.purged,
                        "imports of deleted accounts cancelled or purged"
                    );
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "imports of deleted accounts not handled; retrying");
                }
            }
        }
    });
}
