//! Streaming CSV reading: bytes in, numbered records out, in memory bounded by the longest row.
//!
//! The file arrives in pieces (from the database, a megabyte at a time). Each piece is decoded
//! to UTF-8 with `encoding_rs` and fed to `csv_core`, which accepts quoted fields with embedded
//! delimiters and line breaks. The delimiter — comma or semicolon, as Excel writes in locales
//! whose decimal separator is a comma — is read off the header line. Records are numbered as
//! a spreadsheet numbers its rows: the header is row 1, a quoted cell with line breaks stays
//! one row, and blank lines count.

use super::encoding::TextEncoding;

/// One record of the file, its cells as written (not yet trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The row number a spreadsheet shows (the header is row 1).
    pub row_number: i64,
    pub cells: Vec<String>,
}

/// What the reader has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Record(Record),
    /// Push more of the file (or call [`RecordReader::finish`]).
    NeedInput,
    /// The file is read.
    End,
}

/// The longest header line looked at to find the delimiter.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most cells a row may have.
const MAX_CELLS: usize = 1024;

/// Decodes and parses a CSV file pushed to it piece by piece.
pub struct RecordReader {
    decoder: encoding_rs::Decoder,
    parser: Option<csv_core::Reader>,
    delimiter: Option<u8>,
    /// Decoded text not yet parsed; `pos` bytes of it are parsed already.
    pending: Vec<u8>,
    pos: usize,
    input_finished: bool,
    output: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    end_len: usize,
    max_record_bytes: usize,
    /// Line breaks inside quoted cells of the records read so far.
    quoted_newlines: u64,
    ended: bool,
}

impl RecordReader {
    /// A reader of text in `encoding`; a row longer than `max_record_bytes` is a file error.
    pub fn new(encoding: TextEncoding, max_record_bytes: usize) -> Self {
        Self {
            decoder: encoding.decoder(),
            parser: None,
            delimiter: None,
            pending: Vec::new(),
            pos: 0,
            input_finished: false,
            output: vec![0; max_record_bytes.clamp(64, 4096)],
            out_len: 0,
            ends: vec![0; 32],
            end_len: 0,
            max_record_bytes,
            quoted_newlines: 0,
            ended: false,
        }
    }

    /// The delimiter, once the header line was seen.
    pub fn delimiter(&self) -> Option<u8> {
        self.delimiter
    }

    /// Adds the next piece of the file.
    pub fn push(&mut self, bytes: &[u8]) {
        self.decode(bytes, false);
    }

    /// Says the whole file was pushed.
    pub fn finish(&mut self) {
        if !self.input_finished {
            self.decode(&[], true);
            self.input_finished = true;
        }
    }

    fn decode(&mut self, bytes: &[u8], last: bool) {
        if self.pos > 0 {
            self.pending.drain(..self.pos);
            self.pos = 0;
        }
        let mut text = String::with_capacity(
            self.decoder
                .max_utf8_buffer_length(bytes.len())
                .unwrap_or(bytes.len() * 3),
        );
        // The sniffer chose an encoding every byte decodes in; replacement cannot happen.
        let _ = self.decoder.decode_to_string(bytes, &mut text, last);
        self.pending.extend_from_slice(text.as_bytes());
    }

