//! The outbox relay: hands emails that identity wrote to its outbox to NotificationService.
//!
//! Each outbox row is leased before it is sent, so any number of identity replicas can relay
//! side by side, and a row whose relay died is picked up again once its lease runs out. The
//! row's id is the `request_id` of SendEmail: a row sent twice (a crash between the send and
//! the mark) is deduplicated by the notification service. Delivery is at least once, and an
//! email is never lost: a row leaves the outbox only after NotificationService accepted it.
//!
//! The calls go through the runtime's [`Client`]: balanced over every notification replica,
//! with a deadline, retried on UNAVAILABLE (SendEmail is idempotent through its request id),
//! optionally over TLS. Each row carries the trace context of the request that wrote it, and
//! the relay's span is its child, so a reset email's delivery is part of the reset's trace.
//!
//! A relay that could never deliver does not start: a `notification_url` without a key to call
//! with stops identity at start. A key that NotificationService refuses (UNAUTHENTICATED,
//! PERMISSION_DENIED) is a configuration error, not a passing failure: it is logged as one, counted
//! in `roster_outbox_relay_refused_total` (a name kept for the alerts written on it) and as a
//! `refused` failure, and the relay pauses without counting the attempt, so the emails go out
//! within a pause once the key is fixed.
//!
//! An email NotificationService refuses as invalid (INVALID_ARGUMENT), or whose outbox row
//! cannot be read, is tried again with the backoff — an older notification may refuse what a
//! newer identity writes until a rolling upgrade ends — but not for ever: the first such
//! failure `outbox_give_up_seconds` (a day) after the email was written gives it up. Its row is
//! done, with the reason as its `last_error` and its payload (address, link) dropped; the
//! relay logs it as an error with the row's id, account and template and counts it in
//! `roster_identity_outbox_given_up_total`, and it leaves the outbox's depth and age, so the
//! stuck-outbox alert clears while the given-up alert fires.
//!
//! The outbox is watched on identity's metrics endpoint whether a relay runs or not:
//! `roster_identity_outbox_depth` and `roster_identity_outbox_oldest_age_seconds` are read from
//! the database when Prometheus scrapes, so an age that keeps growing shows a relay that is stuck,
//! failing or not running at all; `roster_identity_outbox_relay_failures_total{reason}` counts
//! the relay's failures by a bounded reason (`unavailable`, `deadline_exceeded`, `refused`,
//! `rejected`, `unreadable_payload`, `database`).

use std::collections::HashMap;
use std::time::Duration;

use roster_proto::notification::v1::SendEmailRequest;
use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
use roster_runtime::Shutdown;
use roster_runtime::client::{Client, idempotent};
use roster_runtime::metrics::Metrics;
use roster_runtime::metrics::prometheus_client::metrics::counter::Counter;
use roster_runtime::metrics::prometheus_client::metrics::family::Family;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::Settings;
use crate::domain::outbox::{LeasedEmail, OutboxEmail};
use crate::store::{Store, now};

/// How long a claimed row stays with one relay before another may take it.
const LEASE: Duration = Duration::from_secs(30);
/// How often the outbox is looked at when idle.
const POLL: Duration = Duration::from_millis(500);
/// How long the relay waits after NotificationService refused its key.
const REFUSED_PAUSE: Duration = Duration::from_secs(30);
/// Rows sent per round.
const BATCH: u64 = 20;
/// Longest wait between two attempts of one row.
const MAX_BACKOFF_SECONDS: u64 = 3600;

/// Why the relay failed: the `reason` of `roster_identity_outbox_relay_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// NotificationService could not be reached, or answered UNAVAILABLE (after the client's
    /// own retries): `unavailable`.
    Unavailable,
    /// It did not answer within `notification_timeout_seconds`: `deadline_exceeded`.
    DeadlineExceeded,
    /// It refused identity's key (UNAUTHENTICATED, PERMISSION_DENIED): `refused`.
    Refused,
    /// It answered another error (an email it does not accept): `rejected`.
    Rejected,
    /// The outbox row could not be decoded: `unreadable_payload`.
    UnreadablePayload,
    /// The outbox could not be read, or a row's outcome not recorded: `database`.
    Database,
    /// The email's account was deleted (FAILED_PRECONDITION, ACCOUNT_DELETED): not a
    /// failure — the email is dropped, not counted.
    AccountDeleted,
}

impl Failure {
    const ALL: [Failure; 6] = [
        Failure::Unavailable,
        Failure::DeadlineExceeded,
        Failure::Refused,
        Failure::Rejected,
        Failure::UnreadablePayload,
        Failure::Database,
    ];

