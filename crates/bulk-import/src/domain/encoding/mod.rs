//! Which text encoding an uploaded file is in, found while it streams in.
//!
//! Spreadsheets save CSV as UTF-8 (Excel's "CSV UTF-8", with a byte-order mark; LibreOffice,
//! without) or in the system's legacy code page (Excel's "CSV (comma delimited)": windows-1252
//! on a Western Windows, windows-1250 in Central Europe, windows-1251 for Cyrillic, Shift_JIS
//! in Japan, …). The [`Sniffer`] sees every byte once, keeps a bounded amount of state, and
//! decides at the end:
//!
//! - an encoding the request names is used, and every byte must be a character of it;
//! - otherwise valid UTF-8 is UTF-8;
//! - otherwise chardetng, fed the file from its first non-UTF-8 byte on, guesses the code page.
//!   The guess is taken when it is a Windows code page, or reads every byte of this file as one
//!   does (an ISO-8859-2 guess for a file without the letters where it and windows-1250 differ
//!   is windows-1250). A guess of another page (ISO-8859, KOI8, EUC-JP: pages spreadsheets
//!   rarely write, and chardetng's answer for web pages with little text) is not sure: the
//!   file is refused naming the candidates and how each reads a word of the file, so the admin
//!   can upload it again naming the encoding.
//!
//! What is not text at all is a file-level error that says what was found: a UTF-16 or Excel
//! workbook file, binary data, a UTF-8 file with broken bytes, a mix of encodings.

use std::fmt;

use encoding_rs::Encoding;

mod sniffer;

pub use sniffer::{Detected, Sniffer};

/// The encoding a file is read in (an `encoding_rs` encoding that is a superset of ASCII).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextEncoding(&'static Encoding);

impl TextEncoding {
    pub const UTF_8: TextEncoding = TextEncoding(encoding_rs::UTF_8);
    pub const WINDOWS_1252: TextEncoding = TextEncoding(encoding_rs::WINDOWS_1252);

    /// The WHATWG name: `UTF-8`, `windows-1251`, `Shift_JIS`.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The encoding stored under `name` (any WHATWG label, case-insensitive, so the older
    /// spelling `Windows-1252` still reads).
    pub fn parse(name: &str) -> Option<Self> {
        Encoding::for_label(name.as_bytes())
            .filter(|encoding| encoding.is_ascii_compatible())
            .map(TextEncoding)
    }

    /// The encoding a request names: `None` for an empty label (detect it), an error saying
    /// what is wrong with the label otherwise.
    pub fn from_label(label: &str) -> Result<Option<Self>, String> {
        let label = label.trim();
        if label.is_empty() {
            return Ok(None);
        }
        match Encoding::for_label(label.as_bytes()) {
            None => Err(format!(
                "'{}' is not an encoding label; give a WHATWG label such as utf-8, \
                 windows-1250, windows-1251 or shift_jis, or leave it empty to detect the \
                 encoding",
                label.chars().take(40).collect::<String>()
            )),
            Some(encoding) if !encoding.is_ascii_compatible() => Err(format!(
                "names {}, in which a CSV file cannot be read (it is not a superset of ASCII); \
                 save the file as CSV UTF-8",
                encoding.name()
            )),
            Some(encoding) => Ok(Some(TextEncoding(encoding))),
        }
    }

    /// The `encoding_rs` decoder; a UTF-8 byte-order mark is dropped.
    pub fn decoder(self) -> encoding_rs::Decoder {
        if self.0 == encoding_rs::UTF_8 {
            encoding_rs::UTF_8.new_decoder_with_bom_removal()
        } else {
            self.0.new_decoder_without_bom_handling()
        }
    }

    fn is_single_byte(self) -> bool {
        self.0.is_single_byte()
    }

    /// A Windows code page: what spreadsheets on Windows save CSV in.
    fn is_windows(self) -> bool {
        WINDOWS_PAGES.contains(&self.0)
            || [
                encoding_rs::SHIFT_JIS,
                encoding_rs::GBK,
                encoding_rs::GB18030,
                encoding_rs::BIG5,
                encoding_rs::EUC_KR,
            ]
            .contains(&self.0)
    }

    /// The character a single byte stands for; `None` when this is a multi-byte encoding
    /// (for a byte of 0x80 or above) or the byte is not a character of it: undefined, or a
    /// C1 control (U+0080 to U+009F, which no spreadsheet writes and WHATWG maps the
    /// undefined bytes of the Windows code pages to).
    fn char_of(self, byte: u8) -> Option<char> {
        if byte < 0x80 {
            return Some(char::from(byte));
        }
        if !self.is_single_byte() {
            return None;
        }
        let bytes = [byte];
        let (text, malformed) = self.0.decode_without_bom_handling(&bytes);
        let c = text.chars().next()?;
        (!malformed && !('\u{80}'..='\u{9f}').contains(&c)).then_some(c)
    }

    /// `bytes` decoded, each undecodable sequence a U+FFFD.
    fn read(self, bytes: &[u8]) -> String {
        self.0
            .decode_without_bom_handling(bytes)
            .0
            .chars()
            .filter(|c| !c.is_control())
            .collect()
    }
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The single-byte Windows code pages, most used first: when several read a file alike, the
/// first is named.
const WINDOWS_PAGES: [&Encoding; 10] = [
    encoding_rs::WINDOWS_1252,
    encoding_rs::WINDOWS_1250,
    encoding_rs::WINDOWS_1251,
    encoding_rs::WINDOWS_1253,
    encoding_rs::WINDOWS_1254,
    encoding_rs::WINDOWS_1257,
    encoding_rs::WINDOWS_1255,
    encoding_rs::WINDOWS_1256,
    encoding_rs::WINDOWS_1258,
    encoding_rs::WINDOWS_874,
];

#[cfg(test)]
mod tests;
