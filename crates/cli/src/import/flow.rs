//! An import's life from the terminal: `roster import upload` (stream the file, wait for the
//! validation, show the preview), `submit` (start the apply, with `--watch` follow it with a
//! progress bar) and `cancel`.

use std::path::Path;

use anyhow::Context;
use roster_proto::imports::v1 as pb;

use super::{Client, described, how_read, print_preview, short_state, state_name};
use crate::output;

/// The largest piece of a file sent in one UploadImport message.
const UPLOAD_CHUNK_BYTES: usize = 1024 * 1024;
/// How many row errors `upload` prints.
const ERRORS_SHOWN: usize = 20;

impl Client<'_> {
    pub(super) async fn cancel(self, import_id: String, request_id: String) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let response = self
            .connection
            .call_idempotent(
                "roster.imports.v1.ImportService/CancelImport",
                request_id,
                |request_id| pb::CancelImportRequest {
                    import_id,
                    request_id,
                },
                async |request| imports.cancel_import(request).await,
            )
            .await?;
        output::show(self.connection.json(), &response, |response| {
            let import = output::returned(response.import.as_ref(), "import")?;
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

    pub(super) async fn upload(
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
        // The file is read while it is sent, a piece at a time. Only a file read to its end is
        // followed by the end message: a read that fails closes the stream without it, and the
        // server does not take the part that was sent as the file.
        let reading = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = vec![0; UPLOAD_CHUNK_BYTES];
            let mut size_bytes = 0u64;
            loop {
                let read = reader.read(&mut buffer).await?;
                let content = if read == 0 {
                    Content::End(pb::UploadImportEnd { size_bytes })
                } else {
                    size_bytes += read as u64;
                    Content::Chunk(buffer[..read].to_vec())
                };
                let message = pb::UploadImportRequest {
                    content: Some(content),
                };
                if sender.send(message).await.is_err() || read == 0 {
                    return Ok::<(), std::io::Error>(());
                }
            }
        });
        let mut imports = self.imports.clone();
        let uploaded = self
            .connection
            .call_within(
                None,
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

    pub(super) async fn submit(
        mut self,
        import_id: String,
        watch: bool,
        send_welcome_emails: bool,
    ) -> anyhow::Result<()> {
        let request_id = format!("roster-cli-submit-{import_id}");
        let mut imports = self.imports.clone();
        self.connection
            .call_idempotent(
                "roster.imports.v1.ImportService/SubmitImport",
                request_id,
                |request_id| pb::SubmitImportRequest {
                    import_id: import_id.clone(),
                    request_id,
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
