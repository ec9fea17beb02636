//! The audit log's workers, beside the use cases that write it:
//!
//! - the **sequencer** numbers the events whose transactions have ended (see
//!   `store/events.rs` for why numbering is a step of its own), a few times a second on every
//!   replica; one replica numbers at a time, the others skip their turn;
//! - the **purge** deletes events older than `event_retention_days`, a batch at a time, never
//!   one that NATS has not received yet when publication is on (run by [`crate::retention`]);
//! - the [`nats`] **relay** publishes every event to NATS JetStream, when configured;
//! - the [`EventFeed`] tells this replica's watchers (WatchEvents) that the log grew.
//!
//! Metrics, read from the database when Prometheus scrapes: `roster_identity_events_last_sequence`,
//! `roster_identity_events_unnumbered` (written, not yet numbered), and with publication on
//! `roster_identity_events_unpublished` (numbered, not yet on NATS: the relay's lag);
//! `roster_identity_events_purged_total` counts what retention removed.

pub mod nats;

use std::time::Duration;

use roster_runtime::Shutdown;
use roster_runtime::metrics::Metrics;
use tokio::sync::watch;

use crate::store::{Numbered, Store, now};

/// How often the sequencer looks for events to number.
const SEQUENCER_PAUSE: Duration = Duration::from_millis(25);
/// Events numbered per sequencer round.
const SEQUENCER_BATCH: u64 = 2000;
/// Events numbered between two cleanups of the waiting list (see [`Store::tidy_waiting_events`]).
const TIDY_EVERY: u64 = 20_000;
/// Events deleted per purge statement.
const PURGE_BATCH: u64 = roster_runtime::retention::BATCH;

/// What the log's workers need to know.
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// Events older than this many days are purged.
    pub retention_days: u64,
    /// Whether a NATS relay publishes the log (the purge then keeps unpublished events).
    pub published: bool,
    /// How long a quiet watch waits before a heartbeat.
    pub heartbeat: Duration,
}

/// This replica's view of the log's last number, for watchers: it changes as soon as the
/// local sequencer numbers events, and watchers also read the database now and then for what
/// other replicas numbered.
#[derive(Clone)]
pub struct EventFeed {
    numbered: watch::Receiver<i64>,
    /// How long a quiet watch waits before a heartbeat.
    pub heartbeat: Duration,
    /// How often a watcher reads the log's last number even when nothing here changed it.
    pub poll: Duration,
}

impl EventFeed {
    /// A receiver that wakes when the local sequencer numbered events.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.numbered.clone()
    }
}

/// Starts the sequencer and the log's metrics; returns the feed for watchers.
pub fn start(
    store: Store,
    settings: EventSettings,
    metrics: &Metrics,
    shutdown: Shutdown,
) -> EventFeed {
    let (sender, receiver) = watch::channel(0);
    tokio::spawn(sequence(store.clone(), sender, shutdown));
    watch_log(metrics, store, settings.published);
    EventFeed {
        numbered: receiver,
        heartbeat: settings.heartbeat,
        poll: Duration::from_millis(250),
    }
}

/// The sequencer's loop: numbers what it can, then tells the watchers.
async fn sequence(store: Store, numbered: watch::Sender<i64>, shutdown: Shutdown) {
    let mut failing = false;
    let mut since_tidied = 0;
    loop {
        let mut pause = SEQUENCER_PAUSE;
        match store.number_events(SEQUENCER_BATCH).await {
            Ok(Numbered::Events { count, last }) => {
                numbered.send_if_modified(|known| {
                    let grew = last > *known;
                    *known = (*known).max(last);
                    grew
                });
                if count == SEQUENCER_BATCH {
                    pause = Duration::ZERO;
                }
                since_tidied += count;
                if since_tidied >= TIDY_EVERY {
                    since_tidied = 0;
                    if let Err(error) = store.tidy_waiting_events().await {
                        tracing::warn!(%error, "the list of events waiting for a number not tidied");
                    }
                }
                failing = false;
            }
            Ok(Numbered::Busy) => {}
            Err(error) => {
                // Logged once per outage, not 40 times a second.
                if !failing {
                    tracing::warn!(%error, "events not numbered; retrying");
                }
                failing = true;
                pause = Duration::from_secs(1);
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Deletes the events older than the retention (and, with publication on, on NATS already), a
/// batch at a time, at most [`roster_runtime::retention::STATEMENTS_PER_RUN`] batches.
pub async fn purge_expired(
    store: &Store,
    settings: &EventSettings,
    purged: &roster_runtime::metrics::prometheus_client::metrics::counter::Counter,
) -> Result<u64, crate::store::StoreError> {
    let days = i64::try_from(settings.retention_days.min(100 * 366)).unwrap_or(i64::MAX);
    let cutoff = now() - chrono::Duration::days(days);
    let mut total = 0;
    for _ in 0..roster_runtime::retention::STATEMENTS_PER_RUN {
        let published = if settings.published {
            Some(store.published_sequence().await?)
        } else {
            None
        };
        let deleted = store.purge_events(cutoff, published, PURGE_BATCH).await?;
        purged.inc_by(deleted);
        total += deleted;
        if deleted < PURGE_BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// The log's gauges, read when Prometheus scrapes.
fn watch_log(metrics: &Metrics, store: Store, published: bool) {
    let last = metrics.gauge(
        "roster_identity_events_last_sequence",
        "Sequence number of the audit log's newest numbered event",
    );
    let unnumbered = metrics.gauge(
        "roster_identity_events_unnumbered",
        "Events written but not numbered yet (their transactions are open, or the sequencer is behind)",
    );
    let unpublished = published.then(|| {
        metrics.gauge(
            "roster_identity_events_unpublished",
            "Numbered events not yet published to NATS JetStream (the relay's lag)",
        )
    });
    metrics.on_scrape(move || {
        let (store, last, unnumbered, unpublished) = (
            store.clone(),
            last.clone(),
            unnumbered.clone(),
            unpublished.clone(),
        );
        async move {
            let read = async {
                let newest = store.last_sequence().await?;
                last.set(newest);
                unnumbered.set(i64::try_from(store.unnumbered_events().await?).unwrap_or(i64::MAX));
                if let Some(unpublished) = unpublished {
                    unpublished.set(newest - store.published_sequence().await?);
                }
                Ok::<_, crate::store::StoreError>(())
            };
            if let Err(error) = read.await {
                tracing::warn!(%error, "event log metrics not read");
            }
        }
    });
}
