//! What becomes of each uploaded row: create, update (with its field-by-field diff),
//! unchanged, or error (with every problem, each naming its column).
//!
//! A row is planned in two steps around identity's batch calls. [`draft`] cleans the cells,
//! matches the Internal ID against the profiles identity returned (BatchGetProfiles), checks
//! each field with identity's own parsers, and names the username to ask about. [`finish`]
//! reads identity's answer (BatchCheckUsernames) — bulk-import never decides whether a
//! username is free — and settles the action.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::assignments::{Extension, Role, extensions_cell, roles_cell};
use super::columns::Column;

mod clean;
mod draft;
mod finish;
mod upsert;

pub use clean::{CleanRow, clean_row, in_row_voice, internal_id};
pub use draft::{Draft, SuggestionSeeds, column_of_field, draft, field_of_column};
pub use finish::{Holder, NumberClaim, PlannedRow, finish};
pub use upsert::{UpsertFields, upsert_fields, values_by_column, values_by_header};

/// A profile as identity returned it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CurrentProfile {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub canonical_username: String,
    pub job_title: String,
    pub department: String,
    pub locale: String,
    pub time_zone: String,
    pub deleted: bool,
    /// Roles held.
    pub roles: BTreeSet<Role>,
    /// Extensions held, by number.
    pub extensions: Vec<Extension>,
    /// The Roles cell for `roles`.
    pub roles_cell: String,
    /// The Extensions cell for `extensions`.
    pub extensions_cell: String,
}

impl CurrentProfile {
    /// The profile's value under a template column.
    pub fn value(&self, column: Column) -> &str {
        match column {
            Column::InternalId => &self.id,
            Column::FirstName => &self.first_name,
            Column::LastName => &self.last_name,
            Column::EmailAddress => &self.email,
            Column::Username => &self.username,
            Column::JobTitle => &self.job_title,
            Column::Department => &self.department,
            Column::Locale => &self.locale,
            Column::TimeZone => &self.time_zone,
            Column::Extensions => &self.extensions_cell,
            Column::Roles => &self.roles_cell,
        }
    }

    /// Sets the profile's assignments and the cells that show them.
    pub fn with_assignments(mut self, roles: BTreeSet<Role>, extensions: Vec<Extension>) -> Self {
        self.roles_cell = roles_cell(&roles);
        self.extensions_cell = extensions_cell(&extensions);
        self.roles = roles;
        self.extensions = extensions;
        self
    }
}

/// Identity's verdict on a username (BatchCheckUsernames).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsernameVerdict {
    pub available: bool,
    /// The canonical form; empty when the username is invalid.
    pub canonical: String,
    /// `USERNAME_TAKEN`, `USERNAME_RETIRED`, `USERNAME_CONFUSABLE` or `USERNAME_INVALID`.
    pub reason: String,
    /// Identity's sentence; never names the holder or its account.
    pub message: String,
    /// The holder, when the caller may see it.
    pub holder_profile_id: String,
    /// Free usernames identity offers instead, when it refused this one.
    pub suggestions: Vec<String>,
}

/// One problem of a row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub column: String,
    pub reason: String,
    pub message: String,
}

impl RowError {
    pub fn new(column: Option<Column>, reason: &str, message: impl Into<String>) -> Self {
        Self {
            column: column.map(|c| c.header().to_owned()).unwrap_or_default(),
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Something done to a cell that the admin should know about.
pub type RowNote = RowError;

/// One column an update changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub column: String,
    pub old_value: String,
    pub new_value: String,
}

#[cfg(test)]
mod tests;
