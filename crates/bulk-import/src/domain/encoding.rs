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

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::Encoding;

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

/// One top-level domain of each region chardetng has expectations for: asked with each, it
/// answers the best encoding of that region, which are the candidates a guess is weighed
/// against when it is not sure.
const REGIONS: [&[u8]; 16] = [
    b"de", b"cz", b"pl", b"ru", b"gr", b"tr", b"lt", b"il", b"sa", b"vn", b"th", b"cn", b"tw",
    b"jp", b"kr", b"is",
];

/// What the [`Sniffer`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detected {
    pub encoding: TextEncoding,
    /// The request named the encoding (rather than it being detected).
    pub given: bool,
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

/// The first occurrence of a byte value of 0x80 or above, and the word around it.
#[derive(Clone, Debug)]
struct Seen {
    place: Place,
    word: Vec<u8>,
    /// The word goes on in the next piece of the file.
    open: bool,
}

/// The first bytes kept, to recognise byte-order marks and file signatures.
const HEAD_LENGTH: usize = 8;
/// The bytes kept from before a piece: the start of a word that goes on in it, and the
/// context chardetng reads before the first non-ASCII byte.
const RECENT_LENGTH: usize = 16;
/// The longest word kept around a byte, for error messages.
const WORD_LENGTH: usize = 32;

fn ends_word(byte: u8) -> bool {
    matches!(byte, b',' | b';' | b'\t' | b'\n' | b'\r' | b'"' | b' ')
}

/// Sees a file's bytes as they arrive and tells its encoding at the end.
pub struct Sniffer {
    given: Option<TextEncoding>,
    offset: u64,
    line: u64,
    head: Vec<u8>,
    /// The last bytes before the current piece.
    recent: Vec<u8>,
    /// An incomplete UTF-8 sequence at the end of the previous chunk.
    carry: Vec<u8>,
    first_invalid_utf8: Option<Place>,
    first_nul: Option<Place>,
    /// Valid multi-byte UTF-8 sequences seen (before the first invalid one).
    utf8_sequences: u64,
    /// Indexed by byte - 0x80.
    seen: Vec<Option<Seen>>,
    /// Started at the first byte that is not UTF-8, when the encoding is to be detected.
    detector: Option<Box<EncodingDetector>>,
    /// Checks the file against the encoding the request names.
    given_decoder: Option<encoding_rs::Decoder>,
    first_malformed: Option<Place>,
}

impl Sniffer {
    /// A sniffer of a file in `given`, or of unknown encoding.
    pub fn new(given: Option<TextEncoding>) -> Self {
        Self {
            given,
            offset: 0,
            line: 1,
            head: Vec::new(),
            recent: Vec::new(),
            carry: Vec::new(),
            first_invalid_utf8: None,
            first_nul: None,
            utf8_sequences: 0,
            seen: vec![None; 128],
            detector: None,
            given_decoder: given
                .filter(|encoding| *encoding != TextEncoding::UTF_8)
                .map(|encoding| encoding.0.new_decoder_without_bom_handling()),
            first_malformed: None,
        }
    }

    /// Whether the request named the encoding.
    pub fn given(&self) -> bool {
        self.given.is_some()
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
        self.continue_words(chunk);
        let start = self.offset;
        let mut line = self.line;
        for (index, &byte) in chunk.iter().enumerate() {
            let place = Place {
                byte,
                offset: start + index as u64,
                line,
            };
            if byte == 0 && self.first_nul.is_none() {
                self.first_nul = Some(place);
            }
            if byte >= 0x80 && self.seen[usize::from(byte - 0x80)].is_none() {
                let seen = self.word_at(chunk, index, place);
                self.seen[usize::from(byte - 0x80)] = Some(seen);
            }
            if byte == b'\n' {
                line += 1;
            }
        }
        if self.first_invalid_utf8.is_none() {
            self.check_utf8(chunk);
        }
        self.check_given(chunk);
        self.feed_detector(chunk);
        self.offset += chunk.len() as u64;
        self.line = line;
        let keep = RECENT_LENGTH.min(self.recent.len() + chunk.len());
        let mut recent = std::mem::take(&mut self.recent);
        recent.extend_from_slice(&chunk[chunk.len().saturating_sub(keep)..]);
        self.recent = recent.split_off(recent.len() - keep);
    }