    /// The next record, or what the reader needs first.
    pub fn next_record(&mut self) -> Result<Next, String> {
        if self.ended {
            return Ok(Next::End);
        }
        if self.parser.is_none() {
            let unread = &self.pending[self.pos..];
            let line_end = unread.iter().position(|&b| b == b'\n');
            if line_end.is_none() && !self.input_finished {
                if unread.len() > MAX_HEADER_BYTES {
                    return Err(format!(
                        "line 1 is longer than {} KiB without a line break; this is not a CSV \
                         header row",
                        MAX_HEADER_BYTES / 1024
                    ));
                }
                return Ok(Next::NeedInput);
            }
            let header = &unread[..line_end.unwrap_or(unread.len())];
            let delimiter = detect_delimiter(header)?;
            self.delimiter = Some(delimiter);
            self.parser = Some(
                csv_core::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .terminator(csv_core::Terminator::Any(b'\n'))
                    .build(),
            );
        }
        loop {
            let parser = self.parser.as_mut().expect("parser is built above");
            let unread = &self.pending[self.pos..];
            if unread.is_empty() && !self.input_finished {
                return Ok(Next::NeedInput);
            }
            let at_end = unread.is_empty();
            let (result, nin, nout, nend) = parser.read_record(
                unread,
                &mut self.output[self.out_len..],
                &mut self.ends[self.end_len..],
            );
            self.pos += nin;
            self.out_len += nout;
            self.end_len += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => {
                    if !self.input_finished {
                        return Ok(Next::NeedInput);
                    }
                }
                csv_core::ReadRecordResult::OutputFull => {
                    if self.output.len() >= self.max_record_bytes {
                        let line = parser.line();
                        return Err(format!(
                            "a row starting before line {line} is longer than {} KiB; a quoted \
                             cell may be missing its closing quote",
                            self.max_record_bytes / 1024
                        ));
                    }
                    let grown = (self.output.len() * 2).min(self.max_record_bytes);
                    self.output.resize(grown, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= MAX_CELLS {
                        return Err(format!(
                            "a row ending on line {} has more than {MAX_CELLS} cells",
                            parser.line()
                        ));
                    }
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    let line_after = parser.line();
                    let record = self.take_record(line_after, !at_end);
                    return Ok(Next::Record(record));
                }
                csv_core::ReadRecordResult::End => {
                    self.ended = true;
                    return Ok(Next::End);
                }
            }
        }
    }

    fn take_record(&mut self, line_after: u64, terminated: bool) -> Record {
        let bytes = &self.output[..self.out_len];
        let inside = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        let start_line = line_after - inside - u64::from(terminated);
        let row_number = (start_line - self.quoted_newlines) as i64;
        self.quoted_newlines += inside;
        let mut cells = Vec::with_capacity(self.end_len);
        let mut start = 0;
        for &end in &self.ends[..self.end_len] {
            // The input is UTF-8 from the decoder and the delimiter is ASCII, so every cell is
            // UTF-8; the lossy conversion never replaces anything.
            cells.push(String::from_utf8_lossy(&bytes[start..end]).into_owned());
            start = end;
        }
        // With `\n` as the terminator, a CRLF file leaves `\r` at the end of each last cell.
        if let Some(last) = cells.last_mut()
            && last.ends_with('\r')
        {
            last.pop();
        }
        self.out_len = 0;
        self.end_len = 0;
        Record { row_number, cells }
    }
}

