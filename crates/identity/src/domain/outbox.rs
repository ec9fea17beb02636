//! Emails identity asks the notification service to send, as written to its outbox.

use std::collections::BTreeMap;

use roster_runtime::telemetry::TraceContext;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One email to hand to NotificationService.SendEmail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEmail {
    pub account_id: Uuid,
    pub account_display_name: String,
    pub recipient: String,
    /// `password_reset`, `password_changed` or `welcome`.
    pub template: String,
    pub locale: String,
    pub variables: BTreeMap<String, String>,
    /// The trace of the request that wrote the row, which the relay's span continues.
    #[serde(default, skip_serializing_if = "TraceContext::is_empty")]
    pub trace_context: TraceContext,
}

/// An outbox row a relay has leased: the email as written (JSON of [`OutboxEmail`]), how
/// often handing it over failed so far, and when it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasedEmail {
    pub id: Uuid,
    pub payload: String,
    pub attempts: i32,
    /// When the change that caused it wrote it.
    pub written_at: chrono::DateTime<chrono::Utc>,
}