    /// The word around `chunk[index]`: back to the previous separator (into the bytes before
    /// the piece if need be), forward to the next one.
    fn word_at(&self, chunk: &[u8], index: usize, place: Place) -> Seen {
        let before: Vec<u8> = self
            .recent
            .iter()
            .chain(&chunk[index.saturating_sub(WORD_LENGTH / 2)..index])
            .copied()
            .collect();
        let start = before
            .iter()
            .rposition(|&b| ends_word(b))
            .map_or(0, |p| p + 1)
            .max(before.len().saturating_sub(WORD_LENGTH / 2));
        let mut word = before[start..].to_vec();
        let mut open = true;
        for &byte in &chunk[index..] {
            if ends_word(byte) || word.len() >= WORD_LENGTH {
                open = false;
                break;
            }
            word.push(byte);
        }
        Seen { place, word, open }
    }

    /// Adds the start of `chunk` to the words that went on past the previous piece.
    fn continue_words(&mut self, chunk: &[u8]) {
        for seen in self.seen.iter_mut().flatten().filter(|seen| seen.open) {
            for &byte in chunk {
                if ends_word(byte) || seen.word.len() >= WORD_LENGTH {
                    seen.open = false;
                    break;
                }
                seen.word.push(byte);
            }
        }
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
                let line_at_carry = self.line - newlines(&bytes[..carried]);
                self.first_invalid_utf8 = Some(Place {
                    byte: bytes[valid],
                    offset: self.offset - carried as u64 + valid as u64,
                    line: line_at_carry + newlines(&bytes[..valid]),
                });
            }
        }
    }

    /// Runs the named encoding's decoder over `chunk`, keeping the first malformed sequence.
    fn check_given(&mut self, chunk: &[u8]) {
        if self.first_malformed.is_some() {
            return;
        }
        let Some(decoder) = self.given_decoder.as_mut() else {
            return;
        };
        if let Some(start) = first_malformed(decoder, chunk, false) {
            self.first_malformed = Some(self.place_at(chunk, start));
        }
    }

    /// The place of the byte `start` bytes into `chunk`; a negative `start` is in the bytes
    /// before it (a malformed sequence may start in an earlier piece).
    fn place_at(&self, chunk: &[u8], start: isize) -> Place {
        match usize::try_from(start) {
            Ok(index) => Place {
                byte: chunk.get(index).copied().unwrap_or_default(),
                offset: self.offset + index as u64,
                line: self.line + newlines(&chunk[..index.min(chunk.len())]),
            },
            Err(_) => {
                let back = start.unsigned_abs().min(self.recent.len());
                let earlier = &self.recent[self.recent.len() - back..];
                Place {
                    byte: earlier.first().copied().unwrap_or_default(),
                    offset: self.offset - back as u64,
                    line: self.line - newlines(earlier),
                }
            }
        }
    }

    /// Feeds chardetng once the file has turned out not to be UTF-8. Everything before that
    /// piece was ASCII (or the file mixes encodings and is refused anyway) but for an
    /// incomplete sequence carried over, and chardetng reads an ASCII prefix only for its
    /// last two bytes, so feeding it from the bytes just before the piece is feeding it the
    /// file.
    fn feed_detector(&mut self, chunk: &[u8]) {
        if let Some(detector) = self.detector.as_mut() {
            detector.feed(chunk, false);
            return;
        }
        if self.given.is_some() || self.first_invalid_utf8.is_none() || self.utf8_sequences > 0 {
            return;
        }
        let mut detector = Box::new(EncodingDetector::new(Iso2022JpDetection::Deny));
        detector.feed(&self.recent, false);
        detector.feed(chunk, false);
        self.detector = Some(detector);
    }

    /// Decides the encoding once every byte was seen; the error says what was found.
    pub fn finish(mut self) -> Result<Detected, String> {
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
        let bom = self.head.starts_with(&[0xEF, 0xBB, 0xBF]);
        if let Some(given) = self.given {
            return self.check_named(given, bom);
        }
        let Some(invalid) = self.first_invalid_utf8 else {
            return Ok(Detected {
                encoding: TextEncoding::UTF_8,
                given: false,
            });
        };
        if bom {
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
        self.detect(invalid)
    }

    /// Checks the file against the encoding the request names.
    fn check_named(mut self, given: TextEncoding, bom: bool) -> Result<Detected, String> {
        let named = |problem: String| {
            format!(
                "the file is not {given}, the encoding the request names: {problem}; upload it \
                 again naming its encoding, or without one to have it detected"
            )
        };
        if given == TextEncoding::UTF_8 {
            if let Some(invalid) = self.first_invalid_utf8 {
                return Err(named(format!("{invalid} is not UTF-8")));
            }
        } else {
            if bom {
                return Err(named(
                    "it starts with a UTF-8 byte-order mark, so it is UTF-8".into(),
                ));
            }
            if self.first_malformed.is_none()
                && let Some(decoder) = self.given_decoder.as_mut()
                && let Some(start) = first_malformed(decoder, &[], true)
            {
                // A sequence the file ends in the middle of.
                self.first_malformed = Some(self.place_at(&[], start));
            }
            let undefined = self.first_undefined(given);
            let bad = [self.first_malformed, undefined]
                .into_iter()
                .flatten()
                .min_by_key(|place| place.offset);
            if let Some(bad) = bad {
                return Err(named(format!("{bad} is not a character of {given}")));
            }
        }
        Ok(Detected {
            encoding: given,
            given: true,
        })
    }

    /// The first byte of the file that is not a character of the single-byte `encoding`.
    fn first_undefined(&self, encoding: TextEncoding) -> Option<Place> {
        if !encoding.is_single_byte() {
            return None;
        }
        self.seen
            .iter()
            .flatten()
            .filter(|seen| encoding.char_of(seen.place.byte).is_none())
            .map(|seen| seen.place)
            .min_by_key(|place| place.offset)
    }

    /// True when `a` and `b` read every byte of the file the same.
    fn read_alike(&self, a: TextEncoding, b: TextEncoding) -> bool {
        a == b
            || (a.is_single_byte()
                && b.is_single_byte()
                && self
                    .seen
                    .iter()
                    .flatten()
                    .all(|seen| a.char_of(seen.place.byte) == b.char_of(seen.place.byte)))
    }

    /// The Windows code page that reads the file as `encoding` does, or `encoding`.
    fn windows_alike(&self, encoding: TextEncoding) -> TextEncoding {
        WINDOWS_PAGES
            .into_iter()
            .map(TextEncoding)
            .find(|page| self.read_alike(encoding, *page))
            .unwrap_or(encoding)
    }

    /// Whether every byte of the file is a character of `encoding`: checked byte by byte for
    /// a single-byte encoding, on the words kept for a multi-byte one.
    fn reads(&self, encoding: TextEncoding) -> bool {
        if encoding.is_single_byte() {
            return self.first_undefined(encoding).is_none();
        }
        self.words()
            .all(|word| !encoding.0.decode_without_bom_handling(word).1)
    }

    fn words(&self) -> impl Iterator<Item = &[u8]> {
        self.seen.iter().flatten().map(|seen| seen.word.as_slice())
    }

    /// Whether `encoding` reads the kept words as words: no letter next to a letter of
    /// another script ("Јukasz") or next to a symbol ("£ukasz", "dzia³u").
    fn plausible(&self, encoding: TextEncoding) -> bool {
        self.words().all(|word| {
            let chars: Vec<Kind> = encoding
                .0
                .decode_without_bom_handling(word)
                .0
                .chars()
                .map(kind)
                .collect();
            chars.windows(2).all(|pair| match (pair[0], pair[1]) {
                (Kind::Bad, _) | (_, Kind::Bad) => false,
                (Kind::Letter(a), Kind::Letter(b)) => a == b || a == INHERITED || b == INHERITED,
                (Kind::Letter(_), Kind::Symbol) | (Kind::Symbol, Kind::Letter(_)) => false,
                _ => true,
            })
        })
    }

    /// chardetng's guess, taken when sure (see the module documentation).
    fn detect(&mut self, invalid: Place) -> Result<Detected, String> {
        let mut detector = self
            .detector
            .take()
            .unwrap_or_else(|| Box::new(EncodingDetector::new(Iso2022JpDetection::Deny)));
        detector.feed(&[], true);
        let guess = self.windows_alike(TextEncoding(detector.guess(None, Utf8Detection::Deny)));
        let guess_reads = self.reads(guess);
        if guess.is_windows() && guess_reads {
            return Ok(Detected {
                encoding: guess,
                given: false,
            });
        }
        let mut candidates: Vec<TextEncoding> = Vec::new();
        if guess_reads {
            candidates.push(guess);
        }
        for region in REGIONS {
            let rival = self.windows_alike(TextEncoding(
                detector.guess(Some(region), Utf8Detection::Deny),
            ));
            if rival.is_windows()
                && self.reads(rival)
                && self.plausible(rival)
                && !candidates
                    .iter()
                    .any(|known| self.read_alike(*known, rival))
            {
                candidates.push(rival);
            }
        }
        if candidates.is_empty() {
            let page = if guess.is_single_byte() {
                guess
            } else {
                TextEncoding::WINDOWS_1252
            };
            let undefined = self
                .first_undefined(page)
                .map(|place| format!("; {place} is not used in {page}"))
                .unwrap_or_default();
            return Err(format!(
                "the file is neither UTF-8 ({invalid} is not UTF-8) nor in a code page Roster \
                 recognises{undefined}; save it as CSV UTF-8"
            ));
        }
        let word = self.telling_word(&candidates);
        let readings: Vec<String> = candidates
            .iter()
            .map(|encoding| match word {
                Some(word) => format!("{encoding} (reads \"{}\")", encoding.read(word)),
                None => encoding.name().to_owned(),
            })
            .collect();
        Err(format!(
            "the file is not UTF-8 ({invalid} is not UTF-8), and its encoding is not sure: it \
             may be {}; upload it again naming its encoding (`encoding` in the request, \
             --encoding in roster import upload), or save it as CSV UTF-8",
            join_or(&readings)
        ))
    }

    /// The first word of the file the candidates read differently (or the first word).
    fn telling_word(&self, candidates: &[TextEncoding]) -> Option<&[u8]> {
        let mut seen: Vec<&Seen> = self.seen.iter().flatten().collect();
        seen.sort_by_key(|seen| seen.place.offset);
        let differs = |word: &[u8]| {
            candidates
                .iter()
                .any(|encoding| encoding.read(word) != candidates[0].read(word))
        };
        seen.iter()
            .map(|seen| seen.word.as_slice())
            .find(|word| differs(word))
            .or_else(|| seen.first().map(|seen| seen.word.as_slice()))
    }
}

