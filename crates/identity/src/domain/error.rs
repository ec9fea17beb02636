//! What can go wrong in identity, in the domain's own words. `api` maps each case to a gRPC
//! status once.

/// Why a username cannot be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A profile holds it now.
    Taken,
    /// It was held before; usernames are never reused.
    Retired,
    /// Its UTS #39 skeleton equals that of a username held now or before.
    Confusable,
    /// It is not a valid username.
    Invalid,
}

impl Refusal {
    /// The stable `ErrorInfo.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Taken => "USERNAME_TAKEN",
            Refusal::Retired => "USERNAME_RETIRED",
            Refusal::Confusable => "USERNAME_CONFUSABLE",
            Refusal::Invalid => "USERNAME_INVALID",
        }
    }

    /// A sentence for the caller. Never says by whom or in which account.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Taken => {
                "this username is in use on the platform (usernames are unique across all accounts)"
            }
            Refusal::Retired => {
                "this username was used before on the platform and can never be used again"
            }
            Refusal::Confusable => {
                "this username looks like one that is or was in use on the platform"
            }
            Refusal::Invalid => "this is not a valid username",
        }
    }
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// A failed identity operation.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid input: {0:?}")]
    Invalid(Vec<Violation>),
    #[error("username refused: {refusal:?}")]
    UsernameRefused { refusal: Refusal, detail: String },
    /// An extension number or kind that cannot be given (reason EXTENSION_INVALID).
    #[error("invalid extension: {0:?}")]
    ExtensionInvalid(Vec<Violation>),
    /// A role outside the fixed set (reason ROLE_INVALID).
    #[error("invalid role: {0:?}")]
    RoleInvalid(Vec<Violation>),
    /// Another profile of the account holds this extension number.
    #[error("extension {number} is held by another profile")]
    ExtensionTaken { number: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("stale etag")]
    StaleEtag,
    #[error("{0}")]
    Precondition(String),
    /// Concurrent changes kept winning; the caller may retry.
    #[error("{0}")]
    Contention(String),
    #[error("database: {0}")]
    Database(sea_orm::DbErr),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

// Not `#[from]`: the message holds the database's, so it is no `source` too (a report of the
// chain would print it twice).
impl From<sea_orm::DbErr> for IdentityError {
    fn from(error: sea_orm::DbErr) -> Self {
        IdentityError::Database(error)
    }
}

impl IdentityError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        IdentityError::Invalid(vec![Violation::new(field, description)])
    }
}
