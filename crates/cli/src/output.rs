//! How operator commands meet the terminal: aligned tables for people, one JSON document for
//! scripts, progress on stderr (only when stderr is a terminal) while long listings page through,
//! and secrets read from stdin or a prompt that does not echo, never from the command line.
//!
//! JSON is the gRPC response message, generated from the contract's descriptors (prost-reflect),
//! never written by hand, so every field of the response is there, in the form
//! `grpcurl -keep-proto-names -emit-defaults` prints: the `.proto` field names, every field
//! without presence even when it holds its default (`0`, `""`, `false`, `[]`, the enum's
//! `…_UNSPECIFIED`), enums by their full names (`PROFILE_STATUS_ACTIVE`), timestamps in RFC 3339.
//! Message fields that are unset (a profile's `delete_time` before deletion) are left out. Unlike
//! grpcurl, 64-bit integers are JSON numbers, not strings: they are counts far below 2^53, and
//! `jq '.import.error_count > 0'` should work (the proto3 JSON mapping reads both forms). What a
//! command prints parses back into its response message.
//!
//! Everything for stdout goes through [`outln!`] (or [`stdout_error`]): when the reader of a
//! pipe has gone (`roster accounts list | head -1`), the command stops quietly with the exit
//! code of a process killed by SIGPIPE, as other command-line tools do, instead of panicking.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use prost_types::Timestamp;
use serde_json::Value;

/// Writes a line on stdout: `outln!("…", args)?` where `println!` would panic on a closed pipe.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// The exit code of a command whose stdout was closed under it: 128 + SIGPIPE, what a shell
/// reports for a process the signal killed.
pub const CLOSED_STDOUT_EXIT_CODE: u8 = 141;

/// Stdout was closed while the command wrote to it: nobody reads any more, so nothing is said.
#[derive(Debug)]
pub struct ClosedStdout;

impl fmt::Display for ClosedStdout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for ClosedStdout {}

/// Writes `text` and a line break on stdout, at once (not held in a buffer to fail later).
pub fn write_line(text: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// An error writing to stdout: [`ClosedStdout`] when the pipe's reader has gone.
pub fn stdout_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(ClosedStdout)
    } else {
        anyhow::Error::new(error).context("cannot write to stdout")
    }
}

/// Prints a JSON document on stdout.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)
}

/// How a message becomes JSON (see the module's documentation).
const JSON_OPTIONS: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .skip_default_fields(false)
    .stringify_64_bit_integers(false);

/// The descriptors of every message the CLI prints: Roster's contract (with the well-known
/// types) and the `google.rpc` error details.
fn descriptors() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = DescriptorPool::decode(roster_proto::FILE_DESCRIPTOR_SET)
            .map_err(|error| error.to_string())?;
        pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .map_err(|error| error.to_string())?;
        Ok(pool)
    })
    .as_ref()
    .map_err(|error| anyhow::anyhow!("the built-in descriptors do not load: {error}"))
}

/// The message `bytes` encode, of the type named `full_name`, as JSON.
pub fn encoded_json(full_name: &str, bytes: &[u8]) -> anyhow::Result<Value> {
    let descriptor = descriptors()?
        .get_message_by_name(full_name)
        .with_context(|| format!("no descriptor for {full_name}"))?;
    let message = DynamicMessage::decode(descriptor, bytes)
        .with_context(|| format!("cannot decode {full_name}"))?;
    Ok(message.serialize_with_options(serde_json::value::Serializer, &JSON_OPTIONS)?)
}

/// `message` as JSON.
pub fn message_json<M: prost::Message + prost::Name>(message: &M) -> anyhow::Result<Value> {
    encoded_json(&M::full_name(), &message.encode_to_vec())
}

/// Prints `message` as one JSON document on stdout.
pub fn print_message<M: prost::Message + prost::Name>(message: &M) -> anyhow::Result<()> {
    print_json(&message_json(message)?)
}

/// Prints a response: under `--json` (`json`) the message as one JSON document, otherwise what
/// `text` prints for people.
pub fn show<M: prost::Message + prost::Name>(
    json: bool,
    response: &M,
    text: impl FnOnce(&M) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if json {
        print_message(response)
    } else {
        text(response)
    }
}

/// The resource a response must carry, refused as `the server returned no {what}` when it is
/// missing.
pub fn returned<T>(value: Option<T>, what: &str) -> anyhow::Result<T> {
    value.with_context(|| format!("the server returned no {what}"))
}

/// A table with a header row and no borders, like `kubectl get`.
pub fn table<R: IntoIterator<Item = String>>(
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(header.iter().map(|name| name.to_uppercase()))
        .add_rows(
            rows.into_iter()
                .map(|row| row.into_iter().collect::<Vec<_>>()),
        );
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

/// Prints a page of a listing for people: `rows` as a table under `header`, or `empty` when
/// there are none; then how to get the rest.
pub fn listing<R: IntoIterator<Item = String>>(
    empty: &str,
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
    next_page_token: &str,
) -> anyhow::Result<()> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        outln!("{empty}")?;
    } else {
        outln!("{}", table(header, rows))?;
    }
    more_hint(next_page_token);
    Ok(())
}

