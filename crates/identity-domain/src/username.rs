//! Usernames: the one name a user signs in with, and the two derived strings the registry
//! compares it by (DESIGN §4).
//!
//! A [`Username`] can only be built by [`Username::parse`], so code past the gRPC boundary never
//! re-checks one. Parsing keeps three strings:
//!
//! - the *display* form: the input with surrounding white space trimmed, as the user typed it;
//! - the *canonical* form, which decides uniqueness: trim Unicode white space, NFKC, full case
//!   folding, NFKC again, trim again (in the spirit of PRECIS `UsernameCaseMapped`, RFC 8265).
//!   Full folding means `straße` and `STRASSE` are the same username, and so are `ΌΣΟΣ` and
//!   `όσος` (final sigma folds to σ);
//! - the *skeleton* (UTS #39), which decides confusability: two usernames with equal skeletons
//!   look alike and the second one is refused.
//!
//! **Decision: the skeleton is computed on the trimmed NFKC form *before* case folding**, and the
//! result is then case-folded and NFKC-normalised. Case folding first would hide exactly the
//! attacks the skeleton exists for: `paypaI` (capital I) folds to `paypai`, which looks nothing
//! like `paypal`, yet on screen `paypaI` is indistinguishable from `paypal`. Taking the skeleton of
//! the characters as typed maps `I` to its prototype `l`, so `paypaI` gets the skeleton `paypal`
//! and is refused as confusable with `paypal`. The price is that the skeleton depends on the case
//! the user typed: `ALICE` and `alice` share the canonical form `alice` (and so collide as the
//! same username) but have different skeletons (`allce`, `alice`), because the capital `I` is a
//! look-alike of `l` while the small `i` is not.
//!
//! Refused (each with its own [`UsernameError`] variant): empty; longer than 254 code points in
//! canonical form; white space inside; control (Cc), format (Cf, such as zero-width joiner or a
//! right-to-left override), private-use (Co) or unassigned (Cn) code points; and a mix of scripts
//! that UTS #39 calls unsafe (not single-script under augmented script sets, where Common and
//! Inherited characters such as `@`, `.` and digits go with any script).
//!
//! The Unicode data comes from several crates: `unicode-normalization`, `unicode-properties`
//! and `unicode-security` are on Unicode 18, `caseless` on Unicode 16. A letter with a case pair
//! that is new in Unicode 17 or 18 is therefore accepted but not folded.

use std::fmt;

use caseless::default_case_fold_str;

use super::error::Refusal;
use super::ids::{AccountId, ProfileId};
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::mixed_script::AugmentedScriptSet;

/// The most code points a canonical username may have: as many as the longest email address,
/// since the username defaults to the email address.
pub const MAX_LENGTH: usize = 254;

/// The most bytes a username may arrive in: four per code point of the longest canonical form.
/// Checked before anything else, so that no normalisation ever runs over a huge input (NFKC
/// expands some characters 18×).
pub const MAX_INPUT_BYTES: usize = 4 * MAX_LENGTH;

/// The most code points the first NFKC of a username may produce before it is refused unread.
const MAX_NFKC_LENGTH: usize = 4 * MAX_LENGTH;

/// The `ErrorInfo` reason every [`UsernameError`] maps to.
pub const INVALID_REASON: &str = "USERNAME_INVALID";

/// A username that passed every rule of DESIGN §4, with its canonical form and skeleton.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Username {
    display: String,
    canonical: String,
    skeleton: String,
}

