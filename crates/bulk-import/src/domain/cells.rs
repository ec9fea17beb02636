//! One cell's journey between a spreadsheet and a profile field.
//!
//! - Export escapes a value a spreadsheet would run as a formula (OWASP "CSV injection"): one
//!   starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`, which
//!   spreadsheets show as text. A value that already starts with `'` followed by one of those
//!   (or by another `'`) gets one too, so that import can take exactly one away and a round
//!   trip changes nothing.
//! - Import trims surrounding white space (noting that it did: invisible trailing spaces are a
//!   classic bulk-upload failure) and then takes the escape away.

/// Characters that make a spreadsheet read a cell as a formula.
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

fn escaped_by_us(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next() == Some('\'')
        && chars
            .next()
            .is_some_and(|c| c == '\'' || FORMULA_TRIGGERS.contains(&c))
}

/// The cell text to write for `value`.
pub fn escape_formula(value: &str) -> std::borrow::Cow<'_, str> {
    let starts_with_trigger = value
        .chars()
        .next()
        .is_some_and(|c| FORMULA_TRIGGERS.contains(&c));
    if starts_with_trigger || escaped_by_us(value) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

/// The value a written cell stands for (the inverse of [`escape_formula`]).
pub fn unescape_formula(cell: &str) -> &str {
    if escaped_by_us(cell) {
        &cell[1..]
    } else {
        cell
    }
}

/// A cell read from an upload, ready for validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanCell {
    pub value: String,
    /// White space was taken from around the value.
    pub trimmed: bool,
}

/// Trims and un-escapes one uploaded cell.
pub fn clean_cell(raw: &str) -> CleanCell {
    let trimmed = raw.trim();
    CleanCell {
        value: unescape_formula(trimmed).to_owned(),
        trimmed: trimmed.len() != raw.len(),
    }
}

/// True when `new` looks like `old` after a spreadsheet read it as a number and dropped its
/// leading zeros (`0042` → `42`).
pub fn lost_leading_zeros(old: &str, new: &str) -> bool {
    !new.is_empty()
        && new.chars().all(|c| c.is_ascii_digit())
        && old.len() > new.len()
        && old.starts_with('0')
        && old.trim_start_matches('0') == new.trim_start_matches('0')
        && old.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_escaping_round_trips() {
        for value in [
            "=SUM(A1:A2)",
            "+33 1 23",
            "-5",
            "@admin",
            "'=already",
            "''",
            "'",
            "'tis",
            "O'Brien",
            "plain",
            "",
            "=",
        ] {
            let cell = escape_formula(value);
            assert_eq!(unescape_formula(&cell), value, "round trip of {value:?}");
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "{value:?} exported as {cell:?}"
            );
        }
        assert_eq!(escape_formula("=1+2"), "'=1+2");
        assert_eq!(escape_formula("'tis"), "'tis");
    }

    #[test]
    fn trimming_is_noted() {
        assert_eq!(
            clean_cell("  Ada\u{a0}"),
            CleanCell {
                value: "Ada".into(),
                trimmed: true
            }
        );
        assert!(!clean_cell("Ada").trimmed);
        assert_eq!(clean_cell(" '=x ").value, "=x");
    }

    #[test]
    fn lost_leading_zeros_are_recognised() {
        assert!(lost_leading_zeros("0042", "42"));
        assert!(!lost_leading_zeros("42", "42"));
        assert!(!lost_leading_zeros("0042", "43"));
        assert!(!lost_leading_zeros("0a42", "42"));
        assert!(!lost_leading_zeros("0042", ""));
    }
}
