//! Bulk-import's retention job: every `retention_interval_seconds`, on one replica at a time
//! (the `retention` lease), it
//!
//! - deletes the imports never submitted whose expiry (`import_ttl_seconds` after creation)
//!   has passed, and the submitted ones that ended (COMPLETED, COMPLETED_WITH_ERRORS, FAILED,
//!   CANCELLED) more than `import_retention_days` ago: from then on each is NOT_FOUND, its
//!   report included;
//! - deletes the staged rows and file pieces of deleted imports, a batch at a time, a bounded
//!   number of statements per run (see [`crate::store::retention`]).
//!
//! Each table's deletions are counted in `roster_bulk_import_retention_purged_total{table}`.

use std::time::Duration;

use roster_runtime::Shutdown;
use roster_runtime::metrics::Metrics;
use roster_runtime::retention::{self, BATCH, JobLease, Purged, STATEMENTS_PER_RUN, Schedule};

use crate::store::retention::Expired;
use crate::store::{Store, StoreError, now_millis};

/// Imports deleted per transaction.
const IMPORTS_PER_BATCH: u64 = 100;

/// What the job keeps and how often it runs.
#[derive(Clone, Debug)]
pub struct RetentionSettings {
    /// The pause between runs.
    pub interval: Duration,
    /// How long a submitted import is kept once it ended.
    pub finished_kept: Duration,
}

/// Starts the job on this replica.
pub fn start(store: Store, settings: RetentionSettings, metrics: &Metrics, shutdown: Shutdown) {
    let purged = Purged::register(
        metrics,
        "bulk_import",
        &[
            "imports",
            "import_rows",
            "import_outcomes",
            "import_chunks",
            "import_claims",
        ],
    );
    retention::spawn(
        store.connection().clone(),
        Schedule {
            interval: settings.interval,
            job: "retention",
        },
        JobLease::owner_name("bulk-import"),
        shutdown,
        move || {
            let (store, settings, purged) = (store.clone(), settings.clone(), purged.clone());
            async move { run(&store, &settings, &purged).await }
        },
    );
}

/// One run: expired and old finished imports, then their data; each step bounded.
pub async fn run(
    store: &Store,
    settings: &RetentionSettings,
    purged: &Purged,
) -> Result<(), StoreError> {
    let now = now_millis();
    let kept = i64::try_from(settings.finished_kept.as_millis()).unwrap_or(i64::MAX);
    for expired in [
        Expired::Unsubmitted { now },
        Expired::Finished {
            before: now.saturating_sub(kept),
        },
    ] {
        for _ in 0..STATEMENTS_PER_RUN {
            let retired = store.retire_imports(expired, IMPORTS_PER_BATCH).await?;
            purged.add("imports", retired);
            if retired < IMPORTS_PER_BATCH {
                break;
            }
        }
    }
    let mut statements = 0;
    for import_id in store.purged_imports(IMPORTS_PER_BATCH).await? {
        loop {
            if statements >= STATEMENTS_PER_RUN {
                return Ok(());
            }
            statements += 1;
            let deleted = store.purge_import_data(import_id, BATCH).await?;
            purged.add("import_chunks", deleted.chunks);
            purged.add("import_rows", deleted.rows);
            purged.add("import_outcomes", deleted.outcomes);
            purged.add("import_claims", deleted.claims);
            if [
                deleted.chunks,
                deleted.rows,
                deleted.outcomes,
                deleted.claims,
            ]
            .iter()
            .all(|&count| count < BATCH)
            {
                store.forget_purged(import_id).await?;
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}
