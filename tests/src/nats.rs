//! The real NATS server with JetStream, for the audit log's publication tests: where it is
//! (`ROSTER_TEST_NATS_URL`, default `nats://127.0.0.1:4222`), and a reader of what identity
//! published for one account.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use prost::Message as _;
use roster_proto::identity::v1 as pb;

/// The stream identity publishes to in tests (its default name).
pub const STREAM: &str = "ROSTER_EVENTS";

/// The NATS server's URL.
pub fn url() -> String {
    std::env::var("ROSTER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A client of the NATS server, or `None` (the test then returns; under CI=true it fails) when
/// none answers.
pub async fn connect() -> Option<async_nats::Client> {
    let url = url();
    match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url.as_str())
        .await
    {
        Ok(client) => Some(client),
        Err(error) => {
            crate::not_run(&format!(
                "no NATS server at {url} ({error}); start `nats-server -js` or set \
                 ROSTER_TEST_NATS_URL"
            ));
            None
        }
    }
}

/// One event as it arrived on the stream.
#[derive(Clone, Debug)]
pub struct Published {
    pub subject: String,
    /// The `Nats-Msg-Id` header.
    pub message_id: String,
    /// The payload, decoded.
    pub event: pb::Event,
    /// The `Roster-Event-Json` header, parsed.
    pub json: serde_json::Value,
    /// The stream's own sequence number of the message.
    pub stream_sequence: u64,
}

/// Every message the stream holds for `account`, in stream order, once there are `count` of
/// them (waiting up to `timeout`); fewer when the time runs out.
pub async fn published(
    client: &async_nats::Client,
    account: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Published> {
    let context = jetstream::new(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    // The stream exists once identity's relay made it.
    let stream = loop {
        match context.get_stream(STREAM).await {
            Ok(stream) => break stream,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no stream {STREAM}: {error}"),
        }
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("roster.events.{account}.>"),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("the consumer's messages");
    let mut published = Vec::new();
    while published.len() < count {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.next()).await else {
            break;
        };
        let message = message.expect("a message");
        let headers = message.headers.clone().expect("headers");
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("header {name}"))
                .as_str()
                .to_owned()
        };
        published.push(Published {
            subject: message.subject.to_string(),
            message_id: header("Nats-Msg-Id"),
            event: pb::Event::decode(message.payload.clone()).expect("a protobuf Event"),
            json: serde_json::from_str(&header("Roster-Event-Json")).expect("JSON"),
            stream_sequence: message
                .info()
                .expect("JetStream message info")
                .stream_sequence,
        });
    }
    published
}
