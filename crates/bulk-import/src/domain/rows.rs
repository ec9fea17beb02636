//! What becomes of each uploaded row: create, update (with its field-by-field diff),
//! unchanged, or error (with every problem, each naming its column).
//!
//! A row is planned in two steps around identity's batch calls. [`draft`] cleans the cells,
//! matches the Internal ID against the profiles identity returned (BatchGetProfiles), checks
//! each field with identity's own parsers, and names the username to ask about. [`finish`]
//! reads identity's answer (BatchCheckUsernames) — bulk-import never decides whether a
//! username is free — and settles the action.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use roster_identity::domain::email::EmailAddress;
use roster_identity::domain::error::IdentityError;
use roster_identity::domain::profile::{ProfileFields, RawProfile};
use roster_identity::domain::username::Username;
use serde::{Deserialize, Serialize};

use super::assignments::{
    Extension, Role, extensions_cell, parse_extensions, parse_roles, resolve, roles_cell,
};
use super::cells::{clean_cell, lost_leading_zeros};
use super::columns::{Column, Layout, Slot};
use super::reader::Record;
use super::state::RowAction;

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

/// A row's cells after trimming and un-escaping, with what was noticed on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanRow {
    pub row_number: i64,
    pub values: BTreeMap<Column, String>,
    pub notes: Vec<RowNote>,
    pub errors: Vec<RowError>,
}

