//! Email addresses of profiles: the address that reset links and notifications are sent to, and
//! the default username.
//!
//! An [`EmailAddress`] can only be built by [`EmailAddress::parse`], which accepts what a mail
//! server delivers to and refuses the rest with a sentence saying what is wrong:
//!
//! - the local part (before the one `@`) keeps its case, since RFC 5321 lets the receiving server
//!   treat it as case-sensitive; it is put in NFC (RFC 6532 §3.1) and may hold UTF-8 (RFC 6531),
//!   but not the quoted forms (`"john doe"@example.com`) that few servers and no admin expect;
//! - the domain is converted to ASCII with IDNA (`bücher.de` becomes `xn--bcher-kva.de`) and
//!   lower-cased, so equal domains are equal strings.
//!
//! Lengths are counted in UTF-8 bytes, as RFC 5321 §4.5.3.1 counts them: at most 64 for the local
//! part, 63 for a domain label, 253 for the domain and 254 for the whole address.

use std::fmt;

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The most bytes a local part may have (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LENGTH: usize = 64;
/// The most bytes a domain may have in ASCII form (RFC 1035, without the trailing dot).
pub const MAX_DOMAIN_LENGTH: usize = 253;
/// The most bytes a domain label may have (RFC 1035 §2.3.4).
pub const MAX_LABEL_LENGTH: usize = 63;
/// The most bytes a whole address may have (RFC 5321 §4.5.3.1.3, less the angle brackets).
pub const MAX_LENGTH: usize = 254;

/// ASCII characters allowed in an unquoted local part besides letters, digits and the dot
/// (`atext` of RFC 5322 §3.2.3).
const LOCAL_PART_SYMBOLS: &str = "!#$%&'*+-/=?^_`{|}~";

/// A deliverable email address: `local-part@domain`, domain in lower-case ASCII.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    address: String,
    at: usize,
}

impl EmailAddress {
    /// Checks `input` and puts it in its stored form (see the module doc).
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        // Bounded before anything looks at the characters: IDNA mapping and NFC never run over
        // more than four bytes per allowed byte.
        if input.len() > 4 * MAX_LENGTH {
            return Err(EmailError::TooLong {
                length: input.len(),
            });
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.starts_with('"') {
            return Err(EmailError::QuotedLocalPart);
        }
        for c in trimmed.chars() {
            if c.is_whitespace() {
                return Err(EmailError::WhiteSpace(c));
            }
            if is_invisible(c) {
                return Err(EmailError::InvisibleCharacter(c));
            }
        }
        let mut parts = trimmed.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(if trimmed.contains('@') {
                EmailError::SeveralAts
            } else {
                EmailError::MissingAt
            });
        };
        let local = parse_local_part(local)?;
        let domain = parse_domain(domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > MAX_LENGTH {
            return Err(EmailError::TooLong {
                length: address.len(),
            });
        }
        Ok(Self {
            at: local.len(),
            address,
        })
    }

    /// The whole address, `local-part@domain`.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The part before the `@`, in NFC, case kept.
    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The part after the `@`: lower-case ASCII, international labels in Punycode.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

fn parse_local_part(local: &str) -> Result<String, EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    let local: String = local.nfc().collect();
    if local.len() > MAX_LOCAL_PART_LENGTH {
        return Err(EmailError::LocalPartTooLong {
            length: local.len(),
        });
    }
    if local.starts_with('.') || local.ends_with('.') {
        return Err(EmailError::LocalPartDotAtEnd);
    }
    if local.contains("..") {
        return Err(EmailError::LocalPartConsecutiveDots);
    }
    if let Some(c) = local.chars().find(|&c| {
        c.is_ascii() && !c.is_ascii_alphanumeric() && c != '.' && !LOCAL_PART_SYMBOLS.contains(c)
    }) {
        return Err(EmailError::LocalPartCharacter(c));
    }
    Ok(local)
}

