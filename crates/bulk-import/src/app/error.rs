//! The one error of bulk-import's use cases; [`crate::api`] maps it to a gRPC status in one
//! place.

use crate::domain::state::Refusal;
use crate::store::StoreError;

/// Why a use case did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The import does not exist, or the caller may not see it.
    #[error("import not found")]
    NotFound,
    /// The import's life cycle does not allow the step (see [`crate::domain::state`]).
    #[error("{0}")]
    Refused(Refusal),
    #[error("the file is larger than the {max_file_bytes} bytes this server accepts")]
    FileTooLarge { max_file_bytes: u64 },
    /// The import stopped being UPLOADING while its file was arriving.
    #[error(
        "the import stopped receiving its file during the upload (it was cancelled, or failed \
         after a pause: GetImport says why)"
    )]
    UploadEnded,
    /// The upload's end message gave another size than the chunks that arrived add up to.
    #[error(
        "the end message says the file has {declared} bytes but {received} arrived; upload the \
         file again"
    )]
    SizeMismatch { declared: u64, received: u64 },
    /// The import's account was deleted: nothing new is imported into it.
    #[error(
        "the account is deleted: nothing is imported into it until UndeleteAccount brings it back"
    )]
    AccountDeleted,
    /// The request id named an import that another caller or another account's request
    /// created (a caller key's name and a request id may hold the separator of the key they
    /// make up): it answers that import to nobody else.
    #[error("was sent before with a different request; send a new request_id")]
    RequestIdReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refusal> for ImportError {
    fn from(refusal: Refusal) -> Self {
        ImportError::Refused(refusal)
    }
}