impl Username {
    /// Checks `input` against the rules of DESIGN §4 and derives its canonical form and skeleton.
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        if input.len() > MAX_INPUT_BYTES {
            return Err(UsernameError::InputTooLong { bytes: input.len() });
        }
        let display = input.trim();
        if display.is_empty() {
            return Err(UsernameError::Empty);
        }
        if display.bytes().all(|byte| VISIBLE_ASCII.contains(&byte)) {
            return Self::parse_visible_ascii(display);
        }
        Self::parse_any(display)
    }

    /// [`Username::parse`] of a trimmed, non-empty username of any characters.
    fn parse_any(display: &str) -> Result<Self, UsernameError> {
        check_characters(display)?;
        // NFKC expands some characters 18× (U+FDFA): stop normalising once the result is longer
        // than any username's could be. Case folding and the second NFKC shrink a string to no
        // less than half (a capital and a combining mark that compose once folded), so past
        // 4 × MAX_LENGTH the canonical form is too long for certain.
        let nfkc: String = display.nfkc().take(MAX_NFKC_LENGTH + 1).collect();
        if nfkc.chars().count() > MAX_NFKC_LENGTH {
            return Err(UsernameError::ExpandsTooFar);
        }
        let canonical = fold_and_normalize(&nfkc);
        if canonical.is_empty() {
            return Err(UsernameError::Empty);
        }
        // NFKC can bring in white space (U+00A8 DIAERESIS becomes a space and a combining mark),
        // so the canonical form is checked again.
        check_characters(&canonical)?;
        let length = canonical.chars().count();
        if length > MAX_LENGTH {
            return Err(UsernameError::TooLong { length });
        }
        check_single_script(&canonical)?;
        let skeleton = fold_and_normalize(&unicode_security::skeleton(&nfkc).collect::<String>());
        Ok(Self {
            display: display.to_owned(),
            canonical,
            skeleton,
        })
    }

    /// [`Username::parse`] of a username of visible ASCII characters only, most usernames:
    /// what the general steps come to for them, without their tables. Such a character is no
    /// white space, control, format, private-use or unassigned character; NFKC leaves it as it
    /// is; full case folding lowers A–Z and leaves the rest; and a string of Latin letters and
    /// Common digits and punctuation is single-script; so only the length can refuse it. The
    /// skeleton goes the general way (the confusables map ASCII too: `rn` is confusable with
    /// `m`). The test `visible_ascii_takes_the_general_steps` compares the two ways.
    fn parse_visible_ascii(display: &str) -> Result<Self, UsernameError> {
        if display.len() > MAX_LENGTH {
            return Err(UsernameError::TooLong {
                length: display.len(),
            });
        }
        let skeleton = fold_and_normalize(&unicode_security::skeleton(display).collect::<String>());
        Ok(Self {
            display: display.to_owned(),
            canonical: display.to_ascii_lowercase(),
            skeleton,
        })
    }

    /// The username as the user typed it, surrounding white space trimmed.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The canonical form: two usernames are the same username when these are equal.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The UTS #39 skeleton (see the module doc): two usernames are confusable when these are
    /// equal.
    pub fn skeleton(&self) -> &str {
        &self.skeleton
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Maps a prefix typed into a list filter the way [`Username::parse`] maps a username, so that
/// it can be compared with canonical forms. A prefix may be any string: no rule refuses it, and
/// an empty or blank prefix maps to the empty string (which matches every username). A prefix
/// longer than any username is refused before it is normalised.
pub fn canonical_prefix(input: &str) -> Result<String, UsernameError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(UsernameError::InputTooLong { bytes: input.len() });
    }
    Ok(fold_and_normalize(&input.trim().nfkc().collect::<String>()))
}

/// The bytes of visible ASCII characters: `!` to `~`.
const VISIBLE_ASCII: std::ops::RangeInclusive<u8> = 0x21..=0x7E;