fn parse_domain(domain: &str) -> Result<String, EmailError> {
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    let ascii = idna::domain_to_ascii(domain)
        .map_err(|_| EmailError::InvalidDomain(domain.to_owned()))?
        .to_ascii_lowercase();
    if ascii.len() > MAX_DOMAIN_LENGTH {
        return Err(EmailError::DomainTooLong {
            length: ascii.len(),
        });
    }
    for label in ascii.split('.') {
        check_label(&ascii, label)?;
    }
    match ascii.rsplit_once('.') {
        None => Err(EmailError::SingleLabelDomain(ascii)),
        Some((_, top)) if top.bytes().all(|b| b.is_ascii_digit()) => {
            Err(EmailError::NumericTopLevelDomain(ascii))
        }
        Some(_) => Ok(ascii),
    }
}

fn check_label(domain: &str, label: &str) -> Result<(), EmailError> {
    let refuse = |problem| EmailError::DomainLabel {
        domain: domain.to_owned(),
        label: label.to_owned(),
        problem,
    };
    if label.is_empty() {
        return Err(refuse(LabelProblem::Empty));
    }
    if label.len() > MAX_LABEL_LENGTH {
        return Err(refuse(LabelProblem::TooLong));
    }
    if let Some(c) = label
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && c != '-')
    {
        return Err(refuse(LabelProblem::Character(c)));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(refuse(LabelProblem::HyphenAtEnd));
    }
    Ok(())
}

/// `'x' (U+0078)`: how a character is named in messages.
fn character(c: &char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}' (U+{:04X})", u32::from(*c))
    } else {
        format!("U+{:04X}", u32::from(*c))
    }
}

/// Why an email address was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EmailError {
    /// Nothing but white space.
    #[error("The email address is empty.")]
    Empty,
    /// White space anywhere inside.
    #[error("The email address contains white space ({}); remove it.", character(.0))]
    WhiteSpace(char),
    /// A control or format character (general category Cc or Cf).
    #[error("The email address contains the invisible character {}; remove it.", character(.0))]
    InvisibleCharacter(char),
    /// `"…"@domain`.
    #[error(
        "The email address has a quoted local part (\"…\"@domain); Roster accepts only unquoted addresses such as name@example.com."
    )]
    QuotedLocalPart,
    /// No `@` at all.
    #[error("The email address has no @ between the mailbox name and the domain.")]
    MissingAt,
    /// More than one `@`.
    #[error("The email address has more than one @; it must have exactly one.")]
    SeveralAts,
    /// Nothing before the `@`.
    #[error("The email address has nothing before the @.")]
    EmptyLocalPart,
    /// Nothing after the `@`.
    #[error("The email address has nothing after the @; it needs a domain such as example.com.")]
    EmptyDomain,
    /// A local part over [`MAX_LOCAL_PART_LENGTH`] bytes.
    #[error(
        "The part of the email address before the @ is {length} bytes long; at most 64 are allowed (letters outside ASCII take 2 to 4 bytes each)."
    )]
    LocalPartTooLong {
        /// UTF-8 bytes of the local part.
        length: usize,
    },
    /// A local part that starts or ends with a dot.
    #[error("The part of the email address before the @ starts or ends with a dot.")]
    LocalPartDotAtEnd,
    /// `..` in the local part.
    #[error("The part of the email address before the @ has two dots in a row.")]
    LocalPartConsecutiveDots,
    /// An ASCII character that only a quoted local part may hold.
    #[error(
        "The part of the email address before the @ contains {}, which is not allowed there.",
        character(.0)
    )]
    LocalPartCharacter(char),
    /// A domain that IDNA cannot convert to ASCII.
    #[error("The domain of the email address, '{0}', is not a valid domain name.")]
    InvalidDomain(String),
    /// A domain over [`MAX_DOMAIN_LENGTH`] bytes in ASCII form.
    #[error(
        "The domain of the email address is {length} characters long in ASCII form; at most 253 are allowed."
    )]
    DomainTooLong {
        /// Bytes of the ASCII domain.
        length: usize,
    },
    /// One bad label of the domain.
    #[error("The domain of the email address, '{domain}', {problem}", problem = .problem.sentence_end(.label))]
    DomainLabel {
        /// The domain in ASCII form.
        domain: String,
        /// The label at fault.
        label: String,
        /// What is wrong with it.
        problem: LabelProblem,
    },
    /// A domain without a dot, such as `localhost`.
    #[error(
        "The domain of the email address, '{0}', has a single label; it needs at least two, such as example.com."
    )]
    SingleLabelDomain(String),
    /// A domain whose last label is all digits, such as an IPv4 address.
    #[error(
        "The domain of the email address, '{0}', ends in a number; it must end in a top-level domain such as .com."
    )]
    NumericTopLevelDomain(String),
    /// A whole address over [`MAX_LENGTH`] bytes.
    #[error("The email address is {length} bytes long; at most 254 are allowed.")]
    TooLong {
        /// UTF-8 bytes of the stored address.
        length: usize,
    },
}

