//! The [`Sniffer`]: every byte of an upload seen once as it streams in, with the bounded
//! state the verdict needs (the file's first bytes, where the first byte of each value above
//! 0x7F is and the word around it, what UTF-8 and the named encoding made of it).
//! Its `verdict` module decides the encoding from that state at the end.

use std::fmt;

use chardetng::{EncodingDetector, Iso2022JpDetection};

use super::TextEncoding;

mod verdict;

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
