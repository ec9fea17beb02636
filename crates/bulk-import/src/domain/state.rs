//! The life cycle of an import and of each of its rows.
//!
//! `UPLOADING → VALIDATING → VALIDATED | INVALID`; `UPLOADING → FAILED` when the upload ends
//! before its file is complete; `VALIDATED → APPLYING → COMPLETED | COMPLETED_WITH_ERRORS |
//! FAILED`; `CANCELLED` from any state before the end of APPLYING.
//! The stored codes are the protobuf enum numbers, so the two can never drift apart silently.

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
            _ => RowOutcome::Pending,
        }
    }
}

/// The report's Status of a row: the outcome once the apply reached it, the plan before.
pub fn report_status(action: RowAction, outcome: RowOutcome) -> &'static str {
    match (action, outcome) {
        (RowAction::Create, RowOutcome::Applied) => "Created",
        (RowAction::Update, RowOutcome::Applied) => "Updated",
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
    }
}
