//! Step zero of a row: its cells trimmed and un-escaped, and its shape checked against the
//! header (cells missing or extra, a quote that never closes, a line break inside a cell).

use std::collections::BTreeMap;

use super::*;
use crate::domain::cells::clean_cell;
use crate::domain::columns::{Column, Layout, Slot};
use crate::domain::reader::{OpenQuote, QuoteEnd, Record, fits_header};

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
    // Empty cells past the header's columns: a trailing delimiter — or an unquoted delimiter
    // in a value of a row whose last cells were empty, which moved the values after it one
    // column right. The preview says so, unless the header is padded alike (a program that
    // ends every line with delimiters).
    let columns = layout.slots.len();
    if !row.misshapen && record.cells.len() > columns && layout.slots.last() != Some(&Slot::Unnamed)
    {
        row.notes.push(RowNote::new(
            None,
            "EXTRA_EMPTY_CELLS",
            format!(
                "this row has {} cells and the header {columns} columns; the cells past them \
                 are empty and ignored — if a value held '{}' outside quotes, the values after \
                 it moved one column to the right",
                record.cells.len(),
                char::from(delimiter)
            ),
        ));
    }
    for (index, raw) in record.cells.iter().enumerate() {
        let slot = layout.slots.get(index).copied();
        let column = match slot {
            Some(Slot::Known(column)) => column,
            // The value is ignored, but not a line break: the cell's quote may have taken in
            // the rows after it while the row kept its number of cells.
            Some(Slot::Report(header)) => {
                if record.open_quote.is_none() && raw.contains('\n') {
                    row.errors.push(line_break(
                        record,
                        index,
                        header,
                        true,
                        char::from(delimiter),
                    ));
                }
                continue;
            }
            None => continue,
            Some(Slot::Unnamed) => {
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
            row.errors.push(line_break(
                record,
                index,
                column.header(),
                false,
                char::from(delimiter),
            ));
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
                Slot::Report(_) | Slot::Unnamed => None,
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

/// The error of a cell with a line break, under the column `header`: where its quoted cell
/// runs and, when its later lines look like cells of rows, that they may be rows it took in.
/// When the column is `ignored`, the line break matters only for the rows it may have taken
/// in, so the error always names them.
fn line_break(
    record: &Record,
    index: usize,
    header: &str,
    ignored: bool,
    delimiter: char,
) -> RowError {
    let lines = |text: &str| text.matches('\n').count() as u64;
    let cell = &record.cells[index];
    let opened = record.line + record.cells[..index].iter().map(|c| lines(c)).sum::<u64>();
    let closed = opened + lines(cell);
    let (next, taken) = if closed == opened + 1 {
        ("row", format!("line {closed} belongs to a row of its own"))
    } else {
        (
            "rows",
            format!(
                "lines {} to {closed} belong to rows of their own",
                opened + 1
            ),
        )
    };
    let missing = format!("if a closing quote is missing on line {opened}, {taken}");
    let message = if ignored {
        format!(
            "{header} holds a line break: its quoted cell runs from line {opened} to line \
             {closed} and may have taken in the next {next}; {missing} (the column itself is \
             ignored)"
        )
    } else if cell
        .split_once('\n')
        .is_some_and(|(_, rest)| rest.contains(delimiter))
    {
        format!(
            "{header} holds a line break: its quoted cell runs from line {opened} to line \
             {closed}, and a profile field is one line; {missing}"
        )
    } else {
        format!(
            "{header} holds a line break: its quoted cell runs from line {opened} to line \
             {closed}, and a profile field is one line"
        )
    };
    RowError {
        column: header.to_owned(),
        reason: "LINE_BREAK_IN_CELL".to_owned(),
        message,
    }
}

/// An identity message about a field in the voice of import rows: the column named by its
/// header ("First Name is 101 characters long; …"), lower case otherwise, no final period.
pub fn in_row_voice(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    // The fields' names, then the sentences identity starts with them.
    let sentences = [
        ("The email address", Column::EmailAddress),
        ("The username", Column::Username),
        ("The locale", Column::Locale),
        ("The time zone", Column::TimeZone),
    ];
    for (label, column) in super::draft::FIELDS.into_iter().chain(sentences) {
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
pub(super) fn unknown_internal_id(cell: &str) -> RowError {
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
