//! The reader's handling of a record that does not end where it should: cells counted against
//! the header, a quote left open (at the end of the file, past the longest row, or closed only
//! after whole lines), the record cut at the end of the line the quote opened on, and the
//! lines it took in read again as rows.

use super::text::{open_quote, parse_alone, quote_openings};
use super::*;

impl RecordReader {
    /// Blank lines the parser skipped before the record being read that are still in `text`.
    pub(super) fn skipped_lines(&self) -> usize {
        self.text[self.start..self.pos]
            .iter()
            .take_while(|&&b| b == b'\n')
            .count()
    }

    /// Counts the blank lines before the record being read (`skipped` of them still in
    /// `text`, the others dropped) as rows, each with its line end.
    pub(super) fn count_blank_lines(&mut self, skipped: usize) {
        let blank = skipped + std::mem::take(&mut self.blank_lines_dropped);
        self.row += blank as i64;
        self.line_ends.lf += blank as u64;
    }

    /// The line the record being read starts on.
    pub(super) fn record_line(&self) -> u64 {
        self.line + self.skipped_lines() as u64
    }

    /// The record the parser just completed (`terminated` by a line break, or by the end of
    /// the file).
    pub(super) fn record(&mut self, terminated: bool) -> Result<Record, String> {
        let skipped = self.skipped_lines();
        let content = self.start + skipped;
        let line = self.line + skipped as u64;
        let cells = self.cells();
        let header = self.columns.is_none();
        let broken = (!terminated)
            .then(|| self.open_at_the_end(&cells, content, line))
            .flatten()
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
        if let Some(message) = self.lone_carriage_return(&cells, content, line) {
            return Err(message);
        }
        self.count_blank_lines(skipped);
        if terminated {
            self.count_line_end(self.pos - 1);
        }
        if header {
            self.columns = Some(cells.len());
        }
        let row_number = self.row;
        self.row += 1;
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

    /// A carriage return alone outside quotes, inside a record: a line end of classic Mac OS
    /// in a file whose other lines end otherwise. Read as a line end it would make rows of a
    /// different shape than read as a character, so the file is refused, naming the line, as
    /// a header line ending so is.
    fn lone_carriage_return(&self, cells: &[String], content: usize, line: u64) -> Option<String> {
        // Almost every record has none: its text is read again only when one does.
        if !cells.iter().any(|cell| cell.contains('\r')) {
            return None;
        }
        let raw = &self.text[content..self.pos];
        let quoted: Vec<usize> = quote_openings(raw, self.separator())
            .map(|(_, cell)| cell)
            .collect();
        cells
            .iter()
            .enumerate()
            .any(|(index, cell)| cell.contains('\r') && !quoted.contains(&index))
            .then(|| {
                let at = raw
                    .windows(2)
                    .position(|pair| pair[0] == b'\r' && pair[1] != b'\n')
                    .unwrap_or(0);
                format!(
                    "line {}: a line ends with a lone carriage return (classic Mac OS) while \
                     other lines end otherwise; save the file with Windows (CRLF) or Unix (LF) \
                     line ends",
                    line + newlines(&raw[..at])
                )
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
    /// in a record of the wrong number of cells, one whose later lines hold the delimiter, or
    /// whose quote is closed by the first character of a line (the opening quote of the next
    /// row's first cell, in a file that quotes every cell); in a record of the right number,
    /// one that holds a whole line with a row's worth of cells (a quote that closes in the
    /// same column of a later row keeps the count). Where it opens in `text[content..]`, its
    /// cell and how it ended.
    pub(super) fn swallowed(
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
        let raw = &self.text[content..self.pos];
        let mut openings = quote_openings(raw, self.separator()).peekable();
        let (at, cell) = cells.iter().enumerate().find_map(|(index, cell)| {
            // The opening of this cell's quote, if it is quoted.
            while openings.next_if(|&(_, opened)| opened < index).is_some() {}
            let at = openings.peek().filter(|&&(_, opened)| opened == index)?.0;
            let later: Vec<&str> = cell.split('\n').skip(1).collect();
            let took_lines = match later.split_last() {
                None => false,
                Some((_, whole)) if fits => whole
                    .iter()
                    .any(|line| line.matches(delimiter).count() + 1 >= columns),
                Some(_) => {
                    later.iter().any(|line| line.contains(delimiter))
                        || closing(raw, at).is_some_and(|close| raw[close - 1] == b'\n')
                }
            };
            took_lines.then_some((at, index))
        })?;
        let closed = match closing(raw, at) {
            Some(close) => line + newlines(&raw[..close]),
            None => line + newlines(raw.strip_suffix(b"\n").unwrap_or(raw)),
        };
        Some((at, cell, QuoteEnd::ClosedLate(closed)))
    }

    /// The record ended inside a quote at the end of the file: the quote that took in lines
    /// first — one closed by the start of a line before the last open one (every cell quoted,
    /// several closing quotes missing) — or else the one still open. Where it opens in
    /// `text[content..]`, its cell and how it ended.
    pub(super) fn open_at_the_end(
        &self,
        cells: &[String],
        content: usize,
        line: u64,
    ) -> Option<(usize, usize, QuoteEnd)> {
        let (at, cell) = open_quote(&self.text[content..self.pos], self.separator())?;
        match self.swallowed(cells, content, line) {
            Some(earlier) if earlier.0 < at => Some(earlier),
            _ => Some((at, cell, QuoteEnd::EndOfFile)),
        }
    }

    /// The record ran past the longest row allowed: inside an open quote, that quote's row
    /// ends with its line; otherwise the file is refused.
    pub(super) fn too_long(&mut self) -> Result<Next, String> {
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
        self.count_blank_lines(skipped);
        if let Some(line_end) = line_end {
            self.count_line_end(line_end);
        }
        let row_number = self.row;
        self.row += 1;
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
    pub(super) fn count_line_end(&mut self, at: usize) {
        if at > 0 && self.text[at - 1] == b'\r' {
            self.line_ends.crlf += 1;
        } else {
            self.line_ends.lf += 1;
        }
    }
}

/// Where the quote opening at `raw[at]` closes (`""` inside is a quote), if it does. A quote
/// closed by the first character of a line is most likely the next row's opening quote, and
/// the closing quote of the cell is what is missing.
fn closing(raw: &[u8], at: usize) -> Option<usize> {
    let mut index = at + 1;
    while index < raw.len() {
        if raw[index] == b'"' {
            if raw.get(index + 1) == Some(&b'"') {
                index += 2;
                continue;
            }
            return Some(index);
        }
        index += 1;
    }
    None
}
