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
                    let skipped = self.skipped_lines();
                    self.row += skipped as i64;
                    self.line_ends.lf += skipped as u64;
                    self.ended = true;
                    return Ok(Next::End);
                }
            }
        }
    }

    /// Blank lines the parser skipped before the record being read.
    fn skipped_lines(&self) -> usize {
        self.text[self.start..self.pos]
            .iter()
            .take_while(|&&b| b == b'\n')
            .count()
    }

    /// The line the record being read starts on.
    fn record_line(&self) -> u64 {
        self.line + self.skipped_lines() as u64
    }

    /// The record the parser just completed (`terminated` by a line break, or by the end of
    /// the file).
    fn record(&mut self, terminated: bool) -> Result<Record, String> {
        let skipped = self.skipped_lines();
        let content = self.start + skipped;
        let line = self.line + skipped as u64;
        let cells = self.cells();
        let header = self.columns.is_none();
        let broken = (!terminated)
            .then(|| open_quote(&self.text[content..self.pos], self.separator()))
            .flatten()
            .map(|(at, cell)| (at, cell, QuoteEnd::EndOfFile))
            .or_else(|| self.swallowed(&cells, content, line));
        if let Some((at, cell, end)) = broken {
            if header {
                return Err(format!(
                    "line {}: the quoted cell opened here is never closed; a closing quote is \
                     probably missing",
                    line + newlines(&self.text[content..content + at])
                ));
            }
            return Ok(self.cut(skipped, at, cell, end));
        }
        self.line_ends.lf += skipped as u64;
        if terminated {
            self.count_line_end(self.pos - 1);
        }
        if header {
            self.columns = Some(cells.len());
        }
        let row_number = self.row + skipped as i64;
        self.row = row_number + 1;
        self.line += newlines(&self.text[self.start..self.pos]);
        self.start = self.pos;
        Ok(Record {
            row_number,
            line,
            cells,
            open_quote: None,
            after_open_quote: self.after_open_quote(line),
        })
    }

    /// The delimiter, which the header line gave before any record is read.
    fn separator(&self) -> u8 {
        self.delimiter.unwrap_or(b',')
    }

    /// The cells of the record in the parser's output, which it then forgets.
    fn cells(&mut self) -> Vec<String> {
        let bytes = &self.output[..self.out_len];
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
        cells
    }

    /// The quoted cell with line breaks that took in lines of rows and closed late, if any:
    /// in a record of the wrong number of cells, one whose later lines hold the delimiter; in
    /// a record of the right number, one that holds a whole line with a row's worth of cells
    /// (a quote that closes in the same column of a later row keeps the count). Where it
    /// opens in `text[content..]`, its cell and how it ended.
    fn swallowed(
        &self,
        cells: &[String],
        content: usize,
        line: u64,
    ) -> Option<(usize, usize, QuoteEnd)> {
        let columns = self.columns?;
        if !cells.iter().any(|cell| cell.contains('\n')) {
            return None;
        }
        let fits = fits_header(cells, columns);
        let delimiter = char::from(self.separator());
        let cell = cells.iter().position(|cell| {
            let later: Vec<&str> = cell.split('\n').skip(1).collect();
            match later.split_last() {
                None => false,
                Some((_, whole)) if fits => whole
                    .iter()
                    .any(|line| line.matches(delimiter).count() + 1 >= columns),
                Some(_) => later.iter().any(|line| line.contains(delimiter)),
            }
        })?;
        let raw = &self.text[content..self.pos];
        let at = quote_openings(raw, self.separator())
            .find(|&(_, index)| index == cell)?
            .0;
        let closed = line + newlines(raw.strip_suffix(b"\n").unwrap_or(raw));
        Some((at, cell, QuoteEnd::ClosedLate(closed)))
    }

    /// The record ran past the longest row allowed: inside an open quote, that quote's row
    /// ends with its line; otherwise the file is refused.
    fn too_long(&mut self) -> Result<Next, String> {
        let skipped = self.skipped_lines();
        let content = self.start + skipped;
        let line = self.line + skipped as u64;
        match open_quote(&self.text[content..self.pos], self.separator()) {
            Some((at, cell)) if self.columns.is_some() => {
                self.out_len = 0;
                self.end_len = 0;
                let end = QuoteEnd::TooLong(self.max_record_bytes);
                Ok(Next::Record(self.cut(skipped, at, cell, end)))
            }
            Some((at, _)) => Err(format!(
                "line {}: the quoted cell opened here is never closed; a closing quote is \
                 probably missing",
                line + newlines(&self.text[content..content + at])
            )),
            None => Err(format!(
                "line {line}: the row starting here is longer than {} KiB",
                self.max_record_bytes / 1024
            )),
        }
    }

    /// Ends the record being read with the line its quote opens on (`at` bytes into its
    /// text), and rewinds to read the lines after that line again.
    fn cut(&mut self, skipped: usize, at: usize, cell: usize, end: QuoteEnd) -> Record {
        let content = self.start + skipped;
        let line = self.line + skipped as u64;
        let opened = content + at;
        let opened_line = line + newlines(&self.text[content..opened]);
        let line_end = self.text[opened..self.pos]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| opened + p);
        let row_text = &self.text[content..line_end.unwrap_or(self.pos)];
        let mut cells = parse_alone(row_text, self.separator());
        if let Some(last) = cells.last_mut()
            && last.ends_with('\r')
        {
            last.pop();
        }
        let took = line_end.and_then(|line_end| {
            let after = &self.text[line_end + 1..self.pos];
            if after.is_empty() {
                return None;
            }
            let complete = newlines(after);
            let last = opened_line + complete + u64::from(!after.ends_with(b"\n"));
            Some((opened_line + 1, last))
        });
        self.line_ends.lf += skipped as u64;
        if let Some(line_end) = line_end {
            self.count_line_end(line_end);
        }
        let row_number = self.row + skipped as i64;
        self.row = row_number + 1;
        let resume = line_end.map_or(self.pos, |line_end| line_end + 1);
        self.skip_line = line_end.is_none() && !self.input_finished;
        self.line = opened_line + 1;
        self.start = resume;
        self.pos = resume;
        self.out_len = 0;
        self.end_len = 0;
        if let Some(parser) = self.parser.as_mut() {
            parser.reset();
        }
        if let Some((_, last)) = took {
            self.reread = Some((opened_line, last));
        }
        let after_open_quote = self.after_open_quote(line);
        Record {
            row_number,
            line,
            cells,
            open_quote: Some(OpenQuote {
                line: opened_line,
                cell,
                end,
                took,
            }),
            after_open_quote,
        }
    }

    fn after_open_quote(&self, line: u64) -> Option<u64> {
        self.reread
            .filter(|&(opened, last)| line > opened && line <= last)
            .map(|(opened, _)| opened)
    }

    /// Counts the line break at `text[at]`.
    fn count_line_end(&mut self, at: usize) {
        if at > 0 && self.text[at - 1] == b'\r' {
            self.line_ends.crlf += 1;
        } else {
            self.line_ends.lf += 1;
        }
    }
}

