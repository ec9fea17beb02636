//! Publication of the audit log to NATS JetStream (`events_nats_url`).
//!
//! One replica publishes at a time, under a lease in the database (`event_relay`), reading
//! the log in sequence order from the number stored there, and stores its progress after
//! JetStream acknowledged each batch: a restart, or another replica taking the lease over,
//! goes on from there. An event sent twice (a crash between the acknowledgement and the
//! stored progress) carries the same `Nats-Msg-Id`, its event id, and JetStream's duplicate
//! window drops it. Since every publisher sends in sequence order, each account's events land
//! on the stream in order.
//!
//! Each event is one message on `roster.events.<account id>.<event type>`: the payload is the
//! protobuf `roster.identity.v1.Event`, and the header `Roster-Event-Json` holds its JSON form;
//! `Roster-Event-Sequence` and `Roster-Event-Type` let a consumer route without decoding.
//!
//! At start the relay creates the stream (`events_stream`, capturing `roster.events.>`) or
//! checks that the existing one captures those subjects. While NATS is down the events wait in
//! the database (the purge keeps them), identity keeps serving, and
//! `roster_identity_events_unpublished` shows the lag.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use prost::Message as _;
use roster_runtime::Shutdown;
use tokio::sync::watch;

use crate::api::events::wire;
use crate::domain::event::Event;
use crate::store::{EventFilter, Store, now};

/// How long the relay's lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(15);
/// Events published per batch.
const BATCH: u64 = 500;
/// How long a round waits, once events are numbered, for more to go with them.
const GATHER: Duration = Duration::from_millis(100);
/// Longest wait between two tries to reach NATS.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The subjects every event is published under.
pub const SUBJECTS: &str = "roster.events.>";

/// Where and how events are published.
#[derive(Clone, Debug)]
pub struct NatsSettings {
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// `limits`, `interest` or `workqueue`.
    pub retention: stream::RetentionPolicy,
    /// How long the stream keeps a message (0: forever).
    pub max_age: Duration,
    /// JetStream's duplicate window: a re-sent event within it is dropped.
    pub duplicate_window: Duration,
}

/// The subject of `event`.
pub fn subject(event: &Event) -> String {
    format!("roster.events.{}.{}", event.account_id, event.event_type)
}

/// Starts the relay in the background.
pub fn spawn(
    store: Store,
    settings: NatsSettings,
    numbered: watch::Receiver<i64>,
    shutdown: Shutdown,
) {
    tokio::spawn(async move {
        let owner = format!("relay-{}", uuid::Uuid::new_v4());
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut connected = false;
            let outcome = run(
                &store,
                &settings,
                &owner,
                numbered.clone(),
                &shutdown,
                &mut connected,
            )
            .await;
            if let Err(error) = store.release_relay(&owner).await {
                tracing::warn!(%error, "the events relay's lease not released; it runs out");
            }
            if connected {
                backoff = Duration::from_secs(1);
            }
            match outcome {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        retry_in_seconds = backoff.as_secs(),
                        "events not published to NATS; they wait in the database"
                    );
                }
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// Connects, makes sure of the stream, then publishes until shutdown (`Ok`) or a failure.
async fn run(
    store: &Store,
    settings: &NatsSettings,
    owner: &str,
    mut numbered: watch::Receiver<i64>,
    shutdown: &Shutdown,
    connected: &mut bool,
) -> anyhow::Result<()> {
    let client = async_nats::ConnectOptions::new()
        .name("roster-identity")
        .connection_timeout(Duration::from_secs(5))
        .connect(settings.url.as_str())
        .await?;
    let context = jetstream::new(client);
    ensure_stream(&context, settings).await?;
    *connected = true;
    tracing::info!(stream = %settings.stream, "publishing events to NATS JetStream");
    let everything = EventFilter::default();
    // The lease this replica holds: the number NATS has everything up to, and when to renew
    // it (a third of the way through, so a round never runs past it).
    let mut held: Option<(i64, Instant)> = None;
    loop {
        let published = match held {
            Some((published, renew_at)) if Instant::now() < renew_at => published,
            _ => match store.claim_relay(owner, now() + LEASE).await? {
                Some(published) => {
                    held = Some((published, Instant::now() + LEASE / 3));
                    published
                }
                None => {
                    held = None;
                    // Another replica publishes; be ready to take over when its lease ends.
                    tokio::select! {
                        () = shutdown.wait() => return Ok(()),
                        () = tokio::time::sleep(LEASE / 3) => continue,
                    }
                }
            },
        };
        // Numbered events are always a prefix of the log (the sequencer numbers them in one
        // transaction at a time), so everything after `published` may go.
        let events = store
            .events_after(&everything, published, i64::MAX, BATCH)
            .await?;
        if let Some(newest) = events.last().map(|event| event.sequence) {
            publish(&context, &events).await?;
            if store.mark_published(owner, newest).await? {
                held = held.map(|(_, renew_at)| (newest, renew_at));
            } else {
                held = None;
                tracing::info!("the events relay's lease moved to another replica");
            }
            if events.len() as u64 == BATCH {
                continue;
            }
        }
        tokio::select! {
            () = shutdown.wait() => return Ok(()),
            _ = numbered.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        // What the next moments number goes out in the same round: fewer, larger rounds cost
        // the database and the process less per event.
        tokio::select! {
            () = shutdown.wait() => return Ok(()),
            () = tokio::time::sleep(GATHER) => {}
        }
    }
}

/// Creates the stream, or checks that the one there captures the events' subjects.
async fn ensure_stream(
    context: &jetstream::Context,
    settings: &NatsSettings,
) -> anyhow::Result<()> {
    let mut stream = context
        .get_or_create_stream(stream::Config {
            name: settings.stream.clone(),
            subjects: vec![SUBJECTS.to_owned()],
            retention: settings.retention,
            max_age: settings.max_age,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        })
        .await?;
    let info = stream.info().await?;
    let captures = info
        .config
        .subjects
        .iter()
        .any(|subject| subject == SUBJECTS || subject == "roster.>" || subject == ">");
    anyhow::ensure!(
        captures,
        "the NATS stream {:?} exists but does not capture {SUBJECTS} (its subjects: {:?}); \
         add the subject or name another stream in events_stream",
        settings.stream,
        info.config.subjects
    );
    Ok(())
}

/// The headers every event carries (names parsed once, not per message).
const MESSAGE_ID: HeaderName = HeaderName::from_static("Nats-Msg-Id");
const SEQUENCE: HeaderName = HeaderName::from_static("Roster-Event-Sequence");
const TYPE: HeaderName = HeaderName::from_static("Roster-Event-Type");
const CONTENT_TYPE: HeaderName = HeaderName::from_static("Content-Type");
const JSON: HeaderName = HeaderName::from_static("Roster-Event-Json");

/// Publishes `events` in order and waits for JetStream to acknowledge every one.
async fn publish(context: &jetstream::Context, events: &[Event]) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(events.len());
    for event in events {
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID, event.id.to_string());
        headers.insert(SEQUENCE, HeaderValue::from(event.sequence));
        headers.insert(TYPE, event.event_type.as_str());
        headers.insert(CONTENT_TYPE, "application/protobuf");
        headers.insert(JSON, wire::json_header(event));
        let payload = wire::event(event).encode_to_vec();
        acks.push(
            context
                .publish_with_headers(subject(event), headers, payload.into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
