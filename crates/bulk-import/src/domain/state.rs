//! The life cycle of an import and of each of its rows.
//!
//! `UPLOADING → VALIDATING → VALIDATED | INVALID`; `UPLOADING → FAILED` when the upload ends
//! before its file is complete; `VALIDATED → APPLYING → COMPLETED | COMPLETED_WITH_ERRORS |
//! FAILED`; `CANCELLED` from any state before the end of APPLYING.
//! The stored codes are the protobuf enum numbers, so the two can never drift apart silently.
//!
//! Which steps each state allows, and what a refused step says, is decided here; the store
//! carries a step out with one conditional UPDATE (`WHERE state = …`) and reports the state it
//! found when the row had moved on meanwhile.

use std::fmt;

use super::import::Import;

/// Where an import is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportState {
    Uploading = 1,
    Validating = 2,
    Validated = 3,
    Invalid = 4,
    Applying = 5,
    Completed = 6,
    CompletedWithErrors = 7,
    Failed = 8,
    Cancelled = 9,
}

impl ImportState {
    pub const ALL: [ImportState; 9] = [
        ImportState::Uploading,
        ImportState::Validating,
        ImportState::Validated,
        ImportState::Invalid,
        ImportState::Applying,
        ImportState::Completed,
        ImportState::CompletedWithErrors,
        ImportState::Failed,
        ImportState::Cancelled,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.code() == code)
    }

    /// States that will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ImportState::Invalid
                | ImportState::Completed
                | ImportState::CompletedWithErrors
                | ImportState::Failed
                | ImportState::Cancelled
        )
    }

    /// States a worker has something to do in.
    pub fn needs_worker(self) -> bool {
        matches!(self, ImportState::Validating | ImportState::Applying)
    }

    /// True when CancelImport may move the import to CANCELLED.
    pub fn cancellable(self) -> bool {
        matches!(
            self,
            ImportState::Uploading
                | ImportState::Validating
                | ImportState::Validated
                | ImportState::Applying
        )
    }

    /// The name callers see, e.g. `VALIDATED`.
    pub fn name(self) -> &'static str {
        match self {
            ImportState::Uploading => "UPLOADING",
            ImportState::Validating => "VALIDATING",
            ImportState::Validated => "VALIDATED",
            ImportState::Invalid => "INVALID",
            ImportState::Applying => "APPLYING",
            ImportState::Completed => "COMPLETED",
            ImportState::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            ImportState::Failed => "FAILED",
            ImportState::Cancelled => "CANCELLED",
        }
    }
}

/// Why the life cycle refuses a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The import is in `state`; `hint` says what the step needs.
    WrongState {
        state: ImportState,
        hint: &'static str,
    },
    /// A VALIDATED import whose expiry passed before it was submitted.
    Expired,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongState { state, hint } => {
                write!(f, "the import is {}; {hint}", state.name())
            }
            Refusal::Expired => {
                f.write_str("the import expired before it was submitted; upload the file again")
            }
        }
    }
}

/// What a step asked of an import comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Carry it out, from the state the import is in now.
    Go(ImportState),
    /// It was taken already (the same request again, or the state it leads to): answer the
    /// import as it is.
    Done,
    Refused(Refusal),
}

impl ImportState {
    /// The refusal of a submit from this state.
    pub fn not_submittable(self) -> Refusal {
        Refusal::WrongState {
            state: self,
            hint: "only a VALIDATED import can be submitted",
        }
    }

    /// The refusal of a cancel from this state.
    pub fn not_cancellable(self) -> Refusal {
        Refusal::WrongState {
            state: self,
            hint: "a finished import cannot be cancelled",
        }
    }

    /// Whether the import's rows may be listed (validation staged them all).
    pub fn check_rows_listable(self) -> Result<(), Refusal> {
        if matches!(self, ImportState::Uploading | ImportState::Validating) {
            return Err(Refusal::WrongState {
                state: self,
                hint: "its rows can be listed once it is VALIDATED (follow it with WatchImport)",
            });
        }
        Ok(())
    }

    /// Whether the report may be downloaded; `has_columns` says validation read the header.
    pub fn check_report_ready(self, has_columns: bool) -> Result<(), Refusal> {
        if matches!(
            self,
            ImportState::Uploading | ImportState::Validating | ImportState::Invalid
        ) || !has_columns
        {
            return Err(Refusal::WrongState {
                state: self,
                hint: "the report is available once the import is VALIDATED",
            });
        }
        Ok(())
    }

    /// Where an apply ends: FAILED when it broke off, COMPLETED when no row was an error or
    /// failed, COMPLETED_WITH_ERRORS otherwise.
    pub fn after_apply(broke_off: bool, error_rows: i64, failed_rows: i64) -> ImportState {
        if broke_off {
            ImportState::Failed
        } else if error_rows == 0 && failed_rows == 0 {
            ImportState::Completed
        } else {
            ImportState::CompletedWithErrors
        }
    }
}

/// SubmitImport on `import` with `request_id` at `now`: the same request again answers the
/// import as it is; only a VALIDATED import that has not expired moves to APPLYING.
pub fn submit(import: &Import, request_id: &str, now: i64) -> Step {
    if !request_id.is_empty() && import.submit_request_id.as_deref() == Some(request_id) {
        return Step::Done;
    }
    if import.state != ImportState::Validated {
        return Step::Refused(import.state.not_submittable());
    }
    if import.expire_at.is_some_and(|expire| expire <= now) {
        return Step::Refused(Refusal::Expired);
    }
    Step::Go(import.state)
}

