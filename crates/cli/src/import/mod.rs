//! `roster import`: the bulk-import flow from a terminal, as an operator runs it.
//!
//! - `roster import template --account ID -o people.csv` downloads the account's template.
//! - `roster import upload people.csv --account ID [--encoding windows-1250]` streams the file,
//!   waits for validation and prints the preview: the counts, how the file was read (encoding,
//!   delimiter, line ending) and the first row errors.
//! - `roster import submit IMPORT_ID --watch` starts the apply and follows it with a progress bar.
//! - `roster import report IMPORT_ID -o report.csv` downloads the per-row report.
//! - `roster import show IMPORT_ID` shows the import as it is now; `roster import rows IMPORT_ID
//!   [--filter errors]` lists its rows with their changes, errors and notes.
//! - `roster import list --account ID [--state S]` lists the account's imports, newest first.
//! - `roster import cancel IMPORT_ID` cancels an import that has not finished (an upload left
//!   UPLOADING included, whose stored data goes at once).
//!
//! Every call goes through [`crate::client::Client`]: the reads and the cancel carry the
//! `--timeout` deadline; the upload and the watch carry none, since they last as long as their
//! data (the server bounds an upload by its size limit and idle timeout). Failures, streams'
//! included, name the method and the request and trace ids like every other command's.
//!
//! Under `--json` each prints one response message: `list` a `ListImportsResponse`, `show` a
//! `GetImportResponse`, `rows` a `ListImportRowsResponse`, `cancel` a `CancelImportResponse`,
//! `upload` and `submit` the import as it stands when they end (`{"import": …}`: after validation, after the apply with `--watch`, otherwise as GetImport
//! reads it just after the submit), `template` and `report` without `-o` the file as one
//! `DownloadTemplateResponse`/`DownloadReportResponse` (`{"chunk": "<base64>"}`, as grpcurl
//! prints bytes); with `-o` the file is the output and stdout stays empty.
//!
//! - [`flow`]: upload, submit (and watch) and cancel.
//! - [`reads`]: list, show and rows.
//! - [`downloads`]: the template and the report.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_runtime::Service;
use tonic::transport::Channel;

use crate::client::RequestIdArg;
use crate::output::{self, Paging};

mod downloads;
mod flow;
mod reads;

use downloads::File;

