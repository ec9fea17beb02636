//! What the apply sends identity for a row, and the stored cells read back by column.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::domain::assignments::{Extension, Role, parse_extensions, parse_roles, resolve};
use crate::domain::columns::Column;

/// The fields to send identity for a row at apply time. An update takes the profile's current
/// value for each column missing from `values` (the apply gives an update only the columns its
/// preview showed changing); an empty username keeps the profile's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpsertFields {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub job_title: String,
    pub department: String,
    pub locale: String,
    pub time_zone: String,
    /// True when the file has the Extensions or Roles column: `roles` and `extensions` are
    /// then the profile's complete new assignments.
    pub set_assignments: bool,
    pub roles: Vec<Role>,
    pub extensions: Vec<Extension>,
    /// For an update: the identity fields written (BatchUpsertProfiles' `update_mask`); identity
    /// keeps every other one as its transaction reads it. `None`: every field.
    pub mask: Option<Vec<&'static str>>,
}

/// Builds a row's write from its stored values and, for an update, the profile as it is now.
pub fn upsert_fields(
    values: &BTreeMap<Column, String>,
    current: Option<&CurrentProfile>,
) -> UpsertFields {
    let value = |column: Column| -> String {
        match (values.get(&column), current) {
            (Some(value), _) => value.clone(),
            (None, Some(profile)) if column != Column::Username => profile.value(column).to_owned(),
            _ => String::new(),
        }
    };
    // A column the file lacks keeps the profile's assignments (none for a create). Cells were
    // checked at validation; anything unreadable now is left out.
    let set_assignments =
        values.contains_key(&Column::Roles) || values.contains_key(&Column::Extensions);
    let held_roles = || {
        current
            .map(|profile| profile.roles.clone())
            .unwrap_or_default()
    };
    let held_extensions = current.map_or(&[][..], |profile| &profile.extensions);
    let roles = match values.get(&Column::Roles) {
        Some(cell) => parse_roles(cell).unwrap_or_else(|_| held_roles()),
        None if set_assignments => held_roles(),
        None => BTreeSet::new(),
    };
    let extensions = match values.get(&Column::Extensions) {
        Some(cell) => parse_extensions(cell)
            .map(|entries| resolve(&entries, held_extensions))
            .unwrap_or_else(|_| held_extensions.to_vec()),
        None if set_assignments => held_extensions.to_vec(),
        None => Vec::new(),
    };
    UpsertFields {
        id: current
            .map(|profile| profile.id.clone())
            .unwrap_or_default(),
        first_name: value(Column::FirstName),
        last_name: value(Column::LastName),
        email: value(Column::EmailAddress),
        username: value(Column::Username),
        job_title: value(Column::JobTitle),
        department: value(Column::Department),
        locale: value(Column::Locale),
        time_zone: value(Column::TimeZone),
        set_assignments,
        roles: roles.into_iter().collect(),
        extensions,
        mask: None,
    }
}

/// Values keyed by template header, as stored and as ListImportRows shows them.
pub fn values_by_header(values: &BTreeMap<Column, String>) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(column, value)| (column.header().to_owned(), value.clone()))
        .collect()
}

/// The inverse of [`values_by_header`].
pub fn values_by_column(values: &BTreeMap<String, String>) -> BTreeMap<Column, String> {
    values
        .iter()
        .filter_map(|(header, value)| Some((Column::from_header(header)?, value.clone())))
        .collect()
}