fn parser(delimiter: u8) -> csv_core::Reader {
    csv_core::ReaderBuilder::new()
        .delimiter(delimiter)
        .terminator(csv_core::Terminator::Any(b'\n'))
        .build()
}

/// The cells of `text` read as a record of its own (an open quote running to its end).
fn parse_alone(text: &[u8], delimiter: u8) -> Vec<String> {
    let mut parser = parser(delimiter);
    let mut output = vec![0; text.len() + 1];
    let mut ends = vec![0; text.len() + 2];
    let mut input = text;
    let (mut out_len, mut end_len) = (0, 0);
    loop {
        let (result, nin, nout, nend) =
            parser.read_record(input, &mut output[out_len..], &mut ends[end_len..]);
        input = &input[nin..];
        out_len += nout;
        end_len += nend;
        match result {
            csv_core::ReadRecordResult::InputEmpty => {}
            _ => break,
        }
    }
    let mut start = 0;
    ends[..end_len]
        .iter()
        .map(|&end| {
            let cell = String::from_utf8_lossy(&output[start..end]).into_owned();
            start = end;
            cell
        })
        .collect()
}

/// Where each quoted cell of one record's `text` opens: (byte offset, cell index), read as
/// `csv_core` reads it (a quote opens a cell only as its first character; `""` inside is a
/// quote).
fn quote_openings(text: &[u8], delimiter: u8) -> impl Iterator<Item = (usize, usize)> + '_ {
    let (mut cell, mut at_start, mut quoted) = (0, true, false);
    let mut bytes = text.iter().enumerate().peekable();
    std::iter::from_fn(move || {
        while let Some((index, &byte)) = bytes.next() {
            if quoted {
                if byte == b'"' {
                    if bytes.peek().is_some_and(|&(_, &next)| next == b'"') {
                        bytes.next();
                    } else {
                        quoted = false;
                    }
                }
            } else if byte == b'"' && at_start {
                quoted = true;
                at_start = false;
                return Some((index, cell));
            } else if byte == delimiter {
                cell += 1;
                at_start = true;
            } else {
                at_start = false;
            }
        }
        None
    })
}

