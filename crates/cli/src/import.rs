//! `roster import`: the bulk-import flow from a terminal, as an operator runs it.
//!
//! - `roster import template --account ID -o people.csv` downloads the account's template.
//! - `roster import upload people.csv --account ID` streams the file, waits for validation and
//!   prints the preview: the counts and the first row errors.
//! - `roster import submit IMPORT_ID --watch` starts the apply and follows it with a progress bar.
//! - `roster import report IMPORT_ID -o report.csv` downloads the per-row report.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_runtime::Service;
use tonic::transport::Channel;

use crate::output;

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
}

/// Runs one `roster import` command against bulk-import at `--bulk-import-addr`, connected
/// like every other command (TLS options included).
pub async fn run(command: Command, connection: &crate::client::Client) -> anyhow::Result<()> {
    let channel = connection.channel(Service::BulkImport).await?;
    let client = Client {
        imports: ImportServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        key: connection.key()?.to_owned(),
    };
    match command {
        Command::Template { account, output } => client.template(account, output).await,
        Command::Upload {
            file,
            account,
            request_id,
        } => client.upload(&file, account, request_id).await,
        Command::Submit {
            import_id,
            watch,
            welcome_emails,
        } => client.submit(import_id, watch, welcome_emails).await,
        Command::Report { import_id, output } => client.report(import_id, output).await,
    }
}

struct Client {
    imports: ImportServiceClient<Channel>,
    key: String,
}

impl Client {
    fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.key)
                .parse()
                .context("the key must be printable ASCII")?,
        );
        Ok(request)
    }

    async fn template(mut self, account_id: String, output: Option<PathBuf>) -> anyhow::Result<()> {
        let request = self.request(pb::DownloadTemplateRequest { account_id })?;
        let mut stream = self.imports.download_template(request).await?.into_inner();
        let mut sink = Sink::open(output.as_deref())?;
        while let Some(piece) = stream.message().await? {
            sink.write(&piece.chunk)?;
        }
        sink.done("template")
    }

    async fn report(mut self, import_id: String, output: Option<PathBuf>) -> anyhow::Result<()> {
        let request = self.request(pb::DownloadReportRequest { import_id })?;
        let mut stream = self.imports.download_report(request).await?.into_inner();
        let mut sink = Sink::open(output.as_deref())?;
        while let Some(piece) = stream.message().await? {
            sink.write(&piece.chunk)?;
        }
        sink.done("report")
    }

    async fn upload(
        mut self,
        file: &Path,
        account_id: String,
        request_id: String,
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
                    request_id,
                    file_name,
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
        let request = self.request(tokio_stream::wrappers::ReceiverStream::new(receiver))?;
        let uploaded = self.imports.upload_import(request).await;
        reading.await?.context("reading the file")?;
        let import = uploaded?
            .into_inner()
            .import
            .context("no import returned")?;
        eprintln!("uploaded as import {}; validating…", import.id);
        let import = self.follow(&import.id, false).await?;
        print_preview(&import)?;
        if import.state == pb::ImportState::Validated as i32 && import.error_count > 0 {
            let request = self.request(pb::ListImportRowsRequest {
                import_id: import.id.clone(),
                page_size: ERRORS_SHOWN as i32,
                filter: pb::ImportRowFilter::Errors as i32,
                ..Default::default()
            })?;
            let rows = self
                .imports
                .list_import_rows(request)
                .await?
                .into_inner()
                .rows;
            output::outln!("first errors:")?;
            for row in rows {
                for error in row.errors {
                    let column = if error.column.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", error.column)
                    };
                    output::outln!(
                        "  row {}{column} {}: {}",
                        row.row_number,
                        error.reason,
                        error.message
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
        let request = self.request(pb::SubmitImportRequest {
            import_id: import_id.clone(),
            request_id: format!("roster-cli-submit-{import_id}"),
            send_welcome_emails,
        })?;
        let import = self
            .imports
            .submit_import(request)
            .await?
            .into_inner()
            .import
            .context("no import returned")?;
        if !watch {
            output::outln!("import {} is {}", import.id, state_name(import.state))?;
            return Ok(());
        }
        let import = self.follow(&import_id, true).await?;
        print_preview(&import)?;
        output::outln!(
            "applied {}, failed {}; the report: roster import report {}",
            import.applied_count,
            import.failed_count,
            import.id
        )?;
        if import.state == pb::ImportState::Failed as i32 {
            anyhow::bail!("the apply failed: {}", import.error_message);
        }
        Ok(())
    }

    /// Follows WatchImport to its end; with `bar`, shows the apply's progress.
    async fn follow(&mut self, import_id: &str, bar: bool) -> anyhow::Result<pb::Import> {
        let request = self.request(pb::WatchImportRequest {
            import_id: import_id.to_owned(),
        })?;
        let mut stream = self.imports.watch_import(request).await?.into_inner();
        let progress = bar.then(|| {
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

/// Standard output or a file.
enum Sink {
    Stdout(std::io::Stdout),
    File(PathBuf, std::fs::File),
}

impl Sink {
    fn open(path: Option<&Path>) -> anyhow::Result<Sink> {
        Ok(match path {
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
        }
        Ok(())
    }

    fn done(self, what: &str) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush().map_err(output::stdout_error)?,
            Sink::File(path, file) => {
                file.sync_all()?;
                eprintln!("{what} written to {}", path.display());
            }
        }
        Ok(())
    }
}
