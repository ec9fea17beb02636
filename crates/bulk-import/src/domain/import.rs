//! An import and its staged rows as the rest of the service sees them: typed ids, the state as
//! an [`ImportState`], the counts, the format the file was found in. The store converts its
//! rows to and from these; nothing outside it sees a database row.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

use super::encoding::TextEncoding;
use super::rows::{FieldChange, RowError, RowNote};
use super::state::{ImportState, RowAction, RowOutcome};

/// The id of an import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImportId(pub Uuid);

impl ImportId {
    /// A new id, ordered by creation time (so pages of imports list the newest first).
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for ImportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of the account an import belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountId(pub Uuid);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What validation planned for an import's rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionCounts {
    pub total: i64,
    pub create: i64,
    pub update: i64,
    pub unchanged: i64,
    pub error: i64,
}

/// How validation found the file's rows and lines; `None` for what it did not get to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadFormat {
    pub delimiter: Option<char>,
    pub line_ending: Option<&'static str>,
}

/// An import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub id: ImportId,
    pub account_id: AccountId,
    pub file_name: String,
    pub state: ImportState,
    /// The encoding the file is read in, once the upload is complete.
    pub encoding: Option<TextEncoding>,
    /// The template headers the file has, in file order, once validation read them.
    pub columns: Option<Vec<String>>,
    pub file_bytes: i64,
    /// What validation planned.
    pub planned: ActionCounts,
    pub applied_count: i64,
    pub failed_count: i64,
    pub error_message: String,
    /// `<caller>:<account>:<request_id>` of the creating request (AIP-155), unique.
    pub request_key: Option<String>,
    pub submit_request_id: Option<String>,
    pub cancel_request_id: Option<String>,
    /// The caller key's name that created the import.
    pub created_by: String,
    /// Milliseconds since the Unix epoch, as every time of an import.
    pub created_at: i64,
    pub updated_at: i64,
    pub expire_at: Option<i64>,
    pub version: i64,
    /// The W3C `traceparent` its validation and apply continue; empty when tracing was off.
    pub trace_context: String,
    /// Whether the profiles the apply creates get a welcome email (set by SubmitImport).
    pub welcome_emails: bool,
    /// The request named the encoding (rather than it being detected).
    pub encoding_given: bool,
    /// The column delimiter (`,` or `;`), once validation read the header row.
    pub delimiter: Option<String>,
    /// `CRLF`, `LF`, `CR` or `MIXED`, once validation read the file's lines.
    pub line_ending: Option<String>,
    /// Rows per batch of the apply, pinned by SubmitImport so that every replica that works on
    /// the import sends the same windows of rows, each repeatable whole on one idempotency key.
    /// `None` for imports submitted by versions that did not pin it, whose rows go on one
    /// idempotency key each.
    pub apply_batch_size: Option<i32>,
}

/// What a new import is made of; the rest starts empty.
#[derive(Clone, Debug)]
pub struct NewImport {
    pub account_id: AccountId,
    pub file_name: String,
    /// The caller key's name.
    pub created_by: String,
    /// The creating request's id (AIP-155); empty for none.
    pub request_id: String,
    pub trace_context: String,
    /// Milliseconds since the Unix epoch.
    pub now: i64,
    /// How long the import lives unsubmitted, in milliseconds.
    pub ttl_ms: i64,
}

impl Import {
    /// A new import receiving its file (UPLOADING), expiring `ttl_ms` after `now` unless
    /// submitted.
    pub fn new_upload(new: NewImport) -> Self {
        let NewImport {
            account_id,
            file_name,
            created_by,
            request_id,
            trace_context,
            now,
            ttl_ms,
        } = new;
        Self {
            id: ImportId::generate(),
            account_id,
            file_name,
            state: ImportState::Uploading,
            encoding: None,
            columns: None,
            file_bytes: 0,
            planned: ActionCounts::default(),
            applied_count: 0,
            failed_count: 0,
            error_message: String::new(),
            request_key: (!request_id.is_empty())
                .then(|| format!("{created_by}:{account_id}:{request_id}")),
            submit_request_id: None,
            cancel_request_id: None,
            created_by,
            created_at: now,
            updated_at: now,
            expire_at: Some(now + ttl_ms),
            version: 1,
            trace_context,
            welcome_emails: false,
            encoding_given: false,
            delimiter: None,
            line_ending: None,
            apply_batch_size: None,
        }
    }

    /// Rows handled and to handle in the import's current phase.
    pub fn progress(&self) -> (i64, i64) {
        match self.state {
            ImportState::Uploading => (0, 0),
            ImportState::Validating => (self.planned.total, 0),
            ImportState::Validated | ImportState::Invalid => {
                (self.planned.total, self.planned.total)
            }
            _ => (
                self.applied_count + self.failed_count,
                self.planned.create + self.planned.update,
            ),
        }
    }
}

/// One staged row: the plan validation made and what the apply did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedRow {
    pub row_number: i64,
    pub action: RowAction,
    pub profile_id: Option<String>,
    /// Cell values by template header.
    pub values: BTreeMap<String, String>,
    pub changes: Vec<FieldChange>,
    pub errors: Vec<RowError>,
    pub notes: Vec<RowNote>,
    pub outcome: RowOutcome,
    pub outcome_message: String,
}

/// One row's outcome, as the apply records it.
#[derive(Clone, Debug)]
pub struct RowResult {
    pub row_number: i64,
    pub outcome: RowOutcome,
    pub profile_id: Option<String>,
    pub message: String,
}

/// The value rows are searched for repeats of (the same in two rows makes both errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepeatedValue {
    /// The canonical username a row would take.
    Username,
    /// The profile a row updates.
    InternalId,
    /// An extension number a row's profile would hold.
    Extension,
}

/// What a staged row takes that no other row may take too, beside its canonical username and
/// its profile: kept in `import_claims` while the import validates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The UTS #39 skeleton of the username it takes: rows whose usernames differ but look
    /// alike.
    Skeleton,
    /// An extension number its profile would hold.
    Extension,
}

impl Claimed {
    pub fn code(self) -> i32 {
        match self {
            Claimed::Skeleton => 1,
            Claimed::Extension => 2,
        }
    }
}
