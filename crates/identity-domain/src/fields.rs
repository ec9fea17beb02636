//! The other fields of a profile: first and last name, job title and department, locale and time
//! zone, and the external id its customer's directory knows it by, each a type that only its
//! `parse` builds.
//!
//! Every parser trims surrounding white space first (spreadsheets are full of invisible trailing
//! spaces) and refuses with a [`FieldError`] naming the field and what is wrong. Texts are stored
//! in NFC so that canonically equal spellings compare equal, and must not hold control characters,
//! line or paragraph separators, or format characters that hide or reorder text (such as a
//! right-to-left override). Two format characters are kept because names need them: U+200C
//! ZERO WIDTH NON-JOINER and U+200D ZERO WIDTH JOINER are part of the correct spelling of many
//! Persian and Indic names.

use std::fmt;
use std::str::FromStr;

use chrono_tz::{TZ_VARIANTS, Tz};
use language_tags::LanguageTag;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The most characters a first or last name may have.
pub const MAX_NAME_LENGTH: usize = 100;
/// The most characters a locale may have: room for a language, script, region, variants and a
/// short extension (RFC 5646 §4.4.1 asks for at least 35).
pub const MAX_LOCALE_LENGTH: usize = 64;
/// The most characters a time zone name may have; the longest IANA name has 32.
pub const MAX_TIME_ZONE_LENGTH: usize = 64;
/// The most characters an external id may have: room for any directory's identifiers (Entra ID
/// and Okta send GUIDs, object ids or user principal names).
pub const MAX_EXTERNAL_ID_LENGTH: usize = 256;

/// A field that failed to parse, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as its caller labelled it (`first_name`, `locale`).
    pub field: String,
    /// A sentence saying what is wrong, naming the field.
    pub description: String,
}

