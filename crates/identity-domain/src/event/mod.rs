//! The audit log's events: what a committed change looked like — its type from a closed list,
//! its subject, who made it and through which interface, and the fields it changed, old →
//! new. The use cases build them from the states before and after a change; the store appends
//! them in the change's own transaction and gives each its place in the log.
//!
//! An event never carries a password, a hash, a token or a key: no function in [`changes`]
//! takes one.

mod changes;

pub use changes::*;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{AccountId, ProfileId};

/// Every event type, a closed list: subscribers may match on these names, which never change
/// meaning. `as_str` is the wire name (`roster.profile.created`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    AccountCreated,
    AccountUpdated,
    PasswordPolicyChanged,
    ScimTokenCreated,
    ScimTokenRevoked,
    /// DeleteAccount: the account and every profile it had, in one event.
    AccountDeleted,
    /// UndeleteAccount: the account and the profiles its deletion took.
    AccountRestored,
    /// The account's personal data removed, `account_retention_days` after its deletion.
    AccountPurged,
    ProfileCreated,
    ProfileUpdated,
    ProfileSuspended,
    ProfileActivated,
    ProfileDeleted,
    /// A deleted profile brought back (same id, same username).
    ProfileRestored,
    /// A deleted profile's personal data removed after its restore window.
    ProfilePurged,
    UsernameChanged,
    RolesAssigned,
    RolesUnassigned,
    ExtensionAssigned,
    ExtensionUnassigned,
    PasswordResetRequested,
    PasswordChanged,
    SignInLocked,
    SignInUnlocked,
}

impl EventType {
    /// Every type, in the order the README lists them.
    pub const ALL: [EventType; 24] = [
        EventType::AccountCreated,
        EventType::AccountUpdated,
        EventType::PasswordPolicyChanged,
        EventType::ScimTokenCreated,
        EventType::ScimTokenRevoked,
        EventType::AccountDeleted,
        EventType::AccountRestored,
        EventType::AccountPurged,
        EventType::ProfileCreated,
        EventType::ProfileUpdated,
        EventType::ProfileSuspended,
        EventType::ProfileActivated,
        EventType::ProfileDeleted,
        EventType::ProfileRestored,
        EventType::ProfilePurged,
        EventType::UsernameChanged,
        EventType::RolesAssigned,
        EventType::RolesUnassigned,
        EventType::ExtensionAssigned,
        EventType::ExtensionUnassigned,
        EventType::PasswordResetRequested,
        EventType::PasswordChanged,
        EventType::SignInLocked,
        EventType::SignInUnlocked,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AccountCreated => "roster.account.created",
            EventType::AccountUpdated => "roster.account.updated",
            EventType::PasswordPolicyChanged => "roster.account.password_policy_changed",
            EventType::ScimTokenCreated => "roster.account.scim_token_created",
            EventType::ScimTokenRevoked => "roster.account.scim_token_revoked",
            EventType::AccountDeleted => "roster.account.deleted",
            EventType::AccountRestored => "roster.account.restored",
            EventType::AccountPurged => "roster.account.purged",
            EventType::ProfileCreated => "roster.profile.created",
            EventType::ProfileUpdated => "roster.profile.updated",
            EventType::ProfileSuspended => "roster.profile.suspended",
            EventType::ProfileActivated => "roster.profile.activated",
            EventType::ProfileDeleted => "roster.profile.deleted",
            EventType::ProfileRestored => "roster.profile.restored",
            EventType::ProfilePurged => "roster.profile.purged",
            EventType::UsernameChanged => "roster.profile.username_changed",
            EventType::RolesAssigned => "roster.profile.roles_assigned",
            EventType::RolesUnassigned => "roster.profile.roles_unassigned",
            EventType::ExtensionAssigned => "roster.profile.extension_assigned",
            EventType::ExtensionUnassigned => "roster.profile.extension_unassigned",
            EventType::PasswordResetRequested => "roster.credential.password_reset_requested",
            EventType::PasswordChanged => "roster.credential.password_changed",
            EventType::SignInLocked => "roster.signin.locked",
            EventType::SignInUnlocked => "roster.signin.unlocked",
        }
    }

    /// The type named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Account(AccountId),
    Profile(ProfileId),
}

impl Subject {
    /// `account` or `profile`.
    pub fn kind(self) -> &'static str {
        match self {
            Subject::Account(_) => "account",
            Subject::Profile(_) => "profile",
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            Subject::Account(id) => id.0,
            Subject::Profile(id) => id.0,
        }
    }

    /// The subject of `kind` and `id`, as stored.
    pub fn from_parts(kind: &str, id: Uuid) -> Option<Self> {
        match kind {
            "account" => Some(Subject::Account(AccountId(id))),
            "profile" => Some(Subject::Profile(ProfileId(id))),
            _ => None,
        }
    }
}

/// A field's value before or after a change. Written as the JSON value it is (`true`, `42`,
/// `"text"`, `["a", "b"]`), and read back by the JSON type alone — not by trying each variant
/// in turn, which built an error message for every variant that did not fit, for every value of
/// every event read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Number(i64),
    Text(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a boolean, an integer, a string or a list of strings")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Value, E> {
        i64::try_from(value)
            .map(Value::Number)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::Text(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::Text(value))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut list = Vec::with_capacity(items.size_hint().unwrap_or(0).min(64));
        while let Some(item) = items.next_element::<String>()? {
            list.push(item);
        }
        Ok(Value::List(list))
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<u64> for Value {
    fn from(number: u64) -> Self {
        Value::Number(i64::try_from(number).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Value {
    fn from(number: u32) -> Self {
        Value::Number(i64::from(number))
    }
}

/// One field a change changed: absent `old` for a field that had no value (or a new subject),
/// absent `new` for one the change cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A gRPC call.
    Grpc,
    /// A bulk import's apply (gRPC calls that name their import).
    Import,
    /// A SCIM client.
    Scim,
    /// The password-reset page.
    ResetPage,
    /// Roster itself (a timer, a job).
    System,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Grpc,
        Source::Import,
        Source::Scim,
        Source::ResetPage,
        Source::System,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Grpc => "grpc",
            Source::Import => "import",
            Source::Scim => "scim",
            Source::ResetPage => "reset_page",
            Source::System => "system",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == name)
    }
}

/// Who made a change, and within which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Who the change is attributed to: the caller key's name, `import <id>`, `scim`,
    /// `profile <id>` (a user resetting their own password) or `system`.
    pub actor: String,
    /// The authenticated key that made the call (its name), empty where none did.
    pub caller: String,
    pub source: Source,
    /// The request id the call carried, empty when none.
    pub request_id: String,
    /// The trace the call belonged to (`none` outside any).
    pub trace_id: String,
}

/// An event as a use case writes it; the store gives it an id, a time and its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub account_id: AccountId,
    pub subject: Subject,
    pub event_type: EventType,
    pub changes: Vec<FieldChange>,
}

/// An event of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its place in the database's log: 1, 2, 3, … in the order changes committed, without
    /// gaps. Every event before it committed before it was numbered.
    pub sequence: i64,
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub account_id: AccountId,
    pub subject: Subject,
    pub event_type: EventType,
    pub actor: String,
    pub caller: String,
    pub source: Source,
    pub request_id: String,
    pub trace_id: String,
    pub changes: Vec<FieldChange>,
}

#[cfg(test)]
mod tests;
