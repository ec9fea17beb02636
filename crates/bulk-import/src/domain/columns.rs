//! The template's columns and the reading of an uploaded header row.
//!
//! Spreadsheets reorder, re-case and pad column names, so a header is matched by name ignoring
//! case, surrounding white space and `_`/`-` for spaces. The report's own `Status` and `Error`
//! columns are accepted (and ignored), so a report can be fixed and uploaded again. Anything
//! else is refused with a message that says what was found and what is expected.

use std::collections::BTreeMap;
use std::fmt;

/// A column of the template, in template order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    InternalId,
    FirstName,
    LastName,
    EmailAddress,
    Username,
    JobTitle,
    Department,
    Locale,
    TimeZone,
    Extensions,
    Roles,
}

impl Column {
    /// Every column, in template order. Extensions and Roles hold several values separated
    /// by `;` (see [`super::assignments`]).
    pub const ALL: [Column; 11] = [
        Column::InternalId,
        Column::FirstName,
        Column::LastName,
        Column::EmailAddress,
        Column::Username,
        Column::JobTitle,
        Column::Department,
        Column::Locale,
        Column::TimeZone,
        Column::Extensions,
        Column::Roles,
    ];

    /// Columns a file must have: without them no row can create a profile.
    pub const REQUIRED: [Column; 3] = [Column::FirstName, Column::LastName, Column::EmailAddress];

    /// The header as the template writes it.
    pub fn header(self) -> &'static str {
        match self {
            Column::InternalId => "Internal ID",
            Column::FirstName => "First Name",
            Column::LastName => "Last Name",
            Column::EmailAddress => "Email Address",
            Column::Username => "Username",
            Column::JobTitle => "Job Title",
            Column::Department => "Department",
            Column::Locale => "Locale",
            Column::TimeZone => "Time Zone",
            Column::Extensions => "Extensions",
            Column::Roles => "Roles",
        }
    }

    /// The column with this template header (exact spelling), as stored in row values.
    pub fn from_header(header: &str) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|column| column.header() == header)
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header())
    }
}

/// The report's extra columns.
pub const STATUS_HEADER: &str = "Status";
pub const ERROR_HEADER: &str = "Error";

/// What one column of an uploaded file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A template column.
    Known(Column),
    /// A report column, named as the report writes it (`Status`, `Error`): its values are
    /// ignored, though a line break in one is reported on its row, as it may have taken in the
    /// rows after it.
    Report(&'static str),
    /// A column without a name: its cells are ignored, though a value under it is reported on
    /// its row.
    Unnamed,
}

/// The columns of an uploaded file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub slots: Vec<Slot>,
}

impl Layout {
    /// The template columns the file has, in file order.
    pub fn columns(&self) -> Vec<Column> {
        self.slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Known(column) => Some(*column),
                Slot::Report(_) | Slot::Unnamed => None,
            })
            .collect()
    }

    pub fn has(&self, column: Column) -> bool {
        self.slots.contains(&Slot::Known(column))
    }
}

/// Lower-cases and collapses a header cell for matching.
fn normalise(header: &str) -> String {
    header
        .trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Reads the header row. The error says what was found, e.g.
/// `line 1: unknown column 'Emial Address'; expected one of Internal ID, First Name, …`.
pub fn parse_header(cells: &[String]) -> Result<Layout, String> {
    let expected = || {
        Column::ALL
            .iter()
            .map(|column| column.header())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut slots = Vec::with_capacity(cells.len());
    let mut seen: BTreeMap<Column, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        let name = normalise(cell);
        if name.is_empty() {
            slots.push(Slot::Unnamed);
            continue;
        }
        if let Some(report) = [STATUS_HEADER, ERROR_HEADER]
            .into_iter()
            .find(|report| report.to_lowercase() == name)
        {
            slots.push(Slot::Report(report));
            continue;
        }
        match Column::ALL
            .into_iter()
            .find(|column| column.header().to_lowercase() == name)
        {
            Some(column) => {
                if let Some(first) = seen.insert(column, index) {
                    problems.push(format!(
                        "column '{}' appears twice (columns {} and {})",
                        column.header(),
                        first + 1,
                        index + 1
                    ));
                }
                slots.push(Slot::Known(column));
            }
            None => problems.push(format!(
                "unknown column '{}'; expected one of {}",
                cell.trim(),
                expected()
            )),
        }
    }
    let missing: Vec<&str> = Column::REQUIRED
        .iter()
        .filter(|column| !seen.contains_key(column))
        .map(|column| column.header())
        .collect();
    if !missing.is_empty() {
        let found: Vec<String> = cells
            .iter()
            .map(|cell| format!("'{}'", cell.trim()))
            .collect();
        problems.push(format!(
            "missing column{} {}; the header row must name at least First Name, Last Name and \
             Email Address (found {})",
            if missing.len() > 1 { "s" } else { "" },
            missing
                .iter()
                .map(|name| format!("'{name}'"))
                .collect::<Vec<_>>()
                .join(", "),
            found.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(Layout { slots })
    } else {
        Err(format!("line 1: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(header: &str, delimiter: char) -> Vec<String> {
        header.split(delimiter).map(str::to_owned).collect()
    }

    #[test]
    fn headers_match_in_any_order_and_case() {
        let layout = parse_header(&cells(
            " email address ;FIRST NAME;last_name;Internal id;Status",
            ';',
        ))
        .unwrap();
        assert_eq!(
            layout.columns(),
            vec![
                Column::EmailAddress,
                Column::FirstName,
                Column::LastName,
                Column::InternalId
            ]
        );
        assert_eq!(layout.slots[4], Slot::Report("Status"));
    }

    #[test]
    fn unknown_column_names_what_was_found_and_what_is_expected() {
        let error = parse_header(&cells("First Name,Last Name,Emial Address", ',')).unwrap_err();
        assert!(
            error.starts_with(
                "line 1: unknown column 'Emial Address'; expected one of Internal ID, First Name"
            ),
            "{error}"
        );
        assert!(error.contains("missing column 'Email Address'"), "{error}");
    }

    #[test]
    fn missing_and_duplicate_columns_are_named() {
        let error = parse_header(&cells("First Name,First Name", ',')).unwrap_err();
        assert!(
            error.contains("'First Name' appears twice (columns 1 and 2)"),
            "{error}"
        );
        assert!(
            error.contains("missing columns 'Last Name', 'Email Address'"),
            "{error}"
        );
    }
}
