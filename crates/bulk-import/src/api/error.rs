//! The one mapping of bulk-import's use-case errors to what a gRPC caller sees.

use roster_runtime::ApiError;
use tonic::Status;

use crate::app::ImportError;
use crate::domain::state::Refusal;

impl From<ImportError> for ApiError {
    fn from(error: ImportError) -> Self {
        match error {
            ImportError::NotFound => ApiError::NotFound { resource: "import" },
            ImportError::Refused(refusal) => ApiError::FailedPrecondition {
                reason: match refusal {
                    Refusal::WrongState { .. } => "IMPORT_STATE",
                    Refusal::Expired => "IMPORT_EXPIRED",
                },
                message: refusal.to_string(),
                subject: "import".into(),
            },
            ImportError::FileTooLarge { .. } => ApiError::ResourceExhausted {
                reason: "FILE_TOO_LARGE",
                message: error.to_string(),
                retry_after: None,
            },
            ImportError::UploadEnded => ApiError::Aborted {
                reason: "UPLOAD_ENDED",
                message: error.to_string(),
            },
            ImportError::SizeMismatch { .. } => {
                ApiError::invalid("end.size_bytes", error.to_string())
            }
            ImportError::AccountDeleted => ApiError::FailedPrecondition {
                reason: "ACCOUNT_DELETED",
                message: error.to_string(),
                subject: "account".into(),
            },
            ImportError::RequestIdReused => ApiError::invalid("request_id", error.to_string()),
            ImportError::Store(error) => ApiError::internal(error),
        }
    }
}

/// Lets a handler answer a use case's error with `?`, through the mapping above.
impl From<ImportError> for Status {
    fn from(error: ImportError) -> Self {
        ApiError::from(error).into()
    }
}
