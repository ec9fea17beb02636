//! Writing CSV that Excel opens correctly: UTF-8 with a byte-order mark, CRLF line ends,
//! quotes where needed, and every cell escaped against formula injection. The bytes are taken
//! out in pieces as they grow, so a file of any length streams in constant memory.

use super::cells::escape_formula;
use super::columns::Column;
use super::rows::CurrentProfile;

/// A CSV file being written.
pub struct CsvOut {
    writer: csv::Writer<Vec<u8>>,
}

fn writer(start: Vec<u8>) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(start)
}

impl Default for CsvOut {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvOut {
    /// A file that starts with the UTF-8 byte-order mark.
    pub fn new() -> Self {
        Self {
            writer: writer(b"\xEF\xBB\xBF".to_vec()),
        }
    }

    /// Writes one row, escaping each cell.
    pub fn row<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) {
        let escaped: Vec<std::borrow::Cow<'a, str>> =
            cells.into_iter().map(escape_formula).collect();
        // Writing into a Vec cannot fail.
        let _ = self
            .writer
            .write_record(escaped.iter().map(|cell| cell.as_bytes()));
    }

    /// The bytes written so far, once there are at least `threshold` of them.
    pub fn take(&mut self, threshold: usize) -> Option<Vec<u8>> {
        let _ = self.writer.flush();
        let length = self.writer.get_ref().len();
        if length == 0 || length < threshold {
            return None;
        }
        let full = std::mem::replace(&mut self.writer, writer(Vec::new()));
        full.into_inner().ok()
    }
}

/// The template's header row.
pub fn template_header() -> Vec<&'static str> {
    Column::ALL.iter().map(|column| column.header()).collect()
}

/// A profile as a template row.
pub fn template_row(profile: &CurrentProfile) -> Vec<&str> {
    Column::ALL
        .iter()
        .map(|column| profile.value(*column))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_starts_with_bom_and_uses_crlf() {
        let mut out = CsvOut::new();
        out.row(template_header());
        out.row(["", "=cmd", "a,b", "multi\nline"]);
        let bytes = out.take(0).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "\u{feff}Internal ID,First Name,Last Name,Email Address,Username,Job Title,\
             Department,Locale,Time Zone,Extensions,Roles\r\n,'=cmd,\"a,b\",\"multi\nline\"\r\n"
        );
        assert!(out.take(1).is_none());
    }
}