/// One resource as `field  value` lines.
pub fn details(rows: &[(&str, String)]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).add_rows(
        rows.iter()
            .map(|(field, value)| vec![format!("{field}:"), value.clone()]),
    );
    for column in table.column_iter_mut() {
        column.set_padding((0, 1));
    }
    table.trim_fmt()
}

fn datetime(timestamp: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).ok()?)
}

/// A timestamp for a table: RFC 3339 to the second, empty when unset.
pub fn time(timestamp: Option<&Timestamp>) -> String {
    timestamp
        .and_then(datetime)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// An enum value's full name (`PROFILE_STATUS_ACTIVE`), or its number when this build does not
/// know it.
pub fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> String {
    E::try_from(value)
        .map(|known| name(known).to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// An enum value for a table: its name without `prefix`, lower-cased (`active`).
pub fn short_enum<E: TryFrom<i32>>(
    value: i32,
    prefix: &str,
    name: impl Fn(E) -> &'static str,
) -> String {
    let full = enum_name(value, name);
    full.strip_prefix(prefix)
        .map(str::to_lowercase)
        .unwrap_or(full)
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// A spinner with a message on stderr, drawn only when stderr is a terminal.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Reads a secret such as a password or a key (`what` names it): from a prompt without echo
/// when stdin is a terminal, otherwise the first line of stdin, line break dropped.
pub fn read_secret(what: &str) -> anyhow::Result<String> {
    let secret = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{what}: "))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line
    };
    let secret = secret.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        anyhow::bail!("no {what} given: pipe it on stdin or type it at the prompt");
    }
    Ok(secret)
}

/// Paging flags of every list command.
#[derive(clap::Args, Clone, Debug)]
pub struct Paging {
    /// Fetch every page, not only the first (progress on stderr when it is a terminal).
    #[arg(long)]
    pub all: bool,
    /// Items per call, 1 to 1000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub page_size: i32,
    /// Continue an earlier listing from its next page token.
    #[arg(
        long,
        default_value = "",
        hide_default_value = true,
        value_name = "TOKEN"
    )]
    pub page_token: String,
}

/// Fetches the first page, or every page under `--all`, counting on a spinner. `fetch` takes a
/// page token and returns the page's items and the next token. Returns the items and the token
/// of the page after them (empty when there is none).
pub async fn pages<T>(
    paging: &Paging,
    noun: &str,
    mut fetch: impl AsyncFnMut(String) -> anyhow::Result<(Vec<T>, String)>,
) -> anyhow::Result<(Vec<T>, String)> {
    let mut calls = 0;
    let next_size = |_fetched: usize| {
        calls += 1;
        (calls == 1 || paging.all).then_some(paging.page_size)
    };
    page_through(
        noun,
        paging.all,
        paging.page_token.clone(),
        next_size,
        async |token, _size| fetch(token).await,
    )
    .await
}

/// Fetches pages from `token` on while `next_size`, given how many items came so far, names
/// the size of the next page, and the pages go on; counts on a spinner when `progress`. `fetch`
/// takes a page token and a page size and returns the page's items and the next token. Returns
/// the items and the token of the page after them (empty when there is none).
pub async fn page_through<T>(
    noun: &str,
    progress: bool,
    mut token: String,
    mut next_size: impl FnMut(usize) -> Option<i32>,
    mut fetch: impl AsyncFnMut(String, i32) -> anyhow::Result<(Vec<T>, String)>,
) -> anyhow::Result<(Vec<T>, String)> {
    let progress = if progress {
        spinner(format!("fetching {noun}"))
    } else {
        ProgressBar::hidden()
    };
    let mut items = Vec::new();
    while let Some(size) = next_size(items.len()) {
        let (page, next) = fetch(token, size).await?;
        items.extend(page);
        progress.set_message(format!("{} {noun} fetched", items.len()));
        token = next;
        if token.is_empty() {
            break;
        }
    }
    progress.finish_and_clear();
    Ok((items, token))
}

/// Tells, on stderr, how to get the rest of a listing that stopped after one page.
pub fn more_hint(next_page_token: &str) {
    if !next_page_token.is_empty() {
        eprintln!("(more: repeat with --page-token {next_page_token}, or use --all)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_space() {
        let text = table(
            &["id", "name"],
            [
                vec!["1".to_owned(), "Acme".to_owned()],
                vec!["22".to_owned(), "B".to_owned()],
            ],
        );
        assert_eq!(text, "ID  NAME\n1   Acme\n22  B");
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let timestamp = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(time(Some(&timestamp)), "2023-11-14T22:13:20Z");
        assert_eq!(time(None), "");
    }

    #[test]
    fn json_has_every_field_by_its_proto_name_and_numbers_for_counts() {
        use roster_proto::imports::v1 as pb;
        let json = message_json(&pb::GetImportResponse {
            import: Some(pb::Import {
                id: "i".into(),
                state: pb::ImportState::Validated as i32,
                total_row_count: 3,
                create_time: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .unwrap();
        let import = &json["import"];
        assert_eq!(import["state"], "IMPORT_STATE_VALIDATED");
        assert_eq!(import["total_row_count"], 3);
        assert_eq!(import["error_count"], 0);
        assert_eq!(import["error_message"], "");
        assert_eq!(import["create_time"], "2023-11-14T22:13:20Z");
        assert!(import.get("expire_time").is_none(), "{import}");
    }
}
