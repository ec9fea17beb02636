//! A queued email as the service knows it, whatever stores it: what was asked for, where its
//! delivery is, and what a caller is shown of it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::state::DeliveryState;

/// The variables of a notification that no longer keeps them: a reset link must not outlive
/// its email.
pub const NO_VARIABLES: &str = "{}";

/// One queued email and where its delivery is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub id: Uuid,
    pub account_id: Uuid,
    /// A bare addr-spec.
    pub recipient: String,
    /// A [`super::templates::Template`] name.
    pub template: String,
    /// The locale it renders in, after fallback.
    pub locale: String,
    /// The locale the caller asked for.
    pub requested_locale: String,
    /// The template variables as a JSON object; emptied once the notification is final, since
    /// they may hold secrets such as a reset link.
    pub variables: String,
    pub account_display_name: String,
    pub state: DeliveryState,
    /// Attempts made so far, counting the one under way (a claim raises it).
    pub attempts: i32,
    /// How many of `attempts` were made before the latest retry an operator asked for: the
    /// attempt budget counts only the ones after it.
    pub attempts_before_retry: i32,
    pub last_error: Option<String>,
    /// `<id@domain>`, fixed at enqueue so every attempt carries the same one.
    pub message_id: String,
    /// When a QUEUED or RETRYING message is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The worker that holds a SENDING message, and until when.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// What a `SendEmail` queues, before it is a [`Notification`].
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub id: Uuid,
    pub account_id: Uuid,
    pub recipient: String,
    pub template: String,
    pub locale: String,
    pub requested_locale: String,
    /// The variables as a JSON object.
    pub variables: String,
    pub account_display_name: String,
    pub message_id: String,
}

impl Notification {
    /// `new`, queued at `now`: due at once, no attempt made yet.
    pub fn queued(new: NewNotification, now: DateTime<Utc>) -> Self {
        Self {
            id: new.id,
            account_id: new.account_id,
            recipient: new.recipient,
            template: new.template,
            locale: new.locale,
            requested_locale: new.requested_locale,
            variables: new.variables,
            account_display_name: new.account_display_name,
            state: DeliveryState::Queued,
            attempts: 0,
            attempts_before_retry: 0,
            last_error: None,
            message_id: new.message_id,
            next_attempt_at: Some(now),
            lease_owner: None,
            lease_until: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
        }
    }

    /// The message id as callers see it: fixed at enqueue, but shown (as the contract says)
    /// only once the email was first rendered.
    pub fn shown_message_id(&self) -> Option<&str> {
        (self.attempts > 0).then_some(self.message_id.as_str())
    }

    /// The number of the attempt under way within the current budget: 1 for the first attempt
    /// since the message was queued or retried.
    pub fn attempt_in_budget(&self) -> i32 {
        self.attempts - self.attempts_before_retry
    }

    /// Whether its template variables were dropped (once it was sent or cancelled, or when it
    /// failed before failed messages kept them): it cannot be rendered again.
    pub fn variables_discarded(&self) -> bool {
        self.variables == NO_VARIABLES
    }

    /// Whether this notification is what `new` (built from a request, not stored) asks for:
    /// the same account, recipient, template, locale asked and display name, and the same
    /// variables while they are kept (they are discarded once it is final, and cannot be
    /// compared then). A request id answers only the request it was sent with.
    pub fn answers(&self, new: &Notification) -> bool {
        self.account_id == new.account_id
            && self.recipient == new.recipient
            && self.template == new.template
            && self.requested_locale == new.requested_locale
            && self.account_display_name == new.account_display_name
            && (self.variables_discarded() || self.variables == new.variables)
    }

    /// When the next attempt is due, while one is waiting.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            DeliveryState::Queued | DeliveryState::Retrying => self.next_attempt_at,
            _ => None,
        }
    }

    /// When the mail server accepted it, once it is SENT.
    pub fn delivered_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            DeliveryState::Sent => self.sent_at,
            _ => None,
        }
    }

    /// Where a list page that ends with this notification resumes.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// Where a page of a list starts: after this notification in newest-first order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}
