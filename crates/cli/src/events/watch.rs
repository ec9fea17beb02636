//! `roster events watch`: follows WatchEvents until interrupted. Each event is printed, then
//! its sequence saved as the position (heartbeats move the position too); a stream that ends as
//! UNAVAILABLE (the server shutting down, or not back yet) or breaks in the connection is
//! watched again from the position after a short pause, growing while it keeps failing. Any
//! other failure ends the command as every command's does.
//!
//! The position goes to the `--cursor-file` after the event is on stdout: a watch killed
//! between the two prints that one event again when started again, and never misses one. Until
//! the first event or heartbeat (15 s on a quiet log) a watch started `--from now` knows no
//! position to save or to watch again from.

use std::path::Path;
use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::event_service_client::EventServiceClient;
use roster_proto::identity::v1::watch_events_response::Kind;
use tonic::Code;
use tonic::transport::Channel;

use super::args::{Cursor, parse_sequence};
use super::{Filters, cursor_file, show};
use crate::client::{Client, RpcFailure};
use crate::output;

/// The pause before the first attempt to watch again; it doubles with each failed attempt, up
/// to [`MAX_PAUSE`], and starts over once messages flow again.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub async fn run(
    client: &Client,
    events: EventServiceClient<Channel>,
    filters: Filters,
    from: Cursor,
    cursor_file: Option<&Path>,
) -> anyhow::Result<()> {
    let saved = match cursor_file {
        Some(path) => cursor_file::load(path).await?,
        None => None,
    };
    let mut watch = Watch {
        client,
        events,
        filters,
        cursor: saved.map_or(from, Cursor::After),
        cursor_file,
        saved,
        pause: FIRST_PAUSE,
    };
    if !client.json() {
        if let (Some(sequence), Some(path)) = (saved, cursor_file) {
            eprintln!(
                "watching after sequence {sequence}, as saved in {}",
                path.display()
            );
        }
        output::outln!("{}", show::watch_header())?;
    }
    loop {
        let ended = watch.follow().await?;
        if !client.json() {
            eprintln!(
                "roster: {ended}; watching again from cursor {} in {:.2}s",
                watch.cursor,
                watch.pause.as_secs_f64()
            );
        }
        tokio::time::sleep(watch.pause).await;
        watch.pause = (watch.pause * 2).min(MAX_PAUSE);
    }
}

/// The call's failure, when `error` is one.
fn rpc_failure(error: &anyhow::Error) -> Option<&RpcFailure> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<RpcFailure>())
}

/// A failure after which watching again can succeed: the server is stopping or away.
fn is_unavailable(error: &anyhow::Error) -> bool {
    rpc_failure(error).is_some_and(|failure| failure.status.code() == Code::Unavailable)
}

/// A stream that broke in the connection rather than being ended by the server (tonic says
/// UNKNOWN or INTERNAL for a connection that closes under a stream).
fn broke_in_connection(error: &anyhow::Error) -> bool {
    rpc_failure(error).is_some_and(|failure| failure.connection_hint.is_some())
}

/// One watch: where it stands, and where it keeps that.
struct Watch<'a> {
    client: &'a Client,
    events: EventServiceClient<Channel>,
    filters: Filters,
    cursor: Cursor,
    cursor_file: Option<&'a Path>,
    /// What the cursor file holds.
    saved: Option<i64>,
    /// The pause before watching again.
    pause: Duration,
}

impl Watch<'_> {
    /// Watches from the cursor until the stream ends. Returns why, when watching again may
    /// succeed: the server closed the stream, answered UNAVAILABLE, or the connection broke
    /// under an open stream (when opening, that is a setting to fix, not a pause to wait).
    async fn follow(&mut self) -> anyhow::Result<String> {
        let request = pb::WatchEventsRequest {
            account_id: self.filters.account.clone(),
            subject_id: self.filters.profile.clone(),
            r#type: self.filters.event_type.clone().unwrap_or_default(),
            cursor: self.cursor.to_string(),
        };
        let mut events = self.events.clone();
        let opened = self
            .client
            .stream(
                "roster.identity.v1.EventService/WatchEvents",
                request,
                async |request| events.watch_events(request).await,
            )
            .await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(error) if is_unavailable(&error) => return Ok(format!("{error:#}")),
            Err(error) => return Err(error),
        };
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return Ok("the server ended the stream".to_owned()),
                Err(error) if is_unavailable(&error) || broke_in_connection(&error) => {
                    return Ok(format!("{error:#}"));
                }
                Err(error) => return Err(error),
            };
            self.pause = FIRST_PAUSE;
            match message.kind {
                Some(Kind::Event(event)) => {
                    self.print(&event)?;
                    self.advance(event.sequence).await?;
                }
                Some(Kind::Heartbeat(heartbeat)) => {
                    let sequence = parse_sequence(&heartbeat.cursor).map_err(|error| {
                        anyhow::anyhow!("the server sent a heartbeat whose cursor is {error}")
                    })?;
                    self.advance(sequence).await?;
                }
                None => {}
            }
        }
    }

    /// Prints one event: a line under the header, or under `--json` one `Event` per line.
    fn print(&self, event: &pb::Event) -> anyhow::Result<()> {
        if self.client.json() {
            output::outln!("{}", output::message_json(event)?)
        } else {
            output::outln!("{}", show::watch_line(&show::row(event)))
        }
    }

    /// Moves the position to `sequence` (never back) and saves it in the cursor file.
    async fn advance(&mut self, sequence: i64) -> anyhow::Result<()> {
        let sequence = match self.cursor {
            Cursor::After(current) => current.max(sequence),
            Cursor::Now => sequence,
        };
        self.cursor = Cursor::After(sequence);
        if let Some(path) = self.cursor_file
            && self.saved != Some(sequence)
        {
            cursor_file::save(path, sequence).await?;
            self.saved = Some(sequence);
        }
        Ok(())
    }
}
