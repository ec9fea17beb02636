//! The first step of planning a row ([`draft`]): its Internal ID matched against the profiles
//! identity returned, each field checked with identity's own parsers, the username to ask
//! identity about named.

use std::collections::{BTreeSet, HashMap};

use roster_identity_domain::email::EmailAddress;
use roster_identity_domain::error::IdentityError;
use roster_identity_domain::profile::{ProfileFields, RawProfile};
use roster_identity_domain::username::Username;

use super::clean::unknown_internal_id;
use super::*;
use crate::domain::assignments::{Extension, Role, parse_extensions, parse_roles, resolve};
use crate::domain::cells::lost_leading_zeros;
use crate::domain::columns::Column;

/// What a row targets.
#[derive(Clone, Debug)]
pub(super) enum Target {
    Create,
    Update(Box<CurrentProfile>),
    /// The Internal ID is refused; the row is an error whatever else it holds.
    Refused,
}

/// A row between the two identity calls.
#[derive(Clone, Debug)]
pub struct Draft {
    pub(super) row: CleanRow,
    pub(super) target: Target,
    pub(super) fields: Option<ProfileFields>,
    /// The username to ask identity about, if any.
    pub username: Option<String>,
    /// The username comes from the email address (the Username cell is empty).
    pub(super) username_from_email: bool,
    /// The roles the Roles cell gives, when the file has the column and the cell is valid.
    pub(super) roles: Option<BTreeSet<Role>>,
    /// The extensions the Extensions cell gives (kinds resolved), likewise.
    pub(super) extensions: Option<Vec<Extension>>,
}

/// What identity builds suggestions for a refused username from: the row's names and email.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuggestionSeeds {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
}

impl Draft {
    /// The names and email identity builds username suggestions from, as the row gives them.
    pub fn seeds(&self) -> SuggestionSeeds {
        let cell = |column: Column| self.row.values.get(&column).cloned().unwrap_or_default();
        match &self.fields {
            Some(fields) => SuggestionSeeds {
                first_name: fields.first_name.clone(),
                last_name: fields.last_name.clone(),
                email: fields.email.as_str().to_owned(),
            },
            None => SuggestionSeeds {
                first_name: cell(Column::FirstName),
                last_name: cell(Column::LastName),
                email: cell(Column::EmailAddress),
            },
        }
    }
}

