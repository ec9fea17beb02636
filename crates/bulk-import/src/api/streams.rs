//! The server streams of ImportService: the template and the report (CSV in pieces, built
//! page by page so memory stays flat) and the progress of an import.
//!
//! Each stream is a task writing into a small channel: when the caller reads slowly, the task
//! waits; when the caller goes away, the task stops.

use std::time::{Duration, Instant};

use roster_proto::imports::v1 as pb;
use roster_runtime::{ApiError, Shutdown};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert;
use crate::app::ImportApp;
use crate::domain::csv_out::{CsvOut, template_header, template_row};
use crate::domain::import::{AccountId, Import};
use crate::domain::report;
use crate::domain::state::ImportState;
use crate::identity::{Identity, code_name};

/// Bytes gathered before a piece is sent.
const PIECE_BYTES: usize = 256 * 1024;

/// Streams the account's template: its current profiles, a page at a time from identity.
pub fn template(
    identity: Identity,
    account_id: AccountId,
) -> ReceiverStream<Result<pb::DownloadTemplateResponse, Status>> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut file = Pieces::new(sender, |chunk| pb::DownloadTemplateResponse { chunk });
        file.out.row(template_header());
        let mut token = String::new();
        loop {
            let (profiles, next) =
                match identity.list_profiles(&account_id.to_string(), token).await {
                    Ok(page) => page,
                    Err(status) => {
                        tracing::error!(%status, "listing profiles for the template failed");
                        let error = ApiError::Unavailable {
                            message: format!(
                                "identity did not list the account's profiles ({}); try again",
                                code_name(status.code() as i32)
                            ),
                        };
                        file.fail(error.into()).await;
                        return;
                    }
                };
            for profile in &profiles {
                file.out.row(template_row(profile));
            }
            if !file.send_full().await {
                return;
            }
            if next.is_empty() {
                break;
            }
            token = next;
        }
        file.finish().await;
    });
    ReceiverStream::new(receiver)
}

/// Streams the per-row report: the upload's columns (with Internal ID), Status and Error.
pub fn report(
    app: ImportApp,
    import: Import,
) -> ReceiverStream<Result<pb::DownloadReportResponse, Status>> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut file = Pieces::new(sender, |chunk| pb::DownloadReportResponse { chunk });
        let columns = report::columns(import.columns.as_deref().unwrap_or_default());
        file.out.row(report::header(&columns));
        let mut after = 0;
        loop {
            let rows = match app.report_rows(import.id, after, 1000).await {
                Ok(rows) => rows,
                Err(error) => {
                    file.fail(error.into()).await;
                    return;
                }
            };
            let Some(last) = rows.last().map(|row| row.row_number) else {
                break;
            };
            for row in &rows {
                let line = report::line(&columns, row);
                file.out.row(line.iter().map(String::as_str));
            }
            if !file.send_full().await {
                return;
            }
            after = last;
        }
        file.finish().await;
    });
    ReceiverStream::new(receiver)
}

/// A CSV file on its way to the caller: rows gather in `out` and leave in pieces of
/// [`PIECE_BYTES`], each wrapped in the stream's message.
struct Pieces<M> {
    out: CsvOut,
    sender: mpsc::Sender<Result<M, Status>>,
    message: fn(Vec<u8>) -> M,
}

impl<M> Pieces<M> {
    fn new(sender: mpsc::Sender<Result<M, Status>>, message: fn(Vec<u8>) -> M) -> Self {
        Self {
            out: CsvOut::new(),
            sender,
            message,
        }
    }

    /// Sends a piece once the rows gathered fill one; false when the caller has gone.
    async fn send_full(&mut self) -> bool {
        match self.out.take(PIECE_BYTES) {
            Some(bytes) => self.sender.send(Ok((self.message)(bytes))).await.is_ok(),
            None => true,
        }
    }

    /// Sends the rest of the file.
    async fn finish(mut self) {
        if let Some(bytes) = self.out.take(1) {
            let _ = self.sender.send(Ok((self.message)(bytes))).await;
        }
    }

    /// Ends the stream with `status` instead of the rest of the file.
    async fn fail(self, status: Status) {
        let _ = self.sender.send(Err(status)).await;
    }
}

/// Streams an import's progress until it waits for the caller or is final.
pub fn watch(
    place: roster_runtime::streams::StreamPlace,
    app: ImportApp,
    first: Import,
    interval: Duration,
    shutdown: Shutdown,
) -> ReceiverStream<Result<pb::WatchImportResponse, Status>> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        // The key's place is given back when the watch ends, however it ends.
        let _place = place;
        let mut current = first;
        let mut last_sent: Option<(i64, i64)> = None;
        let mut sent_at = Instant::now() - Duration::from_secs(1);
        loop {
            let state = current.state;
            let (processed, total) = current.progress();
            let changed = last_sent.is_none_or(|(version, done)| {
                version != current.version
                    || (done != processed && sent_at.elapsed() >= Duration::from_secs(1))
            });
            let ends = state.is_final() || state == ImportState::Validated;
            if changed || ends {
                let message = pb::WatchImportResponse {
                    import: Some(convert::import(&current)),
                    rows_processed: processed,
                    rows_total: total,
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
                last_sent = Some((current.version, processed));
                sent_at = Instant::now();
            }
            if ends {
                return;
            }
            tokio::select! {
                () = shutdown.wait() => {
                    let _ = sender
                        .send(Err(ApiError::Unavailable {
                            message: "the server is shutting down; watch again".into(),
                        }
                        .into()))
                        .await;
                    return;
                }
                // The client went away: no more looks at the import for it.
                () = sender.closed() => return,
                () = tokio::time::sleep(interval) => {}
            }
            current = match app.reload(current.id).await {
                Ok(import) => import,
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            };
        }
    });
    ReceiverStream::new(receiver)
}