/// The quoted cell still open at the end of one record's `text`: where it opens and its cell.
fn open_quote(text: &[u8], delimiter: u8) -> Option<(usize, usize)> {
    let last = quote_openings(text, delimiter).last()?;
    let rest = &text[last.0 + 1..];
    // Open when the quotes after the opening one do not close it: an even number of them
    // (pairs are quotes inside the cell) with no lone closing one.
    let mut quotes = rest
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'"')
        .peekable();
    while let Some((index, _)) = quotes.next() {
        match quotes.peek() {
            Some(&(next, _)) if next == index + 1 => {
                quotes.next();
            }
            _ => return None,
        }
    }
    Some(last)
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Why a header line gives no delimiter.
enum Refusal {
    LoneCarriageReturns(String),
    Other(String),
}

/// Comma or semicolon, whichever the header line uses more outside quotes.
fn detect_delimiter(header: &[u8]) -> Result<u8, Refusal> {
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
        return Err(Refusal::LoneCarriageReturns(
            "line 1: lines end with a lone carriage return (classic Mac OS); save the file \
             with Windows (CRLF) or Unix (LF) line ends"
                .into(),
        ));
    }
    if commas == 0 && semicolons == 0 && tabs > 0 {
        return Err(Refusal::Other(format!(
            "line 1: the columns are separated by tabs; save the file as CSV, with commas or \
             semicolons between the columns (found {tabs} tab{})",
            if tabs == 1 { "" } else { "s" }
        )));
    }
    Ok(if semicolons > commas { b';' } else { b',' })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of(
        encoding: TextEncoding,
        max: usize,
        chunks: &[&[u8]],
    ) -> (RecordReader, Result<Vec<Record>, String>) {
        let mut reader = RecordReader::new(encoding, max);
        let mut records = Vec::new();
        let mut chunks = chunks.iter();
        loop {
            match reader.next_record() {
                Err(error) => return (reader, Err(error)),
                Ok(Next::Record(record)) => records.push(record),
                Ok(Next::NeedInput) => match chunks.next() {
                    Some(chunk) => reader.push(chunk),
                    None => reader.finish(),
                },
                Ok(Next::End) => return (reader, Ok(records)),
            }
        }
    }

    fn read_all(encoding: TextEncoding, chunks: &[&[u8]]) -> Result<Vec<Record>, String> {
        reader_of(encoding, 1024, chunks).1
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
            let (reader, records) =
                reader_of(TextEncoding::UTF_8, 1024, &[&file[..split], &file[split..]]);
            let records = records.unwrap();
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
            let lines: Vec<u64> = records.iter().map(|record| record.line).collect();
            assert_eq!(lines, vec![1, 2, 4, 5, 7], "split at {split}");
            assert_eq!(reader.line_ending(), Some("MIXED"));
            assert_eq!(reader.rows_read(), 6);
        }
        for file in [&b"a\n\n\n"[..], b"a\r\n\r\n\r\n"] {
            let (reader, _) = reader_of(TextEncoding::UTF_8, 1024, &[file]);
            assert_eq!(reader.rows_read(), 3, "{file:?}");
        }
    }

    #[test]
    fn line_endings_and_delimiter_are_reported() {
        let (reader, _) = reader_of(TextEncoding::UTF_8, 1024, &[b"a;b\r\n\"1\n2\";3\r\n"]);
        assert_eq!(
            (reader.line_ending(), reader.delimiter()),
            (Some("CRLF"), Some(b';'))
        );
        let (reader, _) = reader_of(TextEncoding::UTF_8, 1024, &[b"a,b\nc,d"]);
        assert_eq!(reader.line_ending(), Some("LF"));
        let (reader, _) = reader_of(TextEncoding::UTF_8, 1024, &[b"a,b"]);
        assert_eq!(reader.line_ending(), None);
        let (reader, error) = reader_of(TextEncoding::UTF_8, 1024, &[b"a,b\rc,d\r"]);
        assert!(error.unwrap_err().contains("lone carriage return"));
        assert_eq!(reader.line_ending(), Some("CR"));
    }

    #[test]
    fn semicolons_are_detected() {
        let records = read_all(TextEncoding::UTF_8, &[b"a;b;c,d\n1;\"2;3\";x\n"]).unwrap();
        assert_eq!(
            rows(&records),
            vec![(1, vec!["a", "b", "c,d"]), (2, vec!["1", "2;3", "x"])]
        );
    }

    #[test]
    fn windows_1252_is_decoded_and_bom_dropped() {
        let records = read_all(TextEncoding::WINDOWS_1252, &[b"n\nZo\xEB M\xFCller\n"]).unwrap();
        assert_eq!(records[1].cells, vec!["Zoë Müller"]);
        let records = read_all(TextEncoding::UTF_8, &[b"\xEF\xBB\xBFn\n", b"x\n"]).unwrap();
        assert_eq!(records[0].cells, vec!["n"]);
    }

    /// A record's row, first line, cells, open quote and the line of the open quote it was
    /// read after.
    type Summary<'a> = (i64, u64, Vec<&'a str>, Option<OpenQuote>, Option<u64>);

    fn summary(records: &[Record]) -> Vec<Summary<'_>> {
        records
            .iter()
            .map(|r| {
                (
                    r.row_number,
                    r.line,
                    r.cells.iter().map(String::as_str).collect(),
                    r.open_quote.clone(),
                    r.after_open_quote,
                )
            })
            .collect()
    }

    #[test]
    fn a_quote_open_at_the_end_of_the_file_ends_with_its_line_and_the_rest_is_read_again() {
        let file = b"a,b,c\r\n1,2,3\r\n4,\"open,x\r\n5,6,7\r\n8,9,10\r\n";
        for split in 0..file.len() {
            let records = read_all(TextEncoding::UTF_8, &[&file[..split], &file[split..]]).unwrap();
            assert_eq!(
                summary(&records[1..]),
                vec![
                    (2, 2, vec!["1", "2", "3"], None, None),
                    (
                        3,
                        3,
                        vec!["4", "open,x"],
                        Some(OpenQuote {
                            line: 3,
                            cell: 1,
                            end: QuoteEnd::EndOfFile,
                            took: Some((4, 5)),
                        }),
                        None
                    ),
                    (4, 4, vec!["5", "6", "7"], None, Some(3)),
                    (5, 5, vec!["8", "9", "10"], None, Some(3)),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_quote_open_on_the_last_line_or_in_the_last_cell_is_found() {
        let records = read_all(TextEncoding::UTF_8, &[b"a,b\n1,\"2"]).unwrap();
        let quote = records[1].open_quote.clone().unwrap();
        assert_eq!((quote.line, quote.cell, quote.took), (2, 1, None));
        assert_eq!(records[1].cells, vec!["1", "2"]);
        let records = read_all(TextEncoding::UTF_8, &[b"a,b\n1,\"2\n"]).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].open_quote.clone().unwrap().took, None);
        // A closed quote with quotes inside is not open.
        let records = read_all(TextEncoding::UTF_8, &[b"a,b\n1,\"say \"\"hi\"\"\"\n"]).unwrap();
        assert_eq!(records[1].cells, vec!["1", "say \"hi\""]);
        assert_eq!(records[1].open_quote, None);
    }

    #[test]
    fn a_quote_that_closes_late_after_taking_in_rows_is_cut_at_its_line() {
        // The quote opened in row 2 closes at the opening quote of row 4's last cell.
        let file = b"a,b,c\n1,\"2,3\n4,5,6\n7,8,\"9\"\n10,11,12\n";
        let records = read_all(TextEncoding::UTF_8, &[file]).unwrap();
        assert_eq!(
            summary(&records[1..]),
            vec![
                (
                    2,
                    2,
                    vec!["1", "2,3"],
                    Some(OpenQuote {
                        line: 2,
                        cell: 1,
                        end: QuoteEnd::ClosedLate(4),
                        took: Some((3, 4)),
                    }),
                    None
                ),
                (3, 3, vec!["4", "5", "6"], None, Some(2)),
                (4, 4, vec!["7", "8", "9"], None, Some(2)),
                (5, 5, vec!["10", "11", "12"], None, None),
            ]
        );
        // Closing in the same column keeps the count, but the whole line taken in tells.
        let file = b"a,b,c\n1,\"2,3\n4,5,6\n7,\"8\",9\n";
        let records = read_all(TextEncoding::UTF_8, &[file]).unwrap();
        let quote = records[1].open_quote.clone().unwrap();
        assert_eq!(
            (quote.end, quote.took),
            (QuoteEnd::ClosedLate(4), Some((3, 4)))
        );
        assert_eq!(
            rows(&records[2..]),
            vec![(3, vec!["4", "5", "6"]), (4, vec!["7", "8", "9"])]
        );
        // A cell with a line break in a row of the right length is a cell with a line break.
        let records = read_all(TextEncoding::UTF_8, &[b"a,b\n\"x,\ny\",z\nq,r\n"]).unwrap();
        assert_eq!(
            rows(&records[1..]),
            vec![(2, vec!["x,\ny", "z"]), (3, vec!["q", "r"])]
        );
        assert_eq!(records[2].line, 4);
    }

    #[test]
    fn a_quote_open_past_the_longest_row_ends_there_and_memory_stays_bounded() {
        let mut file = b"a,b\n1,\"open\n".to_vec();
        for n in 0..2000 {
            file.extend_from_slice(format!("x{n},y\n").as_bytes());
        }
        let chunks: Vec<&[u8]> = file.chunks(100).collect();
        let (reader, records) = reader_of(TextEncoding::UTF_8, 4096, &chunks);
        let records = records.unwrap();
        let quote = records[1].open_quote.clone().unwrap();
        assert_eq!((quote.line, quote.end), (2, QuoteEnd::TooLong(4096)));
        assert_eq!(
            records.len(),
            2 + 2000,
            "every line after it is a row again"
        );
        assert_eq!(records[2].cells, vec!["x0", "y"]);
        assert_eq!(records[2].row_number, 3);
        assert_eq!(records.last().unwrap().row_number, 2002);
        assert!(
            reader.text.capacity() < 64 * 1024,
            "{}",
            reader.text.capacity()
        );
    }

    #[test]
    fn a_line_longer_than_the_longest_row_inside_a_quote_is_dropped_to_its_end() {
        let mut file = b"a,b\n1,\"".to_vec();
        file.extend(std::iter::repeat_n(b'x', 10_000));
        file.extend_from_slice(b"\n2,3\n");
        let chunks: Vec<&[u8]> = file.chunks(700).collect();
        let records = reader_of(TextEncoding::UTF_8, 4096, &chunks).1.unwrap();
        assert_eq!(records.len(), 3);
        let quote = records[1].open_quote.clone().unwrap();
        assert_eq!((quote.end, quote.took), (QuoteEnd::TooLong(4096), None));
        assert_eq!((records[2].row_number, records[2].line), (3, 3));
        assert_eq!(records[2].cells, vec!["2", "3"]);
    }

    #[test]
    fn an_open_quote_in_the_header_is_a_file_error() {
        let error = read_all(TextEncoding::UTF_8, &[b"a,\"b\n1,2\n"]).unwrap_err();
        assert_eq!(
            error,
            "line 1: the quoted cell opened here is never closed; a closing quote is probably \
             missing"
        );
    }

    #[test]
    fn a_long_row_without_quotes_is_a_file_error() {
        let mut file = b"a,b\n1,".to_vec();
        file.extend(std::iter::repeat_n(b'x', 4000));
        let error = read_all(TextEncoding::UTF_8, &[&file]).unwrap_err();
        assert_eq!(error, "line 2: the row starting here is longer than 1 KiB");
    }

    #[test]
    fn tabs_are_refused_with_what_was_found() {
        let error = read_all(TextEncoding::UTF_8, &[b"a\tb\tc\n"]).unwrap_err();
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
            let records = read_all(TextEncoding::UTF_8, &chunks).expect("readable");
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
            let _ = reader_of(TextEncoding::UTF_8, 64, &chunks);
            let _ = read_all(TextEncoding::WINDOWS_1252, &chunks);
        }
    }
}
