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
use super::reader::{OpenQuote, QuoteEnd, Record, fits_header};
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
    /// The row's cells do not line up with the header (too few or too many, or a quote that
    /// never closes): its values are not checked, and it is never written.
    pub misshapen: bool,
}

/// Cleans a record's cells and checks its shape against the header; `None` for a blank row.
/// `delimiter` is the file's.
pub fn clean_row(
    layout: &Layout,
    record: &Record,
    max_field_chars: usize,
    delimiter: u8,
) -> Option<CleanRow> {
    if record.open_quote.is_none() && record.cells.iter().all(|cell| cell.trim().is_empty()) {
        return None;
    }
    let mut row = CleanRow {
        row_number: record.row_number,
        values: BTreeMap::new(),
        notes: Vec::new(),
        errors: Vec::new(),
        misshapen: false,
    };
    if let Some(opened) = record.after_open_quote {
        row.notes.push(RowNote::new(
            None,
            "READ_AFTER_OPEN_QUOTE",
            format!(
                "the quoted cell opened on line {opened} took in this row's line; a closing \
                 quote is probably missing there, and this line is read as a row of its own"
            ),
        ));
    }
    let shape = shape_error(layout, record, delimiter);
    row.misshapen = shape.is_some();
    row.errors.extend(shape);
    for (index, raw) in record.cells.iter().enumerate() {
        let slot = layout.slots.get(index).copied();
        let column = match slot {
            Some(Slot::Known(column)) => column,
            Some(Slot::Ignored { named: true }) | None => continue,
            Some(Slot::Ignored { named: false }) => {
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
                    "{column} is {length} characters long; at most {max_field_chars} are allowed"
                ),
            ));
            cell.value.chars().take(max_field_chars).collect()
        } else {
            cell.value
        };
        if record.open_quote.is_none() && raw.contains('\n') {
            row.errors
                .push(line_break(record, index, column, char::from(delimiter)));
        }
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

/// What is wrong with the shape of a record, if anything: a quote that never closes, too few
/// cells, or values beyond the header's columns.
fn shape_error(layout: &Layout, record: &Record, delimiter: u8) -> Option<RowError> {
    let columns = layout.slots.len();
    let found = record.cells.len();
    if let Some(quote) = &record.open_quote {
        let column = match layout.slots.get(quote.cell) {
            Some(Slot::Known(column)) => Some(*column),
            _ => None,
        };
        return Some(RowError::new(column, "QUOTE_NOT_CLOSED", open_quote(quote)));
    }
    let cells = |n: usize| format!("{n} cell{}", if n == 1 { "" } else { "s" });
    if found < columns {
        let missing: Vec<&str> = layout.slots[found..]
            .iter()
            .filter_map(|slot| match slot {
                Slot::Known(column) => Some(column.header()),
                Slot::Ignored { .. } => None,
            })
            .collect();
        let without = if missing.is_empty() {
            String::new()
        } else {
            format!(" (no cell for {})", missing.join(", "))
        };
        return Some(RowError::new(
            None,
            "ROW_TOO_SHORT",
            format!(
                "this row has {}; the header has {columns} columns{without}; a missing cell is \
                 never read as empty",
                cells(found)
            ),
        ));
    }
    if !fits_header(&record.cells, columns) {
        let (index, extra) = record
            .cells
            .iter()
            .enumerate()
            .skip(columns)
            .find(|(_, cell)| !cell.trim().is_empty())?;
        return Some(RowError::new(
            None,
            "ROW_TOO_LONG",
            format!(
                "this row has {}; the header has {columns} columns (cell {} holds '{}'); a \
                 value holding '{}' must be in quotes",
                cells(found),
                index + 1,
                shorten(extra.trim()),
                char::from(delimiter)
            ),
        ));
    }
    None
}

