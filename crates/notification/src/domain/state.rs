//! Where a notification's delivery is: QUEUED → SENDING → SENT | RETRYING | FAILED, and
//! RETRYING → SENDING. A SENDING message whose lease ran out (its worker died) is due again.
//! An operator moves a message by hand: FAILED → QUEUED (retry) and QUEUED | RETRYING →
//! CANCELLED (cancel).

/// The delivery state of a notification, stored as its upper-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its first attempt.
    Queued,
    /// Claimed by a worker, which holds a lease on it.
    Sending,
    /// Accepted by the mail server. Final.
    Sent,
    /// The last attempt failed temporarily; another is due at `next_attempt_at`.
    Retrying,
    /// Given up. Final for the workers; an operator may queue it again.
    Failed,
    /// Cancelled before it was sent. Final: never sent.
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Queued,
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Retrying,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "QUEUED",
            DeliveryState::Sending => "SENDING",
            DeliveryState::Sent => "SENT",
            DeliveryState::Retrying => "RETRYING",
            DeliveryState::Failed => "FAILED",
            DeliveryState::Cancelled => "CANCELLED",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// States a worker may claim once `next_attempt_at` has passed; also the states a message
    /// can be cancelled in, since no worker is sending it.
    pub const WAITING: [DeliveryState; 2] = [DeliveryState::Queued, DeliveryState::Retrying];

    /// The only state a message can be retried from.
    pub const RETRYABLE: [DeliveryState; 1] = [DeliveryState::Failed];

    /// True for the states no worker leaves: SENT, FAILED (until a retry) and CANCELLED.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Sent | DeliveryState::Failed | DeliveryState::Cancelled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
        }
        assert_eq!(DeliveryState::parse("sent"), None);
    }
}