impl FieldError {
    fn new(field: &str, description: String) -> Self {
        Self {
            field: field.to_owned(),
            description,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for FieldError {}

/// A first or last name: 1 to [`MAX_NAME_LENGTH`] characters of visible text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PersonName(String);

impl PersonName {
    /// Parses the field labelled `field_label` (which error messages name).
    pub fn parse(field_label: &str, input: &str) -> Result<Self, FieldError> {
        let text = clean_text(field_label, input, MAX_NAME_LENGTH)?;
        if text.is_empty() {
            return Err(FieldError::new(
                field_label,
                format!("{field_label} is empty; it is required."),
            ));
        }
        Ok(Self(text))
    }

    /// The name, trimmed and in NFC.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An optional free-text field such as a job title or department; empty means absent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OptionalText(String);

impl OptionalText {
    /// Parses the field labelled `field_label`: `None` when it is empty or blank, else at most
    /// `max_length` characters of visible text.
    pub fn parse(
        field_label: &str,
        input: &str,
        max_length: usize,
    ) -> Result<Option<Self>, FieldError> {
        let text = clean_text(field_label, input, max_length)?;
        Ok((!text.is_empty()).then_some(Self(text)))
    }

    /// The text, trimmed and in NFC.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OptionalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most bytes a text field of `max_length` characters may arrive in, checked before it is
/// trimmed or normalised: room for every character to be a base letter with several combining
/// marks (NFC composes them), far below what would make normalising it cost anything.
pub const fn max_input_bytes(max_length: usize) -> usize {
    16 * max_length
}

/// Refuses an input of more than `max_bytes` bytes, naming the field, without echoing it.
fn bounded<'a>(
    field_label: &str,
    input: &'a str,
    max_bytes: usize,
    max_length: usize,
) -> Result<&'a str, FieldError> {
    if input.len() > max_bytes {
        return Err(FieldError::new(
            field_label,
            format!(
                "{field_label} is {} bytes long; at most {max_length} characters are allowed.",
                input.len()
            ),
        ));
    }
    Ok(input)
}

/// Trims, puts in NFC, and checks the length and characters of a free-text field.
fn clean_text(field_label: &str, input: &str, max_length: usize) -> Result<String, FieldError> {
    let input = bounded(field_label, input, max_input_bytes(max_length), max_length)?;
    let text: String = input.trim().nfc().collect();
    check_text(field_label, &text, max_length)?;
    Ok(text)
}

/// Checks the length and characters of a trimmed text.
fn check_text(field_label: &str, text: &str, max_length: usize) -> Result<(), FieldError> {
    let length = text.chars().count();
    if length > max_length {
        return Err(FieldError::new(
            field_label,
            format!("{field_label} is {length} characters long; at most {max_length} are allowed."),
        ));
    }
    if let Some(c) = text.chars().find(|&c| is_forbidden_in_text(c)) {
        return Err(FieldError::new(
            field_label,
            format!(
                "{field_label} contains the invisible or control character U+{:04X}, which is not allowed.",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

fn is_forbidden_in_text(c: char) -> bool {
    // ASCII's only such characters are its controls; the category table is for the rest.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    match c.general_category() {
        GeneralCategory::Control
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => true,
        GeneralCategory::Format => !matches!(c, '\u{200C}' | '\u{200D}'),
        _ => false,
    }
}

/// The identifier a customer's directory gives a user (SCIM `externalId`): up to
/// [`MAX_EXTERNAL_ID_LENGTH`] characters of visible text, trimmed. It is kept exactly as the
/// directory sent it, not even put in NFC, because the directory finds its users again by
/// comparing it character for character (SCIM's `caseExact`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

impl ExternalId {
    /// The field name in messages and `BadRequest` violations.
    pub const FIELD: &'static str = "external_id";

    /// Parses an external id: `None` when empty or blank.
    pub fn parse(input: &str) -> Result<Option<Self>, FieldError> {
        let input = bounded(
            Self::FIELD,
            input,
            4 * MAX_EXTERNAL_ID_LENGTH,
            MAX_EXTERNAL_ID_LENGTH,
        )?;
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        check_text(Self::FIELD, trimmed, MAX_EXTERNAL_ID_LENGTH)?;
        Ok(Some(Self(trimmed.to_owned())))
    }

    /// The id, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A well-formed and valid BCP 47 language tag in its conventional casing (`en-GB`, `zh-Hant-TW`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Locale(String);

impl Locale {
    /// The field name in messages and `BadRequest` violations.
    pub const FIELD: &'static str = "locale";

    /// Parses a locale: `None` when empty or blank. The POSIX separator `_` (`en_GB`) is accepted
    /// for `-`, and every subtag must be registered with IANA, so `english` is refused.
    pub fn parse(input: &str) -> Result<Option<Self>, FieldError> {
        let input = bounded(Self::FIELD, input, 4 * MAX_LOCALE_LENGTH, MAX_LOCALE_LENGTH)?;
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let refuse = |why: &str| {
            FieldError::new(
                Self::FIELD,
                format!(
                    "The locale '{trimmed}' is not a BCP 47 language tag such as en, en-GB or pt-BR: {why}."
                ),
            )
        };
        if trimmed.chars().count() > MAX_LOCALE_LENGTH {
            return Err(refuse("it is longer than 64 characters"));
        }
        let tag = LanguageTag::parse(&trimmed.replace('_', "-"))
            .map_err(|error| refuse(&error.to_string()))?;
        tag.validate().map_err(|error| refuse(&error.to_string()))?;
        Ok(Some(Self(tag.into_string())))
    }

    /// The tag, such as `en-GB`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IANA time zone, such as `Europe/Paris` or `UTC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeZone(Tz);

impl TimeZone {
    /// The field name in messages and `BadRequest` violations.
    pub const FIELD: &'static str = "time_zone";

    /// Parses an IANA time zone name: `None` when empty or blank. The name is matched ignoring
    /// ASCII case (`europe/paris`), and kept in the database's own spelling (`Europe/Paris`).
    pub fn parse(input: &str) -> Result<Option<Self>, FieldError> {
        let input = bounded(
            Self::FIELD,
            input,
            4 * MAX_TIME_ZONE_LENGTH,
            MAX_TIME_ZONE_LENGTH,
        )?;
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        Tz::from_str(trimmed)
            .ok()
            .or_else(|| {
                TZ_VARIANTS
                    .iter()
                    .copied()
                    .find(|zone| zone.name().eq_ignore_ascii_case(trimmed))
            })
            .map(|zone| Some(Self(zone)))
            .ok_or_else(|| {
                FieldError::new(
                    Self::FIELD,
                    format!(
                        "The time zone '{trimmed}' is not an IANA time zone name such as Europe/Paris, America/New_York or UTC."
                    ),
                )
            })
    }

    /// The IANA name, such as `Europe/Paris`.
    pub fn as_str(&self) -> &'static str {
        self.0.name()
    }

    /// The zone, for converting times.
    pub fn tz(&self) -> Tz {
        self.0
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for ASCII forbids exactly what the category table does.
    #[test]
    fn ascii_text_is_judged_as_by_its_categories() {
        for c in (0u8..=0x7F).map(char::from) {
            let by_category = matches!(
                c.general_category(),
                GeneralCategory::Control
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
                    | GeneralCategory::Format
            );
            assert_eq!(
                is_forbidden_in_text(c),
                by_category,
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    fn name(input: &str) -> Result<String, FieldError> {
        PersonName::parse("First name", input).map(|name| name.as_str().to_owned())
    }

    #[test]
    fn person_name_is_trimmed_and_put_in_nfc() {
        assert_eq!(name("  Zoë \u{3000}"), Ok("Zoë".to_owned()));
        assert_eq!(name("Zoe\u{308}"), Ok("Zo\u{EB}".to_owned()));
        assert_eq!(name("Mary Ann"), Ok("Mary Ann".to_owned()));
        assert_eq!(name("O'Brien-Smith"), Ok("O'Brien-Smith".to_owned()));
        assert_eq!(name("李"), Ok("李".to_owned()));
    }

    #[test]
    fn person_name_keeps_the_joiners_that_persian_and_indic_names_need() {
        assert_eq!(name("علی\u{200C}زاده"), Ok("علی\u{200C}زاده".to_owned()));
        assert_eq!(name("क्\u{200D}ष"), Ok("क्\u{200D}ष".to_owned()));
    }

    #[test]
    fn person_name_is_required_and_limited_to_100_characters() {
        let error = name("   ").expect_err("blank name");
        assert_eq!(error.field, "First name");
        assert_eq!(error.to_string(), "First name is empty; it is required.");
        assert!(name(&"é".repeat(100)).is_ok());
        let error = name(&"é".repeat(101)).expect_err("long name");
        assert_eq!(
            error.to_string(),
            "First name is 101 characters long; at most 100 are allowed."
        );
    }

    #[test]
    fn person_name_refuses_control_and_hiding_characters() {
        for input in [
            "Ann\u{0}",
            "Ann\nSmith",
            "Ann\u{2028}Smith",
            "Ann\u{202E}",
            "\u{200B}Ann",
            "\u{FEFF}Ann",
        ] {
            let error = name(input).expect_err(input);
            assert_eq!(error.field, "First name");
            assert!(error.description.contains("U+"), "{error}");
        }
        let error = name("Ann\u{202E}").expect_err("right-to-left override");
        assert_eq!(
            error.to_string(),
            "First name contains the invisible or control character U+202E, which is not allowed."
        );
    }

    #[test]
    fn optional_text_is_none_when_blank_and_limited_when_present() {
        assert_eq!(OptionalText::parse("Job title", "", 10), Ok(None));
        assert_eq!(OptionalText::parse("Job title", " \t ", 10), Ok(None));
        let title = OptionalText::parse("Job title", " Engineer ", 10).expect("valid title");
        assert_eq!(title.as_ref().map(OptionalText::as_str), Some("Engineer"));
        let error = OptionalText::parse("Department", "Engineering", 10).expect_err("long");
        assert_eq!(error.field, "Department");
        assert_eq!(
            error.to_string(),
            "Department is 11 characters long; at most 10 are allowed."
        );
        assert!(OptionalText::parse("Department", "R&D\u{7}", 10).is_err());
    }

    fn external_id(input: &str) -> Result<Option<String>, FieldError> {
        ExternalId::parse(input).map(|id| id.map(|id| id.as_str().to_owned()))
    }

    #[test]
    fn external_id_is_trimmed_and_kept_as_given() {
        assert_eq!(external_id(" 00aBc-42 "), Ok(Some("00aBc-42".to_owned())));
        // Not put in NFC: the directory compares it character for character.
        assert_eq!(external_id("Zoe\u{308}"), Ok(Some("Zoe\u{308}".to_owned())));
        assert_eq!(external_id(""), Ok(None));
        assert_eq!(external_id(" \t "), Ok(None));
    }

    #[test]
    fn external_id_is_limited_to_256_characters_and_bytes_are_checked_first() {
        assert!(external_id(&"é".repeat(256)).is_ok_and(|id| id.is_some()));
        let error = external_id(&"é".repeat(257)).expect_err("257 characters");
        assert_eq!(error.field, "external_id");
        assert_eq!(
            error.to_string(),
            "external_id is 257 characters long; at most 256 are allowed."
        );
        // Refused on its bytes, before it is trimmed or its characters are counted.
        let error = external_id(&" ".repeat(4 * 256 + 1)).expect_err("too many bytes");
        assert_eq!(
            error.to_string(),
            "external_id is 1025 bytes long; at most 256 characters are allowed."
        );
    }

    #[test]
    fn external_id_refuses_control_characters() {
        for input in ["a\u{0}b", "a\nb", "a\u{7f}", "a\u{202E}b"] {
            let error = external_id(input).expect_err(input);
            assert_eq!(error.field, "external_id");
            assert!(error.description.contains("U+"), "{error}");
        }
    }

    fn locale(input: &str) -> Option<String> {
        match Locale::parse(input) {
            Ok(locale) => locale.map(|locale| locale.as_str().to_owned()),
            Err(error) => panic!("{input:?} was refused: {error}"),
        }
    }

    #[test]
    fn locale_is_put_in_conventional_casing() {
        assert_eq!(locale("en-gb").as_deref(), Some("en-GB"));
        assert_eq!(locale(" EN-GB ").as_deref(), Some("en-GB"));
        assert_eq!(locale("en_GB").as_deref(), Some("en-GB"));
        assert_eq!(locale("zh-hant-tw").as_deref(), Some("zh-Hant-TW"));
        assert_eq!(locale("fr").as_deref(), Some("fr"));
        assert_eq!(locale("es-419").as_deref(), Some("es-419"));
        assert_eq!(locale("").as_deref(), None);
        assert_eq!(locale("  ").as_deref(), None);
    }

    #[test]
    fn locale_that_is_not_a_registered_language_tag_is_refused() {
        for input in [
            "english", "en--GB", "en-GB-", "12", "en GB", "xx-YY", "en-ZZZ",
        ] {
            let error = Locale::parse(input).expect_err(input);
            assert_eq!(error.field, "locale");
            assert!(
                error
                    .description
                    .starts_with(&format!("The locale '{input}'")),
                "{error}"
            );
        }
        let long = format!("en-a-{}", ["abcdefgh"; 8].join("-"));
        let error = Locale::parse(&long).expect_err("long locale");
        assert!(
            error.description.ends_with("longer than 64 characters."),
            "{error}"
        );
    }

    fn zone(input: &str) -> Option<&'static str> {
        match TimeZone::parse(input) {
            Ok(zone) => zone.map(|zone| zone.as_str()),
            Err(error) => panic!("{input:?} was refused: {error}"),
        }
    }

    #[test]
    fn time_zone_is_an_iana_name_in_its_own_spelling() {
        assert_eq!(zone("Europe/Paris"), Some("Europe/Paris"));
        assert_eq!(zone(" europe/paris "), Some("Europe/Paris"));
        assert_eq!(
            zone("America/Argentina/Buenos_Aires"),
            Some("America/Argentina/Buenos_Aires")
        );
        assert_eq!(zone("UTC"), Some("UTC"));
        assert_eq!(zone("utc"), Some("UTC"));
        assert_eq!(zone("Etc/GMT+5"), Some("Etc/GMT+5"));
        assert_eq!(zone(""), None);
        let paris = TimeZone::parse("Europe/Paris").ok().flatten();
        assert_eq!(paris.map(|zone| zone.tz()), Some(Tz::Europe__Paris));
    }

    #[test]
    fn time_zone_that_is_not_an_iana_name_is_refused() {
        for input in ["CEST", "Paris", "Europe/Pariss", "+02:00", "GMT+2:00"] {
            let error = TimeZone::parse(input).expect_err(input);
            assert_eq!(error.field, "time_zone");
            assert_eq!(
                error.to_string(),
                format!(
                    "The time zone '{input}' is not an IANA time zone name such as Europe/Paris, America/New_York or UTC."
                )
            );
        }
    }
}
