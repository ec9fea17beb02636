//! Conversions between stored imports and rows and their protobuf messages, and request
//! checks shared by the handlers.

use std::collections::BTreeMap;

use roster_proto::imports::v1 as pb;
use roster_runtime::ApiError;
use uuid::Uuid;

use crate::domain::encoding::TextEncoding;
use crate::domain::rows::{FieldChange, RowError};
use crate::domain::state::ImportState;
use crate::store::entities::{import, row};

pub fn timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn import(model: &import::Model) -> pb::Import {
    pb::Import {
        id: model.id.to_string(),
        account_id: model.account_id.to_string(),
        file_name: model.file_name.clone(),
        state: model.state,
        total_row_count: model.total_row_count,
        create_count: model.create_count,
        update_count: model.update_count,
        unchanged_count: model.unchanged_count,
        error_count: model.error_count,
        applied_count: model.applied_count,
        failed_count: model.failed_count,
        error_message: model.error_message.clone(),
        create_time: Some(timestamp(model.created_at)),
        update_time: Some(timestamp(model.updated_at)),
        expire_time: model.expire_at.map(timestamp),
        etag: format!("v{}", model.version),
        send_welcome_emails: model.welcome_emails,
        encoding: model
            .encoding
            .as_deref()
            .and_then(TextEncoding::parse)
            .map(|encoding| encoding.name().to_owned())
            .unwrap_or_default(),
        delimiter: model.delimiter.clone().unwrap_or_default(),
        line_ending: model.line_ending.clone().unwrap_or_default(),
        encoding_given: model.encoding_given,
    }
}

fn errors_of(json: &str) -> Vec<RowError> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn row(model: &row::Model) -> pb::ImportRow {
    let values: BTreeMap<String, String> = serde_json::from_str(&model.cells).unwrap_or_default();
    let changes: Vec<FieldChange> = serde_json::from_str(&model.changes).unwrap_or_default();
    pb::ImportRow {
        row_number: model.row_number,
        action: model.action,
        profile_id: model.profile_id.clone().unwrap_or_default(),
        values: values.into_iter().collect(),
        changes: changes
            .into_iter()
            .map(|change| pb::FieldChange {
                column: change.column,
                old_value: change.old_value,
                new_value: change.new_value,
            })
            .collect(),
        errors: errors_of(&model.errors)
            .into_iter()
            .map(|error| pb::RowError {
                column: error.column,
                reason: error.reason,
                message: error.message,
            })
            .collect(),
        notes: errors_of(&model.notes)
            .into_iter()
            .map(|note| pb::RowNote {
                column: note.column,
                reason: note.reason,
                message: note.message,
            })
            .collect(),
        outcome: model.outcome,
        outcome_message: model.outcome_message.clone(),
    }
}

/// The report's Error cell of a row: every row error, then the apply's failure.
pub fn error_cell(model: &row::Model) -> String {
    let mut parts: Vec<String> = errors_of(&model.errors)
        .into_iter()
        .map(|error| {
            if error.column.is_empty() {
                error.message
            } else {
                format!("{}: {}", error.column, error.message)
            }
        })
        .collect();
    if !model.outcome_message.is_empty() {
        parts.push(model.outcome_message.clone());
    }
    parts.join("; ")
}

pub fn parse_id(field: &str, value: &str) -> Result<Uuid, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Uuid::parse_str(value).map_err(|_| ApiError::invalid(field, "is not a UUID"))
}

/// A request id (AIP-155): up to 128 printable ASCII characters; empty means none.
pub fn check_request_id(field: &str, request_id: &str) -> Result<(), ApiError> {
    if request_id.len() > 128 || !request_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            field,
            "must be at most 128 printable ASCII characters",
        ));
    }
    Ok(())
}

/// The encoding a request names (`None`: detect it).
pub fn parse_encoding(field: &str, label: &str) -> Result<Option<TextEncoding>, ApiError> {
    TextEncoding::from_label(label).map_err(|message| ApiError::invalid(field, message))
}

pub fn check_file_name(field: &str, name: &str) -> Result<(), ApiError> {
    let length = name.chars().count();
    if length == 0 || length > 255 {
        return Err(ApiError::invalid(field, "must be 1 to 255 characters"));
    }
    Ok(())
}

pub fn page_size(requested: i32) -> Result<u64, ApiError> {
    match requested {
        0 => Ok(100),
        1..=1000 => Ok(requested as u64),
        _ => Err(ApiError::invalid("page_size", "must be between 0 and 1000")),
    }
}

/// Import page tokens carry the last id of the previous page.
pub fn parse_import_token(token: &str) -> Result<Option<Uuid>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix('i')
        .and_then(|id| Uuid::try_parse(id).ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid("page_token", "is not a token returned by Roster"))
}

pub fn import_token(last: Uuid) -> String {
    format!("i{}", last.simple())
}

/// Row page tokens carry the last row number of the previous page.
pub fn parse_row_token(token: &str) -> Result<i64, ApiError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix('r')
        .and_then(|row| row.parse().ok())
        .ok_or_else(|| ApiError::invalid("page_token", "is not a token returned by Roster"))
}

pub fn row_token(last: i64) -> String {
    format!("r{last}")
}

pub fn not_found() -> ApiError {
    ApiError::NotFound { resource: "import" }
}

/// FAILED_PRECONDITION naming the import's state.
pub fn wrong_state(state: ImportState, wanted: &str) -> ApiError {
    ApiError::FailedPrecondition {
        reason: "IMPORT_STATE",
        message: format!("the import is {}; {wanted}", state.name()),
        subject: "import".into(),
    }
}
