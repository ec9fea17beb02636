//! The notification service: email that is never lost. `SendEmail` writes the message to a
//! durable queue and returns; delivery workers claim due messages under a lease, render them
//! (HTML and plain text, per locale) and send them over SMTP or into a mail directory, retrying
//! temporary failures with backoff. Any number of replicas may share one database.
//!
//! `api` decodes gRPC requests and encodes results; `app` holds the use cases (one function per
//! operation, owning its transaction and idempotency); `domain` holds the pure rules (request
//! checks, delivery states, retry policy, templates); `store` is the only place that knows SQL;
//! `delivery` runs the workers and the mail transports; `retention` deletes finished
//! notifications once they are old.

pub mod api;
pub mod app;
pub mod delivery;
pub mod domain;
pub mod retention;
pub mod settings;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use roster_proto::notification::v1::notification_service_server::NotificationServiceServer;
use roster_runtime::server::{RunningServer, ServerConfig, ServiceSet, open_database, serve};
use roster_runtime::{CommonSettings, SharedKeyRing, Shutdown};
use tokio::sync::Notify;

pub use settings::{MailUrl, Settings};

use delivery::Delivery;
use delivery::transport::Mailer;
use domain::retry::RetryPolicy;
use domain::templates::Templates;

/// Opens the database, starts the delivery workers and serves NotificationService until
/// `shutdown` fires; the workers stop on the same signal.
pub async fn start(
    common: &CommonSettings,
    settings: Settings,
    keys: SharedKeyRing,
    shutdown: Shutdown,
) -> anyhow::Result<RunningServer> {
    settings.validate()?;
    let templates = Arc::new(
        Templates::load(settings.template_dir.as_deref()).context("loading email templates")?,
    );
    let mailer = Mailer::from_settings(&settings)?;
    let from = settings
        .from_address
        .parse()
        .context("from_address is not a mailbox")?;
    let deleted = match settings.identity_client()? {
        Some(identity) => Some(
            roster_runtime::auth::deleted::watch(
                identity,
                keys.clone(),
                common
                    .keys_reload_interval()
                    .unwrap_or(std::time::Duration::from_secs(1)),
                shutdown.clone(),
            )
            .map_err(|error| anyhow::anyhow!("identity.url: {error}"))?,
        ),
        None => {
            tracing::warn!(
                "no identity.url: keys limited to a deleted account are not refused here, and its \
                 queued emails are sent"
            );
            None
        }
    };
    let database = open_database::<store::Migrator>(common).await?;
    let store = store::Store::new(database.connection().clone());
    let wake = Arc::new(Notify::new());
    let mut services = ServiceSet::new();

    let delivery = Arc::new(Delivery {
        store: store.clone(),
        templates: templates.clone(),
        mailer,
        from,
        retry: RetryPolicy {
            base: std::time::Duration::from_millis(settings.retry_base_millis),
            max: std::time::Duration::from_millis(settings.retry_max_millis),
            max_attempts: settings.max_attempts,
        },
        lease: settings.lease(),
        batch_size: u64::from(settings.batch_size),
        poll_interval: settings.poll_interval(),
        wake: wake.clone(),
        counters: delivery::DeliveryCounters::register(services.metrics()),
        deleted: deleted.is_some().then(|| keys.clone()),
    });
    tracing::info!(
        mail_url = %settings.mail_url.redacted(),
        workers = settings.workers,
        locales = ?templates.locales(),
        "notification delivery configured"
    );

    watch_queue(services.metrics(), store.clone());
    retention::start(
        store.clone(),
        retention::RetentionSettings {
            interval: std::time::Duration::from_secs(settings.retention_interval_seconds),
            kept: std::time::Duration::from_secs(
                settings
                    .notification_retention_days
                    .saturating_mul(24 * 3600),
            ),
        },
        services.metrics(),
        shutdown.clone(),
    );
    let mut notifications = app::Notifications::new(
        store,
        templates,
        wake,
        settings.message_id_domain.clone(),
        app::ActionCounters::register(services.metrics()),
    );
    if let Some(deleted) = deleted {
        notifications = notifications.with_deleted_accounts(keys.clone());
        app::offboarding::spawn(notifications.clone(), deleted, shutdown.clone());
    }
    services.add(roster_runtime::grpc_service!(
        NotificationServiceServer<api::NotificationApi>,
        api::NotificationApi::new(notifications),
        common
    ));
    let mut server = serve(
        ServerConfig::from(common),
        services,
        keys,
        Some(database),
        shutdown.clone(),
    )
    .await?;
    // A worker stopping mid-batch would leave attempts the mail server may have taken
    // unrecorded, to be made again when their lease ends: the process waits for them.
    server.finish_on_stop(delivery.spawn_workers(settings.workers, &shutdown));
    Ok(server)
}

/// The queue's depth and the age of its oldest undelivered message, read when Prometheus
/// scrapes: a growing age means the mail server refuses or the workers are stuck.
fn watch_queue(metrics: &roster_runtime::metrics::Metrics, store: store::Store) {
    let depth = metrics.gauge(
        "roster_notification_queue_depth",
        "Emails not delivered yet: queued, being sent or waiting for a retry",
    );
    let age = metrics.gauge_f64(
        "roster_notification_queue_oldest_age_seconds",
        "Age of the oldest email not delivered yet (0 when none waits)",
    );
    metrics.on_scrape(move || {
        let (store, depth, age) = (store.clone(), depth.clone(), age.clone());
        async move {
            match store.queue_stats().await {
                Ok((count, oldest)) => {
                    depth.set(i64::try_from(count).unwrap_or(i64::MAX));
                    let waited = oldest.map_or(0.0, |oldest| {
                        (store::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
                    });
                    age.set(waited);
                }
                Err(error) => tracing::warn!(%error, "queue metrics not read"),
            }
        }
    });
}