/// CancelImport on `import` with `request_id`: a cancelled import (or the same request again)
/// answers the import as it is; any import that has not finished moves to CANCELLED.
pub fn cancel(import: &Import, request_id: &str) -> Step {
    if import.state == ImportState::Cancelled
        || (!request_id.is_empty() && import.cancel_request_id.as_deref() == Some(request_id))
    {
        return Step::Done;
    }
    if !import.state.cancellable() {
        return Step::Refused(import.state.not_cancellable());
    }
    Step::Go(import.state)
}

/// What validation decided for a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowAction {
    Create = 1,
    Update = 2,
    Unchanged = 3,
    Error = 4,
}

impl RowAction {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Self> {
        [
            RowAction::Create,
            RowAction::Update,
            RowAction::Unchanged,
            RowAction::Error,
        ]
        .into_iter()
        .find(|action| action.code() == code)
    }

    /// The report's Status before submit: the planned action.
    pub fn planned_status(self) -> &'static str {
        match self {
            RowAction::Create => "Create",
            RowAction::Update => "Update",
            RowAction::Unchanged => "Unchanged",
            RowAction::Error => "Error",
        }
    }

    /// True for rows the apply writes.
    pub fn writes(self) -> bool {
        matches!(self, RowAction::Create | RowAction::Update)
    }
}

/// What the apply did with a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowOutcome {
    Pending = 0,
    Applied = 1,
    Failed = 2,
    Skipped = 3,
    /// An update identity found already made: the profile held the row's values.
    Unchanged = 4,
}

impl RowOutcome {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Self {
        match code {
            1 => RowOutcome::Applied,
            2 => RowOutcome::Failed,
            3 => RowOutcome::Skipped,
            4 => RowOutcome::Unchanged,
            _ => RowOutcome::Pending,
        }
    }
}

/// The report's Status of a row: the outcome once the apply reached it, the plan before.
pub fn report_status(action: RowAction, outcome: RowOutcome) -> &'static str {
    match (action, outcome) {
        (RowAction::Create, RowOutcome::Applied) => "Created",
        (RowAction::Update, RowOutcome::Applied) => "Updated",
        (_, RowOutcome::Unchanged) => "Unchanged",
        (_, RowOutcome::Failed) => "Failed",
        (RowAction::Create | RowAction::Update, RowOutcome::Skipped) => "Skipped",
        (action, _) => action.planned_status(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for state in ImportState::ALL {
            assert_eq!(ImportState::from_code(state.code()), Some(state));
        }
        assert_eq!(ImportState::from_code(0), None);
        assert_eq!(RowAction::from_code(4), Some(RowAction::Error));
    }

    fn import_in(state: ImportState) -> Import {
        let mut import = Import::new_upload(crate::domain::import::NewImport {
            account_id: crate::domain::import::AccountId(uuid::Uuid::nil()),
            file_name: "people.csv".into(),
            created_by: "test".into(),
            request_id: String::new(),
            trace_context: String::new(),
            now: 1_000,
            ttl_ms: 1_000,
        });
        import.state = state;
        import
    }

    #[test]
    fn only_a_validated_import_that_has_not_expired_is_submitted() {
        let validated = import_in(ImportState::Validated);
        assert_eq!(
            submit(&validated, "", 1_500),
            Step::Go(ImportState::Validated)
        );
        assert_eq!(
            submit(&validated, "", 2_000),
            Step::Refused(Refusal::Expired)
        );
        let refused = submit(&import_in(ImportState::Validating), "", 1_500);
        let Step::Refused(refusal) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(
            refusal.to_string(),
            "the import is VALIDATING; only a VALIDATED import can be submitted"
        );
    }

    #[test]
    fn the_same_request_again_is_answered_as_done() {
        let mut applying = import_in(ImportState::Applying);
        applying.submit_request_id = Some("r1".into());
        assert_eq!(submit(&applying, "r1", 5_000), Step::Done);
        assert!(matches!(submit(&applying, "r2", 5_000), Step::Refused(_)));
        let mut completed = import_in(ImportState::Completed);
        completed.cancel_request_id = Some("c1".into());
        assert_eq!(cancel(&completed, "c1"), Step::Done);
        assert_eq!(cancel(&import_in(ImportState::Cancelled), ""), Step::Done);
    }

    #[test]
    fn a_finished_import_is_not_cancelled() {
        assert_eq!(
            cancel(&import_in(ImportState::Applying), ""),
            Step::Go(ImportState::Applying)
        );
        assert_eq!(
            cancel(&import_in(ImportState::Invalid), ""),
            Step::Refused(ImportState::Invalid.not_cancellable())
        );
    }

    #[test]
    fn an_apply_ends_by_what_it_met() {
        assert_eq!(ImportState::after_apply(true, 0, 0), ImportState::Failed);
        assert_eq!(
            ImportState::after_apply(false, 0, 0),
            ImportState::Completed
        );
        assert_eq!(
            ImportState::after_apply(false, 1, 0),
            ImportState::CompletedWithErrors
        );
    }

    #[test]
    fn report_status_prefers_the_outcome() {
        assert_eq!(
            report_status(RowAction::Create, RowOutcome::Pending),
            "Create"
        );
        assert_eq!(
            report_status(RowAction::Create, RowOutcome::Applied),
            "Created"
        );
        assert_eq!(
            report_status(RowAction::Update, RowOutcome::Failed),
            "Failed"
        );
        assert_eq!(
            report_status(RowAction::Error, RowOutcome::Skipped),
            "Error"
        );
        assert_eq!(
            report_status(RowAction::Update, RowOutcome::Unchanged),
            "Unchanged"
        );
        assert_eq!(RowOutcome::from_code(4), RowOutcome::Unchanged);
    }
}
