//! Streaming CSV reading: bytes in, numbered records out, in memory bounded by the longest row.
//!
//! The file arrives in pieces (from the database, a megabyte at a time). Each piece is decoded
//! to UTF-8 with `encoding_rs` and fed to `csv_core`, which accepts quoted fields with embedded
//! delimiters and line breaks. The delimiter — comma or semicolon, as Excel writes in locales
//! whose decimal separator is a comma — is read off the header line. Records are numbered as
//! a spreadsheet numbers its rows: the header is row 1, a quoted cell with line breaks stays
//! one row, and blank lines count.
//!
//! A quote that is never closed would make the rest of the file one cell. The reader keeps the
//! text of the record it is reading (never more than the longest row allowed), so when a
//! record ends inside an open quote — at the end of the file, or at that bound — or comes out
//! with the wrong number of cells because a quoted cell took in whole lines of the file, it
//! cuts the record at the end of the line the quote opened on, reports it ([`OpenQuote`]), and
//! reads the lines after it again as the rows they were ([`Record::after_open_quote`]). No line
//! of the file disappears into another row without a word.

use super::encoding::TextEncoding;

mod quotes;
mod text;

use text::{Refusal, detect_delimiter, newlines, parser};

/// One record of the file, its cells as written (not yet trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The row number a spreadsheet shows (the header is row 1).
    pub row_number: i64,
    /// The line of the file the record starts on.
    pub line: u64,
    pub cells: Vec<String>,
    /// A quoted cell of this record that never closes: the record ends with its line.
    pub open_quote: Option<OpenQuote>,
    /// The record was read from lines that the open quote of an earlier record took in: the
    /// line that quote opened on.
    pub after_open_quote: Option<u64>,
}

/// A quoted cell that opens and is never closed (or closes only after whole lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenQuote {
    /// The line it opens on.
    pub line: u64,
    /// The cell (0-based) it opens in.
    pub cell: usize,
    pub end: QuoteEnd,
    /// The lines after `line` it took in (first, last), read again as rows.
    pub took: Option<(u64, u64)>,
}

/// How an open quote went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteEnd {
    /// The file ends inside it.
    EndOfFile,
    /// It was still open after this many bytes, the longest row allowed.
    TooLong(usize),
    /// A later quote closed it, on this line, after it had taken in whole lines with cells.
    ClosedLate(u64),
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

/// True when a row of `cells` fits a header of `columns` columns: no cell missing, and any
/// cell beyond the header's empty (some programs end every line with a delimiter).
pub fn fits_header(cells: &[String], columns: usize) -> bool {
    cells.len() >= columns && cells[columns..].iter().all(|cell| cell.trim().is_empty())
}

/// How the lines of a file end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LineEnds {
    crlf: u64,
    lf: u64,
    /// Lines end with a lone carriage return (found on the header line, and refused).
    cr: bool,
}

/// Decodes and parses a CSV file pushed to it piece by piece.
pub struct RecordReader {
    encoding: TextEncoding,
    decoder: encoding_rs::Decoder,
    parser: Option<csv_core::Reader>,
    delimiter: Option<u8>,
    /// Decoded text: the record being read starts at `start`, and the parser has read up to
    /// `pos`. What is before `start` is dropped when more is decoded.
    text: Vec<u8>,
    start: usize,
    pos: usize,
    /// Blank lines before the record being read that were dropped from `text` (`line` counts
    /// them already; the row numbers and the line ends count them when the record comes).
    blank_lines_dropped: usize,
    input_finished: bool,
    /// Lines decoded so far, for saying where a byte the encoding does not define is.
    decoded_lines: u64,
    undecodable: Option<String>,
    output: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    end_len: usize,
    max_record_bytes: usize,
    /// The line `text[start..]` starts on.
    line: u64,
    /// The row number of the next record.
    row: i64,
    /// The header's cells.
    columns: Option<usize>,
    /// Rows starting on lines up to `.1` were taken in by the quote opened on line `.0`.
    reread: Option<(u64, u64)>,
    line_ends: LineEnds,
    /// The rest of the current line is dropped: a quote opened on it ran past the longest
    /// row allowed before the line ended.
    skip_line: bool,
    ended: bool,
}

impl RecordReader {
    /// A reader of text in `encoding`; a row longer than `max_record_bytes` is a file error
    /// (or, inside an open quote, ends that quote's row).
    pub fn new(encoding: TextEncoding, max_record_bytes: usize) -> Self {
        Self {
            encoding,
            decoder: encoding.decoder(),
            parser: None,
            delimiter: None,
            text: Vec::new(),
            start: 0,
            pos: 0,
            blank_lines_dropped: 0,
            input_finished: false,
            decoded_lines: 0,
            undecodable: None,
            output: vec![0; max_record_bytes.clamp(64, 4096)],
            out_len: 0,
            ends: vec![0; 32],
            end_len: 0,
            max_record_bytes,
            line: 1,
            row: 1,
            columns: None,
            reread: None,
            line_ends: LineEnds::default(),
            skip_line: false,
            ended: false,
        }
    }

