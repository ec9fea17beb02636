//! The apply: CREATE and UPDATE rows are written through identity's BatchUpsertProfiles in
//! file order, a batch at a time, each row on the idempotency key `<import id>:<row number>`.
//! A batch is a window of row numbers whose size was pinned on the import when it was
//! submitted, so every replica cuts the file into the same windows, and each window goes on
//! the request_id `<import id>:rows:<first>-<last>`: identity keeps the answers of a window's
//! rows in one record (imports submitted before the size was pinned send no request_id, and
//! identity keeps one record per row, as it did when their rows were written).
//!
//! Progress is each row's recorded outcome. A replica that takes over after a crash starts at
//! the first row without one; rows of a batch that identity wrote but whose outcome was never
//! recorded are sent again, in their window, and identity answers them from what it kept
//! without writing anything twice.
//!
//! A cancel skips every row without an outcome. Each request goes to identity only after the
//! import was found still APPLYING, one read right before it, so rows read before the cancel
//! are not written after it; the rows of a request already on its way when the cancel came
//! are written by identity, and their outcomes replace the cancel's SKIPPED.

use std::collections::HashMap;

use roster_proto::identity::v1 as pb;

use super::{Job, JobError};
use crate::domain::columns::Column;
use crate::domain::import::{Import, RowResult, StagedRow};
use crate::domain::rows::{
    UpsertFields, column_of_field, field_of_column, in_row_voice, upsert_fields, values_by_column,
};
use crate::domain::state::{ImportState, RowAction, RowOutcome};
use crate::identity::{code_name, is_transient};