/// Full case folding, NFKC, then trimming: the steps that the canonical form and the skeleton
/// share after their first NFKC.
fn fold_and_normalize(s: &str) -> String {
    default_case_fold_str(s)
        .nfkc()
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Refuses the first character that is white space, control, format, private use or unassigned.
fn check_characters(s: &str) -> Result<(), UsernameError> {
    for c in s.chars() {
        if c.is_whitespace() {
            return Err(UsernameError::WhiteSpace(c));
        }
        match c.general_category() {
            GeneralCategory::Control => return Err(UsernameError::Control(c)),
            GeneralCategory::Format => return Err(UsernameError::Format(c)),
            GeneralCategory::PrivateUse => return Err(UsernameError::PrivateUse(c)),
            GeneralCategory::Unassigned => return Err(UsernameError::Unassigned(c)),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a string that is not single-script in the sense of UTS #39 §5.1: the intersection of
/// the augmented script sets of its characters is empty.
fn check_single_script(s: &str) -> Result<(), UsernameError> {
    let mut resolved = AugmentedScriptSet::default();
    for c in s.chars() {
        let own = AugmentedScriptSet::for_char(c);
        let mut narrowed = resolved;
        narrowed.intersect_with(own);
        if narrowed.is_empty() {
            return Err(UsernameError::MixedScripts {
                first: resolved.to_string(),
                second: own.to_string(),
            });
        }
        resolved = narrowed;
    }
    Ok(())
}

/// `U+200D`: how a code point is named in messages.
fn code_point(c: &char) -> String {
    format!("U+{:04X}", u32::from(*c))
}

/// Why a username was refused as invalid.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UsernameError {
    /// Nothing but white space.
    #[error("The username is empty.")]
    Empty,
    /// More than [`MAX_LENGTH`] code points in canonical form.
    #[error("The username is {length} characters long once normalised; at most 254 are allowed.")]
    TooLong {
        /// Code points in the canonical form.
        length: usize,
    },
    /// Characters whose compatibility forms are so long (U+FDFA becomes 18 characters) that
    /// the normalised username would be far over [`MAX_LENGTH`]; refused before folding.
    #[error(
        "The username is longer than 254 characters once normalised: some of its characters stand for several letters each."
    )]
    ExpandsTooFar,
    /// More than [`MAX_INPUT_BYTES`] bytes as given, refused before any normalisation.
    #[error(
        "The username is {bytes} bytes long; a username has at most 254 characters ({MAX_INPUT_BYTES} bytes)."
    )]
    InputTooLong {
        /// Bytes of the input (UTF-8).
        bytes: usize,
    },
    /// White space between other characters.
    #[error(
        "The username contains white space ({}); a username is a single word without spaces.",
        code_point(.0)
    )]
    WhiteSpace(char),
    /// A control character (general category Cc).
    #[error("The username contains the control character {}, which is not allowed.", code_point(.0))]
    Control(char),
    /// A format character (general category Cf): invisible, or reorders text on screen.
    #[error(
        "The username contains the invisible formatting character {}, which is not allowed.",
        code_point(.0)
    )]
    Format(char),
    /// A private-use code point (general category Co).
    #[error(
        "The username contains the private-use character {}, which has no agreed meaning and is not allowed.",
        code_point(.0)
    )]
    PrivateUse(char),
    /// A code point that Unicode has not assigned (general category Cn).
    #[error(
        "The username contains {}, a code point that Unicode has not assigned.",
        code_point(.0)
    )]
    Unassigned(char),
    /// Letters of scripts that do not belong together, the usual way to imitate another name.
    #[error(
        "The username mixes the {first} and {second} scripts; a username must be written in one script so that it cannot imitate another."
    )]
    MixedScripts {
        /// The script (or scripts) of the characters before the conflict.
        first: String,
        /// The script (or scripts) of the character that conflicts with them.
        second: String,
    },
}

impl UsernameError {
    /// The [`code`](Self::code) of every refusal for length.
    pub const TOO_LONG: &'static str = "TOO_LONG";

