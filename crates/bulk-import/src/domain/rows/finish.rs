//! The second step of planning a row ([`finish`]): identity's verdict on the username read,
//! the action settled, and an update's field-by-field diff.

use std::collections::BTreeMap;

use roster_identity_domain::profile::ProfileFields;

use super::draft::Target;
use super::*;
use crate::domain::assignments::{extensions_cell, roles_cell};
use crate::domain::columns::Column;
use crate::domain::state::RowAction;

/// A row as validation leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRow {
    pub row_number: i64,
    pub action: RowAction,
    /// The profile an update targets (also on an error row whose Internal ID is fine).
    pub profile_id: Option<String>,
    pub values: BTreeMap<Column, String>,
    pub changes: Vec<FieldChange>,
    pub errors: Vec<RowError>,
    pub notes: Vec<RowNote>,
    /// The canonical username the row would take, for finding the same username twice in the
    /// file. `None` when the row keeps its profile's username.
    pub claim: Option<String>,
    /// The UTS #39 skeleton of that username, for finding usernames in the file that look
    /// alike (`paypal`, `paypaI`); `None` without a claim.
    pub skeleton: Option<String>,
    /// The extension numbers the row's profile would hold, for finding a number that two rows
    /// give or that another profile holds; empty when the row leaves its profile's extensions
    /// as they are.
    pub extension_numbers: Vec<NumberClaim>,
}

/// An extension number a row's profile would hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberClaim {
    pub number: String,
    /// The row's own profile holds it already.
    pub held: bool,
    /// Another profile of the account that holds it now, as identity told (set after
    /// [`finish`], which does not ask).
    pub holder: Option<Holder>,
}

/// A profile that holds an extension number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub profile_id: String,
    pub username: String,
}

/// Settles a row with identity's verdict on its username (when it asked about one).
pub fn finish(draft: Draft, verdict: Option<&UsernameVerdict>) -> PlannedRow {
    let Draft {
        mut row,
        target,
        fields,
        username_from_email,
        roles,
        extensions,
        ..
    } = draft;
    let current = match &target {
        Target::Update(profile) => Some(profile.as_ref()),
        _ => None,
    };
    let mut claim = None;
    if let Some(verdict) = verdict {
        let own = current.is_some_and(|profile| {
            verdict.holder_profile_id == profile.id
                || (!verdict.canonical.is_empty()
                    && verdict.canonical == profile.canonical_username)
        });
        if verdict.available {
            claim = Some(verdict.canonical.clone());
        } else if !own {
            let reason = if verdict.reason.is_empty() {
                "USERNAME_INVALID"
            } else {
                verdict.reason.as_str()
            };
            // Worded here from the stable reason, in the rows' voice; identity's own sentence
            // only for a reason this version does not know.
            let refusal = match reason {
                "USERNAME_TAKEN" => {
                    "is in use on the platform (usernames are unique across all accounts)".into()
                }
                "USERNAME_RETIRED" => {
                    "was used before on the platform and can never be used again".into()
                }
                "USERNAME_CONFUSABLE" => {
                    "looks like one that is or was in use on the platform".into()
                }
                _ => format!("is refused: {}", in_row_voice(&verdict.message)),
            };
            let mut message = if username_from_email {
                format!(
                    "Username is empty, so the email address is the username, and it {refusal}; \
                     fill in a Username"
                )
            } else {
                format!("Username {refusal}")
            };
            if !verdict.suggestions.is_empty() {
                message.push_str("; free: ");
                message.push_str(&verdict.suggestions.join(", "));
            }
            row.errors
                .push(RowError::new(Some(Column::Username), reason, message));
        }
    }
    let mut changes = match (current, &fields) {
        (Some(profile), Some(fields)) => diff(profile, fields),
        _ => Vec::new(),
    };
    // Assignments compare as sets: order and spelling in the cell do not matter.
    if let Some(profile) = current {
        changes.extend(assignment_change(
            Column::Extensions,
            extensions.as_ref(),
            &profile.extensions,
            &profile.extensions_cell,
            |extensions| extensions_cell(extensions),
        ));
        changes.extend(assignment_change(
            Column::Roles,
            roles.as_ref(),
            &profile.roles,
            &profile.roles_cell,
            roles_cell,
        ));
    }
    let action = match &target {
        _ if !row.errors.is_empty() => RowAction::Error,
        Target::Refused => RowAction::Error,
        _ if fields.is_none() => RowAction::Error,
        Target::Create => RowAction::Create,
        Target::Update(_) if changes.is_empty() => RowAction::Unchanged,
        Target::Update(_) => RowAction::Update,
    };
    let skeleton = claim
        .as_ref()
        .and(fields.as_ref())
        .map(|fields| fields.username.skeleton().to_owned());
    let extension_numbers = extensions
        .iter()
        .flatten()
        .map(|extension| {
            let held = current.is_some_and(|profile| {
                profile
                    .extensions
                    .iter()
                    .any(|own| own.number == extension.number)
            });
            NumberClaim {
                number: extension.number.clone(),
                held,
                holder: None,
            }
        })
        .collect();
    PlannedRow {
        row_number: row.row_number,
        action,
        profile_id: current.map(|profile| profile.id.clone()),
        values: row.values,
        changes,
        errors: row.errors,
        notes: row.notes,
        claim,
        skeleton,
        extension_numbers,
    }
}

/// The change of an assignment column (roles, extensions) that the row sets to `given`: none
/// when `given` is the profile's `current` set, whatever order and spelling the cell had.
fn assignment_change<T: PartialEq>(
    column: Column,
    given: Option<&T>,
    current: &T,
    current_cell: &str,
    cell: impl Fn(&T) -> String,
) -> Option<FieldChange> {
    given
        .filter(|given| *given != current)
        .map(|given| FieldChange {
            column: column.header().to_owned(),
            old_value: current_cell.to_owned(),
            new_value: cell(given),
        })
}

/// The columns whose stored value would change, in template order, old → new.
fn diff(profile: &CurrentProfile, fields: &ProfileFields) -> Vec<FieldChange> {
    let new_values = [
        (Column::FirstName, fields.first_name.as_str()),
        (Column::LastName, fields.last_name.as_str()),
        (Column::EmailAddress, fields.email.as_str()),
        (Column::Username, fields.username.as_str()),
        (
            Column::JobTitle,
            fields.job_title.as_deref().unwrap_or_default(),
        ),
        (
            Column::Department,
            fields.department.as_deref().unwrap_or_default(),
        ),
        (Column::Locale, fields.locale.as_deref().unwrap_or_default()),
        (
            Column::TimeZone,
            fields.time_zone.as_deref().unwrap_or_default(),
        ),
    ];
    new_values
        .into_iter()
        .filter(|(column, new)| profile.value(*column) != *new)
        .map(|(column, new)| FieldChange {
            column: column.header().to_owned(),
            old_value: profile.value(column).to_owned(),
            new_value: new.to_owned(),
        })
        .collect()
}