/// The message of a quote that never closes.
fn open_quote(quote: &OpenQuote) -> String {
    let line = quote.line;
    let mut message = match quote.end {
        QuoteEnd::EndOfFile => format!(
            "line {line}: the quoted cell opened here is never closed; a closing quote is \
             probably missing"
        ),
        QuoteEnd::TooLong(bytes) => format!(
            "line {line}: the quoted cell opened here is still open after {} KiB; a closing \
             quote is probably missing",
            bytes / 1024
        ),
        QuoteEnd::ClosedLate(closed) => format!(
            "line {line}: the quoted cell opened here closes only on line {closed}; a closing \
             quote is probably missing"
        ),
    };
    match quote.took {
        Some((first, last)) if first == last => message.push_str(&format!(
            "; it took in line {first}, which is read as a row of its own"
        )),
        Some((first, last)) => message.push_str(&format!(
            "; it took in lines {first} to {last}, which are read as rows of their own"
        )),
        None => {}
    }
    message
}

/// The error of a cell with a line break: where its quoted cell runs and, when its later
/// lines look like cells of rows, that they may be rows it took in.
fn line_break(record: &Record, index: usize, column: Column, delimiter: char) -> RowError {
    let lines = |text: &str| text.matches('\n').count() as u64;
    let cell = &record.cells[index];
    let opened = record.line + record.cells[..index].iter().map(|c| lines(c)).sum::<u64>();
    let closed = opened + lines(cell);
    let taken = if closed == opened + 1 {
        format!("line {closed} belongs to a row of its own")
    } else {
        format!(
            "lines {} to {closed} belong to rows of their own",
            opened + 1
        )
    };
    let mut message = format!(
        "{column} holds a line break: its quoted cell runs from line {opened} to line \
         {closed}, and a profile field is one line"
    );
    if cell
        .split_once('\n')
        .is_some_and(|(_, rest)| rest.contains(delimiter))
    {
        message.push_str(&format!(
            "; if a closing quote is missing on line {opened}, {taken}"
        ));
    }
    RowError::new(Some(column), "LINE_BREAK_IN_CELL", message)
}