    /// The `ErrorInfo` reason: [`INVALID_REASON`] for every variant.
    pub fn reason(&self) -> &'static str {
        INVALID_REASON
    }

    /// A stable code naming the rule that refused the username, for `ErrorInfo` metadata and
    /// for tests; it never changes once published.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "EMPTY",
            Self::TooLong { .. } | Self::InputTooLong { .. } | Self::ExpandsTooFar => {
                Self::TOO_LONG
            }
            Self::WhiteSpace(_) => "WHITE_SPACE",
            Self::Control(_) => "CONTROL_CHARACTER",
            Self::Format(_) => "FORMAT_CHARACTER",
            Self::PrivateUse(_) => "PRIVATE_USE_CHARACTER",
            Self::Unassigned(_) => "UNASSIGNED_CODE_POINT",
            Self::MixedScripts { .. } => "MIXED_SCRIPTS",
        }
    }

    /// The sentence shown to the caller (the same as `Display`).
    pub fn description(&self) -> String {
        self.to_string()
    }
}

/// A username's standing in the registry: why it cannot be taken, and by whom when it is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub refusal: Refusal,
    /// The profile holding a taken username, with its account.
    pub holder: Option<(ProfileId, AccountId)>,
}

/// What the registry holds of one canonical form: the profile that registered it, and whether
/// that profile still holds it (it is not deleted and has not been renamed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    pub profile: (ProfileId, AccountId),
    pub still_held: bool,
}

