//! The delivery workers: tokio tasks that claim due messages, render and send them, and record
//! each attempt, until the shutdown signal.
//!
//! One pass of a worker ([`Delivery::run_once`]) claims a batch under a lease and sends the
//! batch's messages concurrently, so one slow or failing message never holds up the others; the
//! loop turns "queue empty" into a wait that a new `SendEmail` on this instance cuts short.
//! Failures are never dropped: every attempt is recorded, temporary failures come back after a
//! backoff, permanent ones end FAILED with the server's reply.
//!
//! Each attempt's outcome is counted on the metrics endpoint ([`DeliveryCounters`]):
//! `roster_notification_messages_sent_total`, `roster_notification_messages_retrying_total` and
//! `roster_notification_messages_failed_total`; an attempt whose outcome could not be recorded
//! (its worker's lease had run out) is logged and counted in
//! `roster_notification_attempts_unrecorded_total`.

mod pool;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use roster_runtime::Shutdown;
use roster_runtime::metrics::Metrics;
use roster_runtime::metrics::prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::domain::attempt::{Finished, Outcome};
use crate::domain::notification::Notification;
use crate::domain::retry::{AfterFailure, Failure, RetryPolicy};
use crate::domain::state::DeliveryState;
use crate::domain::templates::{RenderInput, Template, Templates};
use crate::store::queue::Recording;
use crate::store::{self, Store, StoreError};
use transport::{Mailer, SendFailure};

/// How long before a batch's lease runs out its worker stops trying to record its attempts.
const RECORD_MARGIN: chrono::Duration = chrono::Duration::seconds(5);
/// The longest pause between two tries at recording a batch's attempts.
const RECORD_PAUSE_MAX: Duration = Duration::from_secs(2);

/// What one pass of a worker found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionOutcome {
    /// It claimed and processed messages; there may be more.
    Worked,
    /// Nothing was due.
    QueueEmpty,
}

/// What the attempts of this instance came to, counted as each attempt ends (whether or not its
/// outcome could be recorded, so `sent` counts what the mail server accepted).
#[derive(Clone, Debug)]
pub struct DeliveryCounters {
    /// Messages the mail server accepted.
    pub sent: Counter,
    /// Attempts that failed temporarily, after which the message waits for a retry (RETRYING).
    pub retrying: Counter,
    /// Messages that failed for good (FAILED): a permanent refusal, or the last attempt.
    pub failed: Counter,
    /// Attempts whose outcome could not be recorded because the worker no longer held the
    /// message (its lease ran out): each is logged with the message's state.
    pub unrecorded: Counter,
}

impl DeliveryCounters {
    /// The counters, registered on `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            sent: metrics.counter(
                "roster_notification_messages_sent",
                "Emails the mail server accepted",
            ),
            retrying: metrics.counter(
                "roster_notification_messages_retrying",
                "Delivery attempts that failed temporarily; the email waits for a retry",
            ),
            failed: metrics.counter(
                "roster_notification_messages_failed",
                "Emails that failed for good: refused permanently, or out of attempts",
            ),
            unrecorded: metrics.counter(
                "roster_notification_attempts_unrecorded",
                "Delivery attempts whose outcome was not recorded: the worker's lease had run out",
            ),
        }
    }

    fn count(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Sent => self.sent.inc(),
            Outcome::Retry { .. } => self.retrying.inc(),
            Outcome::Failed { .. } => self.failed.inc(),
        };
    }
}

/// Everything the workers of one instance share.
pub struct Delivery {
    pub store: Store,
    pub templates: Arc<Templates>,
    pub mailer: Mailer,
    pub from: Mailbox,
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub batch_size: u64,
    pub poll_interval: Duration,
    /// Signalled by `SendEmail`, so an idle worker starts at once instead of at its next poll.
    pub wake: Arc<Notify>,
    /// What the attempts came to, for the metrics endpoint.
    pub counters: DeliveryCounters,
    /// The deleted accounts as last read from identity, whose messages are never claimed
    /// (`None` when they are not read).
    pub deleted: Option<roster_runtime::SharedKeyRing>,
}

