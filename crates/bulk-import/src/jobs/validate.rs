//! Validation: the uploaded file, read piece by piece from the database, becomes staged rows,
//! each planned in batches through identity's batch calls. Then rows that claim the same
//! username or usernames that look alike, name the same profile, or give the same extension
//! number are made errors that name each other (found by queries over the staged rows and
//! their claims, as identity would refuse all but one at apply), and the import is VALIDATED
//! with its counts — or INVALID when the file as a whole cannot be read.
//!
//! Memory holds one piece of the file and one batch of rows, whatever the file's size. An
//! interrupted validation starts again from the first row.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use roster_identity_domain::assignment::ExtensionBounds;
use tonic::Code;

use super::{Job, JobError};
use crate::domain::columns::{Layout, parse_header};
use crate::domain::import::{Import, ReadFormat, RepeatedValue};
use crate::domain::reader::{Next, RecordReader};
use crate::domain::rows::SuggestionSeeds;
use crate::domain::rows::{CleanRow, PlannedRow, RowError, clean_row, draft, finish, internal_id};
use crate::domain::state::RowAction;
use crate::identity::MAX_BATCH;

/// How the reader found the file's rows and lines, as GetImport reports them.
fn format_of(reader: &RecordReader) -> ReadFormat {
    ReadFormat {
        delimiter: reader.delimiter().map(char::from),
        line_ending: reader.line_ending(),
    }
}

/// Batches staged at once: while identity plans one batch and the database stores another,
/// the next is read and cleaned. Rows are staged under their row numbers, so batches may end
/// in any order; the checks across batches (repeated usernames and Internal IDs) run after
/// the last.
const BATCHES_IN_FLIGHT: usize = 3;

/// What reading the file came to.
enum Read {
    /// Every row was read and handed to staging.
    Complete {
        format: ReadFormat,
        header: bool,
        data_rows: u64,
        rows_read: i64,
    },
    /// The file as a whole cannot be read: the import is INVALID with this message.
    Invalid { message: String, format: ReadFormat },
}

/// One batch of clean rows, with the file's columns in file order.
type Batch = (Vec<CleanRow>, Vec<&'static str>);

pub(super) async fn run(job: &Job, import: Import) -> Result<(), JobError> {
    let store = &job.context.store;
    if !store
        .restart_validation(job.import_id, &job.context.owner, job.lease_ms())
        .await?
    {
        return Err(JobError::LeaseLost);
    }
    let Some(encoding) = import.encoding else {
        return invalid(
            job,
            "the upload did not complete".into(),
            ReadFormat::default(),
        )
        .await;
    };
    // The reader hands batches over a channel of one; staging takes them up to
    // BATCHES_IN_FLIGHT at a time. Either failing stops both.
    let (batches, staged) = tokio::sync::mpsc::channel::<Batch>(1);
    let staging = async {
        let mut staged = staged;
        let mut running = FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                batch = staged.recv(), if open && running.len() < BATCHES_IN_FLIGHT => {
                    match batch {
                        Some((rows, columns)) => running.push(stage(job, &import, rows, columns)),
                        None => open = false,
                    }
                }
                Some(done) = running.next(), if !running.is_empty() => done?,
                else => break,
            }
        }
        Ok::<(), JobError>(())
    };
    let (read, ()) = tokio::try_join!(read(job, encoding, batches), staging)?;
    let (format, data_rows, rows_read) = match read {
        Read::Invalid { message, format } => return invalid(job, message, format).await,
        Read::Complete {
            header: false,
            format,
            ..
        } => {
            return invalid(job, "the file has no header row".into(), format).await;
        }
        Read::Complete {
            format,
            data_rows,
            rows_read,
            header: true,
        } => (format, data_rows, rows_read),
    };
    if data_rows == 0 {
        let blank = match rows_read - 1 {
            0 => String::new(),
            1 => "; the one row after it is blank".into(),
            n => format!("; the {n} rows after it are blank"),
        };
        let message = format!("the file has a header row and no data rows{blank}");
        return invalid(job, message, format).await;
    }
    mark_repeats(job, RepeatedValue::Username).await?;
    mark_confusables(job).await?;
    mark_repeats(job, RepeatedValue::InternalId).await?;
    mark_repeats(job, RepeatedValue::Extension).await?;
    mark_taken(job).await?;
    let counts = store.action_counts(job.import_id).await?;
    if !store
        .finish_validation(
            job.import_id,
            &job.context.owner,
            job.lease_ms(),
            Ok(counts),
            format,
        )
        .await?
    {
        return Err(JobError::LeaseLost);
    }
    tracing::info!(
        rows = counts.total,
        errors = counts.error,
        "import validated"
    );
    Ok(())
}

