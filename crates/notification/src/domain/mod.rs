//! The notification domain: pure types and rules, no gRPC and no SQL.
//!
//! - [`request`]: a `SendEmail` request parsed into checked types, every violation reported.
//! - [`notification`]: a queued email, where its delivery is and what a caller is shown of it.
//! - [`state`]: the delivery states and which of them are final.
//! - [`attempt`]: what one delivery attempt came to.
//! - [`retry`]: exponential backoff with jitter, and what a failed attempt leads to.
//! - [`templates`]: the template catalogue, locale fallback and rendering with minijinja.

pub mod attempt;
pub mod notification;
pub mod request;
pub mod retry;
pub mod state;
pub mod templates;

/// One invalid field of a request, in the request's own field names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub description: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}
