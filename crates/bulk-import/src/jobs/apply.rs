//! The apply: CREATE and UPDATE rows are written through identity's BatchUpsertProfiles in
//! file order, a batch at a time, each row on the idempotency key `<import id>:<row number>`.
//!
//! Progress is each row's recorded outcome. A replica that takes over after a crash starts at
//! the first row without one; rows of a batch that identity wrote but whose outcome was never
//! recorded are sent again, and identity answers them from their idempotency keys without
//! writing anything twice.

use std::collections::HashMap;

use roster_proto::identity::v1 as pb;

use super::{Job, JobError};
use crate::domain::columns::Column;
use crate::domain::import::{Import, RowResult, StagedRow};
use crate::domain::rows::{column_of_field, in_row_voice, upsert_fields, values_by_column};
use crate::domain::state::{ImportState, RowAction, RowOutcome};
use crate::identity::code_name;

pub(super) async fn run(job: &Job, import: Import) -> Result<(), JobError> {
    let store = &job.context.store;
    // Rows are read in windows of row numbers, each bounded whatever plan the database picks:
    // a plain "after row N, first 500" was planned (without statistics) as a scan of every
    // row left, once per batch.
    let last_row = store.last_row_number(job.import_id).await?.unwrap_or(0);
    let window = job.context.config.apply_batch as i64;
    let mut after = 0i64;
    while after < last_row {
        job.check()?;
        let state = store
            .import(job.import_id)
            .await?
            .map(|import| import.state);
        if state != Some(ImportState::Applying) {
            // Cancelled meanwhile: finish_apply drops the lease and changes nothing else.
            store
                .finish_apply(job.import_id, &job.context.owner, job.lease_ms(), None)
                .await?;
            return Ok(());
        }
        let upto = after + window;
        let rows = store.pending_rows(job.import_id, after, upto).await?;
        after = upto;
        if rows.is_empty() {
            continue;
        }
        let results = match write_batch(job, &import, &rows).await {
            Ok(results) => results,
            Err(JobError::Identity(status)) => {
                let message = format!(
                    "identity refused the writes ({}: {}); rows not yet written were skipped",
                    code_name(status.code() as i32),
                    status.message().chars().take(300).collect::<String>()
                );
                tracing::error!(%message, "import apply failed");
                store
                    .finish_apply(
                        job.import_id,
                        &job.context.owner,
                        job.lease_ms(),
                        Some(&message),
                    )
                    .await?;
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        if !store
            .record_outcomes(job.import_id, &job.context.owner, job.lease_ms(), &results)
            .await?
        {
            return Err(JobError::LeaseLost);
        }
        count_outcomes(job, &results);
    }
    if !store
        .finish_apply(job.import_id, &job.context.owner, job.lease_ms(), None)
        .await?
    {
        return Err(JobError::LeaseLost);
    }
    tracing::info!("import applied");
    Ok(())
}

/// Counts a recorded batch's rows as `applied` or `failed` for the metrics endpoint.
fn count_outcomes(job: &Job, results: &[RowResult]) {
    let failed = results
        .iter()
        .filter(|result| result.outcome == RowOutcome::Failed)
        .count() as u64;
    let progress = &job.context.progress;
    progress.rows_processed("applied", results.len() as u64 - failed);
    progress.rows_processed("failed", failed);
}

/// Writes one batch and says what became of each row.
async fn write_batch(
    job: &Job,
    import: &Import,
    rows: &[StagedRow],
) -> Result<Vec<RowResult>, JobError> {
    let identity = &job.context.identity;
    let account_id = &import.account_id.to_string();
    // An update takes the profile's value as it is now for each column the file lacks.
    let update_ids: Vec<String> = rows
        .iter()
        .filter(|row| row.action == RowAction::Update)
        .filter_map(|row| row.profile_id.clone())
        .collect();
    let current = job
        .call("BatchGetProfiles", || {
            identity.profiles(account_id, update_ids.clone())
        })
        .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|row| {
            let values = values_by_column(&row.values);
            let is_update = row.action == RowAction::Update;
            let profile = row
                .profile_id
                .as_ref()
                .filter(|_| is_update)
                .and_then(|id| current.get(id));
            let mut fields = upsert_fields(&values, profile);
            if is_update {
                // A profile deleted since validation still gets its id, so identity refuses
                // the row instead of creating a new profile.
                fields.id = row.profile_id.clone().unwrap_or_default();
            }
            (format!("{}:{}", job.import_id, row.row_number), fields)
        })
        .collect();
    let import_id = job.import_id.to_string();
    let results = job
        .call("BatchUpsertProfiles", || {
            identity.upsert(account_id, &import_id, items.clone(), import.welcome_emails)
        })
        .await?;
    let by_key: HashMap<String, pb::ProfileUpsertResult> = results
        .into_iter()
        .map(|result| (result.idempotency_key.clone(), result))
        .collect();
    Ok(rows
        .iter()
        .zip(items)
        .map(|(row, (key, _))| match by_key.get(&key) {
            Some(result) if result.outcome == pb::UpsertOutcome::Failed as i32 => RowResult {
                row_number: row.row_number,
                outcome: RowOutcome::Failed,
                profile_id: None,
                message: failure_message(result),
            },
            Some(result) => RowResult {
                row_number: row.row_number,
                outcome: RowOutcome::Applied,
                profile_id: result.profile.as_ref().map(|profile| profile.id.clone()),
                message: String::new(),
            },
            None => RowResult {
                row_number: row.row_number,
                outcome: RowOutcome::Failed,
                profile_id: None,
                message: "identity returned no result for this row".to_owned(),
            },
        })
        .collect())
}

/// `ALREADY_EXISTS (USERNAME_TAKEN): this username is in use on the platform …`, with every
/// invalid field; never more than 1024 characters.
fn failure_message(result: &pb::ProfileUpsertResult) -> String {
    // A refused assignment names its column, as a row error of the preview does.
    let column = match result.error_reason.as_str() {
        "EXTENSION_TAKEN" | "EXTENSION_INVALID" => Some(Column::Extensions),
        "ROLE_INVALID" => Some(Column::Roles),
        _ => None,
    };
    let mut message = column
        .map(|column| format!("{}: ", column.header()))
        .unwrap_or_default();
    message.push_str(&format!("{} ", code_name(result.error_code)));
    if !result.error_reason.is_empty() {
        message.push_str(&format!("({}) ", result.error_reason));
    }
    message.push_str(result.error_message.trim());
    for field in &result.field_errors {
        // Columns by their template header, as the preview names them.
        let name = column_of_field(&field.field)
            .map_or(field.field.clone(), |column| column.header().to_owned());
        message.push_str(&format!("; {name}: {}", in_row_voice(&field.description)));
    }
    message.chars().take(1024).collect()
}
