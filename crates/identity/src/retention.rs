//! Identity's retention job: every `retention_interval_seconds`, on one replica at a time (the
//! `retention` lease), it deletes in bounded batches
//!
//! - idempotency keys — the kept answers of single calls and of each batch item — older than
//!   `request_id_retention_hours` (a request repeated later runs as a new one);
//! - reset tokens once expired (used, revoked or not, such a token is refused like an unknown
//!   one);
//! - sign-in throttle rows without a failure for [`THROTTLE_KEPT`] and no lock running;
//! - outbox rows delivered more than [`DELIVERED_OUTBOX_KEPT`] ago;
//! - audit events older than `event_retention_days` (see [`crate::events::purge_expired`]).
//!
//! Each table's deletions are counted in `roster_identity_retention_purged_total{table}`.

use std::time::Duration;

use roster_runtime::Shutdown;
use roster_runtime::metrics::Metrics;
use roster_runtime::metrics::prometheus_client::metrics::counter::Counter;
use roster_runtime::retention::{self, BATCH, JobLease, Purged, Schedule, purge_in_batches};

use crate::events::{EventSettings, purge_expired};
use crate::store::{Store, StoreError, now};

/// How long a username's sign-in failures are remembered without a new one (its lock, if any,
/// having ended): long beside the longest lock, so a throttle still throttles.
pub const THROTTLE_KEPT: Duration = Duration::from_secs(24 * 3600);

/// How long an outbox row is kept after notification took the email (its payload is dropped on
/// delivery; the row only tells when the hand-over happened).
pub const DELIVERED_OUTBOX_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The tables the job purges, as its counter labels them.
const TABLES: [&str; 5] = [
    "idempotency_keys",
    "reset_tokens",
    "signin_throttle",
    "outbox",
    "events",
];

/// What the job keeps and how often it runs.
#[derive(Clone, Debug)]
pub struct RetentionSettings {
    /// The pause between runs.
    pub interval: Duration,
    /// How long an idempotency key is kept.
    pub request_ids: Duration,
    /// The audit log's retention.
    pub events: EventSettings,
}

/// Starts the job on this replica.
pub fn start(store: Store, settings: RetentionSettings, metrics: &Metrics, shutdown: Shutdown) {
    let purged = Purged::register(metrics, "identity", &TABLES);
    let events_purged = metrics.counter(
        "roster_identity_events_purged",
        "Events deleted by retention (event_retention_days)",
    );
    let db = store.connection().clone();
    retention::spawn(
        db,
        Schedule {
            interval: settings.interval,
            job: "retention",
        },
        JobLease::owner_name("identity"),
        shutdown,
        move || {
            let (store, settings, purged, events_purged) = (
                store.clone(),
                settings.clone(),
                purged.clone(),
                events_purged.clone(),
            );
            async move { run(&store, &settings, &purged, &events_purged).await }
        },
    );
}

/// One run: each table in turn, each bounded.
pub async fn run(
    store: &Store,
    settings: &RetentionSettings,
    purged: &Purged,
    events_purged: &Counter,
) -> Result<(), StoreError> {
    let at = now();
    let ago = |kept: Duration| {
        chrono::Duration::from_std(kept)
            .ok()
            .and_then(|kept| at.checked_sub_signed(kept))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
    };
    let keys_cutoff = ago(settings.request_ids);
    purge_in_batches(purged, "idempotency_keys", || {
        store.purge_idempotency_keys(keys_cutoff, BATCH)
    })
    .await?;
    purge_in_batches(purged, "reset_tokens", || {
        store.purge_reset_tokens(at, BATCH)
    })
    .await?;
    let throttle_cutoff = ago(THROTTLE_KEPT);
    purge_in_batches(purged, "signin_throttle", || {
        store.purge_signin_throttle(throttle_cutoff, at, BATCH)
    })
    .await?;
    let outbox_cutoff = ago(DELIVERED_OUTBOX_KEPT);
    purge_in_batches(purged, "outbox", || {
        store.purge_delivered_outbox(outbox_cutoff, BATCH)
    })
    .await?;
    let events = purge_expired(store, &settings.events, events_purged).await?;
    purged.add("events", events);
    Ok(())
}