pub(super) async fn run(job: &Job, import: Import) -> Result<(), JobError> {
    let store = &job.context.store;
    // Rows are read in windows of row numbers, each bounded whatever plan the database picks:
    // a plain "after row N, first 500" was planned (without statistics) as a scan of every
    // row left, once per batch.
    let pinned = import
        .apply_batch_size
        .map(|size| i64::from(size).clamp(1, crate::identity::MAX_BATCH as i64));
    let mut windows = Windows {
        after: 0,
        applying: true,
        last: store.last_row_number(job.import_id).await?.unwrap_or(0),
        size: pinned.unwrap_or(job.context.config.apply_batch as i64),
        per_group: job.context.config.apply_batches_in_flight.max(1),
        keyed: pinned.is_some(),
    };
    // While identity writes one group of batches, the outcomes of the group before are
    // recorded and the rows of the group after are read: bulk-import's own database work is
    // off the critical path.
    let mut next = windows.next_group(job).await?;
    let mut unrecorded: Vec<RowResult> = Vec::new();
    while !next.is_empty() {
        job.check()?;
        let group = std::mem::take(&mut next);
        let (written, after) = tokio::join!(write_group(job, &import, group), async {
            if !unrecorded.is_empty() {
                record(job, &std::mem::take(&mut unrecorded)).await?;
            }
            windows.next_group(job).await
        });
        let (results, failure) = written;
        unrecorded = results;
        match failure {
            None => {}
            // Cancelled before a batch of the group went out: the batches sent before keep
            // their outcomes, the others' rows stay skipped.
            Some(JobError::Ended) => {
                windows.applying = false;
                break;
            }
            Some(JobError::Identity(status)) if is_transient(&status) => {
                // Identity stayed unreachable (or busy) past the attempts: a request that got
                // no answer may have been written. What was answered is recorded, and the rest
                // is left to the job's next try, once the lease runs out: it sends the same
                // windows under the same request ids, and identity answers what it wrote then
                // from them. The import stays APPLYING; nothing is skipped.
                record(job, &unrecorded).await?;
                return Err(JobError::Identity(status));
            }
            Some(JobError::Identity(status)) => {
                // Identity refused the writes: nothing of a refused request was written. The
                // batches identity did write keep their outcomes; the rest are skipped.
                record(job, &unrecorded).await?;
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
            // Rows written but not recorded are sent again by whoever resumes, and identity
            // answers them from their idempotency keys.
            Some(other) => return Err(other),
        }
        next = after?;
    }
    // The last group written; or the import was cancelled meanwhile, and the rows of the
    // requests sent before get their outcomes over the cancel's SKIPPED (identity wrote them).
    if !unrecorded.is_empty() {
        record(job, &unrecorded).await?;
    }
    // Cancelled: finish_apply drops the lease and changes nothing else.
    let finished = store
        .finish_apply(job.import_id, &job.context.owner, job.lease_ms(), None)
        .await?;
    if !windows.applying {
        return Ok(());
    }
    if !finished {
        return Err(JobError::LeaseLost);
    }
    tracing::info!("import applied");
    Ok(())
}

/// The windows of row numbers the apply goes through.
struct Windows {
    /// The last row number read.
    after: i64,
    /// The import's last row number.
    last: i64,
    /// Row numbers per window: one batch.
    size: i64,
    /// Batches read at once, a group identity may receive together.
    per_group: usize,
    /// False once the import was found no longer APPLYING (cancelled).
    applying: bool,
    /// Each window goes on a request_id of its own (the import pinned its batch size).
    keyed: bool,
}

/// The rows still to write of one window of row numbers.
struct Window {
    /// The window's request_id; empty for imports that did not pin their batch size.
    request_id: String,
    rows: Vec<StagedRow>,
}

impl Windows {
    /// The rows still to write of the next windows that have any, one batch per window, up to
    /// `per_group` batches; none at the end, or once the import is no longer APPLYING.
    async fn next_group(&mut self, job: &Job) -> Result<Vec<Window>, JobError> {
        let store = &job.context.store;
        let mut group = Vec::new();
        if self.applying
            && self.after < self.last
            && store.import_state(job.import_id).await? != Some(ImportState::Applying)
        {
            self.applying = false;
            return Ok(group);
        }
        while group.len() < self.per_group && self.after < self.last {
            let upto = self.after + self.size;
            let rows = store.pending_rows(job.import_id, self.after, upto).await?;
            let request_id = if self.keyed {
                format!("{}:rows:{}-{upto}", job.import_id, self.after + 1)
            } else {
                String::new()
            };
            self.after = upto;
            if !rows.is_empty() {
                group.push(Window { request_id, rows });
            }
        }
        Ok(group)
    }
}

/// Records a written batch's outcomes, as long as this replica holds the lease.
async fn record(job: &Job, results: &[RowResult]) -> Result<(), JobError> {
    if !job
        .context
        .store
        .record_outcomes(job.import_id, &job.context.owner, job.lease_ms(), results)
        .await?
    {
        return Err(JobError::LeaseLost);
    }
    count_outcomes(job, results);
    Ok(())
}

/// Writes a group of batches; returns what became of the rows of every batch identity wrote,
/// and the failure that stopped the rest, if any: [`JobError::Ended`] when the import was
/// cancelled before they were sent.
///
/// The batches go to identity at once, each in its own transaction, unless a row of the group
/// frees an extension number: a row below it may claim that number, so then they go one after
/// another, in file order. Nothing else in a file can make one row depend on another — a
/// username or an Internal ID on two rows is a preview error, never written.
async fn write_group(
    job: &Job,
    import: &Import,
    group: Vec<Window>,
) -> (Vec<RowResult>, Option<JobError>) {
    let mut prepared = Vec::with_capacity(group.len());
    for window in group {
        match prepare(job, import, window).await {
            Ok(batch) => prepared.push(batch),
            Err(error) => return (Vec::new(), Some(error)),
        }
    }
    job.context.config.apply_pause.wait().await;
    let mut results = Vec::new();
    if prepared.iter().any(|batch| batch.frees_extensions) {
        for batch in &prepared {
            let written = async {
                still_applying(job).await?;
                send(job, import, batch).await
            };
            match written.await {
                Ok(written) => results.extend(written),
                Err(error) => return (results, Some(error)),
            }
        }
        return (results, None);
    }
    if let Err(error) = still_applying(job).await {
        return (results, Some(error));
    }
    let mut failure = None;
    let sends = prepared.iter().map(|batch| send(job, import, batch));
    for written in futures::future::join_all(sends).await {
        match written {
            Ok(written) => results.extend(written),
            // The first failure in file order is the one reported.
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    (results, failure)
}

/// Ok while the import is APPLYING; [`JobError::Ended`] once it is not (cancelled, or gone).
/// Asked right before a write goes to identity: the cancel skipped every row not written yet,
/// and a row read before it must not be written after it.
async fn still_applying(job: &Job) -> Result<(), JobError> {
    match job.context.store.import_state(job.import_id).await? {
        Some(ImportState::Applying) => Ok(()),
        _ => Err(JobError::Ended),
    }
}

/// A batch ready for identity: each row's write on its idempotency key.
struct Prepared {
    /// The window's request_id (empty: none).
    request_id: String,
    rows: Vec<StagedRow>,
    items: Vec<(String, UpsertFields)>,
    /// Some row takes an extension number away from its profile.
    frees_extensions: bool,
}

/// Builds a batch's writes. An update writes the columns the preview showed changing, and
/// only those (its `mask`); the others take the profile's values as read here, which identity
/// does not write.
async fn prepare(job: &Job, import: &Import, window: Window) -> Result<Prepared, JobError> {
    let Window { request_id, rows } = window;
    let identity = &job.context.identity;
    let account_id = &import.account_id.to_string();
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
    let mut frees_extensions = false;
    let items = rows
        .iter()
        .map(|row| {
            let mut values = values_by_column(&row.values);
            let is_update = row.action == RowAction::Update;
            if is_update {
                // Only what the preview showed changing is written: every other column takes
                // the profile's value as it is now, so a change made to it since the preview
                // (in the console, by SCIM, by another import) stands.
                values.retain(|column, _| {
                    row.changes
                        .iter()
                        .any(|change| change.column == column.header())
                });
            }
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
                // And identity writes those columns alone: a change made to another field
                // between the read above and identity's transaction stands as well.
                fields.mask = Some(values.keys().copied().filter_map(field_of_column).collect());
            }
            frees_extensions |= fields.set_assignments
                && profile.is_some_and(|profile| {
                    profile.extensions.iter().any(|held| {
                        !fields
                            .extensions
                            .iter()
                            .any(|wanted| wanted.number == held.number)
                    })
                });
            (format!("{}:{}", job.import_id, row.row_number), fields)
        })
        .collect();
    Ok(Prepared {
        request_id,
        rows,
        items,
        frees_extensions,
    })
}

/// Writes one prepared batch and says what became of each row.
async fn send(job: &Job, import: &Import, batch: &Prepared) -> Result<Vec<RowResult>, JobError> {
    let identity = &job.context.identity;
    let account_id = &import.account_id.to_string();
    let import_id = job.import_id.to_string();
    let results = job
        .call("BatchUpsertProfiles", || {
            identity.upsert(
                account_id,
                &import_id,
                &batch.request_id,
                batch.items.clone(),
                import.welcome_emails,
            )
        })
        .await?;
    let by_key: HashMap<String, pb::ProfileUpsertResult> = results
        .into_iter()
        .map(|result| (result.idempotency_key.clone(), result))
        .collect();
    Ok(batch
        .rows
        .iter()
        .zip(&batch.items)
        .map(|(row, (key, _))| match by_key.get(key) {
            Some(result) if result.outcome == pb::UpsertOutcome::Failed as i32 => RowResult {
                row_number: row.row_number,
                outcome: RowOutcome::Failed,
                profile_id: None,
                message: failure_message(result),
            },
            Some(result) => RowResult {
                row_number: row.row_number,
                outcome: if result.outcome == pb::UpsertOutcome::Unchanged as i32 {
                    RowOutcome::Unchanged
                } else {
                    RowOutcome::Applied
                },
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