/// Prepares a row: matches its Internal ID among `profiles` (by id) and checks its fields.
pub fn draft(row: CleanRow, profiles: &HashMap<String, CurrentProfile>) -> Draft {
    let mut row = row;
    if row.misshapen {
        return Draft {
            row,
            target: Target::Refused,
            fields: None,
            username: None,
            username_from_email: false,
            roles: None,
            extensions: None,
        };
    }
    let target = match internal_id(&row) {
        None => Target::Create,
        Some(Err(cell)) => {
            row.errors.push(unknown_internal_id(&cell));
            Target::Refused
        }
        Some(Ok(id)) => match profiles.get(&id) {
            None => {
                let cell = row.values[&Column::InternalId].clone();
                row.errors.push(unknown_internal_id(&cell));
                Target::Refused
            }
            Some(profile) if profile.deleted => {
                row.errors.push(RowError::new(
                    Some(Column::InternalId),
                    "PROFILE_DELETED",
                    "this profile was deleted and cannot be updated; clear the Internal ID to \
                     create a new profile",
                ));
                Target::Refused
            }
            Some(profile) => Target::Update(Box::new(profile.clone())),
        },
    };
    let current = match &target {
        Target::Update(profile) => Some(profile.as_ref()),
        _ => None,
    };
    let given = |column: Column| row.values.get(&column).map(String::as_str);
    // An update keeps the profile's value for every column the file does not have, and its
    // username when the Username cell is empty.
    let value = |column: Column| -> String {
        match (given(column), current) {
            (Some(value), _) => value.to_owned(),
            (None, Some(profile)) => profile.value(column).to_owned(),
            (None, None) => String::new(),
        }
    };
    let username_cell = given(Column::Username).unwrap_or("").to_owned();
    let username = match current {
        Some(profile) if username_cell.is_empty() => profile.username.clone(),
        _ => username_cell.clone(),
    };
    let (first_name, last_name, email) = (
        value(Column::FirstName),
        value(Column::LastName),
        value(Column::EmailAddress),
    );
    let (job_title, department, locale, time_zone) = (
        value(Column::JobTitle),
        value(Column::Department),
        value(Column::Locale),
        value(Column::TimeZone),
    );
    let parsed = ProfileFields::parse(RawProfile {
        first_name: &first_name,
        last_name: &last_name,
        email: &email,
        username: &username,
        job_title: &job_title,
        department: &department,
        locale: &locale,
        time_zone: &time_zone,
        // The template has no external id column: identity keeps a profile's.
        external_id: "",
    });
    let fields = match parsed {
        Ok(fields) => Some(fields),
        Err(IdentityError::Invalid(violations)) => {
            // A cell already in error (too long, a line break) is not reported twice.
            let in_error: BTreeSet<String> = row
                .errors
                .iter()
                .map(|error| error.column.clone())
                .collect();
            for violation in violations {
                let column = column_of_field(&violation.field);
                if column.is_some_and(|column| in_error.contains(column.header())) {
                    continue;
                }
                // An empty Username cell means "the email address", never "missing".
                let empty = column
                    .is_some_and(|column| column != Column::Username && value(column).is_empty());
                let reason = match column {
                    _ if empty => "REQUIRED",
                    Some(Column::EmailAddress) => "INVALID_EMAIL",
                    Some(Column::Username) => "USERNAME_INVALID",
                    Some(Column::Locale) => "INVALID_LOCALE",
                    Some(Column::TimeZone) => "INVALID_TIME_ZONE",
                    _ => "INVALID_VALUE",
                };
                let message = match column {
                    _ if empty => format!(
                        "{} is required",
                        column.map(Column::header).unwrap_or("a value")
                    ),
                    Some(Column::Username) if username_cell.is_empty() => {
                        email_as_username(&email).unwrap_or(in_row_voice(&violation.description))
                    }
                    _ => in_row_voice(&violation.description),
                };
                row.errors.push(RowError::new(column, reason, message));
            }
            None
        }
        Err(other) => {
            row.errors
                .push(RowError::new(None, "INVALID_VALUE", other.to_string()));
            None
        }
    };
    // The username to ask identity about: a create's (the email address when the cell is
    // empty), or the new one an update gives. Checked even when other fields are in error, so
    // the row lists every problem at once.
    let username_from_email = username_cell.is_empty() && current.is_none();
    let candidate = if username_from_email {
        EmailAddress::parse(&email)
            .ok()
            .map(|email| email.as_str().to_owned())
    } else if username_cell.is_empty() {
        None
    } else {
        Some(username_cell)
    };
    let username = candidate.filter(|candidate| Username::parse(candidate).is_ok());
    let roles = match given(Column::Roles).map(parse_roles) {
        None => None,
        Some(Ok(roles)) => Some(roles),
        Some(Err(problems)) => {
            for problem in problems {
                row.errors
                    .push(RowError::new(Some(Column::Roles), "ROLE_INVALID", problem));
            }
            None
        }
    };
    let extensions = match given(Column::Extensions).map(parse_extensions) {
        None => None,
        Some(Ok(entries)) => Some(resolve(
            &entries,
            current.map_or(&[][..], |profile| &profile.extensions),
        )),
        Some(Err(problems)) => {
            for problem in problems {
                row.errors.push(RowError::new(
                    Some(Column::Extensions),
                    "EXTENSION_INVALID",
                    problem,
                ));
            }
            None
        }
    };
    if let Some(profile) = current {
        for column in Column::ALL {
            let Some(new) = given(column) else {
                continue;
            };
            // The Extensions cell lists numbers with their kinds ("0042:physical"): a number
            // typed alone, which a spreadsheet reads as a number, compares with each held one.
            let lost = if column == Column::Extensions {
                profile
                    .extensions
                    .iter()
                    .map(|held| held.number.as_str())
                    .find(|held| lost_leading_zeros(held, new))
            } else {
                Some(profile.value(column)).filter(|old| lost_leading_zeros(old, new))
            };
            if let Some(old) = lost {
                row.notes.push(RowNote::new(
                    Some(column),
                    "LEADING_ZEROS_LOST",
                    format!(
                        "the profile has '{old}' and the file '{new}': a spreadsheet may have \
                         dropped the leading zeros; the value is kept as in the file"
                    ),
                ));
            }
        }
    }
    Draft {
        row,
        target,
        fields,
        username,
        username_from_email,
        roles,
        extensions,
    }
}

/// Why the email address cannot serve as the username of a row whose Username cell is empty.
fn email_as_username(email: &str) -> Option<String> {
    let email = EmailAddress::parse(email).ok()?;
    let refusal = Username::parse(email.as_str()).err()?.description();
    let refusal = in_row_voice(&refusal);
    let refusal = refusal
        .strip_prefix("Username ")
        .map_or(refusal.clone(), |rest| format!("it {rest}"));
    Some(format!(
        "Username is empty, and the email address cannot be the username: {refusal}; fill in \
         a Username"
    ))
}

/// Identity's profile fields and their template columns.
pub(super) const FIELDS: [(&str, Column); 8] = [
    ("first_name", Column::FirstName),
    ("last_name", Column::LastName),
    ("email", Column::EmailAddress),
    ("username", Column::Username),
    ("job_title", Column::JobTitle),
    ("department", Column::Department),
    ("locale", Column::Locale),
    ("time_zone", Column::TimeZone),
];

/// The template column of an identity field (`first_name` → First Name).
pub fn column_of_field(field: &str) -> Option<Column> {
    FIELDS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, column)| *column)
}

/// The identity field a template column holds (First Name → `first_name`); `None` for the
/// Internal ID and the assignments.
pub fn field_of_column(column: Column) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(_, of)| *of == column)
        .map(|(name, _)| *name)
}