impl Standing {
    /// The registry's decision for one username. Registered and still held: taken. Registered
    /// and no longer held: retired, for good (usernames are never reused). Not registered, but
    /// its skeleton is: confusable. Otherwise free (`None`).
    pub fn decide(registration: Option<Registration>, skeleton_registered: bool) -> Option<Self> {
        match registration {
            Some(Registration {
                profile,
                still_held: true,
            }) => Some(Standing {
                refusal: Refusal::Taken,
                holder: Some(profile),
            }),
            Some(_) => Some(Standing {
                refusal: Refusal::Retired,
                holder: None,
            }),
            None if skeleton_registered => Some(Standing {
                refusal: Refusal::Confusable,
                holder: None,
            }),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The shortcut for visible ASCII decides exactly as the general steps: every character,
    /// every pair (`rn`, `0O`, `1l` among them), and lengths around the limit.
    #[test]
    fn visible_ascii_takes_the_general_steps() {
        let visible: Vec<char> = VISIBLE_ASCII.map(char::from).collect();
        let mut inputs: Vec<String> = visible.iter().map(char::to_string).collect();
        for a in &visible {
            for b in &visible {
                inputs.push(format!("{a}{b}"));
            }
        }
        for length in [MAX_LENGTH - 1, MAX_LENGTH, MAX_LENGTH + 1, MAX_INPUT_BYTES] {
            inputs.push("Ab".repeat(length).chars().take(length).collect());
        }
        for input in inputs {
            assert_eq!(
                Username::parse(&input),
                Username::parse_any(&input),
                "{input:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn visible_ascii_strings_take_the_general_steps(input in "[!-~]{1,300}") {
            prop_assert_eq!(Username::parse(&input), Username::parse_any(&input));
        }
    }

    /// What the golden table expects of one input.
    enum Expected<'a> {
        /// Accepted with this canonical form and this skeleton.
        Accepted {
            canonical: &'a str,
            skeleton: &'a str,
        },
        /// Refused by the rule with this code.
        Refused(&'static str),
    }
    use Expected::{Accepted, Refused};

    const fn ok<'a>(canonical: &'a str, skeleton: &'a str) -> Expected<'a> {
        Accepted {
            canonical,
            skeleton,
        }
    }

    #[test]
    fn golden_table_of_canonical_forms_skeletons_and_refusals() {
        let long_254 = "a".repeat(254);
        let long_255 = "a".repeat(255);
        let table: Vec<(&str, Expected)> = vec![
            // Case does not make another username: `Alice` and `alice` are the same name.
            ("Alice", ok("alice", "alice")),
            ("alice", ok("alice", "alice")),
            // Same canonical form as `alice`, different skeleton: the capital I is a look-alike of
            // `l`, the small i is not (see the module doc). Uniqueness still catches it.
            ("ALICE", ok("alice", "allce")),
            // Full-width letters are compatibility variants: NFKC makes them ASCII.
            ("ａｌｉｃｅ", ok("alice", "alice")),
            // Skeletons are for comparison, never for display: UTS #39 maps `m` to `rn`.
            (
                "ａｌｉｃｅ@example.com",
                ok("alice@example.com", "alice@exarnple.corn"),
            ),
            // KELVIN SIGN is a compatibility character for K: NFKC then folding give `k`.
            ("\u{212A}elvin", ok("kelvin", "kelvin")),
            // Full case folding: ß folds to `ss`, so `straße` and `STRASSE` are one username
            // (simple folding or lower-casing would keep them apart).
            ("straße", ok("strasse", "strasse")),
            ("STRASSE", ok("strasse", "strasse")),
            // Turkish dotted capital I folds (full, non-Turkic folding) to `i` + U+0307 COMBINING
            // DOT ABOVE, which has no precomposed form: it is NOT the same username as `i`.
            ("\u{130}", ok("i\u{307}", "l\u{307}")),
            ("i", ok("i", "i")),
            // Final sigma folds to σ like the medial one: `ΌΣΟΣ` and `όσος` are one username
            // (`όσοσ`). Like `ALICE`, their skeletons differ, since Σ, σ and ς have different
            // prototypes (ʃ, o, σ).
            ("ΌΣΟΣ", ok("όσοσ", "\u{F3}\u{283}o\u{283}")),
            ("όσος", ok("όσοσ", "\u{F3}oo\u{3C3}")),
            // Modifier letters are compatibility variants of the capitals: NFKC then folding.
            ("ᴮᴵᴳᴮᴵᴿᴰ", ok("bigbird", "blgblrd")),
            // Invisible characters inside are refused, never silently removed.
            ("ali\u{200D}ce", Refused("FORMAT_CHARACTER")),
            ("ali\u{200B}ce", Refused("FORMAT_CHARACTER")),
            ("\u{FEFF}alice", Refused("FORMAT_CHARACTER")),
            // A right-to-left override reorders what the screen shows.
            ("alice\u{202E}moc.", Refused("FORMAT_CHARACTER")),
            ("ali\u{7}ce", Refused("CONTROL_CHARACTER")),
            ("ali\u{E000}ce", Refused("PRIVATE_USE_CHARACTER")),
            ("ali\u{378}ce", Refused("UNASSIGNED_CODE_POINT")),
            // Cyrillic а (U+0430) among Latin letters: mixed scripts, refused.
            ("\u{430}dmin", Refused("MIXED_SCRIPTS")),
            // All-Cyrillic look-alike of `scope`: single-script so the script rule accepts it, but
            // its skeleton is `scope`, so the registry refuses it as confusable with `scope`.
            ("\u{455}\u{441}\u{43E}\u{440}\u{435}", ok("ѕсоре", "scope")),
            ("scope", ok("scope", "scope")),
            // Common and Inherited characters (`@`, `.`, digits, combining marks) go with any
            // script...
            ("алиса@пример.рф", ok("алиса@пример.рф", "aлᴎca@πpᴎʍep.pɸ")),
            (
                "alice.2024@example.com",
                ok("alice.2024@example.com", "alice.2o24@exarnple.corn"),
            ),
            // ...but the whole username is one string for the script rule: an email address
            // with a Cyrillic local part and a Latin domain is refused as a username, so a
            // profile with such an email must be given another username.
            ("алиса@example.com", Refused("MIXED_SCRIPTS")),
            // `paypaI` (capital I) and `paypal`: different canonical forms, same skeleton, so the
            // second one registered is refused as confusable.
            ("paypaI", ok("paypai", "paypal")),
            ("paypal", ok("paypal", "paypal")),
            // White space inside a username is refused, whatever kind it is.
            ("alice smith", Refused("WHITE_SPACE")),
            ("alice\u{3000}smith", Refused("WHITE_SPACE")),
            ("alice\tsmith", Refused("WHITE_SPACE")),
            // NFKC turns U+00A8 DIAERESIS into a space and a combining mark: still refused.
            ("alice\u{A8}smith", Refused("WHITE_SPACE")),
            // The limit is 254 code points of the canonical form.
            (&long_254, ok(&long_254, &long_254)),
            (&long_255, Refused("TOO_LONG")),
            // Surrounding white space is trimmed, of any kind.
            ("  alice \u{3000}\n", ok("alice", "alice")),
            ("", Refused("EMPTY")),
            (" \u{3000}\t", Refused("EMPTY")),
        ];
        for (input, expected) in table {
            let parsed = Username::parse(input);
            match (expected, parsed) {
                (
                    Accepted {
                        canonical,
                        skeleton,
                    },
                    Ok(username),
                ) => {
                    assert_eq!(username.canonical(), canonical, "canonical of {input:?}");
                    assert_eq!(username.skeleton(), skeleton, "skeleton of {input:?}");
                    assert_eq!(username.as_str(), input.trim(), "display of {input:?}");
                }
                (Refused(code), Err(error)) => {
                    assert_eq!(error.code(), code, "refusal of {input:?}: {error}");
                }
                (Accepted { .. }, Err(error)) => panic!("{input:?} was refused: {error}"),
                (Refused(code), Ok(username)) => {
                    panic!("{input:?} was accepted as {username:?}, expected {code}")
                }
            }
        }
    }

    #[test]
    fn every_refusal_maps_to_username_invalid_with_a_sentence() {
        let refusals = [
            "",
            "x\u{200D}y",
            "x y",
            "x\u{1}y",
            "x\u{E000}y",
            "x\u{378}y",
            "\u{430}dmin",
        ];
        for input in refusals {
            let error = Username::parse(input).expect_err(input);
            assert_eq!(error.reason(), "USERNAME_INVALID");
            let description = error.description();
            assert!(description.starts_with("The username "), "{description}");
            assert!(description.ends_with('.'), "{description}");
        }
    }

    #[test]
    fn refusals_name_the_offending_code_point_or_scripts() {
        let zwj = Username::parse("ali\u{200D}ce").expect_err("zero-width joiner");
        assert!(zwj.to_string().contains("U+200D"), "{zwj}");
        let rlo = Username::parse("ali\u{202E}ce").expect_err("right-to-left override");
        assert!(rlo.to_string().contains("U+202E"), "{rlo}");
        let mixed = Username::parse("\u{430}dmin").expect_err("mixed scripts");
        let message = mixed.to_string();
        assert!(
            message.contains("Cyrillic") && message.contains("Latin"),
            "{message}"
        );
        let long = Username::parse(&"a".repeat(300)).expect_err("too long");
        assert!(long.to_string().contains("300"), "{long}");
    }

    #[test]
    fn canonical_prefix_maps_like_usernames_and_refuses_only_overlong_input() {
        let prefix = |input: &str| canonical_prefix(input).unwrap();
        assert_eq!(prefix("  ＡＬ"), "al");
        assert_eq!(prefix("STRA"), "stra");
        assert_eq!(prefix("Straß"), "strass");
        assert_eq!(prefix("   "), "");
        assert_eq!(prefix("a b\u{200D}"), "a b\u{200D}");
        let huge = canonical_prefix(&"\u{FDFA}".repeat(1_000_000)).unwrap_err();
        assert_eq!(huge.code(), UsernameError::TOO_LONG);
    }

    #[test]
    fn input_over_the_byte_bound_or_expanding_too_far_is_refused_unread() {
        let huge = Username::parse(&"\u{FDFA}".repeat(1_000_000)).unwrap_err();
        assert_eq!(huge, UsernameError::InputTooLong { bytes: 3_000_000 });
        // Under the byte bound, but NFKC would make 18 characters of each.
        let expanding = Username::parse(&"\u{FDFA}".repeat(MAX_INPUT_BYTES / 3)).unwrap_err();
        assert_eq!(expanding, UsernameError::ExpandsTooFar);
        assert_eq!(expanding.code(), UsernameError::TOO_LONG);
        // A long name that stays within the limit once normalised is still accepted.
        assert!(Username::parse(&"ａ".repeat(MAX_LENGTH)).is_ok());
    }

    #[test]
    fn canonical_mapping_is_idempotent_for_every_single_code_point() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let once = canonical_prefix(c.encode_utf8(&mut [0; 4])).unwrap();
            assert_eq!(canonical_prefix(&once).unwrap(), once, "{}", code_point(&c));
        }
    }

    /// Strings that parse often: letters of one script with Common and Inherited characters other
    /// than separators and controls, or ASCII with characters whose folding is special.
    fn plausible_username() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9@._ßẞİıΣσςΪΐﬀﬅＡ-Ｚｚ\u{212A}\u{0301}\u{0307}\u{0345}\u{1FB3}]{1,24}",
            "[[\\p{Latin}\\p{Common}\\p{Inherited}]&&[^\\p{Z}\\p{C}]]{1,24}",
            "[[\\p{Greek}\\p{Common}\\p{Inherited}]&&[^\\p{Z}\\p{C}]]{1,24}",
            "[[\\p{Cyrillic}\\p{Common}\\p{Inherited}]&&[^\\p{Z}\\p{C}]]{1,24}",
            "[[\\p{Han}\\p{Hiragana}\\p{Katakana}\\p{Common}]&&[^\\p{Z}\\p{C}]]{1,24}",
            "[[\\p{Hangul}\\p{Common}\\p{Inherited}]&&[^\\p{Z}\\p{C}]]{1,24}",
            "[[\\p{Arabic}\\p{Common}\\p{Inherited}]&&[^\\p{Z}\\p{C}]]{1,24}",
            "[[\\p{Cherokee}\\p{Armenian}\\p{Georgian}\\p{Common}]&&[^\\p{Z}\\p{C}]]{1,24}",
        ]
    }

    proptest! {
        #[test]
        fn canonical_form_of_a_canonical_form_is_itself(input in plausible_username()) {
            if let Ok(username) = Username::parse(&input) {
                let again = Username::parse(username.canonical());
                prop_assert_eq!(
                    again.as_ref().map(Username::canonical),
                    Ok(username.canonical())
                );
                prop_assert_eq!(canonical_prefix(username.canonical()).unwrap(), username.canonical());
            }
        }

        #[test]
        fn nfc_and_nfd_forms_give_the_same_canonical_form_and_skeleton(
            input in plausible_username()
        ) {
            let composed: String = input.nfc().collect();
            let decomposed: String = input.nfd().collect();
            let from_composed = Username::parse(&composed);
            let from_decomposed = Username::parse(&decomposed);
            prop_assert_eq!(
                from_composed.as_ref().map(|u| (u.canonical(), u.skeleton())),
                from_decomposed.as_ref().map(|u| (u.canonical(), u.skeleton()))
            );
            prop_assert_eq!(canonical_prefix(&composed), canonical_prefix(&decomposed));
        }

        #[test]
        fn parse_never_panics_on_arbitrary_strings(input in any::<String>()) {
            let _ = Username::parse(&input);
            let _ = canonical_prefix(&input);
        }
    }

    #[test]
    fn the_registry_decides_taken_retired_confusable_or_free() {
        let holder = (ProfileId::generate(), AccountId::generate());
        let held = Registration {
            profile: holder,
            still_held: true,
        };
        let taken = Standing::decide(Some(held), true).unwrap();
        assert_eq!(
            (taken.refusal, taken.holder),
            (Refusal::Taken, Some(holder))
        );
        let retired = Standing::decide(
            Some(Registration {
                still_held: false,
                ..held
            }),
            false,
        )
        .unwrap();
        assert_eq!((retired.refusal, retired.holder), (Refusal::Retired, None));
        assert_eq!(
            Standing::decide(None, true).map(|s| s.refusal),
            Some(Refusal::Confusable)
        );
        assert_eq!(Standing::decide(None, false), None);
    }
}
