//! Byte-level helpers of the reader: a `csv_core` parser for a delimiter, a record's text read
//! on its own, where quoted cells open, and the delimiter a header line uses.

pub(super) fn parser(delimiter: u8) -> csv_core::Reader {
    csv_core::ReaderBuilder::new()
        .delimiter(delimiter)
        .terminator(csv_core::Terminator::Any(b'\n'))
        .build()
}

/// The cells of `text` read as a record of its own (an open quote running to its end).
pub(super) fn parse_alone(text: &[u8], delimiter: u8) -> Vec<String> {
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
pub(super) fn quote_openings(
    text: &[u8],
    delimiter: u8,
) -> impl Iterator<Item = (usize, usize)> + '_ {
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
pub(super) fn open_quote(text: &[u8], delimiter: u8) -> Option<(usize, usize)> {
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

pub(super) fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Why a header line gives no delimiter.
pub(super) enum Refusal {
    LoneCarriageReturns(String),
    Other(String),
}

/// Comma or semicolon, whichever the header line uses more outside quotes.
pub(super) fn detect_delimiter(header: &[u8]) -> Result<u8, Refusal> {
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