/// Reads the uploaded file piece by piece and sends its clean rows to `batches`, a batch at a
/// time (the last one possibly short, or empty).
async fn read(
    job: &Job,
    encoding: crate::domain::encoding::TextEncoding,
    batches: tokio::sync::mpsc::Sender<Batch>,
) -> Result<Read, JobError> {
    let store = &job.context.store;
    let config = &job.context.config;
    let mut reader = RecordReader::new(encoding, config.max_row_bytes);
    let mut next_chunk = 0;
    let mut layout: Option<Layout> = None;
    let mut columns: Vec<&'static str> = Vec::new();
    let mut batch: Vec<CleanRow> = Vec::with_capacity(config.validate_batch);
    let mut data_rows = 0u64;
    // The staging side ended (it failed): its error is the answer.
    let stopped = || JobError::Stopping;
    loop {
        job.check()?;
        let next = match reader.next_record() {
            Ok(next) => next,
            Err(message) => {
                let format = format_of(&reader);
                return Ok(Read::Invalid { message, format });
            }
        };
        match next {
            Next::NeedInput => match store.chunk(job.import_id, next_chunk).await? {
                Some(data) => {
                    reader.push(&data);
                    next_chunk += 1;
                }
                None => reader.finish(),
            },
            Next::Record(record) => match &layout {
                None => match parse_header(&record.cells) {
                    Ok(found) => {
                        columns = found
                            .columns()
                            .iter()
                            .map(|column| column.header())
                            .collect();
                        layout = Some(found);
                    }
                    Err(message) => {
                        let format = format_of(&reader);
                        return Ok(Read::Invalid { message, format });
                    }
                },
                Some(layout) => {
                    let delimiter = reader.delimiter().unwrap_or(b',');
                    if let Some(row) = clean_row(layout, &record, config.max_field_chars, delimiter)
                    {
                        data_rows += 1;
                        batch.push(row);
                    }
                    if batch.len() >= config.validate_batch {
                        let rows = std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(config.validate_batch),
                        );
                        batches
                            .send((rows, columns.clone()))
                            .await
                            .map_err(|_| stopped())?;
                    }
                }
            },
            Next::End => break,
        }
    }
    if layout.is_some() && !batch.is_empty() {
        batches
            .send((batch, columns))
            .await
            .map_err(|_| stopped())?;
    }
    Ok(Read::Complete {
        format: format_of(&reader),
        header: layout.is_some(),
        data_rows,
        rows_read: reader.rows_read(),
    })
}

async fn invalid(job: &Job, message: String, format: ReadFormat) -> Result<(), JobError> {
    let message: String = message.chars().take(1024).collect();
    tracing::info!(%message, "import is invalid");
    if job
        .context
        .store
        .finish_validation(
            job.import_id,
            &job.context.owner,
            job.lease_ms(),
            Err(message),
            format,
        )
        .await?
    {
        Ok(())
    } else {
        Err(JobError::LeaseLost)
    }
}

