//! The per-row report: the upload's columns (with Internal ID), then Status and Error, one line
//! per staged row.

use super::columns::{Column, ERROR_HEADER, STATUS_HEADER};
use super::import::StagedRow;
use super::state::{RowAction, RowOutcome, report_status};

/// The report's columns for an upload with `headers`: Internal ID first when the file lacks it.
pub fn columns(headers: &[String]) -> Vec<Column> {
    let mut columns: Vec<Column> = headers
        .iter()
        .filter_map(|header| Column::from_header(header))
        .collect();
    if !columns.contains(&Column::InternalId) {
        columns.insert(0, Column::InternalId);
    }
    columns
}

/// The header line of a report with `columns`.
pub fn header(columns: &[Column]) -> Vec<&'static str> {
    columns
        .iter()
        .map(|column| column.header())
        .chain([STATUS_HEADER, ERROR_HEADER])
        .collect()
}

/// A row's line: its values (a created profile's new id as its Internal ID), Status, Error.
pub fn line(columns: &[Column], row: &StagedRow) -> Vec<String> {
    let created = row.action == RowAction::Create && row.outcome == RowOutcome::Applied;
    columns
        .iter()
        .map(|column| match column {
            Column::InternalId if created => row.profile_id.clone().unwrap_or_default(),
            column => row.values.get(column.header()).cloned().unwrap_or_default(),
        })
        .chain([
            report_status(row.action, row.outcome).to_owned(),
            error_cell(row),
        ])
        .collect()
}

/// The report's Error cell of a row: every row error, then the apply's failure.
pub fn error_cell(row: &StagedRow) -> String {
    let mut parts: Vec<String> = row
        .errors
        .iter()
        .map(|error| {
            if error.column.is_empty() {
                error.message.clone()
            } else {
                format!("{}: {}", error.column, error.message)
            }
        })
        .collect();
    if !row.outcome_message.is_empty() {
        parts.push(row.outcome_message.clone());
    }
    parts.join("; ")
}
