//! EventService: decode, call the audit log's use cases of [`crate::app`], encode. WatchEvents
//! runs one task per watcher: it sends what the log holds after the cursor, then waits for the
//! log to grow (this replica's sequencer, or a look at the database for other replicas'),
//! sending a heartbeat with its cursor while nothing matches. A key may hold
//! `events_watches_per_key` watches at once on a replica; more are refused.

pub mod wire;

use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::event_service_server::EventService;
use roster_runtime::auth::caller;
use roster_runtime::request::{number_token, page_size, parse_id, parse_number_token};
use roster_runtime::streams::{OpenStreams, StreamPlace};
use roster_runtime::{ApiError, Shutdown};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{api_error, timestamp};
use crate::app::Identity;
use crate::domain::event::EventType;
use crate::domain::ids::AccountId;
use crate::events::EventFeed;
use crate::store::EventFilter;

/// A server stream as the generated EventService trait takes it.
type BoxStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Events read per query while a watcher catches up.
const WATCH_BATCH: u64 = 256;

/// EventService over identity's use cases.
pub struct EventApi {
    app: Identity,
    feed: EventFeed,
    watches: OpenStreams,
    shutdown: Shutdown,
}

impl EventApi {
    /// `watches_per_key`: the WatchEvents streams one key may have open at once.
    pub fn new(app: Identity, feed: EventFeed, watches_per_key: usize, shutdown: Shutdown) -> Self {
        Self {
            app,
            feed,
            watches: OpenStreams::new(watches_per_key, "WatchEvents streams"),
            shutdown,
        }
    }
}

/// An optional UUID field: empty is unset.
fn optional_id(field: &str, value: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    (!value.is_empty())
        .then(|| parse_id(field, value))
        .transpose()
}

/// An optional event type: empty is unset; anything else must be one of the closed list.
fn optional_type(field: &str, value: &str) -> Result<Option<EventType>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    EventType::from_name(value).map(Some).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
        ApiError::invalid(
            field,
            format!("is not an event type; one of: {}", known.join(", ")),
        )
    })
}

fn time(
    field: &str,
    value: Option<prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    value
        .map(|value| {
            u32::try_from(value.nanos)
                .ok()
                .and_then(|nanos| chrono::DateTime::from_timestamp(value.seconds, nanos))
                .ok_or_else(|| ApiError::invalid(field, "is not a valid time"))
        })
        .transpose()
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let before = match parse_number_token('e', &request.page_token)? {
            0 => None,
            last => Some(last),
        };
        let filter = EventFilter {
            account: optional_id("account_id", &request.account_id)?.map(AccountId),
            subject: optional_id("subject_id", &request.subject_id)?,
            actor: (!request.actor.is_empty()).then_some(request.actor),
            event_type: optional_type("type", &request.r#type)?,
            since: time("start_time", request.start_time)?,
            until: time("end_time", request.end_time)?,
            accounts: None,
        };
        let found = self
            .app
            .list_events(&caller, filter, before, limit + 1)
            .await
            .map_err(api_error)?;
        let more = found.len() as u64 > limit;
        let page = &found[..found.len().min(limit as usize)];
        Ok(Response::new(pb::ListEventsResponse {
            events: page.iter().map(wire::event).collect(),
            next_page_token: match page.last() {
                Some(last) if more => number_token('e', last.sequence),
                _ => String::new(),
            },
        }))
    }

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<BoxStream<pb::WatchEventsResponse>>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let filter = EventFilter {
            account: optional_id("account_id", &request.account_id)?.map(AccountId),
            subject: optional_id("subject_id", &request.subject_id)?,
            event_type: optional_type("type", &request.r#type)?,
            ..EventFilter::default()
        };
        let filter = self.app.scoped_filter(&caller, filter).map_err(api_error)?;
        let last = self.app.last_event().await.map_err(api_error)?;
        let cursor = match request.cursor.as_str() {
            "" | "now" => last,
            given => given
                .parse::<i64>()
                .ok()
                .filter(|cursor| *cursor >= 0)
                .ok_or_else(|| {
                    ApiError::invalid("cursor", "must be `now` or a sequence number (0 or more)")
                })?,
        };
        if cursor > last {
            return Err(ApiError::invalid(
                "cursor",
                format!("is ahead of the log, whose last sequence is {last}"),
            )
            .into());
        }
        let place = self.watches.take(&caller.name)?;
        Ok(Response::new(Box::pin(watch(
            place,
            self.app.clone(),
            filter,
            cursor,
            self.feed.clone(),
            self.shutdown.clone(),
        ))))
    }
}

/// Streams the events `filter` selects after `cursor`, then follows the log.
fn watch(
    place: StreamPlace,
    app: Identity,
    filter: EventFilter,
    mut cursor: i64,
    feed: EventFeed,
    shutdown: Shutdown,
) -> ReceiverStream<Result<pb::WatchEventsResponse, Status>> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        // The key's place is given back when the watch ends, however it ends.
        let _place = place;
        let mut numbered = feed.subscribe();
        // Due at once: when nothing is there to send, the first heartbeat tells a client
        // starting from `now` which cursor that is.
        let mut quiet_since = Instant::now()
            .checked_sub(feed.heartbeat)
            .unwrap_or_else(Instant::now);
        loop {
            let caught_up = async {
                let upto = app.last_event().await?;
                while cursor < upto {
                    let batch = app.events_after(&filter, cursor, upto, WATCH_BATCH).await?;
                    let complete = (batch.len() as u64) < WATCH_BATCH;
                    for event in batch {
                        cursor = event.sequence;
                        let message = pb::WatchEventsResponse {
                            kind: Some(pb::watch_events_response::Kind::Event(wire::event(&event))),
                        };
                        if sender.send(Ok(message)).await.is_err() {
                            return Ok(false);
                        }
                        quiet_since = Instant::now();
                    }
                    if complete {
                        cursor = upto;
                    }
                }
                Ok::<_, crate::domain::error::IdentityError>(true)
            };
            match caught_up.await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    let _ = sender.send(Err(Status::from(api_error(error)))).await;
                    return;
                }
            }
            let heartbeat_at = quiet_since + feed.heartbeat;
            tokio::select! {
                () = shutdown.wait() => {
                    let _ = sender
                        .send(Err(ApiError::Unavailable {
                            message: format!(
                                "the server is shutting down; watch again from cursor {cursor}"
                            ),
                        }
                        .into()))
                        .await;
                    return;
                }
                () = sender.closed() => return,
                changed = numbered.changed() => {
                    if changed.is_err() {
                        // The sequencer stopped (the server is stopping): poll instead.
                        tokio::time::sleep(feed.poll).await;
                    }
                }
                () = tokio::time::sleep(feed.poll) => {}
                () = tokio::time::sleep_until(heartbeat_at) => {
                    let heartbeat = pb::WatchEventsResponse {
                        kind: Some(pb::watch_events_response::Kind::Heartbeat(pb::Heartbeat {
                            cursor: cursor.to_string(),
                            time: Some(timestamp(crate::store::now())),
                        })),
                    };
                    if sender.send(Ok(heartbeat)).await.is_err() {
                        return;
                    }
                    quiet_since = Instant::now();
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// How long a quiet watch waits before a heartbeat unless configured.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