/// What is wrong with one label of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelProblem {
    /// Two dots in a row, or a dot at the start or end.
    Empty,
    /// More than [`MAX_LABEL_LENGTH`] bytes.
    TooLong,
    /// A character other than a letter, digit or hyphen.
    Character(char),
    /// A hyphen first or last.
    HyphenAtEnd,
}

impl LabelProblem {
    fn sentence_end(&self, label: &str) -> String {
        match self {
            Self::Empty => {
                "has an empty label (two dots in a row, or a dot at the start or end).".to_owned()
            }
            Self::TooLong => format!(
                "has the label '{label}', which is {} characters long; at most 63 are allowed.",
                label.len()
            ),
            Self::Character(c) => format!(
                "has the label '{label}', which contains {}; only letters, digits and hyphens are allowed.",
                character(c)
            ),
            Self::HyphenAtEnd => {
                format!("has the label '{label}', which starts or ends with a hyphen.")
            }
        }
    }
}

/// A control or format character: nothing an address may hold.
fn is_invisible(c: char) -> bool {
    // ASCII has no format characters, and its controls are known without the table.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control | GeneralCategory::Format
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The shortcut for ASCII finds exactly what the category table does.
    #[test]
    fn ascii_is_judged_as_by_its_categories() {
        for c in (0u8..=0x7F).map(char::from) {
            let by_category = matches!(
                c.general_category(),
                GeneralCategory::Control | GeneralCategory::Format
            );
            assert_eq!(is_invisible(c), by_category, "U+{:04X}", u32::from(c));
        }
    }

    fn parsed(input: &str) -> String {
        match EmailAddress::parse(input) {
            Ok(address) => address.as_str().to_owned(),
            Err(error) => panic!("{input:?} was refused: {error}"),
        }
    }

    fn refused(input: &str) -> EmailError {
        match EmailAddress::parse(input) {
            Ok(address) => panic!("{input:?} was accepted as {address}"),
            Err(error) => error,
        }
    }

    #[test]
    fn domain_is_lower_cased_and_local_part_keeps_its_case() {
        let address = EmailAddress::parse("  Alice@Example.COM ").expect("valid address");
        assert_eq!(address.as_str(), "Alice@example.com");
        assert_eq!(address.local_part(), "Alice");
        assert_eq!(address.domain(), "example.com");
    }

    #[test]
    fn international_domain_is_converted_to_punycode() {
        assert_eq!(parsed("user@bücher.de"), "user@xn--bcher-kva.de");
        assert_eq!(parsed("user@BÜCHER.de"), "user@xn--bcher-kva.de");
        assert_eq!(parsed("user@xn--bcher-kva.de"), "user@xn--bcher-kva.de");
        // Full-width letters and the ideographic full stop are mapped by IDNA.
        assert_eq!(parsed("user@ｅｘａｍｐｌｅ。com"), "user@example.com");
    }

    #[test]
    fn utf8_local_part_is_accepted_in_nfc() {
        let address = EmailAddress::parse("jose\u{301}@example.es").expect("valid address");
        assert_eq!(address.local_part(), "jos\u{E9}");
        assert_eq!(parsed("用户@例子.测试"), "用户@xn--fsqu00a.xn--0zwm56d");
    }

    #[test]
    fn usual_addresses_are_accepted() {
        for input in [
            "first.last@example.com",
            "first+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "x@a-b.example",
            "1234@example.com",
        ] {
            assert_eq!(parsed(input), input);
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_reason() {
        let cases = [
            ("", EmailError::Empty),
            ("alice.example.com", EmailError::MissingAt),
            ("alice@@example.com", EmailError::SeveralAts),
            ("a@b@example.com", EmailError::SeveralAts),
            ("@example.com", EmailError::EmptyLocalPart),
            ("alice@", EmailError::EmptyDomain),
            ("a..b@x.com", EmailError::LocalPartConsecutiveDots),
            (".alice@x.com", EmailError::LocalPartDotAtEnd),
            ("alice.@x.com", EmailError::LocalPartDotAtEnd),
            ("alice smith@x.com", EmailError::WhiteSpace(' ')),
            ("alice@x .com", EmailError::WhiteSpace(' ')),
            (
                "alice\u{200B}@x.com",
                EmailError::InvisibleCharacter('\u{200B}'),
            ),
            ("\"alice smith\"@x.com", EmailError::QuotedLocalPart),
            ("al(ice)@x.com", EmailError::LocalPartCharacter('(')),
            (
                "a@localhost",
                EmailError::SingleLabelDomain("localhost".to_owned()),
            ),
            (
                "a@1.2.3.4",
                EmailError::NumericTopLevelDomain("1.2.3.4".to_owned()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(refused(input), expected, "{input:?}");
        }
    }

    #[test]
    fn bad_domain_labels_are_named() {
        let cases = [
            ("a@-x.com", "-x", LabelProblem::HyphenAtEnd),
            ("a@x-.com", "x-", LabelProblem::HyphenAtEnd),
            ("a@x..com", "", LabelProblem::Empty),
            ("a@x.com.", "", LabelProblem::Empty),
            ("a@my_host.com", "my_host", LabelProblem::Character('_')),
        ];
        for (input, label, problem) in cases {
            match refused(input) {
                EmailError::DomainLabel {
                    label: found,
                    problem: found_problem,
                    ..
                } => {
                    assert_eq!(
                        (found.as_str(), found_problem),
                        (label, problem),
                        "{input:?}"
                    );
                }
                other => panic!("{input:?} was refused for another reason: {other}"),
            }
        }
        let long_label = format!("a@{}.com", "x".repeat(64));
        assert!(matches!(
            refused(&long_label),
            EmailError::DomainLabel {
                problem: LabelProblem::TooLong,
                ..
            }
        ));
    }

    #[test]
    fn lengths_are_limited() {
        let local_64 = "a".repeat(64);
        assert_eq!(
            parsed(&format!("{local_64}@x.com")),
            format!("{local_64}@x.com")
        );
        let local_65 = "a".repeat(65);
        assert_eq!(
            refused(&format!("{local_65}@x.com")),
            EmailError::LocalPartTooLong { length: 65 }
        );
        // 22 Han characters are 66 bytes of UTF-8.
        assert_eq!(
            refused(&format!("{}@x.com", "用".repeat(22))),
            EmailError::LocalPartTooLong { length: 66 }
        );
        let label = "x".repeat(63);
        let domain_254 = format!("{label}.{label}.{label}.{}", "x".repeat(62));
        assert_eq!(
            refused(&format!("a@{domain_254}")),
            EmailError::DomainTooLong { length: 254 }
        );
        let domain_253 = format!("{label}.{label}.{label}.{}", "x".repeat(61));
        assert_eq!(
            refused(&format!("{local_64}@{domain_253}")),
            EmailError::TooLong { length: 318 }
        );
    }

    #[test]
    fn refusals_are_sentences_that_name_the_problem() {
        let message = refused("a@-x.com").to_string();
        assert_eq!(
            message,
            "The domain of the email address, '-x.com', has the label '-x', which starts or ends with a hyphen."
        );
        let message = refused("al,ice@x.com").to_string();
        assert!(message.contains("','"), "{message}");
        for input in ["", "a", "a@b", "a..b@x.com", "\"a\"@x.com", "a@x..com"] {
            let message = refused(input).to_string();
            assert!(message.starts_with("The "), "{message}");
            assert!(message.ends_with('.'), "{message}");
        }
    }

    fn plausible_address() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9._+'-]{0,12}@[a-zA-Z0-9-]{0,10}(\\.[a-zA-Z0-9-]{0,6}){0,3}",
            "[\\p{L}\\p{M}.@ ]{0,12}@[\\p{L}\\p{N}ß。.-]{0,16}",
            "[a-z@.\"\\- ]{0,20}",
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = EmailAddress::parse(&input);
        }

        #[test]
        fn parsing_a_parsed_address_gives_it_back(input in plausible_address()) {
            if let Ok(address) = EmailAddress::parse(&input) {
                prop_assert_eq!(EmailAddress::parse(address.as_str()), Ok(address));
            }
        }
    }
}