impl Delivery {
    /// Starts `count` workers that run until `shutdown` fires, each finishing the batch it is
    /// sending first (its attempts recorded, so none is made again once its lease ends): the
    /// caller awaits the handles before the process exits.
    pub fn spawn_workers(
        self: &Arc<Self>,
        count: usize,
        shutdown: &Shutdown,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        (0..count)
            .map(|index| {
                let owner = format!("{}/{index}", &instance[..12]);
                let delivery = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(
                    async move { delivery.run(owner, shutdown).await }
                        .instrument(tracing::info_span!("delivery_worker", worker = index)),
                )
            })
            .collect()
    }

    async fn run(&self, owner: String, shutdown: Shutdown) {
        tracing::debug!(%owner, "delivery worker started");
        while !shutdown.is_triggered() {
            match self.run_once(&owner).await {
                Ok(ExecutionOutcome::Worked) => continue,
                Ok(ExecutionOutcome::QueueEmpty) => {}
                Err(error) => {
                    tracing::warn!(%error, "claiming messages failed; trying again shortly");
                }
            }
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(self.poll_interval) => {}
                () = self.wake.notified() => {}
            }
        }
        tracing::debug!(%owner, "delivery worker stopped");
    }

    /// Claims one batch of due messages as `owner` and delivers them.
    pub async fn run_once(&self, owner: &str) -> Result<ExecutionOutcome, StoreError> {
        let now = store::now();
        let lease_until =
            now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let deleted = self
            .deleted
            .as_ref()
            .map(|keys| keys.closed_accounts())
            .unwrap_or_default();
        let claimed = self
            .store
            .claim_except(owner, now, lease_until, self.batch_size, &deleted)
            .await?;
        if claimed.is_empty() {
            return Ok(ExecutionOutcome::QueueEmpty);
        }
        let finished = futures::future::join_all(
            claimed
                .into_iter()
                .map(|message| self.deliver(owner, message)),
        )
        .await;
        // The batch's attempts in one transaction: one commit per batch, not per message; the
        // claim leased every message of it until `lease_until`.
        self.record(&finished, lease_until).await;
        Ok(ExecutionOutcome::Worked)
    }

    /// One attempt at one claimed message; how it finished, for the caller to record with the
    /// rest of the batch whatever happened.
    async fn deliver<'a>(&self, owner: &'a str, message: Notification) -> Finished<'a> {
        let started_at = store::now();
        // A retry an operator asked for starts a new budget of attempts.
        let attempt = u32::try_from(message.attempt_in_budget()).unwrap_or(u32::MAX);
        let outcome = if attempt > self.retry.max_attempts {
            // The previous attempt's worker stopped before recording it (its lease ran out):
            // that attempt counted, and it was the last one allowed.
            Outcome::Failed {
                error: format!(
                    "gave up after {} attempts; the last one did not finish (its worker stopped)",
                    attempt - 1
                ),
                smtp_code: None,
            }
        } else {
            match self.attempt(&message).await {
                Ok(()) => Outcome::Sent,
                Err(failure) => self.after_failure(attempt, failure),
            }
        };
        match &outcome {
            Outcome::Sent => tracing::info!(notification = %message.id, attempt, "sent"),
            Outcome::Retry {
                error,
                next_attempt_at,
                ..
            } => tracing::warn!(
                notification = %message.id, attempt, %error, %next_attempt_at,
                "delivery failed; will retry"
            ),
            Outcome::Failed { error, .. } => {
                tracing::error!(notification = %message.id, attempt, %error, "delivery failed for good")
            }
        }
        self.counters.count(&outcome);
        Finished {
            id: message.id,
            owner,
            number: message.attempts,
            outcome,
            started_at,
            finished_at: store::now(),
        }
    }

    fn after_failure(&self, attempt: u32, failure: SendFailure) -> Outcome {
        let error = failure.failure.text();
        match self
            .retry
            .after_failure(attempt, &failure.failure, &mut rand::rng())
        {
            AfterFailure::RetryAfter(delay) => Outcome::Retry {
                next_attempt_at: store::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                error,
                smtp_code: failure.smtp_code,
            },
            AfterFailure::GiveUp => Outcome::Failed {
                error,
                smtp_code: failure.smtp_code,
            },
        }
    }

    /// Renders and sends. Anything wrong with the stored message itself is permanent.
    async fn attempt(&self, message: &Notification) -> Result<(), SendFailure> {
        let permanent = |text: String| SendFailure {
            failure: Failure::Permanent(text),
            smtp_code: None,
        };
        let template = Template::parse(&message.template)
            .ok_or_else(|| permanent(format!("unknown template {:?}", message.template)))?;
        let variables: BTreeMap<String, String> = serde_json::from_str(&message.variables)
            .map_err(|error| permanent(format!("stored variables: {error}")))?;
        let rendered = self
            .templates
            .render(&RenderInput {
                template,
                locale: &message.locale,
                account_display_name: &message.account_display_name,
                recipient: &message.recipient,
                variables: &variables,
            })
            .map_err(|error| permanent(format!("template: {error}")))?;
        let to = message
            .recipient
            .parse()
            .map_err(|error| permanent(format!("recipient: {error}")))?;
        let email = transport::build_message(&self.from, to, &message.message_id, rendered)
            .map_err(|error| permanent(format!("building the message: {error}")))?;
        self.mailer.send(message.id, email).await
    }

    /// Records the attempts of a batch in one transaction. While the database cannot take them
    /// it tries again, up to [`RECORD_MARGIN`] before the batch's lease runs out: an attempt
    /// still unrecorded then is made again by whichever worker claims the message next (an
    /// email the server took would go out twice), so no earlier moment is a better one to stop.
    async fn record(&self, finished: &[Finished<'_>], lease_until: DateTime<Utc>) {
        let give_up_at = lease_until - RECORD_MARGIN;
        let mut pause = Duration::from_millis(200);
        loop {
            match self.store.finish_all(finished).await {
                Ok(recordings) => {
                    for (finished, recording) in finished.iter().zip(recordings) {
                        if let Recording::NotHeld(found) = recording {
                            self.counters.unrecorded.inc();
                            not_recorded(finished, found.as_deref());
                        }
                    }
                    return;
                }
                Err(error)
                    if store::now() + chrono::Duration::from_std(pause).unwrap_or_default()
                        < give_up_at =>
                {
                    tracing::warn!(
                        messages = finished.len(), %error, retry_in = ?pause,
                        "recording the attempts failed; retrying while the lease lasts"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECORD_PAUSE_MAX);
                }
                Err(error) => {
                    tracing::error!(
                        messages = finished.len(), %error,
                        "recording the attempts failed until their lease nearly ran out; the \
                         messages are attempted again once it has"
                    );
                    return;
                }
            }
        }
    }
}

/// Says why an attempt's outcome could not be recorded, with the message as it is now: the
/// attempt happened (the mail server may have taken the email), so it is never dropped quietly.
fn not_recorded(finished: &Finished<'_>, found: Option<&Notification>) {
    let outcome = finished.outcome.kind().as_str();
    match found {
        Some(current) if current.state == DeliveryState::Sending => tracing::warn!(
            notification = %finished.id,
            attempt = finished.number,
            outcome,
            holder = current.lease_owner.as_deref().unwrap_or_default(),
            attempts = current.attempts,
            "attempt not recorded: its lease ran out and another worker took the message over; \
             that worker makes attempt {} (a sent email may arrive twice, with the same Message-ID)",
            current.attempts
        ),
        Some(current) => tracing::error!(
            notification = %finished.id,
            attempt = finished.number,
            outcome,
            state = current.state.as_str(),
            attempts = current.attempts,
            "attempt not recorded: the message is no longer SENDING"
        ),
        None => tracing::error!(
            notification = %finished.id,
            attempt = finished.number,
            outcome,
            "attempt not recorded: the message no longer exists"
        ),
    }
}
