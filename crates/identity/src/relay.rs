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

use std::collections::HashMap;
use std::time::Duration;

use roster_proto::notification::v1::SendEmailRequest;
use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
use roster_runtime::Shutdown;
use roster_runtime::client::{Client, ClientConfig, ClientTls, idempotent};
use tracing::Instrument;

use crate::Settings;
use crate::domain::outbox::OutboxEmail;
use crate::store::entities::outbox;
use crate::store::{Store, now};

/// How long a claimed row stays with one relay before another may take it.
const LEASE: Duration = Duration::from_secs(30);
/// How often the outbox is looked at when idle.
const POLL: Duration = Duration::from_millis(500);
/// Rows sent per round.
const BATCH: u64 = 20;
/// Longest wait between two attempts of one row.
const MAX_BACKOFF_SECONDS: u64 = 3600;

/// Starts the relay when a notification address is configured.
pub fn spawn(store: Store, settings: &Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(url) = settings.notification_url.clone() else {
        tracing::warn!("no notification_url: emails stay in the outbox until one is configured");
        return Ok(());
    };
    let config = ClientConfig::new("notification", &url)
        .key(settings.notification_key.clone())
        .timeout(Duration::from_secs(
            settings.notification_timeout_seconds.max(1),
        ))
        .tls(ClientTls {
            ca_file: settings.notification_tls_ca_file.clone(),
            cert_file: settings.notification_tls_cert_file.clone(),
            key_file: settings.notification_tls_key_file.clone(),
            domain: settings.notification_tls_domain.clone(),
        });
    let client = Client::new(config)
        .map_err(|error| anyhow::anyhow!("notification_url {url:?}: {error}"))?;
    let relay = Relay {
        store,
        client: NotificationServiceClient::new(client),
        owner: format!("identity-{}", uuid::Uuid::new_v4()),
    };
    tokio::spawn(relay.run(shutdown));
    Ok(())
}

struct Relay {
    store: Store,
    client: NotificationServiceClient<Client>,
    owner: String,
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
                    tracing::warn!(%error, "outbox unreadable; retrying");
                    Vec::new()
                }
            };
            let idle = claimed.is_empty();
            for row in claimed {
                self.relay(row).await;
            }
            if idle {
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(POLL) => {}
                }
            } else if shutdown.is_triggered() {
                return;
            }
        }
    }

    async fn relay(&mut self, row: outbox::Model) {
        let email = serde_json::from_str::<OutboxEmail>(&row.payload);
        let span = tracing::info_span!("outbox relay", outbox_id = %row.id);
        if let Ok(email) = &email {
            email.trace_context.set_parent_of(&span);
        }
        self.relay_in(row, email).instrument(span).await;
    }

    async fn relay_in(
        &mut self,
        row: outbox::Model,
        email: Result<OutboxEmail, serde_json::Error>,
    ) {
        let result = match email {
            Ok(email) => self.send(row.id, email).await,
            Err(error) => Err(format!("unreadable outbox payload: {error}")),
        };
        let outcome = match result {
            Ok(()) => self.store.outbox_delivered(row.id).await,
            Err(error) => {
                let backoff = backoff(row.attempts);
                tracing::warn!(%error, attempts = row.attempts + 1, ?backoff, "email not handed over; will retry");
                let retry_at = now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                self.store.outbox_failed(row.id, &error, retry_at).await
            }
        };
        if let Err(error) = outcome {
            // The lease runs out and the row is tried again; the request id deduplicates.
            tracing::warn!(%error, "outbox row not updated");
        }
    }

    async fn send(&mut self, id: uuid::Uuid, email: OutboxEmail) -> Result<(), String> {
        let request = idempotent(tonic::Request::new(SendEmailRequest {
            request_id: id.to_string(),
            account_id: email.account_id.to_string(),
            recipient: email.recipient,
            template: email.template,
            locale: email.locale,
            variables: email.variables.into_iter().collect::<HashMap<_, _>>(),
            account_display_name: email.account_display_name,
        }));
        self.client
            .send_email(request)
            .await
            .map(|_| ())
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    }
}

/// Exponential backoff with jitter: about 2^attempts seconds, at most an hour.
fn backoff(attempts: i32) -> Duration {
    let base = 1u64 << attempts.clamp(0, 12);
    let seconds = base.min(MAX_BACKOFF_SECONDS);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    Duration::from_secs_f64(seconds as f64 * jitter)
}
