//! `roster events`: identity's audit log (EventService), read as an operator reads it.
//!
//! - `roster events list [--account ID] [filters] [--limit N]` prints the newest events first,
//!   paging through ListEvents until `--limit` events or the log's end; under `--json` one
//!   `ListEventsResponse` holding them all.
//! - `roster events watch [--account ID] [filters] [--from now|SEQ] [--cursor-file PATH]` follows
//!   WatchEvents: every event as a line as it commits (under `--json` one `Event` per line), the
//!   position kept in the cursor file so that a restarted watch goes on where the last one
//!   stopped, and a stream the server ends as UNAVAILABLE (a shutdown, a dropped connection)
//!   watched again from that position.
//!
//! An empty `--account` means every account the caller key may read, as the RPCs take it.
//!
//! - [`args`]: the values the flags take (times, cursors, event types), each refused naming its
//!   flag.
//! - [`show`]: how an event reads in a table and on a watch line.
//! - [`list`], [`watch`]: the two commands; [`cursor_file`]: the watch's saved position.

mod args;
mod cursor_file;
mod list;
mod show;
mod watch;

use clap::Subcommand;
use prost_types::Timestamp;
use roster_proto::identity::v1::event_service_client::EventServiceClient;
use roster_runtime::Service;

use crate::client::Client;
use args::{Cursor, parse_event_type, parse_time};

/// The filters both commands take.
#[derive(clap::Args, Debug)]
pub struct Filters {
    /// Only this account's events; default: every account the caller key may read.
    #[arg(long, default_value = "", hide_default_value = true)]
    account: String,
    /// Only events about this profile (or account), by id.
    #[arg(long, default_value = "", hide_default_value = true, value_name = "ID")]
    profile: String,
    /// Only events of this type, e.g. roster.profile.deleted.
    #[arg(long = "type", value_parser = parse_event_type, value_name = "EVENT_TYPE")]
    event_type: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the audit log's events, newest first.
    List {
        #[command(flatten)]
        filters: Filters,
        /// Only events of this actor: a key's name, `import <id>`, `profile <id>`, `scim` or
        /// `system`.
        #[arg(long, default_value = "", hide_default_value = true)]
        actor: String,
        /// Only events at or after this time: an age (30m, 24h, 7d) or an RFC 3339 time.
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        since: Option<Timestamp>,
        /// Only events before this time: an age (30m, 24h, 7d) or an RFC 3339 time.
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        until: Option<Timestamp>,
        /// At most this many events, fetched in pages of up to 1000.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Continue an earlier listing from its next page token.
        #[arg(
            long,
            default_value = "",
            hide_default_value = true,
            value_name = "TOKEN"
        )]
        page_token: String,
    },
    /// Follow the audit log: each event as it commits, oldest first, until interrupted.
    Watch {
        #[command(flatten)]
        filters: Filters,
        /// Where to start without a saved position: `now`, or a sequence number to print every
        /// event after it (0: the whole log as far as retention kept it).
        #[arg(long, default_value = "now", value_parser = Cursor::parse, value_name = "now|SEQUENCE")]
        from: Cursor,
        /// Keep the position here: read at start when the file exists (it wins over --from),
        /// replaced after every event and heartbeat, so that a watch started again with the
        /// same file prints every later event once.
        #[arg(long, value_name = "PATH")]
        cursor_file: Option<std::path::PathBuf>,
    },
}

pub async fn run(command: Command, client: &Client) -> anyhow::Result<()> {
    let events = EventServiceClient::new(client.channel(Service::Identity).await?);
    match command {
        Command::List {
            filters,
            actor,
            since,
            until,
            limit,
            page_token,
        } => {
            let request = list::request(filters, actor, since, until);
            list::run(client, events, request, limit, page_token).await
        }
        Command::Watch {
            filters,
            from,
            cursor_file,
        } => watch::run(client, events, filters, from, cursor_file.as_deref()).await,
    }
}