    /// The delimiter, once the header line was seen.
    pub fn delimiter(&self) -> Option<u8> {
        self.delimiter
    }

    /// The rows read so far, the header and blank rows included.
    pub fn rows_read(&self) -> i64 {
        self.row - 1
    }

    /// How the lines read so far end: `CRLF`, `LF`, `CR` or `MIXED`; `None` before the first
    /// line break.
    pub fn line_ending(&self) -> Option<&'static str> {
        let LineEnds { crlf, lf, cr } = self.line_ends;
        match (crlf > 0, lf > 0) {
            _ if cr => Some("CR"),
            (true, true) => Some("MIXED"),
            (true, false) => Some("CRLF"),
            (false, true) => Some("LF"),
            (false, false) => None,
        }
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
        // The parser consumes blank lines without a record coming out: they are dropped here
        // too, or a file of blank lines would be held whole.
        let skipped = self.skipped_lines();
        self.start += skipped;
        self.line += skipped as u64;
        self.blank_lines_dropped += skipped;
        if self.start > 0 {
            self.text.drain(..self.start);
            self.pos -= self.start;
            self.start = 0;
        }
        let mut text = String::with_capacity(
            self.decoder
                .max_utf8_buffer_length(bytes.len())
                .unwrap_or(bytes.len() * 3),
        );
        let (_, _, replaced) = self.decoder.decode_to_string(bytes, &mut text, last);
        // The upload checked the file against its encoding; this catches what a detected
        // multi-byte encoding does not define, which that check cannot see.
        if replaced && self.undecodable.is_none() {
            let before = text.find('\u{FFFD}').unwrap_or(0);
            let line = self.decoded_lines + 1 + newlines(&text.as_bytes()[..before]);
            self.undecodable = Some(format!(
                "line {line} holds bytes that are not {}; upload the file again naming its \
                 encoding, or save it as CSV UTF-8",
                self.encoding
            ));
        }
        self.decoded_lines += newlines(text.as_bytes());
        self.text.extend_from_slice(text.as_bytes());
    }

    /// The next record, or what the reader needs first.
    pub fn next_record(&mut self) -> Result<Next, String> {
        if let Some(message) = &self.undecodable {
            return Err(message.clone());
        }
        if self.ended {
            return Ok(Next::End);
        }
        if self.parser.is_none() {
            let unread = &self.text[self.pos..];
            let line_end = unread.iter().position(|&b| b == b'\n');
            if line_end.is_none() && !self.input_finished {
                if unread.len() > MAX_HEADER_BYTES {
                    // A header line of lone carriage returns runs on to the end of the file:
                    // the line ends are what is wrong, not the line.
                    if let Some(end) = unread.iter().position(|&b| b == b'\r')
                        && let Err(Refusal::LoneCarriageReturns(message)) =
                            detect_delimiter(&unread[..(end + 2).min(unread.len())])
                    {
                        self.line_ends.cr = true;
                        return Err(message);
                    }
                    return Err(format!(
                        "line 1 is longer than {} KiB without a line break; this is not a CSV \
                         header row",
                        MAX_HEADER_BYTES / 1024
                    ));
                }
                return Ok(Next::NeedInput);
            }
            let header = &unread[..line_end.unwrap_or(unread.len())];
            let delimiter = match detect_delimiter(header) {
                Ok(delimiter) => delimiter,
                Err(Refusal::LoneCarriageReturns(message)) => {
                    self.line_ends.cr = true;
                    return Err(message);
                }
                Err(Refusal::Other(message)) => return Err(message),
            };
            self.delimiter = Some(delimiter);
            self.parser = Some(parser(delimiter));
        }
        if self.skip_line {
            match self.text[self.pos..].iter().position(|&b| b == b'\n') {
                Some(at) => {
                    self.pos += at + 1;
                    self.start = self.pos;
                    self.count_line_end(self.pos - 1);
                    self.skip_line = false;
                }
                None => {
                    self.pos = self.text.len();
                    self.start = self.pos;
                    if !self.input_finished {
                        return Ok(Next::NeedInput);
                    }
                    self.skip_line = false;
                }
            }
        }
        loop {
            let parser = self.parser.as_mut().expect("parser is built above");
            let unread = &self.text[self.pos..];
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
                        return self.too_long();
                    }
                    let grown = (self.output.len() * 2).min(self.max_record_bytes);
                    self.output.resize(grown, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= MAX_CELLS {
                        return Err(format!(
                            "line {}: the row starting here has more than {MAX_CELLS} cells",
                            self.record_line()
                        ));
                    }
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    return self.record(!at_end).map(Next::Record);
                }
                csv_core::ReadRecordResult::End => {
                    // Blank lines at the end of the file are rows too.
                    self.count_blank_lines(self.skipped_lines());
                    self.ended = true;
                    return Ok(Next::End);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
