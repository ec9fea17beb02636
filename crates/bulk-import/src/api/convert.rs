//! Conversions between imports and rows and their protobuf messages, and the request checks
//! only ImportService has (the common ones are `roster_runtime::request`'s).

use roster_proto::imports::v1 as pb;
use roster_runtime::{ApiError, request};

use crate::domain::encoding::TextEncoding;
use crate::domain::import::{Import, StagedRow};

pub fn timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn import(model: &Import) -> pb::Import {
    pb::Import {
        id: model.id.to_string(),
        account_id: model.account_id.to_string(),
        file_name: model.file_name.clone(),
        state: model.state.code(),
        total_row_count: model.planned.total,
        create_count: model.planned.create,
        update_count: model.planned.update,
        unchanged_count: model.planned.unchanged,
        error_count: model.planned.error,
        applied_count: model.applied_count,
        failed_count: model.failed_count,
        error_message: model.error_message.clone(),
        create_time: Some(timestamp(model.created_at)),
        update_time: Some(timestamp(model.updated_at)),
        expire_time: model.expire_at.map(timestamp),
        etag: request::etag(model.version),
        send_welcome_emails: model.welcome_emails,
        encoding: model
            .encoding
            .map(|encoding| encoding.name().to_owned())
            .unwrap_or_default(),
        delimiter: model.delimiter.clone().unwrap_or_default(),
        line_ending: model.line_ending.clone().unwrap_or_default(),
        encoding_given: model.encoding_given,
    }
}

pub fn row(row: &StagedRow) -> pb::ImportRow {
    pb::ImportRow {
        row_number: row.row_number,
        action: row.action.code(),
        profile_id: row.profile_id.clone().unwrap_or_default(),
        values: row.values.clone().into_iter().collect(),
        changes: row
            .changes
            .iter()
            .map(|change| pb::FieldChange {
                column: change.column.clone(),
                old_value: change.old_value.clone(),
                new_value: change.new_value.clone(),
            })
            .collect(),
        errors: row
            .errors
            .iter()
            .map(|error| pb::RowError {
                column: error.column.clone(),
                reason: error.reason.clone(),
                message: error.message.clone(),
            })
            .collect(),
        notes: row
            .notes
            .iter()
            .map(|note| pb::RowNote {
                column: note.column.clone(),
                reason: note.reason.clone(),
                message: note.message.clone(),
            })
            .collect(),
        outcome: row.outcome.code(),
        outcome_message: row.outcome_message.clone(),
    }
}

/// The encoding a request names (`None`: detect it).
pub fn parse_encoding(field: &str, label: &str) -> Result<Option<TextEncoding>, ApiError> {
    TextEncoding::from_label(label).map_err(|message| ApiError::invalid(field, message))
}

pub fn check_file_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.len() > 4 * 255 {
        return Err(ApiError::invalid(field, "must be 1 to 255 characters"));
    }
    let length = name.chars().count();
    if length == 0 || length > 255 {
        return Err(ApiError::invalid(field, "must be 1 to 255 characters"));
    }
    // A NUL cannot be stored (PostgreSQL refuses it in text), and control characters would be
    // echoed to operators as they are.
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters (NUL, line breaks, tabs and the like)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod file_name_tests {
    use super::*;

    #[test]
    fn file_names_are_bounded_and_printable() {
        assert!(check_file_name("file_name", "people.csv").is_ok());
        assert!(check_file_name("file_name", "Übersicht 2026.csv").is_ok());
        for refused in ["", "a\0b.csv", "a\nb.csv", "a\u{1b}[31m.csv"] {
            let error = check_file_name("file_name", refused).unwrap_err();
            let ApiError::InvalidArgument { violations, .. } = error else {
                panic!("{refused:?}: {error:?}");
            };
            assert_eq!(violations.len(), 1, "{refused:?}");
        }
        assert!(check_file_name("file_name", &"x".repeat(256)).is_err());
        assert!(check_file_name("file_name", &"\u{FDFA}".repeat(300)).is_err());
    }
}
