//! The server streams of ImportService: the template and the report (CSV in pieces, built
//! page by page so memory stays flat) and the progress of an import.
//!
//! Each stream is a task writing into a small channel: when the caller reads slowly, the task
//! waits; when the caller goes away, the task stops.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use roster_proto::imports::v1 as pb;
use roster_runtime::{ApiError, Shutdown};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use uuid::Uuid;

use super::convert;
use crate::domain::columns::{Column, ERROR_HEADER, STATUS_HEADER};
use crate::domain::csv_out::{CsvOut, template_header, template_row};
use crate::domain::state::{ImportState, RowAction, RowOutcome, report_status};
use crate::identity::{Identity, code_name};
use crate::store::entities::{import, row};
use crate::store::{Store, state_of};

/// Bytes gathered before a piece is sent.
const PIECE_BYTES: usize = 256 * 1024;

/// Streams the account's template: its current profiles, a page at a time from identity.
pub fn template(
    identity: Identity,
    account_id: Uuid,
) -> ReceiverStream<Result<pb::DownloadTemplateResponse, Status>> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let piece = |chunk| pb::DownloadTemplateResponse { chunk };
        let mut out = CsvOut::new();
        out.row(template_header());
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
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
            for profile in &profiles {
                out.row(template_row(profile));
            }
            if let Some(bytes) = out.take(PIECE_BYTES)
                && sender.send(Ok(piece(bytes))).await.is_err()
            {
                return;
            }
            if next.is_empty() {
                break;
            }
            token = next;
        }
        if let Some(bytes) = out.take(1) {
            let _ = sender.send(Ok(piece(bytes))).await;
        }
    });
    ReceiverStream::new(receiver)
}

/// Streams the per-row report: the upload's columns (with Internal ID), Status and Error.
pub fn report(
    store: Store,
    import: import::Model,
) -> ReceiverStream<Result<pb::DownloadReportResponse, Status>> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let piece = |chunk| pb::DownloadReportResponse { chunk };
        let headers: Vec<String> = import
            .columns
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        let mut columns: Vec<Column> = headers
            .iter()
            .filter_map(|header| Column::from_header(header))
            .collect();
        if !columns.contains(&Column::InternalId) {
            columns.insert(0, Column::InternalId);
        }
        let mut out = CsvOut::new();
        out.row(
            columns
                .iter()
                .map(|column| column.header())
                .chain([STATUS_HEADER, ERROR_HEADER]),
        );
        let mut after = 0;
        loop {
            let rows = match store.rows(import.id, None, after, 1000).await {
                Ok(rows) => rows,
                Err(error) => {
                    let _ = sender.send(Err(ApiError::from(error).into())).await;
                    return;
                }
            };
            let Some(last) = rows.last().map(|row| row.row_number) else {
                break;
            };
            for row in &rows {
                write_report_row(&mut out, &columns, row);
            }
            if let Some(bytes) = out.take(PIECE_BYTES)
                && sender.send(Ok(piece(bytes))).await.is_err()
            {
                return;
            }
            after = last;
        }
        if let Some(bytes) = out.take(1) {
            let _ = sender.send(Ok(piece(bytes))).await;
        }
    });
    ReceiverStream::new(receiver)
}

fn write_report_row(out: &mut CsvOut, columns: &[Column], row: &row::Model) {
    let values: BTreeMap<String, String> = serde_json::from_str(&row.cells).unwrap_or_default();
    let action = RowAction::from_code(row.action).unwrap_or(RowAction::Error);
    let outcome = RowOutcome::from_code(row.outcome);
    let created = action == RowAction::Create && outcome == RowOutcome::Applied;
    let error = convert::error_cell(row);
    let cells: Vec<&str> = columns
        .iter()
        .map(|column| match column {
            Column::InternalId if created => row.profile_id.as_deref().unwrap_or_default(),
            column => values
                .get(column.header())
                .map(String::as_str)
                .unwrap_or_default(),
        })
        .chain([report_status(action, outcome), error.as_str()])
        .collect();
    out.row(cells);
}

/// Streams an import's progress until it waits for the caller or is final.
pub fn watch(
    store: Store,
    first: import::Model,
    interval: Duration,
    shutdown: Shutdown,
) -> ReceiverStream<Result<pb::WatchImportResponse, Status>> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut current = first;
        let mut last_sent: Option<(i64, i64)> = None;
        let mut sent_at = Instant::now() - Duration::from_secs(1);
        loop {
            let state = state_of(&current);
            let (processed, total) = progress(&current);
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
                () = tokio::time::sleep(interval) => {}
            }
            current = match store.import(current.id).await {
                Ok(Some(model)) => model,
                Ok(None) => {
                    let _ = sender
                        .send(Err(ApiError::NotFound { resource: "import" }.into()))
                        .await;
                    return;
                }
                Err(error) => {
                    let _ = sender.send(Err(ApiError::from(error).into())).await;
                    return;
                }
            };
        }
    });
    ReceiverStream::new(receiver)
}

/// Rows handled and to handle in the import's current phase.
fn progress(import: &import::Model) -> (i64, i64) {
    match state_of(import) {
        ImportState::Uploading => (0, 0),
        ImportState::Validating => (import.total_row_count, 0),
        ImportState::Validated | ImportState::Invalid => {
            (import.total_row_count, import.total_row_count)
        }
        _ => (
            import.applied_count + import.failed_count,
            import.create_count + import.update_count,
        ),
    }
}
