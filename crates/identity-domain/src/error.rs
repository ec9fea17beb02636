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
    /// The refusal whose [`reason`](Self::reason) this is.
    pub fn from_reason(reason: &str) -> Option<Refusal> {
        [
            Refusal::Taken,
            Refusal::Retired,
            Refusal::Confusable,
            Refusal::Invalid,
        ]
        .into_iter()
        .find(|refusal| refusal.reason() == reason)
    }

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
    /// The username cannot be taken; `defaulted` when it was not given but taken from the email
    /// address, with free `suggestions` when the refusal went back to the caller through
    /// [`IdentityError::with_suggestions`].
    #[error("username refused: {refusal:?}")]
    UsernameRefused {
        refusal: Refusal,
        defaulted: bool,
        suggestions: Vec<String>,
    },
    /// An extension number or kind that cannot be given (reason EXTENSION_INVALID).
    #[error("invalid extension: {0:?}")]
    ExtensionInvalid(Vec<Violation>),
    /// A query over profiles (a SCIM filter) that cannot be run (reason FILTER_INVALID).
    #[error("invalid filter: {0}")]
    InvalidFilter(super::query::QueryError),
    /// A role outside the fixed set (reason ROLE_INVALID).
    #[error("invalid role: {0:?}")]
    RoleInvalid(Vec<Violation>),
    /// Another profile of the account holds this extension number.
    #[error("extension {number} is held by another profile")]
    ExtensionTaken { number: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's key may not do this (reason ACCOUNT_NOT_PERMITTED).
    #[error("{0}")]
    NotPermitted(String),
    #[error("stale etag")]
    StaleEtag,
    #[error("{0}")]
    Precondition(String),
    /// The subject no longer matches what the caller confirmed (reason PROFILE_CHANGED); `field`
    /// names what differs.
    #[error("{message}")]
    Changed {
        field: &'static str,
        message: String,
    },
    /// A password reset token that is unknown, expired, used, superseded or another account's
    /// (reason RESET_TOKEN_INVALID); every such token gets the same answer.
    #[error("{}", super::policy::INVALID_TOKEN)]
    InvalidResetToken,
    /// A password the account's policy refuses, with every rule it fails (reason
    /// PASSWORD_POLICY).
    #[error("the password does not satisfy the account's policy")]
    PasswordPolicy(Vec<super::policy::Rule>),
    /// Too many failed sign-ins of one username; retry after the delay (reason
    /// SIGNIN_THROTTLED).
    #[error("too many failed sign-ins; retry later")]
    Throttled(std::time::Duration),
    /// Every password worker is busy and its queue is full (reason PASSWORD_WORKERS_BUSY).
    #[error("every password worker is busy and the queue is full")]
    HashingBusy,
    /// The account has as many active SCIM tokens as it may have (reason SCIM_TOKEN_LIMIT).
    #[error(
        "the account has {} active SCIM tokens, the most it may have",
        super::scim_token::MAX_ACTIVE_SCIM_TOKENS
    )]
    ScimTokenLimit,
    /// Concurrent changes kept winning; the caller may retry.
    #[error("{0}")]
    Contention(String),
    /// The database failed (or is unreachable); the cause is logged, never returned.
    #[error("storage: {0}")]
    Storage(Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else that is no fault of the caller's (a hashing failure, say); logged, never
    /// returned.
    #[error("internal: {0}")]
    Internal(String),
}

impl IdentityError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        IdentityError::Invalid(vec![Violation::new(field, description)])
    }

    /// The refusal of a username, before anything is known of how it was chosen.
    pub fn username_refused(refusal: Refusal) -> Self {
        IdentityError::UsernameRefused {
            refusal,
            defaulted: false,
            suggestions: Vec::new(),
        }
    }

    /// The refusal of a username that the caller left empty (the email address stood in).
    pub fn defaulted(self, by_default: bool) -> Self {
        match self {
            IdentityError::UsernameRefused {
                refusal,
                suggestions,
                ..
            } => IdentityError::UsernameRefused {
                refusal,
                defaulted: by_default,
                suggestions,
            },
            other => other,
        }
    }
}

impl Refusal {
    /// The sentence for a refused username, saying where it came from and what is free.
    pub fn explain(self, defaulted: bool, suggestions: &[String]) -> String {
        let mut sentence = if defaulted {
            format!(
                "the username was not given, so the email address stood in for it, and {}",
                self.message()
            )
        } else {
            self.message().to_owned()
        };
        if defaulted {
            sentence.push_str("; give the profile a username");
        }
        if !suggestions.is_empty() {
            sentence.push_str("; free: ");
            sentence.push_str(&suggestions.join(", "));
        }
        sentence
    }
}
