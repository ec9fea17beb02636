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

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_runtime::Service;
use tonic::transport::Channel;

use crate::client::RequestIdArg;
use crate::output::{self, Paging};

/// The largest piece of a file sent in one UploadImport message.
const UPLOAD_CHUNK_BYTES: usize = 1024 * 1024;
/// How many row errors `upload` prints.
const ERRORS_SHOWN: usize = 20;

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
        Command::Template { account, output } => client.template(account, output).await,
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
        Command::Report { import_id, output } => client.report(import_id, output).await,
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

impl Client<'_> {
    async fn template(self, account_id: String, output: Option<PathBuf>) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let mut stream = self
            .connection
            .stream(
                "roster.imports.v1.ImportService/DownloadTemplate",
                pb::DownloadTemplateRequest { account_id },
                async |request| imports.download_template(request).await,
            )
            .await?;
        let mut sink = Sink::open(output.as_deref(), self.connection.json())?;
        while let Some(piece) = stream.message().await? {
            sink.write(&piece.chunk)?;
        }
        sink.done("template", |chunk| pb::DownloadTemplateResponse { chunk })
    }

    async fn report(self, import_id: String, output: Option<PathBuf>) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let mut stream = self
            .connection
            .stream(
                "roster.imports.v1.ImportService/DownloadReport",
                pb::DownloadReportRequest { import_id },
                async |request| imports.download_report(request).await,
            )
            .await?;
        let mut sink = Sink::open(output.as_deref(), self.connection.json())?;
        while let Some(piece) = stream.message().await? {
            sink.write(&piece.chunk)?;
        }
        sink.done("report", |chunk| pb::DownloadReportResponse { chunk })
    }

    async fn list(
        self,
        account_id: String,
        state: Option<State>,
        paging: Paging,
    ) -> anyhow::Result<()> {
        let (items, next) = output::pages(&paging, "imports", async |page_token| {
            let mut imports = self.imports.clone();
            let response = self
                .connection
                .call(
                    "roster.imports.v1.ImportService/ListImports",
                    None,
                    pb::ListImportsRequest {
                        account_id: account_id.clone(),
                        page_size: paging.page_size,
                        page_token,
                        state: state.map_or(0, |state| state.proto() as i32),
                    },
                    async |request| imports.list_imports(request).await,
                )
                .await?;
            Ok((response.imports, response.next_page_token))
        })
        .await?;
        let response = pb::ListImportsResponse {
            imports: items,
            next_page_token: next,
        };
        output::show(self.connection.json(), &response, |response| {
            if response.imports.is_empty() {
                output::outln!("No imports.")?;
            } else {
                output::outln!(
                    "{}",
                    output::table(
                        &[
                            "id", "file", "state", "rows", "errors", "created", "message"
                        ],
                        response.imports.iter().map(|import| {
                            [
                                import.id.clone(),
                                import.file_name.clone(),
                                short_state(import.state),
                                import.total_row_count.to_string(),
                                import.error_count.to_string(),
                                output::time(import.create_time.as_ref()),
                                import.error_message.clone(),
                            ]
                        }),
                    )
                )?;
            }
            output::more_hint(&response.next_page_token);
            Ok(())
        })
    }

    async fn show(self, import_id: String) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let response = self
            .connection
            .call(
                "roster.imports.v1.ImportService/GetImport",
                None,
                pb::GetImportRequest { import_id },
                async |request| imports.get_import(request).await,
            )
            .await?;
        output::show(self.connection.json(), &response, |response| {
            let import = response
                .import
                .as_ref()
                .context("the server returned no import")?;
            print_preview(import)?;
            if let Some(read) = how_read(import) {
                output::outln!("  {read}")?;
            }
            if import.applied_count > 0 || import.failed_count > 0 {
                output::outln!(
                    "  applied {}, failed {}",
                    import.applied_count,
                    import.failed_count
                )?;
            }
            Ok(())
        })
    }

    async fn rows(
        self,
        import_id: String,
        filter: RowFilter,
        paging: Paging,
    ) -> anyhow::Result<()> {
        let (items, next) = output::pages(&paging, "rows", async |page_token| {
            let mut imports = self.imports.clone();
            let response = self
                .connection
                .call(
                    "roster.imports.v1.ImportService/ListImportRows",
                    None,
                    pb::ListImportRowsRequest {
                        import_id: import_id.clone(),
                        page_size: paging.page_size,
                        page_token,
                        filter: filter.proto() as i32,
                    },
                    async |request| imports.list_import_rows(request).await,
                )
                .await?;
            Ok((response.rows, response.next_page_token))
        })
        .await?;
        let response = pb::ListImportRowsResponse {
            rows: items,
            next_page_token: next,
        };
        output::show(self.connection.json(), &response, |response| {
            if response.rows.is_empty() {
                output::outln!("No rows.")?;
            }
            for row in &response.rows {
                let action = output::short_enum(row.action, "IMPORT_ROW_ACTION_", |action| {
                    pb::ImportRowAction::as_str_name(&action)
                });
                let outcome = output::short_enum(row.outcome, "IMPORT_ROW_OUTCOME_", |outcome| {
                    pb::ImportRowOutcome::as_str_name(&outcome)
                });
                let mut line = format!("row {} {action}", row.row_number);
                if !row.profile_id.is_empty() {
                    line.push_str(&format!(" {}", row.profile_id));
                }
                if row.outcome != pb::ImportRowOutcome::Unspecified as i32 {
                    line.push_str(&format!(" ({outcome})"));
                }
                output::outln!("{line}")?;
                for change in &row.changes {
                    output::outln!(
                        "  {}: '{}' -> '{}'",
                        change.column,
                        change.old_value,
                        change.new_value
                    )?;
                }
                for error in &row.errors {
                    output::outln!(
                        "  {}",
                        described(&error.column, &error.reason, &error.message)
                    )?;
                }
                for note in &row.notes {
                    output::outln!(
                        "  note {}",
                        described(&note.column, &note.reason, &note.message)
                    )?;
                }
                if !row.outcome_message.is_empty() {
                    output::outln!("  {}", row.outcome_message)?;
                }
            }
            output::more_hint(&response.next_page_token);
            Ok(())
        })
    }

    async fn cancel(self, import_id: String, request_id: String) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let response = self
            .connection
            .call(
                "roster.imports.v1.ImportService/CancelImport",
                Some(&request_id),
                pb::CancelImportRequest {
                    import_id,
                    request_id: request_id.clone(),
                },
                async |request| imports.cancel_import(request).await,
            )
            .await?;
        output::show(self.connection.json(), &response, |response| {
            let import = response
                .import
                .as_ref()
                .context("the server returned no import")?;
            output::outln!(
                "{}",
                output::details(&[
                    ("id", import.id.clone()),
                    ("file", import.file_name.clone()),
                    ("state", short_state(import.state)),
                    ("rows", import.total_row_count.to_string()),
                    ("applied", import.applied_count.to_string()),
                    ("updated", output::time(import.update_time.as_ref())),
                ])
            )
        })
    }

    async fn upload(
        mut self,
        file: &Path,
        account_id: String,
        request_id: String,
        encoding: String,
    ) -> anyhow::Result<()> {
        use pb::upload_import_request::Content;
        let file_name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload.csv".to_owned());
        let mut reader = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender
            .send(pb::UploadImportRequest {
                content: Some(Content::Header(pb::UploadImportHeader {
                    account_id,
                    request_id: request_id.clone(),
                    file_name,
                    encoding,
                })),
            })
            .await?;
        // The file is read while it is sent, a piece at a time.
        let reading = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = vec![0; UPLOAD_CHUNK_BYTES];
            loop {
                let read = reader.read(&mut buffer).await?;
                if read == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                let message = pb::UploadImportRequest {
                    content: Some(Content::Chunk(buffer[..read].to_vec())),
                };
                if sender.send(message).await.is_err() {
                    return Ok(());
                }
            }
        });
        let mut imports = self.imports.clone();
        let uploaded = self
            .connection
            .call_unbounded(
                "roster.imports.v1.ImportService/UploadImport",
                Some(request_id.as_str()).filter(|id| !id.is_empty()),
                tokio_stream::wrappers::ReceiverStream::new(receiver),
                async |request| imports.upload_import(request).await,
            )
            .await;
        reading.await?.context("reading the file")?;
        let import = uploaded?.import.context("no import returned")?;
        if !self.connection.json() {
            eprintln!("uploaded as import {}; validating…", import.id);
        }
        let import = self.follow(&import.id, false).await?;
        if self.connection.json() {
            return output::print_message(&pb::UploadImportResponse {
                import: Some(import),
            });
        }
        print_preview(&import)?;
        if let Some(read) = how_read(&import) {
            output::outln!("  {read}")?;
        }
        if import.state == pb::ImportState::Validated as i32 && import.error_count > 0 {
            let mut imports = self.imports.clone();
            let rows = self
                .connection
                .call(
                    "roster.imports.v1.ImportService/ListImportRows",
                    None,
                    pb::ListImportRowsRequest {
                        import_id: import.id.clone(),
                        page_size: ERRORS_SHOWN as i32,
                        filter: pb::ImportRowFilter::Errors as i32,
                        ..Default::default()
                    },
                    async |request| imports.list_import_rows(request).await,
                )
                .await?
                .rows;
            output::outln!("first errors:")?;
            for row in rows {
                for error in row.errors {
                    output::outln!(
                        "  row {} {}",
                        row.row_number,
                        described(&error.column, &error.reason, &error.message)
                    )?;
                }
            }
        }
        if import.state == pb::ImportState::Validated as i32 {
            output::outln!("submit with: roster import submit {} --watch", import.id)?;
        }
        Ok(())
    }

    async fn submit(
        mut self,
        import_id: String,
        watch: bool,
        send_welcome_emails: bool,
    ) -> anyhow::Result<()> {
        let request_id = format!("roster-cli-submit-{import_id}");
        let mut imports = self.imports.clone();
        self.connection
            .call(
                "roster.imports.v1.ImportService/SubmitImport",
                Some(&request_id),
                pb::SubmitImportRequest {
                    import_id: import_id.clone(),
                    request_id: request_id.clone(),
                    send_welcome_emails,
                },
                async |request| imports.submit_import(request).await,
            )
            .await?;
        if !watch {
            // A repeated submit (the request id is fixed per import) answers as the first one
            // did (AIP-155), which may be long past: what to report is the import as it is now.
            let response = self
                .connection
                .call(
                    "roster.imports.v1.ImportService/GetImport",
                    None,
                    pb::GetImportRequest {
                        import_id: import_id.clone(),
                    },
                    async |request| imports.get_import(request).await,
                )
                .await?;
            return output::show(self.connection.json(), &response, |response| {
                let import = response.import.as_ref().context("no import returned")?;
                output::outln!("import {} is {}", import.id, state_name(import.state))
            });
        }
        let import = self.follow(&import_id, true).await?;
        if self.connection.json() {
            output::print_message(&pb::GetImportResponse {
                import: Some(import.clone()),
            })?;
        } else {
            print_preview(&import)?;
            output::outln!(
                "applied {}, failed {}; the report: roster import report {}",
                import.applied_count,
                import.failed_count,
                import.id
            )?;
        }
        if import.state == pb::ImportState::Failed as i32 {
            anyhow::bail!("the apply failed: {}", import.error_message);
        }
        Ok(())
    }

    /// Follows WatchImport to its end; with `bar`, shows the apply's progress.
    async fn follow(&mut self, import_id: &str, bar: bool) -> anyhow::Result<pb::Import> {
        let mut imports = self.imports.clone();
        let mut stream = self
            .connection
            .stream(
                "roster.imports.v1.ImportService/WatchImport",
                pb::WatchImportRequest {
                    import_id: import_id.to_owned(),
                },
                async |request| imports.watch_import(request).await,
            )
            .await?;
        let progress = (bar && !self.connection.json()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let mut last = None;
        while let Some(message) = stream.message().await? {
            if let Some(bar) = &progress {
                bar.set_length(message.rows_total.max(0) as u64);
                bar.set_position(message.rows_processed.max(0) as u64);
                if let Some(import) = &message.import {
                    bar.set_message(state_name(import.state));
                }
            }
            last = message.import;
        }
        if let Some(bar) = progress {
            bar.finish();
        }
        last.context("the watch ended without news")
    }
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

/// Standard output, a file, or (under `--json` without a file) the bytes held for one message.
enum Sink {
    Stdout(std::io::Stdout),
    File(PathBuf, std::fs::File),
    Message(Vec<u8>),
}

impl Sink {
    fn open(path: Option<&Path>, json: bool) -> anyhow::Result<Sink> {
        Ok(match path {
            None if json => Sink::Message(Vec::new()),
            None => Sink::Stdout(std::io::stdout()),
            Some(path) => Sink::File(
                path.to_owned(),
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(bytes).map_err(output::stdout_error)?,
            Sink::File(_, file) => file.write_all(bytes)?,
            Sink::Message(held) => held.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Ends the download of `what`; held bytes are printed as the message `message` makes.
    fn done<M: prost::Message + prost::Name>(
        self,
        what: &str,
        message: impl FnOnce(Vec<u8>) -> M,
    ) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush().map_err(output::stdout_error)?,
            Sink::File(path, file) => {
                file.sync_all()?;
                eprintln!("{what} written to {}", path.display());
            }
            Sink::Message(held) => output::print_message(&message(held))?,
        }
        Ok(())
    }
}