    /// The failure of a SendEmail that ended with `status`.
    fn of(status: &Status) -> Self {
        match status.code() {
            Code::FailedPrecondition
                if roster_runtime::error::status_reason(status).as_deref()
                    == Some("ACCOUNT_DELETED") =>
            {
                Failure::AccountDeleted
            }
            Code::Unavailable | Code::Cancelled => Failure::Unavailable,
            Code::DeadlineExceeded => Failure::DeadlineExceeded,
            Code::Unauthenticated | Code::PermissionDenied => Failure::Refused,
            _ => Failure::Rejected,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Failure::Unavailable => "unavailable",
            Failure::DeadlineExceeded => "deadline_exceeded",
            Failure::Refused => "refused",
            Failure::Rejected => "rejected",
            Failure::UnreadablePayload => "unreadable_payload",
            Failure::Database => "database",
            Failure::AccountDeleted => "account_deleted",
        }
    }
}

type ReasonLabels = [(&'static str, &'static str); 1];

/// The relay's failures, by reason; every reason is there from the start (at 0), so that an
/// alert on its increase sees the first failure.
#[derive(Clone)]
struct Failures(Family<ReasonLabels, Counter>);

impl Failures {
    fn register(metrics: &Metrics) -> Self {
        let family = Family::<ReasonLabels, Counter>::default();
        for failure in Failure::ALL {
            family.get_or_create_owned(&[("reason", failure.reason())]);
        }
        metrics.register(
            "roster_identity_outbox_relay_failures",
            "Outbox emails the relay failed to hand over to NotificationService, and outbox \
             reads and updates that failed, by reason",
            family.clone(),
        );
        Self(family)
    }

    fn count(&self, failure: Failure) {
        self.0.get_or_create(&[("reason", failure.reason())]).inc();
    }
}

/// Reports the outbox on `metrics`: how many emails wait to be handed over and how long the
/// oldest of them has waited, read from the database when Prometheus scrapes (so the age keeps
/// growing while the relay is stuck, whatever the relay is doing).
pub fn watch_outbox(metrics: &Metrics, store: Store) {
    let depth = metrics.gauge(
        "roster_identity_outbox_depth",
        "Outbox emails not handed over to NotificationService yet",
    );
    let age = metrics.gauge_f64(
        "roster_identity_outbox_oldest_age_seconds",
        "Age of the oldest outbox email not handed over yet, in seconds (0 when none waits)",
    );
    metrics.on_scrape(move || {
        let (store, depth, age) = (store.clone(), depth.clone(), age.clone());
        async move {
            match store.outbox_stats().await {
                Ok((count, oldest)) => {
                    depth.set(i64::try_from(count).unwrap_or(i64::MAX));
                    age.set(oldest.map_or(0.0, |oldest| {
                        (now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
                    }));
                }
                Err(error) => tracing::warn!(%error, "outbox metrics not read"),
            }
        }
    });
}

/// A relay ready to start: its client is built and its key is there.
pub struct RelayConfig {
    client: Client,
    /// How long an email that cannot be handed over as it is may wait.
    give_up_after: chrono::Duration,
}

impl RelayConfig {
    /// The relay `settings` describe; `None` when no `notification_url` is set. A URL without
    /// a key (`notification_key` or `notification_key_file`) is refused: every email would be.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<RelayConfig>> {
        let peer = settings.notification_peer()?;
        let Some(config) = peer.client(
            "notification",
            Duration::from_secs(crate::NOTIFICATION_TIMEOUT_SECONDS),
        ) else {
            return Ok(None);
        };
        let url = peer.url.clone().unwrap_or_default();
        if config.key.is_none() {
            anyhow::bail!(
                "ROSTER_IDENTITY__NOTIFICATION_URL is set but identity has no key to call \
                 NotificationService with: set ROSTER_IDENTITY__NOTIFICATION_KEY or \
                 ROSTER_IDENTITY__NOTIFICATION_KEY_FILE to a key notification accepts (scope \
                 `notifications`)"
            );
        }
        let client = Client::new(config)
            .map_err(|error| anyhow::anyhow!("notification_url {url:?}: {error}"))?;
        Ok(Some(RelayConfig {
            client,
            give_up_after: chrono::Duration::seconds(
                i64::try_from(settings.outbox_give_up_seconds).unwrap_or(i64::MAX / 1000),
            ),
        }))
    }

    /// Starts relaying; `metrics` gets the counts of failed and refused hand-overs.
    pub fn spawn(self, store: Store, metrics: &Metrics, shutdown: Shutdown) {
        let failures = Failures::register(metrics);
        let refused = Counter::default();
        metrics.register(
            "roster_outbox_relay_refused",
            "Outbox emails NotificationService refused for identity's key (UNAUTHENTICATED or \
             PERMISSION_DENIED): a configuration error, retried after a pause",
            refused.clone(),
        );
        let given_up = Counter::default();
        metrics.register(
            "roster_identity_outbox_given_up",
            "Outbox emails given up: NotificationService still refused them as invalid, or their \
             outbox row could not be read, outbox_give_up_seconds after they were written",
            given_up.clone(),
        );
        let relay = Relay {
            store,
            client: NotificationServiceClient::new(self.client),
            owner: format!("identity-{}", uuid::Uuid::new_v4()),
            refused,
            given_up,
            give_up_after: self.give_up_after,
            failures,
            refusing: false,
        };
        tokio::spawn(relay.run(shutdown));
    }
}

