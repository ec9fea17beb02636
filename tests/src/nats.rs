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

/// A TCP proxy in front of the NATS server that can be taken down (every connection cut, the
/// port refusing) and brought back on the same port: NATS going away, as identity sees it.
pub struct Proxy {
    addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`), up.
    pub async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = tokio::sync::watch::channel(true);
        let states = up.subscribe();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut states = states;
            loop {
                let Some(open) = &listener else {
                    // The proxy dropped: the test is over.
                    if states.changed().await.is_err() {
                        return;
                    }
                    if *states.borrow() {
                        listener = Some(tokio::net::TcpListener::bind(addr).await.unwrap());
                    }
                    continue;
                };
                tokio::select! {
                    accepted = open.accept() => {
                        let (mut inbound, _) = accepted.unwrap();
                        let upstream = upstream.clone();
                        let mut down = states.clone();
                        tokio::spawn(async move {
                            let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = down.wait_for(|up| !*up) => {}
                            }
                        });
                    }
                    changed = states.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !*states.borrow() {
                            listener = None;
                        }
                    }
                }
            }
        });
        Proxy { addr, up }
    }

    /// The proxy's URL, to give identity instead of the server's.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Takes the proxy down (every connection cut, the port refusing) or brings it back.
    pub fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}
