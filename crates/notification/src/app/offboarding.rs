//! What notification does when identity deletes an account: its waiting emails are cancelled
//! (and their variables dropped), its failed ones' variables dropped, SendEmail and
//! RetryNotification for it are refused, and once identity has purged
//! the account its emails are deleted with their attempts and keys. Keys limited to a deleted
//! account are refused by the key ring meanwhile (see `roster_runtime::auth::deleted`).

use std::time::{Duration, SystemTime};

use roster_runtime::Shutdown;
use roster_runtime::auth::deleted::{DeletedAccount, DeletedAccounts, follow_changes};
use tokio::sync::watch;
use uuid::Uuid;

use super::{NotificationError, Notifications};
use crate::store::retention::Purge;

/// Accounts named in one statement, at most.
const ACCOUNTS_PER_STATEMENT: usize = 500;
/// Emails deleted per transaction.
const EMAILS_PER_PURGE: u64 = 100;
/// How often it runs even when the deleted accounts did not change: purge times come due,
/// and a retry a worker ended in is cancelled.
const PAUSE: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offboarded {
    /// Waiting emails cancelled.
    pub cancelled: u64,
    /// Failed emails whose variables were dropped.
    pub forgotten: u64,
    /// Emails deleted with their account's purge.
    pub purged: u64,
}

impl Notifications {
    /// Cancels the waiting emails of `accounts`, drops the variables of their failed ones, and
    /// deletes the finished ones of those purged by `now`.
    pub async fn offboard(
        &self,
        accounts: &[DeletedAccount],
        now: SystemTime,
    ) -> Result<Offboarded, NotificationError> {
        let mut done = Offboarded::default();
        let ids: Vec<Uuid> = accounts.iter().map(|account| account.id).collect();
        for chunk in ids.chunks(ACCOUNTS_PER_STATEMENT) {
            done.cancelled += self
                .store
                .cancel_waiting_of(chunk, crate::store::now())
                .await?;
            done.forgotten += self.store.forget_failed_of(chunk).await?;
        }
        for account in accounts.iter().filter(|account| account.is_purged(now)) {
            loop {
                let deleted = self
                    .store
                    .purge_notifications(Purge::OfPurgedAccount(account.id), EMAILS_PER_PURGE)
                    .await?;
                let emails = deleted.get("notifications").copied().unwrap_or(0);
                done.purged += emails;
                if emails < EMAILS_PER_PURGE {
                    break;
                }
            }
        }
        Ok(done)
    }
}

/// Runs [`Notifications::offboard`] whenever the deleted accounts change, and every minute.
pub fn spawn(
    notifications: Notifications,
    deleted: watch::Receiver<DeletedAccounts>,
    shutdown: Shutdown,
) {
    follow_changes(deleted, PAUSE, shutdown, move |accounts| {
        let notifications = notifications.clone();
        async move {
            match notifications.offboard(&accounts, SystemTime::now()).await {
                Ok(done) if done != Offboarded::default() => {
                    tracing::info!(
                        cancelled = done.cancelled,
                        forgotten = done.forgotten,
                        purged = done.purged,
                        "emails of deleted accounts cancelled, forgotten or purged"
                    );
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "emails of deleted accounts not handled; retrying");
                }
            }
        }
    });
}