/// Decodes `bytes` with `decoder`, discarding the text; where in `bytes` the first malformed
/// sequence starts, if there is one (negative: in an earlier piece).
fn first_malformed(decoder: &mut encoding_rs::Decoder, bytes: &[u8], last: bool) -> Option<isize> {
    let mut scratch = [0u8; 4096];
    let mut read = 0;
    loop {
        let (result, consumed, _) =
            decoder.decode_to_utf8_without_replacement(&bytes[read..], &mut scratch, last);
        read += consumed;
        match result {
            encoding_rs::DecoderResult::InputEmpty => return None,
            encoding_rs::DecoderResult::OutputFull => {}
            encoding_rs::DecoderResult::Malformed(length, after) => {
                return Some(read as isize - isize::from(after) - isize::from(length));
            }
        }
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn count_multibyte(text: &str) -> u64 {
    text.chars().filter(|c| !c.is_ascii()).count() as u64
}

/// `a`, `a or b`, `a, b or c`.
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A script, for telling whether two letters belong together (`INHERITED`: a combining mark).
type Script = u8;
const INHERITED: Script = u8::MAX;

/// What a character is, for [`Sniffer::plausible`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Letter(Script),
    /// Digits, white space and punctuation that words hold (ASCII, apostrophes, dashes).
    Neutral,
    /// Other symbols: currency, superscripts, signs.
    Symbol,
    /// A control, private-use or replacement character: no text has them.
    Bad,
}

fn kind(c: char) -> Kind {
    if c.is_ascii() {
        return if c.is_ascii_alphabetic() {
            Kind::Letter(0)
        } else {
            Kind::Neutral
        };
    }
    let script = match u32::from(c) {
        0x80..=0x9F | 0xE000..=0xF8FF | 0xFFFD => return Kind::Bad,
        0x300..=0x36F => INHERITED,
        0x370..=0x3FF => 1,
        0x400..=0x52F => 2,
        0x590..=0x5FF => 3,
        0x600..=0x6FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => 4,
        0xE00..=0xE7F => 5,
        0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF => 6,
        _ if c.is_alphabetic() => 0,
        _ if c.is_whitespace() || "’‘´`‚„“”«»‹›–—‐·•…".contains(c) => {
            return Kind::Neutral;
        }
        _ => return Kind::Symbol,
    };
    Kind::Letter(script)
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

    fn sniff_as(given: Option<&str>, chunks: &[&[u8]]) -> Result<Detected, String> {
        let given = given.map(|label| TextEncoding::from_label(label).unwrap().unwrap());
        let mut sniffer = Sniffer::new(given);
        for chunk in chunks {
            sniffer.feed(chunk);
        }
        sniffer.finish()
    }

    fn sniff(chunks: &[&[u8]]) -> Result<&'static str, String> {
        sniff_as(None, chunks).map(|detected| detected.encoding.name())
    }

    /// `text` in `encoding`, as a spreadsheet would save it.
    fn encode(text: &str, encoding: &'static Encoding) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding.encode(text);
        assert!(!unmappable, "{text} in {}", encoding.name());
        bytes.into_owned()
    }

    const POLISH: &str = "First Name,Last Name,Job Title\n\
                          Łukasz,Wróbel,Kierownik działu\n\
                          Agnieszka,Dąbrowska,Główna księgowa\n\
                          Paweł,Wiśniewski,Specjalista ds. kadr i płac\n";
    const RUSSIAN: &str = "First Name,Last Name,Job Title\n\
                           Иван,Петров,Менеджер по продажам\n\
                           Ольга,Смирнова,Бухгалтер\n\
                           Сергей,Кузнецов,Инженер\n";

    #[test]
    fn utf8_split_across_chunks_is_utf8() {
        let text = "Zoë Müller".as_bytes();
        for split in 0..text.len() {
            assert_eq!(
                sniff(&[&text[..split], &text[split..]]),
                Ok("UTF-8"),
                "split at {split}"
            );
        }
    }

    #[test]
    fn windows_1252_is_recognised() {
        assert_eq!(
            sniff(&[b"First Name\nZo\xEB M\xFCller\n"]),
            Ok("windows-1252")
        );
        // Windows-1250 reads these bytes alike: the more common page is named.
        assert_eq!(sniff(&[b"First Name\nRen\xE9\n"]), Ok("windows-1252"));
    }

    #[test]
    fn central_european_and_cyrillic_code_pages_are_detected_however_the_file_is_cut() {
        for (text, encoding) in [
            (POLISH, encoding_rs::WINDOWS_1250),
            (RUSSIAN, encoding_rs::WINDOWS_1251),
        ] {
            let file = encode(text, encoding);
            for piece in [1, 3, 7, 1024] {
                let chunks: Vec<&[u8]> = file.chunks(piece).collect();
                assert_eq!(sniff(&chunks), Ok(encoding.name()), "pieces of {piece}");
            }
        }
    }

    #[test]
    fn an_unsure_guess_names_the_candidates_and_how_each_reads_a_word() {
        let file = encode(
            "First Name,Last Name\nJan,Dąbrowski\n",
            encoding_rs::WINDOWS_1250,
        );
        let error = sniff(&[&file]).unwrap_err();
        assert_eq!(
            error,
            "the file is not UTF-8 (byte 0xB9 on line 2 (offset 26) is not UTF-8), and its \
             encoding is not sure: it may be ISO-8859-2 (reads \"Dšbrowski\") or windows-1250 \
             (reads \"Dąbrowski\"); upload it again naming its encoding (`encoding` in the \
             request, --encoding in roster import upload), or save it as CSV UTF-8"
        );
        let named = sniff_as(Some("Windows-1250"), &[&file]).unwrap();
        assert_eq!(
            named,
            Detected {
                encoding: TextEncoding(encoding_rs::WINDOWS_1250),
                given: true
            }
        );
    }

    #[test]
    fn a_named_encoding_must_fit_every_byte() {
        let error = sniff_as(Some("utf-8"), &[b"a\nb\n\xE8\n"]).unwrap_err();
        assert_eq!(
            error,
            "the file is not UTF-8, the encoding the request names: byte 0xE8 on line 3 \
             (offset 4) is not UTF-8; upload it again naming its encoding, or without one to \
             have it detected"
        );
        let error = sniff_as(Some("cp1250"), &[b"a\n", b"b\x81\n"]).unwrap_err();
        assert!(
            error.contains("byte 0x81 on line 2 (offset 3) is not a character of windows-1250"),
            "{error}"
        );
        let error = sniff_as(Some("shift_jis"), &[b"a\n\x82", b"\x20\n"]).unwrap_err();
        assert!(error.contains("on line 2"), "{error}");
        let error = sniff_as(Some("windows-1251"), &[b"\xEF\xBB\xBFa\n"]).unwrap_err();
        assert!(error.contains("byte-order mark"), "{error}");
        assert!(sniff_as(Some("latin1"), &[b"a\n\xE8\n"]).is_ok());
    }

    #[test]
    fn labels_are_whatwg_labels() {
        assert_eq!(TextEncoding::from_label(" "), Ok(None));
        assert_eq!(
            TextEncoding::from_label("CP1251")
                .unwrap()
                .map(TextEncoding::name),
            Some("windows-1251")
        );
        assert!(
            TextEncoding::from_label("klingon")
                .unwrap_err()
                .starts_with("'klingon' is not an encoding label")
        );
        assert!(
            TextEncoding::from_label("utf-16le")
                .unwrap_err()
                .contains("not a superset of ASCII")
        );
        assert_eq!(
            TextEncoding::parse("Windows-1252"),
            Some(TextEncoding::WINDOWS_1252)
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
        // Bytes that Windows-1252 leaves undefined: not it, whatever else they might be.
        let error = sniff(&[b"a\n\x81\x8D\x8F\x90\x98"]).unwrap_err();
        assert!(
            error.contains("its encoding is not sure: it may be IBM866 (reads \"БНПРШ\")"),
            "{error}"
        );
        assert_eq!(sniff(&[]).unwrap_err(), "the file is empty");
    }
}
