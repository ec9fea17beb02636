//! Notification: emails/s from `SendEmail` to a local SMTP sink, end to end (queued durably,
//! claimed, rendered, sent over the pooled lettre transport, recorded), next to a bare lettre
//! pooled client sending the same rendered email to the same sink.
//!
//! Both sides keep the same number of messages in flight over the same number of pooled
//! connections: Roster's delivery workers × batch size, and its SMTP pool size.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use roster_notification::delivery::transport::build_message;
use roster_notification::domain::templates::{RenderInput, RenderedEmail, Template, Templates};
use roster_proto::notification::v1::SendEmailRequest;
use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
use roster_runtime::Service;
use roster_tests::{ADMIN_KEY, TestServer, authed};

use crate::load::{self, Outcome, RoundRobin};
use crate::report::{Report, Row, Verdict, percent};
use crate::smtp_sink::{Acks, SmtpSink};
use crate::suite::{self, Options, observed};

const SCENARIO: &str = "Notification";
const RESET_URL: &str = "https://roster.example/reset#token=abcdefghijklmnopqrstuvwxyz0123456789";
/// SendEmail calls in flight while the queue is filled.
const ENQUEUE_CONCURRENCY: usize = 16;

/// Issue 20's targets: end to end ≥ 25 % of bare lettre against the sink that ACKs at once,
/// and against the sink that delays ACKs (Linux's default) ≥ 90 % of Roster's own figure
/// against the first — a mail server's delayed ACKs must not cap delivery.
pub async fn run(options: &Options, emails: u64, report: &mut Report) -> anyhow::Result<()> {
    let quick = compare(options, emails, Acks::Immediate, report).await?;
    let delayed = compare(options, emails, Acks::Delayed, report).await?;
    let ratio = quick.0 / quick.1;
    report.verdict(Verdict {
        what: "Notification end to end vs bare lettre (sink ACKs at once)".into(),
        measured: format!(
            "{} ({:.0} vs {:.0} emails/s)",
            percent(ratio),
            quick.0,
            quick.1
        ),
        target: "≥ 25 %".into(),
        met: Some(ratio >= 0.25),
    });
    let ratio = delayed.0 / quick.0;
    report.verdict(Verdict {
        what: "Notification end to end, sink delaying ACKs vs sink ACKing at once".into(),
        measured: format!(
            "{} ({:.0} vs {:.0} emails/s; bare lettre against the delaying sink: {:.0})",
            percent(ratio),
            delayed.0,
            quick.0,
            delayed.1
        ),
        target: "≥ 90 %".into(),
        met: Some(ratio >= 0.90),
    });
    Ok(())
}

/// Roster and bare lettre against one sink acknowledging as `acks` says: their emails/s.
async fn compare(
    options: &Options,
    emails: u64,
    acks: Acks,
    report: &mut Report,
) -> anyhow::Result<(f64, f64)> {
    let sink = SmtpSink::start(acks).await?;
    let sink_kind = match acks {
        Acks::Immediate => "sink ACKs at once",
        Acks::Delayed => "sink delays ACKs",
    };
    let settings =
        roster_tests::notification_settings(&format!("smtp://127.0.0.1:{}", sink.addr.port()));
    let in_flight = settings.workers * settings.batch_size as usize;
    let pool = settings.smtp_pool_size;
    // Whatever the load, a run ends: long enough for 20 emails/s.
    let deadline = Duration::from_secs((emails / 20).max(60));

    let database = suite::database().await?;
    let common = suite::settings(Service::Notification, &database.url, options);
    let server =
        TestServer::start_notification(common, settings.clone(), database, Vec::new()).await;
    let channels = suite::channels(server.addr, options.connections).await;
    let account = uuid::Uuid::new_v4().to_string();

    // Warm-up: the pool's connections, the database's caches.
    let warmup = emails.min(200);
    send_and_deliver(&channels, &sink, &account, "warmup", warmup, deadline).await?;

    let (result, usage, peak) = observed(
        None,
        send_and_deliver(&channels, &sink, &account, "run", emails, deadline),
    )
    .await;
    let (enqueue, delivered, elapsed) = result?;
    let roster_rate = delivered as f64 / elapsed.as_secs_f64();
    report.add(Row {
        usage: Some(usage),
        peak_rss_mib: peak,
        note: format!(
            "{delivered} of {emails} delivered in {:.1} s{}; workers {}, batch {}, SMTP pool {pool}",
            elapsed.as_secs_f64(),
            if delivered < emails { " (deadline hit)" } else { "" },
            settings.workers,
            settings.batch_size
        ),
        rate: roster_rate,
        p50_ms: None,
        p99_ms: None,
        ..Row::from_outcome(
            SCENARIO,
            &format!("Roster SendEmail → SMTP, end to end ({sink_kind})"),
            in_flight,
            "emails/s",
            &enqueue,
        )
    });
    report.add(Row::from_outcome(
        SCENARIO,
        &format!("Roster SendEmail calls, enqueue only ({sink_kind})"),
        ENQUEUE_CONCURRENCY,
        "calls/s",
        &enqueue,
    ));
    drop(server);

    let email = rendered()?;
    let before = sink.received();
    let (bare, usage, peak) =
        observed(None, bare_lettre(&sink, &email, in_flight, pool, emails)).await;
    let bare = bare?;
    let bare_delivered = sink.received() - before;
    report.add(Row {
        usage: Some(usage),
        peak_rss_mib: peak,
        note: format!("{bare_delivered} accepted by the sink; pool {pool}"),
        ..Row::from_outcome(
            SCENARIO,
            &format!("bare lettre pooled client → SMTP ({sink_kind})"),
            in_flight,
            "emails/s",
            &bare,
        )
    });
    Ok((roster_rate, bare.rate()))
}

