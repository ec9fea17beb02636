//! One delivery attempt: what it came to, as a worker records it, and as the history keeps it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The mail server accepted the message.
    Sent,
    /// A temporary failure; the next attempt is due at `next_attempt_at`.
    Retry {
        next_attempt_at: DateTime<Utc>,
        error: String,
        smtp_code: Option<u16>,
    },
    /// A permanent failure, or the retries are exhausted.
    Failed {
        error: String,
        smtp_code: Option<u16>,
    },
}

impl Outcome {
    /// How the attempt history names it.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Sent => OutcomeKind::Sent,
            Outcome::Retry { .. } => OutcomeKind::Retry,
            Outcome::Failed { .. } => OutcomeKind::Failed,
        }
    }
}

/// What an attempt came to, without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    Sent,
    Retry,
    Failed,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 3] = [OutcomeKind::Sent, OutcomeKind::Retry, OutcomeKind::Failed];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Sent => "sent",
            OutcomeKind::Retry => "retry",
            OutcomeKind::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// A finished attempt, recorded only while its worker still holds the lease.
#[derive(Clone, Debug)]
pub struct Finished<'a> {
    pub id: Uuid,
    pub owner: &'a str,
    /// The attempt's number (the `attempts` count the claim set).
    pub number: i32,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// One recorded attempt of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub notification_id: Uuid,
    /// 1 for the first attempt.
    pub number: i32,
    pub worker: String,
    pub outcome: OutcomeKind,
    /// The SMTP reply code, when the server answered.
    pub smtp_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in OutcomeKind::ALL {
            assert_eq!(OutcomeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(OutcomeKind::parse("SENT"), None);
    }
}