struct Relay {
    store: Store,
    client: NotificationServiceClient<Client>,
    owner: String,
    /// Hand-overs refused for the key.
    refused: Counter,
    /// Emails given up.
    given_up: Counter,
    /// How long an email that cannot be handed over as it is may wait.
    give_up_after: chrono::Duration,
    /// Failures, by reason.
    failures: Failures,
    /// Whether the last hand-over was refused for the key (logged once per spell).
    refusing: bool,
}

/// What became of one row.
enum Handed {
    Over,
    Failed,
    /// NotificationService refused the key: the rest of the round would be refused too.
    Refused,
}

impl Relay {
    async fn run(mut self, shutdown: Shutdown) {
        loop {
            let lease_until = now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
            let claimed = match self
                .store
                .claim_outbox(&self.owner, lease_until, BATCH)
                .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    self.failures.count(Failure::Database);
                    tracing::warn!(%error, "outbox unreadable; retrying");
                    Vec::new()
                }
            };
            let mut pause = claimed.is_empty().then_some(POLL);
            // Rows left unsent by a refusal keep their lease and come back when it ends.
            for row in claimed {
                if let Handed::Refused = self.relay(row).await {
                    pause = Some(REFUSED_PAUSE);
                    break;
                }
            }
            match pause {
                Some(pause) => tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(pause) => {}
                },
                None if shutdown.is_triggered() => return,
                None => {}
            }
        }
    }

    async fn relay(&mut self, row: LeasedEmail) -> Handed {
        let email = serde_json::from_str::<OutboxEmail>(&row.payload);
        let span = tracing::info_span!(
            "outbox relay",
            outbox_id = %row.id,
            trace_id = tracing::field::Empty
        );
        if let Ok(email) = &email {
            email.trace_context.set_parent_of(&span);
        }
        self.relay_in(row, email).instrument(span).await
    }

    async fn relay_in(
        &mut self,
        row: LeasedEmail,
        email: Result<OutboxEmail, serde_json::Error>,
    ) -> Handed {
        // What the email is, for a give-up's log: never the address or the variables.
        let about = email
            .as_ref()
            .map(|email| (email.account_id.to_string(), email.template.clone()))
            .unwrap_or_default();
        // Whether the failure says the email as written will not be taken: it is given up
        // once it has waited its time.
        let mut lasting = false;
        let result = match email {
            Ok(email) => self.send(row.id, email).await.map_err(|status| {
                let error = format!("{:?}: {}", status.code(), status.message());
                lasting = status.code() == Code::InvalidArgument;
                (error, Failure::of(&status))
            }),
            Err(error) => {
                lasting = true;
                Err((
                    format!("unreadable outbox payload: {error}"),
                    Failure::UnreadablePayload,
                ))
            }
        };
        if let Err((_, failure)) = &result
            && *failure != Failure::AccountDeleted
        {
            self.failures.count(*failure);
        }
        let waited = now() - row.written_at;
        let (handed, outcome) = match result {
            Ok(()) => {
                if self.refusing {
                    self.refusing = false;
                    tracing::info!("NotificationService accepts identity's key again");
                }
                (Handed::Over, self.store.outbox_delivered(row.id).await)
            }
            Err((error, Failure::AccountDeleted)) => {
                // The account was deleted after the email was queued: it is not sent, as the
                // account's emails queued in notification are cancelled.
                tracing::info!(%error, "email of a deleted account dropped");
                (
                    Handed::Over,
                    self.store.outbox_dropped(row.id, &error).await,
                )
            }
            Err((error, Failure::Refused)) => {
                self.refused.inc();
                if !self.refusing {
                    self.refusing = true;
                    tracing::error!(
                        %error,
                        "NotificationService refused identity's key: a configuration error, not \
                         a passing one; check ROSTER_IDENTITY__NOTIFICATION_KEY (or _FILE) against \
                         notification's keys file. Emails wait in the outbox, tried again every \
                         {REFUSED_PAUSE:?}"
                    );
                }
                let retry_at =
                    now() + chrono::Duration::from_std(REFUSED_PAUSE).unwrap_or_default();
                (
                    Handed::Refused,
                    self.store.outbox_refused(row.id, &error, retry_at).await,
                )
            }
            Err((error, _)) if lasting && waited >= self.give_up_after => {
                let (account_id, template) = about;
                tracing::error!(
                    outbox_id = %row.id,
                    %account_id,
                    %template,
                    %error,
                    attempts = row.attempts + 1,
                    "email given up: NotificationService still does not take it {} s after it \
                     was written; it is not sent",
                    self.give_up_after.num_seconds()
                );
                self.given_up.inc();
                let reason = format!(
                    "given up {} s after it was written: {error}",
                    self.give_up_after.num_seconds()
                );
                (
                    Handed::Failed,
                    self.store.outbox_dropped(row.id, &reason).await,
                )
            }
            Err((error, _)) => {
                let backoff = backoff(row.attempts);
                tracing::warn!(%error, attempts = row.attempts + 1, ?backoff, "email not handed over; will retry");
                let retry_at = now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                (
                    Handed::Failed,
                    self.store.outbox_failed(row.id, &error, retry_at).await,
                )
            }
        };
        if let Err(error) = outcome {
            self.failures.count(Failure::Database);
            // The lease runs out and the row is tried again; the request id deduplicates.
            tracing::warn!(%error, "outbox row not updated");
        }
        handed
    }

    async fn send(&mut self, id: uuid::Uuid, email: OutboxEmail) -> Result<(), Status> {
        let request = idempotent(tonic::Request::new(SendEmailRequest {
            request_id: id.to_string(),
            account_id: email.account_id.to_string(),
            recipient: email.recipient,
            template: email.template,
            locale: email.locale,
            variables: email.variables.into_iter().collect::<HashMap<_, _>>(),
            account_display_name: email.account_display_name,
        }));
        self.client.send_email(request).await.map(|_| ())
    }
}

