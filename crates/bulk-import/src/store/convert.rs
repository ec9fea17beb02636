//! Stored rows to domain types and back. JSON columns are read leniently (a value that does not
//! parse reads as empty), as the API always read them.

use sea_orm::ActiveValue::Set;

use super::entities::{claim, import, outcome, row};
use crate::domain::encoding::TextEncoding;
use crate::domain::import::{
    AccountId, ActionCounts, Claimed, Import, ImportId, RepeatedValue, StagedRow,
};
use crate::domain::rows::{PlannedRow, values_by_header};
use crate::domain::state::{ImportState, RowAction, RowOutcome};

/// The state of a stored import (an unknown code reads as FAILED, never as a live state).
pub(super) fn state_of(code: i32) -> ImportState {
    ImportState::from_code(code).unwrap_or(ImportState::Failed)
}

pub(super) fn import(model: import::Model) -> Import {
    Import {
        id: ImportId(model.id),
        account_id: AccountId(model.account_id),
        file_name: model.file_name,
        state: state_of(model.state),
        encoding: model.encoding.as_deref().and_then(TextEncoding::parse),
        columns: model
            .columns
            .map(|json| serde_json::from_str(&json).unwrap_or_default()),
        file_bytes: model.file_bytes,
        planned: ActionCounts {
            total: model.total_row_count,
            create: model.create_count,
            update: model.update_count,
            unchanged: model.unchanged_count,
            error: model.error_count,
        },
        applied_count: model.applied_count,
        failed_count: model.failed_count,
        error_message: model.error_message,
        request_key: model.request_key,
        submit_request_id: model.submit_request_id,
        cancel_request_id: model.cancel_request_id,
        created_by: model.created_by,
        created_at: model.created_at,
        updated_at: model.updated_at,
        expire_at: model.expire_at,
        version: model.version,
        trace_context: model.trace_context,
        welcome_emails: model.welcome_emails,
        encoding_given: model.encoding_given,
        delimiter: model.delimiter,
        line_ending: model.line_ending,
        apply_batch_size: model.apply_batch_size,
    }
}

pub(super) fn import_model(import: &Import) -> import::ActiveModel {
    import::ActiveModel {
        id: Set(import.id.0),
        account_id: Set(import.account_id.0),
        file_name: Set(import.file_name.clone()),
        state: Set(import.state.code()),
        encoding: Set(import.encoding.map(|encoding| encoding.name().to_owned())),
        columns: Set(import.columns.as_ref().map(json)),
        file_bytes: Set(import.file_bytes),
        total_row_count: Set(import.planned.total),
        create_count: Set(import.planned.create),
        update_count: Set(import.planned.update),
        unchanged_count: Set(import.planned.unchanged),
        error_count: Set(import.planned.error),
        applied_count: Set(import.applied_count),
        failed_count: Set(import.failed_count),
        error_message: Set(import.error_message.clone()),
        request_key: Set(import.request_key.clone()),
        submit_request_id: Set(import.submit_request_id.clone()),
        cancel_request_id: Set(import.cancel_request_id.clone()),
        created_by: Set(import.created_by.clone()),
        created_at: Set(import.created_at),
        updated_at: Set(import.updated_at),
        expire_at: Set(import.expire_at),
        version: Set(import.version),
        trace_context: Set(import.trace_context.clone()),
        welcome_emails: Set(import.welcome_emails),
        encoding_given: Set(import.encoding_given),
        delimiter: Set(import.delimiter.clone()),
        line_ending: Set(import.line_ending.clone()),
        apply_batch_size: Set(import.apply_batch_size),
    }
}

/// A staged row and what the apply did with it (nothing yet without an outcome).
pub(super) fn staged_row(model: row::Model, outcome: Option<outcome::Model>) -> StagedRow {
    let (code, message, created) = match outcome {
        Some(outcome) => (outcome.outcome, outcome.message, outcome.profile_id),
        None => (RowOutcome::Pending.code(), String::new(), None),
    };
    StagedRow {
        row_number: model.row_number,
        action: RowAction::from_code(model.action).unwrap_or(RowAction::Error),
        profile_id: created.or(model.profile_id),
        values: serde_json::from_str(&model.cells).unwrap_or_default(),
        changes: serde_json::from_str(&model.changes).unwrap_or_default(),
        errors: serde_json::from_str(&model.errors).unwrap_or_default(),
        notes: serde_json::from_str(&model.notes).unwrap_or_default(),
        outcome: RowOutcome::from_code(code),
        outcome_message: message,
    }
}

/// A planned row as validation stages it: no outcome yet.
pub(super) fn planned_row(import_id: uuid::Uuid, row: PlannedRow) -> row::ActiveModel {
    row::ActiveModel {
        import_id: Set(import_id),
        row_number: Set(row.row_number),
        action: Set(row.action.code()),
        profile_id: Set(row.profile_id),
        claim: Set(row.claim),
        cells: Set(json(&values_by_header(&row.values))),
        changes: Set(json(&row.changes)),
        errors: Set(json(&row.errors)),
        notes: Set(json(&row.notes)),
    }
}

/// The column of the staged rows a repeated value is stored in; `None` for a value kept in
/// `import_claims`.
pub(super) fn repeated_column(value: RepeatedValue) -> Option<row::Column> {
    match value {
        RepeatedValue::Username => Some(row::Column::Claim),
        RepeatedValue::InternalId => Some(row::Column::ProfileId),
        RepeatedValue::Extension => None,
    }
}

/// What `rows` claim beside their usernames: each claimed username's skeleton and each
/// extension number, once per row.
pub(super) fn row_claims(import_id: uuid::Uuid, rows: &[PlannedRow]) -> Vec<claim::ActiveModel> {
    let mut claims = Vec::new();
    for row in rows {
        if let Some(skeleton) = &row.skeleton {
            claims.push(claim::ActiveModel {
                import_id: Set(import_id),
                kind: Set(Claimed::Skeleton.code()),
                value: Set(skeleton.clone()),
                row_number: Set(row.row_number),
                held: Set(false),
                holder_id: Set(None),
                holder_username: Set(None),
            });
        }
        // Each number once: a cell that gives one twice is a row error and claims none.
        claims.extend(
            row.extension_numbers
                .iter()
                .map(|number| claim::ActiveModel {
                    import_id: Set(import_id),
                    kind: Set(Claimed::Extension.code()),
                    value: Set(number.number.clone()),
                    row_number: Set(row.row_number),
                    held: Set(number.held),
                    holder_id: Set(number.holder.as_ref().map(|h| h.profile_id.clone())),
                    holder_username: Set(number.holder.as_ref().map(|h| h.username.clone())),
                }),
        );
    }
    claims
}

pub(super) fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}
