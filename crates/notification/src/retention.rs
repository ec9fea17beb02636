//! The notification service's retention job: every `retention_interval_seconds`, on one
//! replica at a time (the `retention` lease), it deletes the notifications that finished (SENT
//! or FAILED) more than `notification_retention_days` ago, with their attempts and request
//! keys, a bounded number per run. Each table's deletions are counted in
//! `roster_notification_retention_purged_total{table}`.

use std::time::Duration;

use roster_runtime::Shutdown;
use roster_runtime::metrics::Metrics;
use roster_runtime::retention::{self, BATCH, JobLease, Purged, STATEMENTS_PER_RUN, Schedule};

use crate::store::retention::{NOTIFICATION_CHILDREN, Purge};
use crate::store::{Store, StoreError, now};

/// Notifications per purge transaction: a tenth of a batch, so that each child table's
/// DELETE stays near a batch too (a notification has up to `max_attempts` attempts).
const NOTIFICATIONS_PER_BATCH: u64 = BATCH / 10;

/// What the job keeps and how often it runs.
#[derive(Clone, Debug)]
pub struct RetentionSettings {
    /// The pause between runs.
    pub interval: Duration,
    /// How long a finished notification is kept.
    pub kept: Duration,
}

/// Starts the job on this replica.
pub fn start(store: Store, settings: RetentionSettings, metrics: &Metrics, shutdown: Shutdown) {
    let mut tables = vec!["notifications"];
    tables.extend_from_slice(NOTIFICATION_CHILDREN);
    let purged = Purged::register(metrics, "notification", &tables);
    retention::spawn(
        store.connection().clone(),
        Schedule {
            interval: settings.interval,
            job: "retention",
        },
        JobLease::owner_name("notification"),
        shutdown,
        move || {
            let (store, kept, purged) = (store.clone(), settings.kept, purged.clone());
            async move { run(&store, kept, &purged).await }
        },
    );
}

/// One run: finished notifications older than `kept`, a transaction of
/// [`NOTIFICATIONS_PER_BATCH`] at a time, at most [`STATEMENTS_PER_RUN`] of them.
pub async fn run(store: &Store, kept: Duration, purged: &Purged) -> Result<(), StoreError> {
    let at = now();
    let cutoff = chrono::Duration::from_std(kept)
        .ok()
        .and_then(|kept| at.checked_sub_signed(kept))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    for _ in 0..STATEMENTS_PER_RUN {
        let deleted = store
            .purge_notifications(Purge::FinishedBefore(cutoff), NOTIFICATIONS_PER_BATCH)
            .await?;
        for (table, rows) in &deleted {
            purged.add(table, *rows);
        }
        if deleted.get("notifications").copied().unwrap_or(0) < NOTIFICATIONS_PER_BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}