#[derive(Subcommand)]
pub enum Command {
    /// Download the account's CSV template (its current profiles).
    Template {
        /// The account (UUID).
        #[arg(long)]
        account: String,
        /// Where to write the CSV; standard output when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Upload a CSV file, wait for validation and print the preview.
    Upload {
        /// The CSV file.
        file: PathBuf,
        /// The account (UUID).
        #[arg(long)]
        account: String,
        /// Makes a repeated upload return the first import (AIP-155).
        #[arg(long, default_value = "")]
        request_id: String,
        /// The file's encoding, a WHATWG label such as windows-1250 or windows-1251; detected
        /// from the content when absent.
        #[arg(long, default_value = "")]
        encoding: String,
    },
    /// Apply a validated import.
    Submit {
        /// The import (UUID).
        import_id: String,
        /// Follow the apply with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
        /// Send each user the import creates the welcome email.
        #[arg(long)]
        welcome_emails: bool,
    },
    /// Download the per-row report.
    Report {
        /// The import (UUID).
        import_id: String,
        /// Where to write the CSV; standard output when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Show an import as it is now: its state, counts and how its file was read.
    Show {
        /// The import (UUID).
        import_id: String,
    },
    /// List an import's rows as the preview (and, after submit, the apply) decided them.
    Rows {
        /// The import (UUID).
        import_id: String,
        /// Which rows.
        #[arg(long, value_enum, default_value = "all")]
        filter: RowFilter,
        #[command(flatten)]
        paging: Paging,
    },
    /// List an account's imports, newest first.
    List {
        /// The account (UUID).
        #[arg(long)]
        account: String,
        /// Only imports in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Cancel an import that has not finished: an upload (its stored data is deleted), a
    /// validation, a preview waiting for submit, or an apply (rows applied stay applied).
    Cancel {
        /// The import (UUID).
        import_id: String,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
}

/// Which rows `roster import rows --filter` lists.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RowFilter {
    All,
    Errors,
    Creates,
    Updates,
    Unchanged,
}

impl RowFilter {
    fn proto(self) -> pb::ImportRowFilter {
        match self {
            RowFilter::All => pb::ImportRowFilter::All,
            RowFilter::Errors => pb::ImportRowFilter::Errors,
            RowFilter::Creates => pb::ImportRowFilter::Creates,
            RowFilter::Updates => pb::ImportRowFilter::Updates,
            RowFilter::Unchanged => pb::ImportRowFilter::Unchanged,
        }
    }
}

/// An import's state, as `roster import list --state` takes it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum State {
    Uploading,
    Validating,
    Validated,
    Invalid,
    Applying,
    Completed,
    CompletedWithErrors,
    Failed,
    Cancelled,
}

impl State {
    fn proto(self) -> pb::ImportState {
        match self {
            State::Uploading => pb::ImportState::Uploading,
            State::Validating => pb::ImportState::Validating,
            State::Validated => pb::ImportState::Validated,
            State::Invalid => pb::ImportState::Invalid,
            State::Applying => pb::ImportState::Applying,
            State::Completed => pb::ImportState::Completed,
            State::CompletedWithErrors => pb::ImportState::CompletedWithErrors,
            State::Failed => pb::ImportState::Failed,
            State::Cancelled => pb::ImportState::Cancelled,
        }
    }
}

/// Runs one `roster import` command against bulk-import at `--bulk-import-addr`, connected
/// like every other command (TLS options included).
pub async fn run(command: Command, connection: &crate::client::Client) -> anyhow::Result<()> {
    let channel = connection.channel(Service::BulkImport).await?;
    let client = Client {
        imports: ImportServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        connection,
    };
    match command {
        Command::Template { account, output } => {
            let file = File::Template {
                account_id: account,
            };
            client.download(file, output).await
        }
        Command::Upload {
            file,
            account,
            request_id,
            encoding,
        } => client.upload(&file, account, request_id, encoding).await,
        Command::Submit {
            import_id,
            watch,
            welcome_emails,
        } => client.submit(import_id, watch, welcome_emails).await,
        Command::Report { import_id, output } => {
            client.download(File::Report { import_id }, output).await
        }
        Command::Show { import_id } => client.show(import_id).await,
        Command::Rows {
            import_id,
            filter,
            paging,
        } => client.rows(import_id, filter, paging).await,
        Command::List {
            account,
            state,
            paging,
        } => client.list(account, state, paging).await,
        Command::Cancel {
            import_id,
            request_id,
        } => client.cancel(import_id, request_id.get()).await,
    }
}

struct Client<'a> {
    imports: ImportServiceClient<Channel>,
    connection: &'a crate::client::Client,
}

/// An import's state for a table: `validated`, `completed_with_errors`.
fn short_state(state: i32) -> String {
    output::short_enum(state, "IMPORT_STATE_", |state: pb::ImportState| {
        state.as_str_name()
    })
}

/// `[First Name] REQUIRED: …`, or without the brackets for a whole-row problem.
fn described(column: &str, reason: &str, message: &str) -> String {
    if column.is_empty() {
        format!("{reason}: {message}")
    } else {
        format!("[{column}] {reason}: {message}")
    }
}

fn state_name(state: i32) -> String {
    pb::ImportState::try_from(state)
        .map(|state| {
            state
                .as_str_name()
                .trim_start_matches("IMPORT_STATE_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("state {state}"))
}

fn print_preview(import: &pb::Import) -> anyhow::Result<()> {
    output::outln!("import {} is {}", import.id, state_name(import.state))?;
    if !import.error_message.is_empty() {
        output::outln!("  {}", import.error_message)?;
    }
    output::outln!(
        "  rows {}: create {}, update {}, unchanged {}, errors {}",
        import.total_row_count,
        import.create_count,
        import.update_count,
        import.unchanged_count,
        import.error_count
    )
}

/// How the server read the file: `read as windows-1251 (detected), delimiter ';', line
/// ending CRLF`; `None` before it knew the encoding.
fn how_read(import: &pb::Import) -> Option<String> {
    if import.encoding.is_empty() {
        return None;
    }
    let source = if import.encoding_given {
        "as given"
    } else {
        "detected"
    };
    let mut read = format!("read as {} ({source})", import.encoding);
    if !import.delimiter.is_empty() {
        read.push_str(&format!(", delimiter '{}'", import.delimiter));
    }
    if !import.line_ending.is_empty() {
        read.push_str(&format!(", line ending {}", import.line_ending));
    }
    Some(read)
}