/// Exponential backoff with jitter: about 2^attempts seconds, at most an hour.
fn backoff(attempts: i32) -> Duration {
    let base = 1u64 << attempts.clamp(0, 12);
    let seconds = base.min(MAX_BACKOFF_SECONDS);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    Duration::from_secs_f64(seconds as f64 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_relay_reads_nested_peer_settings_and_flat_ones_alike() {
        use roster_runtime::peer::PeerSettings;
        let nested = Settings {
            notification: PeerSettings {
                url: Some("http://127.0.0.1:1".into()),
                key: Some("k".into()),
                ..PeerSettings::default()
            },
            ..Settings::default()
        };
        assert!(RelayConfig::from_settings(&nested).unwrap().is_some());
        let flat = Settings {
            notification_url: Some("http://127.0.0.1:1".into()),
            notification_key: Some("k".into()),
            ..Settings::default()
        };
        assert!(RelayConfig::from_settings(&flat).unwrap().is_some());
        let without_key = Settings {
            notification: PeerSettings {
                url: Some("http://127.0.0.1:1".into()),
                ..PeerSettings::default()
            },
            ..Settings::default()
        };
        assert!(RelayConfig::from_settings(&without_key).is_err());
        let both = Settings {
            notification_url: Some("http://127.0.0.1:2".into()),
            ..nested.clone()
        };
        let error = RelayConfig::from_settings(&both).err().unwrap().to_string();
        assert!(
            error.contains("ROSTER_IDENTITY__NOTIFICATION__URL"),
            "{error}"
        );
        assert!(
            RelayConfig::from_settings(&Settings::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn status_codes_map_to_the_bounded_failure_reasons() {
        let of = |code: Code| Failure::of(&Status::new(code, "")).reason();
        assert_eq!(of(Code::Unavailable), "unavailable");
        assert_eq!(of(Code::DeadlineExceeded), "deadline_exceeded");
        assert_eq!(of(Code::PermissionDenied), "refused");
        assert_eq!(of(Code::InvalidArgument), "rejected");
        assert_eq!(of(Code::Internal), "rejected");
        assert_eq!(of(Code::FailedPrecondition), "rejected");
        let deleted = Status::from(roster_runtime::ApiError::FailedPrecondition {
            reason: "ACCOUNT_DELETED",
            message: "the account is deleted".into(),
            subject: "account".into(),
        });
        assert_eq!(Failure::of(&deleted), Failure::AccountDeleted);
        let reasons: std::collections::HashSet<&str> = Failure::ALL
            .iter()
            .map(|failure| failure.reason())
            .collect();
        assert_eq!(reasons.len(), Failure::ALL.len(), "reasons are distinct");
    }
}