/// Comma or semicolon, whichever the header line uses more outside quotes.
fn detect_delimiter(header: &[u8]) -> Result<u8, String> {
    let (mut commas, mut semicolons, mut tabs, mut quoted) = (0usize, 0usize, 0usize, false);
    for &byte in header {
        match byte {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            b'\t' if !quoted => tabs += 1,
            _ => {}
        }
    }
    let header_text = String::from_utf8_lossy(header);
    if header_text.trim_end_matches('\r').contains('\r') {
        return Err(
            "line 1: lines end with a lone carriage return (classic Mac OS); save the file \
             with Windows (CRLF) or Unix (LF) line ends"
                .into(),
        );
    }
    if commas == 0 && semicolons == 0 && tabs > 0 {
        return Err(format!(
            "line 1: the columns are separated by tabs; save the file as CSV, with commas or \
             semicolons between the columns (found {tabs} tab{})",
            if tabs == 1 { "" } else { "s" }
        ));
    }
    Ok(if semicolons > commas { b';' } else { b',' })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(encoding: TextEncoding, chunks: &[&[u8]]) -> Result<Vec<Record>, String> {
        let mut reader = RecordReader::new(encoding, 1024);
        let mut records = Vec::new();
        let mut chunks = chunks.iter();
        loop {
            match reader.next_record()? {
                Next::Record(record) => records.push(record),
                Next::NeedInput => match chunks.next() {
                    Some(chunk) => reader.push(chunk),
                    None => reader.finish(),
                },
                Next::End => return Ok(records),
            }
        }
    }

    fn rows(records: &[Record]) -> Vec<(i64, Vec<&str>)> {
        records
            .iter()
            .map(|r| (r.row_number, r.cells.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn rows_are_numbered_like_a_spreadsheet() {
        let file = b"a,b\r\n\"x\r\ny\",1\r\n\r\nz,\"2,3\"\r\n\nlast,4";
        for split in 0..file.len() {
            let records = read_all(TextEncoding::Utf8, &[&file[..split], &file[split..]]).unwrap();
            assert_eq!(
                rows(&records),
                vec![
                    (1, vec!["a", "b"]),
                    (2, vec!["x\r\ny", "1"]),
                    (3, vec![""]),
                    (4, vec!["z", "2,3"]),
                    (6, vec!["last", "4"]),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn semicolons_are_detected() {
        let records = read_all(TextEncoding::Utf8, &[b"a;b;c,d\n1;\"2;3\";x\n"]).unwrap();
        assert_eq!(
            rows(&records),
            vec![(1, vec!["a", "b", "c,d"]), (2, vec!["1", "2;3", "x"])]
        );
    }

    #[test]
    fn windows_1252_is_decoded_and_bom_dropped() {
        let records = read_all(TextEncoding::Windows1252, &[b"n\nZo\xEB M\xFCller\n"]).unwrap();
        assert_eq!(records[1].cells, vec!["Zoë Müller"]);
        let records = read_all(TextEncoding::Utf8, &[b"\xEF\xBB\xBFn\n", b"x\n"]).unwrap();
        assert_eq!(records[0].cells, vec!["n"]);
    }

    #[test]
    fn an_open_quote_is_a_file_error() {
        let mut file = b"a,b\n\"open,".to_vec();
        file.extend(std::iter::repeat_n(b'x', 4000));
        let error = read_all(TextEncoding::Utf8, &[&file]).unwrap_err();
        assert!(error.contains("closing quote"), "{error}");
    }

    #[test]
    fn tabs_are_refused_with_what_was_found() {
        let error = read_all(TextEncoding::Utf8, &[b"a\tb\tc\n"]).unwrap_err();
        assert!(error.contains("separated by tabs"), "{error}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the cells hold (delimiters, quotes, line breaks, formula starts) and however
        /// the file is cut into pieces, what the template writer writes reads back unchanged.
        #[test]
        fn written_files_read_back_cell_for_cell(
            rows in proptest::collection::vec(
                proptest::collection::vec("[ -~\\n\\r\\t,;\"éß€]{0,12}", 3),
                1..8,
            ),
            piece in 1usize..9,
        ) {
            let mut out = crate::domain::csv_out::CsvOut::new();
            out.row(["a", "b", "c"]);
            for row in &rows {
                out.row(row.iter().map(String::as_str));
            }
            let file = out.take(0).unwrap_or_default();
            let chunks: Vec<&[u8]> = file.chunks(piece).collect();
            let records = read_all(TextEncoding::Utf8, &chunks).expect("readable");
            let read: Vec<Vec<String>> = records[1..]
                .iter()
                .map(|record| record.cells.iter().map(|cell| crate::domain::cells::unescape_formula(cell).to_owned()).collect())
                .collect();
            proptest::prop_assert_eq!(read, rows);
        }

        /// Arbitrary bytes never panic the reader: they read or give a file error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), piece in 1usize..17) {
            let chunks: Vec<&[u8]> = bytes.chunks(piece).collect();
            let _ = read_all(TextEncoding::Utf8, &chunks);
            let _ = read_all(TextEncoding::Windows1252, &chunks);
        }
    }
}