/// Plans a batch of rows through identity and stages them.
async fn stage(
    job: &Job,
    import: &Import,
    rows: Vec<CleanRow>,
    columns: Vec<&'static str>,
) -> Result<(), JobError> {
    let account_id = import.account_id.to_string();
    let identity = &job.context.identity;
    let ids: Vec<String> = rows
        .iter()
        .filter(|row| !row.misshapen)
        .filter_map(|row| internal_id(row)?.ok())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let profiles = match job
        .call("BatchGetProfiles", || {
            identity.profiles(&account_id, ids.clone())
        })
        .await
    {
        Ok(profiles) => profiles,
        Err(JobError::Identity(status)) => return refused_by_identity(job, status).await,
        Err(other) => return Err(other),
    };
    // Checking a batch of rows is CPU work: on the blocking pool, so that the server's calls,
    // the file's reader and the other batches in flight go on meanwhile.
    let drafts: Vec<_> = roster_runtime::work::on_blocking_pool(move || {
        rows.into_iter().map(|row| draft(row, &profiles)).collect()
    })
    .await
    .ok_or(JobError::Stopping)?;
    // Each username once, with the names and email of the first row that asks for it (from
    // which identity builds suggestions when it refuses the name).
    let mut asked = HashSet::new();
    let usernames: Vec<(String, SuggestionSeeds)> = drafts
        .iter()
        .filter_map(|draft| Some((draft.username.clone()?, draft.seeds())))
        .filter(|(username, _)| asked.insert(username.clone()))
        .collect();
    let verdicts = match job
        .call("BatchCheckUsernames", || {
            identity.check_usernames(usernames.clone())
        })
        .await
    {
        Ok(verdicts) => verdicts,
        Err(JobError::Identity(status)) => return refused_by_identity(job, status).await,
        Err(other) => return Err(other),
    };
    let verdicts: HashMap<&String, _> = usernames
        .iter()
        .map(|(username, _)| username)
        .zip(verdicts)
        .collect();
    let mut planned: Vec<PlannedRow> = drafts
        .into_iter()
        .map(|draft| {
            let verdict = draft.username.as_ref().and_then(|name| verdicts.get(name));
            finish(draft, verdict)
        })
        .collect();
    match find_holders(job, &account_id, &mut planned).await {
        Ok(()) => {}
        Err(JobError::Identity(status)) => return refused_by_identity(job, status).await,
        Err(other) => return Err(other),
    }
    let staged_rows = planned.len() as u64;
    if job
        .context
        .store
        .stage_rows(
            job.import_id,
            &job.context.owner,
            job.lease_ms(),
            planned,
            &columns,
        )
        .await?
    {
        job.context
            .progress
            .rows_processed("validated", staged_rows);
        Ok(())
    } else {
        Err(JobError::LeaseLost)
    }
}