/// An identity message about a field in the voice of import rows: the column named by its
/// header ("First Name is 101 characters long; …"), lower case otherwise, no final period.
pub fn in_row_voice(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    let labels = [
        ("first_name", Column::FirstName),
        ("last_name", Column::LastName),
        ("email", Column::EmailAddress),
        ("username", Column::Username),
        ("job_title", Column::JobTitle),
        ("department", Column::Department),
        ("locale", Column::Locale),
        ("time_zone", Column::TimeZone),
        ("The email address", Column::EmailAddress),
        ("The username", Column::Username),
        ("The locale", Column::Locale),
        ("The time zone", Column::TimeZone),
    ];
    for (label, column) in labels {
        if let Some(rest) = text.strip_prefix(label)
            && rest.starts_with([' ', ',', ':'])
        {
            return format!("{}{rest}", column.header());
        }
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
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

/// The template column of an identity field (`first_name` → First Name).
pub fn column_of_field(field: &str) -> Option<Column> {
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
            line: 2,
            cells: cells.iter().map(|c| (*c).to_owned()).collect(),
            open_quote: None,
            after_open_quote: None,
        }
    }

    /// A record of the template's 11 columns: `cells`, then empty ones.
    fn full(cells: &[&str]) -> Record {
        let mut padded = cells.to_vec();
        padded.resize(Column::ALL.len(), "");
        record(&padded)
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
        let row = clean_row(&layout(), &full(cells), 1000, b',').unwrap();
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
        assert!(clean_row(&layout(), &record(&["", " ", ""]), 10, b',').is_none());
        let nameless =
            parse_header(&["First Name", "", "Last Name", "Email Address"].map(String::from))
                .unwrap();
        let row = clean_row(
            &nameless,
            &record(&["A", "stray", "B", "a@example.com"]),
            100,
            b',',
        )
        .unwrap();
        assert_eq!(row.errors[0].reason, "EXTRA_CELL");
        assert_eq!(
            row.errors[0].message,
            "cell 2 holds 'stray' but its column has no name in the header row"
        );
    }

    #[test]
    fn short_and_long_rows_are_errors_that_say_how_many_cells() {
        let short = clean_row(
            &layout(),
            &record(&["", "Ada", "Lovelace", "ada@example.com"]),
            100,
            b',',
        )
        .unwrap();
        assert!(short.misshapen);
        assert_eq!(
            short.errors,
            vec![RowError {
                column: String::new(),
                reason: "ROW_TOO_SHORT".into(),
                message: "this row has 4 cells; the header has 11 columns (no cell for Username, \
                          Job Title, Department, Locale, Time Zone, Extensions, Roles); a missing \
                          cell is never read as empty"
                    .into(),
            }]
        );
        let planned = finish(draft(short, &HashMap::new()), None);
        assert_eq!((planned.action, planned.claim), (RowAction::Error, None));
        let mut cells = vec![""; 11];
        cells[1] = "Ada";
        cells.extend(["", " Jr.", ""]);
        let long = clean_row(&layout(), &record(&cells), 100, b';').unwrap();
        assert_eq!(long.errors[0].reason, "ROW_TOO_LONG");
        assert_eq!(
            long.errors[0].message,
            "this row has 14 cells; the header has 11 columns (cell 13 holds 'Jr.'); a value \
             holding ';' must be in quotes"
        );
        // Empty cells after the last column are what some programs write: no error.
        cells.truncate(11);
        cells.push("");
        assert!(
            !clean_row(&layout(), &record(&cells), 100, b',')
                .unwrap()
                .misshapen
        );
    }

    #[test]
    fn an_open_quote_is_reported_at_its_line_naming_the_lines_it_took() {
        let mut open = full(&["", "Unclosed,Quote,uq@example.com,,,,"]);
        open.line = 3;
        open.cells.truncate(2);
        open.open_quote = Some(OpenQuote {
            line: 3,
            cell: 1,
            end: QuoteEnd::EndOfFile,
            took: Some((4, 5)),
        });
        let row = clean_row(&layout(), &open, 1000, b',').unwrap();
        assert!(row.misshapen);
        assert_eq!(
            row.errors,
            vec![RowError {
                column: "First Name".into(),
                reason: "QUOTE_NOT_CLOSED".into(),
                message: "line 3: the quoted cell opened here is never closed; a closing quote \
                          is probably missing; it took in lines 4 to 5, which are read as rows \
                          of their own"
                    .into(),
            }]
        );
        let mut after = full(&["", "Ann", "Lee", "ann@example.com"]);
        after.after_open_quote = Some(3);
        let row = clean_row(&layout(), &after, 1000, b',').unwrap();
        assert_eq!(row.notes[0].reason, "READ_AFTER_OPEN_QUOTE");
        assert!(!row.misshapen);
    }

    #[test]
    fn a_line_break_in_a_cell_names_the_lines_it_runs_over() {
        let row = plan(
            &["", "Ann", "Lee", "ann@example.com", "", "Head of\r\nSales"],
            None,
        );
        assert_eq!(row.action, RowAction::Error);
        assert_eq!(
            row.errors,
            vec![RowError {
                column: "Job Title".into(),
                reason: "LINE_BREAK_IN_CELL".into(),
                message: "Job Title holds a line break: its quoted cell runs from line 2 to line \
                          3, and a profile field is one line"
                    .into(),
            }]
        );
    }

    #[test]
    fn identity_messages_read_in_the_rows_voice() {
        let row = plan(
            &[
                "",
                &"A".repeat(101),
                "Lee",
                "ann@@example.com",
                "",
                "",
                "",
                "xx-invalid",
                "Mars/Base",
            ],
            None,
        );
        let messages: Vec<(&str, &str)> = row
            .errors
            .iter()
            .map(|error| (error.column.as_str(), error.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            vec![
                (
                    "First Name",
                    "First Name is 101 characters long; at most 100 are allowed"
                ),
                (
                    "Locale",
                    "Locale 'xx-invalid' is not a BCP 47 language tag such as en, en-GB or pt-BR: the primary language is not in the IANA Language Subtag Registry"
                ),
                (
                    "Time Zone",
                    "Time Zone 'Mars/Base' is not an IANA time zone name such as Europe/Paris, America/New_York or UTC"
                ),
                (
                    "Email Address",
                    "Email Address has more than one @; it must have exactly one"
                ),
            ],
            "{:#?}",
            row.errors
        );
        assert_eq!(
            in_row_voice("The part of the email address before the @ starts or ends with a dot."),
            "the part of the email address before the @ starts or ends with a dot"
        );
        assert_eq!(
            in_row_voice(
                "job_title contains the invisible or control character U+000D, which is not allowed."
            ),
            "Job Title contains the invisible or control character U+000D, which is not allowed"
        );
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
            let row = clean_row(&layout(), &record(&cells), 1000, b',').unwrap();
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
