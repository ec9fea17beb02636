//! The verdict of the [`Sniffer`] once the whole file was seen: the encoding the request
//! named, UTF-8, or a code page chardetng guessed and the file reads plausibly in; otherwise
//! a file-level error saying what was found and how the candidates read it.

use chardetng::Utf8Detection;

use super::super::{TextEncoding, WINDOWS_PAGES};
use super::*;

impl Sniffer {
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