/// Sends `count` emails through SendEmail and waits until the sink has them all (or the
/// deadline): the enqueue calls' outcome, the emails delivered, and the time from the first
/// call to the last delivery.
async fn send_and_deliver(
    channels: &[tonic::transport::Channel],
    sink: &SmtpSink,
    account: &str,
    tag: &str,
    count: u64,
    deadline: Duration,
) -> anyhow::Result<(Outcome, u64, Duration)> {
    let clients = RoundRobin::new(channels, NotificationServiceClient::new);
    let before = sink.received();
    let started = Instant::now();
    let account = account.to_owned();
    let tag = format!("{tag}-{}", uuid::Uuid::new_v4().simple());
    let enqueue = load::run_count(ENQUEUE_CONCURRENCY, count, move |n| {
        let mut client = clients.client(n);
        let request = SendEmailRequest {
            request_id: format!("{tag}-{n}"),
            account_id: account.clone(),
            recipient: format!("user-{n}@bench.example"),
            template: "password_reset".into(),
            locale: "en".into(),
            variables: HashMap::from([
                ("first_name".to_owned(), "Ada".to_owned()),
                ("reset_url".to_owned(), RESET_URL.to_owned()),
                ("expire_time".to_owned(), "2026-11-25T15:30:00Z".to_owned()),
            ]),
            account_display_name: "Bench Corp".into(),
        };
        async move { load::answered(client.send_email(authed(ADMIN_KEY, request)).await) }
    })
    .await;
    if enqueue.ok == 0 {
        anyhow::bail!(
            "SendEmail failed: {}",
            enqueue.first_error.unwrap_or_default()
        );
    }
    let wanted = before + enqueue.ok;
    while sink.received() < wanted && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((enqueue, sink.received() - before, started.elapsed()))
}

/// The password-reset email as Roster renders it, to send the very same bytes bare.
fn rendered() -> anyhow::Result<RenderedEmail> {
    let templates = Templates::load(None).context("built-in templates")?;
    let variables = BTreeMap::from([
        ("first_name".to_owned(), "Ada".to_owned()),
        ("reset_url".to_owned(), RESET_URL.to_owned()),
        ("expire_time".to_owned(), "2026-11-25T15:30:00Z".to_owned()),
    ]);
    templates
        .render(&RenderInput {
            template: Template::PasswordReset,
            locale: "en",
            account_display_name: "Bench Corp",
            recipient: "user@bench.example",
            variables: &variables,
        })
        .context("rendering the reset email")
}

/// A pooled lettre transport to the sink sending `count` messages, `in_flight` at a time.
async fn bare_lettre(
    sink: &SmtpSink,
    email: &RenderedEmail,
    in_flight: usize,
    pool: u32,
    count: u64,
) -> anyhow::Result<Outcome> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.addr.port())
        .pool_config(PoolConfig::new().max_size(pool))
        .build();
    let from: lettre::message::Mailbox = "Roster Bench <no-reply@bench.example>".parse()?;
    let shared = Arc::new((transport, from, email.clone()));
    Ok(load::run_count(in_flight, count, move |n| {
        let shared = shared.clone();
        async move {
            let (transport, from, email) = &*shared;
            let to = format!("user-{n}@bench.example")
                .parse()
                .map_err(|error| format!("{error}"))?;
            let message = build_message(from, to, &format!("<{n}@bench>"), email.clone())
                .map_err(|error| error.to_string())?;
            transport
                .send(message)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        }
    })
    .await)
}
