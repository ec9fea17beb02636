//! Which text encoding an uploaded file is in, found while it streams in.
//!
//! Spreadsheets save CSV as UTF-8 (Excel's "CSV UTF-8", with a byte-order mark; LibreOffice,
//! without) or in the Windows code page (Excel's "CSV (comma delimited)" on a Western
//! Windows: Windows-1252). The [`Sniffer`] sees every byte once, keeps a few bytes of state, and
//! decides at the end: valid UTF-8 is UTF-8; otherwise Windows-1252 when that fits; otherwise a
//! file-level error that says what was found (a UTF-16 or Excel workbook file, binary data, a
//! UTF-8 file with broken bytes, a mix of encodings).

use std::fmt;

/// The text encodings an upload may be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    Windows1252,
}

impl TextEncoding {
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Windows1252 => "Windows-1252",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [TextEncoding::Utf8, TextEncoding::Windows1252]
            .into_iter()
            .find(|encoding| encoding.name() == name)
    }

    /// The `encoding_rs` decoder; a UTF-8 byte-order mark is dropped.
    pub fn decoder(self) -> encoding_rs::Decoder {
        match self {
            TextEncoding::Utf8 => encoding_rs::UTF_8.new_decoder_with_bom_removal(),
            TextEncoding::Windows1252 => {
                encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling()
            }
        }
    }
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a byte is: its offset in the file and its line (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    byte: u8,
    offset: u64,
    line: u64,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "byte 0x{:02X} on line {} (offset {})",
            self.byte, self.line, self.offset
        )
    }
}

/// Bytes Windows-1252 leaves undefined.
const UNDEFINED_IN_1252: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];

/// Sees a file's bytes as they arrive and tells its encoding at the end.
#[derive(Debug, Default)]
pub struct Sniffer {
    offset: u64,
    line: u64,
    /// The first bytes, to recognise byte-order marks and file signatures.
    head: Vec<u8>,
    /// An incomplete UTF-8 sequence at the end of the previous chunk.
    carry: Vec<u8>,
    first_invalid_utf8: Option<Place>,
    first_undefined_1252: Option<Place>,
    first_nul: Option<Place>,
    /// Valid multi-byte UTF-8 sequences seen (before the first invalid one).
    utf8_sequences: u64,
}

const HEAD_LENGTH: usize = 8;

impl Sniffer {
    pub fn new() -> Self {
        Self {
            line: 1,
            ..Self::default()
        }
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// Sees the next piece of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.head.len() < HEAD_LENGTH {
            let wanted = (HEAD_LENGTH - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..wanted]);
        }
        let start = self.offset;
        let mut line = self.line;
        for (index, &byte) in chunk.iter().enumerate() {
            let place = || Place {
                byte,
                offset: start + index as u64,
                line,
            };
            if byte == 0 && self.first_nul.is_none() {
                self.first_nul = Some(place());
            }
            if UNDEFINED_IN_1252.contains(&byte) && self.first_undefined_1252.is_none() {
                self.first_undefined_1252 = Some(place());
            }
            if byte == b'\n' {
                line += 1;
            }
        }
        if self.first_invalid_utf8.is_none() {
            self.check_utf8(chunk);
        }
        self.offset += chunk.len() as u64;
        self.line = line;
    }

    fn check_utf8(&mut self, chunk: &[u8]) {
        // Carried bytes come from the end of the previous chunk, before `offset`.
        let carried = self.carry.len();
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(chunk);
        match std::str::from_utf8(&bytes) {
            Ok(text) => self.utf8_sequences += count_multibyte(text),
            Err(error) => {
                let valid = error.valid_up_to();
                if let Ok(text) = std::str::from_utf8(&bytes[..valid]) {
                    self.utf8_sequences += count_multibyte(text);
                }
                if error.error_len().is_none() {
                    // An incomplete sequence at the end: the next chunk may complete it.
                    self.carry = bytes[valid..].to_vec();
                    return;
                }
                let newlines = |range: &[u8]| range.iter().filter(|&&b| b == b'\n').count() as u64;
                let line_at_carry = self.line - newlines(&bytes[..carried]);
                self.first_invalid_utf8 = Some(Place {
                    byte: bytes[valid],
                    offset: self.offset - carried as u64 + valid as u64,
                    line: line_at_carry + newlines(&bytes[..valid]),
                });
            }
        }
    }

    /// Decides the encoding once every byte was seen.
    pub fn finish(mut self) -> Result<TextEncoding, String> {
        if self.offset == 0 {
            return Err("the file is empty".into());
        }
        if let Some(kind) = signature(&self.head) {
            return Err(kind);
        }
        if let Some(nul) = self.first_nul {
            return Err(format!(
                "the file holds binary data, not text: {nul}; save the spreadsheet as CSV"
            ));
        }
        if self.first_invalid_utf8.is_none() && !self.carry.is_empty() {
            let byte = self.carry[0];
            self.first_invalid_utf8 = Some(Place {
                byte,
                offset: self.offset - self.carry.len() as u64,
                line: self.line,
            });
        }
        let Some(invalid) = self.first_invalid_utf8 else {
            return Ok(TextEncoding::Utf8);
        };
        if self.head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            return Err(format!(
                "the file starts with a UTF-8 byte-order mark but is not valid UTF-8: {invalid}; \
                 save it again as CSV UTF-8"
            ));
        }
        if self.utf8_sequences > 0 {
            return Err(format!(
                "the file mixes encodings: it holds UTF-8 text, but {invalid} is not UTF-8; \
                 save it again as CSV UTF-8"
            ));
        }
        if let Some(undefined) = self.first_undefined_1252 {
            return Err(format!(
                "the file is neither UTF-8 ({invalid} is not UTF-8) nor Windows-1252 \
                 ({undefined} is not used in Windows-1252); save it as CSV UTF-8"
            ));
        }
        Ok(TextEncoding::Windows1252)
    }
}