/// Cleans a record's cells; `None` for a blank row.
pub fn clean_row(layout: &Layout, record: &Record, max_field_chars: usize) -> Option<CleanRow> {
    if record.cells.iter().all(|cell| cell.trim().is_empty()) {
        return None;
    }
    let mut row = CleanRow {
        row_number: record.row_number,
        values: BTreeMap::new(),
        notes: Vec::new(),
        errors: Vec::new(),
    };
    for (index, raw) in record.cells.iter().enumerate() {
        let slot = layout.slots.get(index).copied();
        let column = match slot {
            Some(Slot::Known(column)) => column,
            Some(Slot::Ignored { named: true }) => continue,
            Some(Slot::Ignored { named: false }) | None => {
                if !raw.trim().is_empty() {
                    row.errors.push(RowError::new(
                        None,
                        "EXTRA_CELL",
                        format!(
                            "cell {} holds '{}' but its column has no name in the header row",
                            index + 1,
                            shorten(raw.trim())
                        ),
                    ));
                }
                continue;
            }
        };
        let cell = clean_cell(raw);
        let length = cell.value.chars().count();
        let value = if length > max_field_chars {
            row.errors.push(RowError::new(
                Some(column),
                "TOO_LONG",
                format!(
                    "{column} is {length} characters long; at most {max_field_chars} are allowed \
                     (a quoted cell may be missing its closing quote)"
                ),
            ));
            cell.value.chars().take(max_field_chars).collect()
        } else {
            cell.value
        };
        if cell.trimmed {
            row.notes.push(RowNote::new(
                Some(column),
                "WHITESPACE_TRIMMED",
                format!(
                    "white space around the value was removed: '{}'",
                    shorten(&value)
                ),
            ));
        }
        row.values.insert(column, value);
    }
    Some(row)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// The Internal ID a row names, as identity spells ids (lower-case, hyphenated); `Err` with
/// the cell when it is not an id at all.
pub fn internal_id(row: &CleanRow) -> Option<Result<String, String>> {
    let cell = row.values.get(&Column::InternalId)?;
    if cell.is_empty() {
        return None;
    }
    Some(
        uuid::Uuid::parse_str(cell)
            .map(|id| id.to_string())
            .map_err(|_| cell.clone()),
    )
}

/// The message for an Internal ID that does not name a profile of this account: one sentence
/// whether the id is unknown, altered or another account's, so nothing leaks.
fn unknown_internal_id(cell: &str) -> RowError {
    RowError::new(
        Some(Column::InternalId),
        "INTERNAL_ID_UNKNOWN",
        format!(
            "Internal ID '{}' is not a profile of this account; clear the cell to create a new \
             profile",
            shorten(cell)
        ),
    )
}

/// What a row targets.
#[derive(Clone, Debug)]
enum Target {
    Create,
    Update(Box<CurrentProfile>),
    /// The Internal ID is refused; the row is an error whatever else it holds.
    Refused,
}

/// A row between the two identity calls.
#[derive(Clone, Debug)]
pub struct Draft {
    row: CleanRow,
    target: Target,
    fields: Option<ProfileFields>,
    /// The username to ask identity about, if any.
    pub username: Option<String>,
    /// The username comes from the email address (the Username cell is empty).
    username_from_email: bool,
    /// The roles the Roles cell gives, when the file has the column and the cell is valid.
    roles: Option<BTreeSet<Role>>,
    /// The extensions the Extensions cell gives (kinds resolved), likewise.
    extensions: Option<Vec<Extension>>,
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
    });
    let fields = match parsed {
        Ok(fields) => Some(fields),
        Err(IdentityError::Invalid(violations)) => {
            for violation in violations {
                let column = column_of_field(&violation.field);
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
                let message = if empty {
                    format!(
                        "{} is required",
                        column.map(Column::header).unwrap_or("a value")
                    )
                } else {
                    violation.description
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
            if let Some(new) = given(column)
                && lost_leading_zeros(profile.value(column), new)
            {
                row.notes.push(RowNote::new(
                    Some(column),
                    "LEADING_ZEROS_LOST",
                    format!(
                        "the profile has '{}' and the file '{new}': a spreadsheet may have \
                         dropped the leading zeros; the value is kept as in the file",
                        profile.value(column)
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

fn column_of_field(field: &str) -> Option<Column> {
    Some(match field {
        "first_name" => Column::FirstName,
        "last_name" => Column::LastName,
        "email" => Column::EmailAddress,
        "username" => Column::Username,
        "job_title" => Column::JobTitle,
        "department" => Column::Department,
        "locale" => Column::Locale,
        "time_zone" => Column::TimeZone,
        _ => return None,
    })
}

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
            let mut message = if username_from_email {
                format!(
                    "the Username cell is empty, so the email address is the username, and {}; fill in a Username",
                    verdict.message
                )
            } else {
                verdict.message.clone()
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
        if let Some(extensions) = &extensions
            && *extensions != profile.extensions
        {
            changes.push(FieldChange {
                column: Column::Extensions.header().to_owned(),
                old_value: profile.extensions_cell.clone(),
                new_value: extensions_cell(extensions),
            });
        }
        if let Some(roles) = &roles
            && *roles != profile.roles
        {
            changes.push(FieldChange {
                column: Column::Roles.header().to_owned(),
                old_value: profile.roles_cell.clone(),
                new_value: roles_cell(roles),
            });
        }
    }
    let action = match &target {
        _ if !row.errors.is_empty() => RowAction::Error,
        Target::Refused => RowAction::Error,
        _ if fields.is_none() => RowAction::Error,
        Target::Create => RowAction::Create,
        Target::Update(_) if changes.is_empty() => RowAction::Unchanged,
        Target::Update(_) => RowAction::Update,
    };
    PlannedRow {
        row_number: row.row_number,
        action,
        profile_id: current.map(|profile| profile.id.clone()),
        values: row.values,
        changes,
        errors: row.errors,
        notes: row.notes,
        claim,
    }
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

/// The fields to send identity for a row at apply time. An update takes the profile's current
/// value for each column the file lacks; an empty username keeps the profile's.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::columns::parse_header;

    fn layout() -> Layout {
        parse_header(
            &Column::ALL
                .iter()
                .map(|c| c.header().to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn record(cells: &[&str]) -> Record {
        Record {
            row_number: 2,
            cells: cells.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn ada() -> CurrentProfile {
        CurrentProfile {
            id: "0190b6a4-0000-7000-8000-000000000001".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            username: "ada".into(),
            canonical_username: "ada".into(),
            job_title: "0042".into(),
            ..CurrentProfile::default()
        }
    }

    fn plan(cells: &[&str], verdict: Option<UsernameVerdict>) -> PlannedRow {
        let row = clean_row(&layout(), &record(cells), 1000).unwrap();
        let profiles = HashMap::from([(ada().id, ada())]);
        let draft = draft(row, &profiles);
        finish(draft, verdict.as_ref())
    }

    #[test]
    fn an_update_lists_each_change_old_to_new() {
        let row = plan(
            &[
                &ada().id,
                " Ada ",
                "King",
                "ada@example.com",
                "",
                "42",
                "",
                "",
                "",
            ],
            None,
        );
        assert_eq!(row.action, RowAction::Update);
        assert_eq!(
            row.changes,
            vec![
                FieldChange {
                    column: "Last Name".into(),
                    old_value: "Lovelace".into(),
                    new_value: "King".into()
                },
                FieldChange {
                    column: "Job Title".into(),
                    old_value: "0042".into(),
                    new_value: "42".into()
                },
            ]
        );
        let notes: Vec<_> = row.notes.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(notes, vec!["WHITESPACE_TRIMMED", "LEADING_ZEROS_LOST"]);
    }

    #[test]
    fn equal_values_are_unchanged() {
        let row = plan(
            &[
                &ada().id.to_uppercase(),
                "Ada",
                "Lovelace",
                "ada@EXAMPLE.com",
                "ada",
                "0042",
                "",
                "",
                "",
            ],
            Some(UsernameVerdict {
                canonical: "ada".into(),
                reason: "USERNAME_TAKEN".into(),
                holder_profile_id: ada().id,
                ..UsernameVerdict::default()
            }),
        );
        assert_eq!(row.action, RowAction::Unchanged, "{row:?}");
        assert_eq!(row.claim, None);
    }

    #[test]
    fn every_problem_of_a_row_is_listed() {
        let row = plan(
            &[
                "nope",
                "",
                "Lovelace",
                "not-an-email",
                "",
                "",
                "",
                "xx-invalid",
                "",
            ],
            None,
        );
        assert_eq!(row.action, RowAction::Error);
        let reasons: Vec<_> = row
            .errors
            .iter()
            .map(|e| (e.column.as_str(), e.reason.as_str()))
            .collect();
        assert!(reasons.contains(&("Internal ID", "INTERNAL_ID_UNKNOWN")));
        assert!(reasons.contains(&("First Name", "REQUIRED")));
        assert!(reasons.contains(&("Email Address", "INVALID_EMAIL")));
        assert!(
            reasons.contains(&("Locale", "INVALID_LOCALE")),
            "{reasons:?}"
        );
    }

    #[test]
    fn unknown_and_foreign_ids_read_the_same() {
        let id = "0190b6a4-0000-7000-8000-0000000000ff";
        let unknown = plan(&[id, "A", "B", "a@example.com", "", "", "", "", ""], None);
        let error = &unknown.errors[0];
        assert_eq!(error.reason, "INTERNAL_ID_UNKNOWN");
        assert_eq!(
            error.message,
            format!(
                "Internal ID '{id}' is not a profile of this account; clear the cell to create a \
                 new profile"
            )
        );
    }

    #[test]
    fn a_refused_username_is_a_row_error_and_a_free_one_is_claimed() {
        let taken = plan(
            &["", "A", "B", "a@example.com", "", "", "", "", ""],
            Some(UsernameVerdict {
                canonical: "a@example.com".into(),
                reason: "USERNAME_TAKEN".into(),
                message: "this username is in use on the platform".into(),
                ..UsernameVerdict::default()
            }),
        );
        assert_eq!(taken.action, RowAction::Error);
        assert_eq!(taken.errors[0].reason, "USERNAME_TAKEN");
        assert!(
            taken.errors[0]
                .message
                .contains("email address is the username")
        );
        let free = plan(
            &["", "A", "B", "a@example.com", "a.b", "", "", "", ""],
            Some(UsernameVerdict {
                available: true,
                canonical: "a.b".into(),
                ..UsernameVerdict::default()
            }),
        );
        assert_eq!(free.action, RowAction::Create);
        assert_eq!(free.claim.as_deref(), Some("a.b"));
    }

    #[test]
    fn blank_rows_are_skipped_and_nameless_cells_reported() {
        assert!(clean_row(&layout(), &record(&["", " ", ""]), 10).is_none());
        let mut cells: Vec<&str> = vec!["", "A", "B", "a@example.com", "", "", "", "", "", "", ""];
        cells.push("stray");
        let row = clean_row(&layout(), &record(&cells), 100).unwrap();
        assert_eq!(row.errors[0].reason, "EXTRA_CELL");
    }

    #[test]
    fn assignments_diff_as_sets_and_unknown_roles_are_row_errors() {
        use crate::domain::assignments::{Extension, ExtensionKind};
        let held = ada().with_assignments(
            BTreeSet::from([Role::StandardUser, Role::ContactCenterAgent]),
            vec![Extension {
                number: "0101".into(),
                kind: ExtensionKind::Virtual,
            }],
        );
        let profiles = HashMap::from([(held.id.clone(), held.clone())]);
        let plan = |extensions: &str, roles: &str| {
            let cells = [
                held.id.as_str(),
                "Ada",
                "Lovelace",
                "ada@example.com",
                "",
                "0042",
                "",
                "",
                "",
                extensions,
                roles,
            ];
            let row = clean_row(&layout(), &record(&cells), 1000).unwrap();
            finish(draft(row, &profiles), None)
        };
        let same = plan("0101", "Standard User; contact-center-agent");
        assert_eq!(same.action, RowAction::Unchanged, "{same:?}");
        let changed = plan("0101;0102:virtual", "standard_user");
        assert_eq!(changed.action, RowAction::Update);
        assert_eq!(
            changed.changes,
            vec![
                FieldChange {
                    column: "Extensions".into(),
                    old_value: "0101:virtual".into(),
                    new_value: "0101:virtual;0102:virtual".into(),
                },
                FieldChange {
                    column: "Roles".into(),
                    old_value: "contact_center_agent;standard_user".into(),
                    new_value: "standard_user".into(),
                },
            ]
        );
        let wrong = plan("", "root");
        assert_eq!(wrong.action, RowAction::Error);
        assert_eq!(wrong.errors[0].column, "Roles");
        assert_eq!(wrong.errors[0].reason, "ROLE_INVALID");
        let values = BTreeMap::from([(Column::Extensions, "0101;7".to_owned())]);
        let fields = upsert_fields(&values, Some(&held));
        assert!(fields.set_assignments);
        assert_eq!(
            fields.roles,
            vec![Role::ContactCenterAgent, Role::StandardUser]
        );
        assert_eq!(fields.extensions.len(), 2);
        assert!(!upsert_fields(&BTreeMap::new(), Some(&held)).set_assignments);
    }

    #[test]
    fn updates_keep_what_the_file_lacks() {
        let values = BTreeMap::from([(Column::LastName, "King".to_owned())]);
        let fields = upsert_fields(&values, Some(&ada()));
        assert_eq!(fields.first_name, "Ada");
        assert_eq!(fields.last_name, "King");
        assert_eq!(fields.username, "", "an empty username keeps the profile's");
        assert_eq!(fields.id, ada().id);
    }
}