/// Asks identity which other profiles hold the extension numbers that `rows` give and their own
/// profiles do not hold, and notes each holder on its claim (see [`mark_taken`]).
async fn find_holders(
    job: &Job,
    account_id: &str,
    rows: &mut [PlannedRow],
) -> Result<(), JobError> {
    let wanted: Vec<String> = rows
        .iter()
        .flat_map(|row| &row.extension_numbers)
        .filter(|claim| !claim.held)
        // A number identity could not hold is left to the apply to refuse.
        .filter(|claim| claim.number.len() <= ExtensionBounds::LIMIT as usize)
        .map(|claim| claim.number.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let identity = &job.context.identity;
    let mut holders = HashMap::new();
    for numbers in wanted.chunks(MAX_BATCH) {
        let found = job
            .call("BatchGetProfiles", || {
                identity.extension_holders(account_id, numbers.to_vec())
            })
            .await?;
        match found {
            Some(found) => holders.extend(found),
            None => {
                tracing::warn!(
                    "identity does not tell extension holders (an older version): the preview \
                     cannot find numbers other profiles hold; the apply still refuses them"
                );
                return Ok(());
            }
        }
    }
    for row in rows.iter_mut() {
        let own = row.profile_id.clone();
        for claim in row.extension_numbers.iter_mut().filter(|claim| !claim.held) {
            claim.holder = holders
                .get(&claim.number)
                .filter(|holder| Some(&holder.profile_id) != own.as_ref())
                .cloned();
        }
    }
    Ok(())
}

/// Identity refused the calls themselves (not a row): the import cannot be validated.
async fn refused_by_identity(job: &Job, status: tonic::Status) -> Result<(), JobError> {
    // Unreachable (or busy) past the attempts is no verdict on the file: the validation is
    // tried again once the lease runs out.
    if crate::identity::is_transient(&status) {
        return Err(JobError::Identity(status));
    }
    // Not about the file: its delimiter and line ends are left unreported.
    let format = ReadFormat::default();
    if status.code() == Code::NotFound {
        invalid(job, "the account does not exist".into(), format).await?;
    } else {
        invalid(
            job,
            format!(
                "identity refused the validation calls ({}); ask the operator to check \
                 bulk-import's identity key",
                crate::identity::code_name(status.code() as i32)
            ),
            format,
        )
        .await?;
    }
    Err(JobError::Ended)
}

/// Rows sharing a username, an Internal ID or an extension number become errors that name
/// each other: the first names the second, every other names the first. An extension number
/// that a row's profile holds already and keeps stays that row's: only the others that give it
/// are errors, naming that row.
async fn mark_repeats(job: &Job, value: RepeatedValue) -> Result<(), JobError> {
    let store = &job.context.store;
    let header = match value {
        RepeatedValue::Username => "Username",
        RepeatedValue::InternalId => "Internal ID",
        RepeatedValue::Extension => "Extensions",
    };
    // What a row is told of the row it names, after "row N has"; `kept` when that row's
    // profile holds the number already.
    let what = |repeated: &str, kept: bool| match value {
        RepeatedValue::Username => "the same username".to_owned(),
        RepeatedValue::InternalId => "the same Internal ID; a profile may appear once".to_owned(),
        RepeatedValue::Extension if kept => {
            format!("extension {repeated} and keeps it; a number can be one profile's only")
        }
        RepeatedValue::Extension => {
            format!("extension {repeated} too; a number can be one profile's only")
        }
    };
    let mut after: Option<(String, i64)> = None;
    let mut group: Option<Group> = None;
    loop {
        job.check()?;
        let page = store
            .repeated_values(job.import_id, value, after.clone(), 1000)
            .await?;
        let Some(last) = page.last().cloned() else {
            return Ok(());
        };
        for (repeated, row_number) in page {
            let current = match &mut group {
                Some(current) if current.value == repeated => current,
                _ => {
                    let keeper = match value {
                        RepeatedValue::Extension => {
                            store.extension_keeper(job.import_id, &repeated).await?
                        }
                        _ => None,
                    };
                    group.insert(Group {
                        value: repeated.clone(),
                        first: keeper.unwrap_or(row_number),
                        kept: keeper.is_some(),
                        told: keeper.is_some(),
                    })
                }
            };
            if row_number == current.first {
                continue;
            }
            let (to_first, to_row) = (what(&repeated, false), what(&repeated, current.kept));
            current
                .name_each_other(job, row_number, header, DUPLICATE, &to_first, &to_row)
                .await?;
        }
        after = Some(last);
    }
}

/// Rows that repeat one value, as [`mark_repeats`] reads them.
struct Group {
    value: String,
    /// The row the others name: the first, or the row whose profile keeps the number.
    first: i64,
    /// `first`'s profile holds the number already and keeps it: `first` is no error.
    kept: bool,
    /// `first` was made an error naming the second row (or is no error).
    told: bool,
}

impl Group {
    /// Makes `row_number` an error naming the group's first row (`to_row`, after "row N
    /// has"), and the first row, once, an error naming it (`to_first`).
    async fn name_each_other(
        &mut self,
        job: &Job,
        row_number: i64,
        header: &str,
        reason: &str,
        to_first: &str,
        to_row: &str,
    ) -> Result<(), JobError> {
        if !self.told {
            self.told = true;
            add_error(job, self.first, header, reason, to_first, row_number).await?;
        }
        add_error(job, row_number, header, reason, to_row, self.first).await
    }
}

/// Rows whose usernames differ but look alike (the same UTS #39 skeleton: `paypal` and
/// `paypaI`) become errors, as identity would refuse the second at apply: each row whose
/// username is not the first such row's names the first, and the first names the first that
/// differs. Rows with the very same username are repeats (see [`mark_repeats`]), not this.
async fn mark_confusables(job: &Job) -> Result<(), JobError> {
    let store = &job.context.store;
    let mut after: Option<(String, i64)> = None;
    // The rows of one skeleton, and the username of its first row.
    let mut group: Option<(Group, String)> = None;
    loop {
        job.check()?;
        let page = store
            .confusable_claims(job.import_id, after.clone(), 1000)
            .await?;
        let Some((skeleton, row_number, _)) = page.last() else {
            return Ok(());
        };
        after = Some((skeleton.clone(), *row_number));
        for (skeleton, row_number, username) in page {
            match &mut group {
                Some((current, first_username)) if current.value == skeleton => {
                    if username != *first_username {
                        current
                            .name_each_other(
                                job,
                                row_number,
                                "Username",
                                CONFUSABLE,
                                LOOKS_ALIKE,
                                LOOKS_ALIKE,
                            )
                            .await?;
                    }
                }
                _ => {
                    let first = Group {
                        value: skeleton,
                        first: row_number,
                        kept: false,
                        told: false,
                    };
                    group = Some((first, username));
                }
            }
        }
    }
}

/// Rows that give an extension number another profile holds become errors (EXTENSION_TAKEN),
/// as identity would refuse them at apply — unless that profile's row in the file frees the
/// number above them (rows apply in file order) and is no error itself. A holder's row that
/// keeps the number was dealt with as a repeat (see [`mark_repeats`]).
///
/// Decided from the top of the file down: whether a row frees its number depends on whether
/// it is an error, which this check may make it for a number of its own — always above the
/// rows that wait for it, so each is decided before they are.
async fn mark_taken(job: &Job) -> Result<(), JobError> {
    let store = &job.context.store;
    let mut after: Option<(i64, String)> = None;
    loop {
        job.check()?;
        let page = store
            .taken_numbers(job.import_id, after.clone(), 1000)
            .await?;
        let Some((number, row_number, ..)) = page.last() else {
            return Ok(());
        };
        after = Some((*row_number, number.clone()));
        for (number, row_number, holder, username) in page {
            let named = match username.as_str() {
                "" => "another profile".to_owned(),
                username => format!("another profile ({username})"),
            };
            let message = match store
                .row_of_profile(job.import_id, &holder, &number)
                .await?
            {
                None => format!(
                    "extension {number} is held by {named}, which this file does not change; \
                     free it there first or give this row another number"
                ),
                Some((_, _, true)) => continue,
                Some((freeing, action, false))
                    if freeing < row_number && action != RowAction::Error =>
                {
                    continue;
                }
                Some((freeing, RowAction::Error, false)) => format!(
                    "extension {number} is held by {named}, whose row {freeing} would free it \
                     but has errors"
                ),
                Some((freeing, _, false)) => format!(
                    "extension {number} is held by {named}, whose row {freeing} frees it only \
                     below this row; rows apply in file order, so move this row below row \
                     {freeing}"
                ),
            };
            add_row_error(job, row_number, "Extensions", "EXTENSION_TAKEN", message).await?;
        }
    }
}

/// The reason of a row that repeats another's value.
const DUPLICATE: &str = "DUPLICATE_IN_FILE";
/// The reason of a row whose username looks like another row's (identity's own reason).
const CONFUSABLE: &str = "USERNAME_CONFUSABLE";
/// What a row whose username looks like another's is told, after "row N has".
const LOOKS_ALIKE: &str =
    "a username that looks like this one; two usernames that look alike cannot both be used";

/// Makes a row an error naming row `other`: "row `other` has `what`".
async fn add_error(
    job: &Job,
    row_number: i64,
    header: &str,
    reason: &str,
    what: &str,
    other: i64,
) -> Result<(), JobError> {
    let message = format!("row {other} has {what}");
    add_row_error(job, row_number, header, reason, message).await
}

/// Makes a row an error, adding this one to those it has, while this replica holds the lease.
async fn add_row_error(
    job: &Job,
    row_number: i64,
    header: &str,
    reason: &str,
    message: String,
) -> Result<(), JobError> {
    let error = RowError {
        column: header.to_owned(),
        reason: reason.to_owned(),
        message,
    };
    let context = &job.context;
    let held = context
        .store
        .add_row_error(
            job.import_id,
            &context.owner,
            context.config.lease_ms(),
            row_number,
            error,
        )
        .await?;
    if held {
        Ok(())
    } else {
        Err(JobError::LeaseLost)
    }
}