fn count_multibyte(text: &str) -> u64 {
    text.chars().filter(|c| !c.is_ascii()).count() as u64
}

/// A file-level error for files that are recognisably something other than CSV text.
fn signature(head: &[u8]) -> Option<String> {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Some(
            "the file is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as \
             CSV UTF-8 or CSV (comma delimited)"
                .into(),
        );
    }
    if head.starts_with(b"PK\x03\x04") {
        return Some(
            "the file is a ZIP archive such as an Excel workbook (.xlsx), not CSV; in the \
             spreadsheet use Save As and choose CSV UTF-8"
                .into(),
        );
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Some(
            "the file is an Excel 97-2003 workbook (.xls), not CSV; in the spreadsheet use \
             Save As and choose CSV UTF-8"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(chunks: &[&[u8]]) -> Result<TextEncoding, String> {
        let mut sniffer = Sniffer::new();
        for chunk in chunks {
            sniffer.feed(chunk);
        }
        sniffer.finish()
    }

    #[test]
    fn utf8_split_across_chunks_is_utf8() {
        let text = "Zoë Müller".as_bytes();
        for split in 0..text.len() {
            assert_eq!(
                sniff(&[&text[..split], &text[split..]]),
                Ok(TextEncoding::Utf8),
                "split at {split}"
            );
        }
    }

    #[test]
    fn windows_1252_is_recognised() {
        assert_eq!(
            sniff(&[b"First Name\nZo\xEB M\xFCller\n"]),
            Ok(TextEncoding::Windows1252)
        );
    }

    #[test]
    fn broken_utf8_after_a_bom_says_where() {
        let error = sniff(&[b"\xEF\xBB\xBFa,b\nZo\xEB,c\n"]).unwrap_err();
        assert!(error.contains("byte-order mark"), "{error}");
        assert!(error.contains("byte 0xEB on line 2 (offset 9)"), "{error}");
    }

    #[test]
    fn mixed_encodings_are_refused() {
        let error = sniff(&["Zoë\n".as_bytes(), b"M\xFCller\n"]).unwrap_err();
        assert!(error.contains("mixes encodings"), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn workbooks_binary_and_utf16_are_named() {
        assert!(sniff(&[b"PK\x03\x04rest"]).unwrap_err().contains(".xlsx"));
        assert!(sniff(&[b"\xFF\xFEa\x00"]).unwrap_err().contains("UTF-16"));
        assert!(sniff(&[b"a,b\x00c"]).unwrap_err().contains("binary"));
        assert!(
            sniff(&[b"\x81\xC3("])
                .unwrap_err()
                .contains("neither UTF-8")
        );
        assert_eq!(sniff(&[]).unwrap_err(), "the file is empty");
    }
}
