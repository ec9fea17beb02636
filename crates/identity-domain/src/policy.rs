//! Password policies: the per-account rules a new password must satisfy, their presets, the
//! rules as sentences (the "?" beside a password field) and the check of a candidate, which
//! names every rule it fails. Lengths count Unicode code points.
//!
//! "Common or breached" uses the list of 30,000 most common leaked passwords that ships inside
//! the `zxcvbn` crate: a candidate is refused when, ignoring case, l33t substitutions and
//! reversal, it is one entry of that list. The optional strength score is zxcvbn's 0–4 score,
//! with the profile's names and email given as user inputs.

use serde::{Deserialize, Serialize};

use super::error::Violation;

/// The one message every unusable reset token gets: unknown, expired, used or superseded.
pub const INVALID_TOKEN: &str =
    "this password reset link is no longer valid; ask your administrator for a new one";

/// The preset a policy was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Character classes, as the platform's admins expect.
    Default,
    /// NIST SP 800-63B: length 15 or more, a blocklist, no composition rules.
    Nist,
    /// Changed rule by rule after creation.
    Custom,
}

impl Preset {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Nist => "nist",
            Preset::Custom => "custom",
        }
    }
}

/// The most earlier passwords a policy may refuse (`history_count`): the password history
/// keeps no more than this many per profile.
pub const MAX_HISTORY_COUNT: u32 = 24;

/// The rules of one account's passwords.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    pub preset: Preset,
    pub min_length: u32,
    pub max_length: u32,
    pub min_uppercase: u32,
    pub min_lowercase: u32,
    pub min_digits: u32,
    pub min_symbols: u32,
    pub forbid_personal_info: bool,
    pub history_count: u32,
    pub forbid_common: bool,
    pub min_strength_score: u32,
}

/// One rule, by stable code and as a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub code: &'static str,
    pub description: String,
}

impl Rule {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

/// What a candidate is checked against besides its own characters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Personal<'a> {
    pub username: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
}

/// Code of the rule "not one of the last N passwords", checked against stored hashes.
pub const REUSED: &str = "REUSED";

/// Shortest personal word the personal-information rule looks for; shorter ones (a two-letter
/// first name) would refuse far too much.
const MIN_PERSONAL_WORD: usize = 3;

impl PasswordPolicy {
    /// The policy a preset stands for.
    pub fn from_preset(preset: Preset) -> Self {
        match preset {
            Preset::Default | Preset::Custom => Self {
                preset: Preset::Default,
                min_length: 12,
                max_length: 128,
                min_uppercase: 1,
                min_lowercase: 1,
                min_digits: 1,
                min_symbols: 1,
                forbid_personal_info: true,
                history_count: 5,
                forbid_common: true,
                min_strength_score: 0,
            },
            Preset::Nist => Self {
                preset: Preset::Nist,
                min_length: 15,
                max_length: 128,
                min_uppercase: 0,
                min_lowercase: 0,
                min_digits: 0,
                min_symbols: 0,
                forbid_personal_info: true,
                history_count: 0,
                forbid_common: true,
                min_strength_score: 0,
            },
        }
    }

    /// Checks the values of a policy an admin asks for; every problem is reported.
    pub fn validate(&self) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        let mut bound = |field: &str, value: u32, min: u32, max: u32| {
            if !(min..=max).contains(&value) {
                violations.push(Violation::new(
                    format!("policy.{field}"),
                    format!("must be between {min} and {max}"),
                ));
            }
        };
        bound("min_length", self.min_length, 8, 128);
        bound("max_length", self.max_length, 64, 1024);
        bound("min_uppercase", self.min_uppercase, 0, 16);
        bound("min_lowercase", self.min_lowercase, 0, 16);
        bound("min_digits", self.min_digits, 0, 16);
        bound("min_symbols", self.min_symbols, 0, 16);
        bound("history_count", self.history_count, 0, MAX_HISTORY_COUNT);
        bound("min_strength_score", self.min_strength_score, 0, 4);
        if self.max_length < self.min_length {
            violations.push(Violation::new(
                "policy.max_length",
                "must not be below min_length",
            ));
        }
        let classes = self.min_uppercase + self.min_lowercase + self.min_digits + self.min_symbols;
        if classes > self.max_length {
            violations.push(Violation::new(
                "policy.min_uppercase",
                "the character-class minimums add up to more than max_length",
            ));
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Every rule of the policy, in the order a person reads them.
    pub fn rules(&self) -> Vec<Rule> {
        let mut rules = vec![Rule::new(
            "MIN_LENGTH",
            format!("At least {} characters", self.min_length),
        )];
        rules.push(Rule::new(
            "MAX_LENGTH",
            format!("At most {} characters", self.max_length),
        ));
        let mut class = |code, count: u32, what: &str| {
            if count > 0 {
                rules.push(Rule::new(code, format!("At least {count} {what}")));
            }
        };
        class(
            "MIN_UPPERCASE",
            self.min_uppercase,
            plural(self.min_uppercase, "upper-case letter"),
        );
        class(
            "MIN_LOWERCASE",
            self.min_lowercase,
            plural(self.min_lowercase, "lower-case letter"),
        );
        class(
            "MIN_DIGITS",
            self.min_digits,
            plural(self.min_digits, "digit"),
        );
        class(
            "MIN_SYMBOLS",
            self.min_symbols,
            plural(
                self.min_symbols,
                "symbol (a character that is not a letter, digit or space)",
            ),
        );
        if self.forbid_personal_info {
            rules.push(Rule::new(
                "CONTAINS_PERSONAL_INFO",
                "Must not contain your username, first or last name, or email address",
            ));
        }
        if self.history_count > 0 {
            rules.push(Rule::new(
                REUSED,
                format!(
                    "Must not be one of your last {} passwords",
                    self.history_count
                ),
            ));
        }
        if self.forbid_common {
            rules.push(Rule::new(
                "COMMON",
                "Must not be a commonly used or leaked password",
            ));
        }
        if self.min_strength_score > 0 {
            rules.push(Rule::new(
                "MIN_STRENGTH",
                format!(
                    "Must be hard to guess (strength {} of 4 or more)",
                    self.min_strength_score
                ),
            ));
        }
        rules
    }

    /// The rules `password` fails, except REUSED (which needs the stored history).
    pub fn check(&self, password: &str, personal: Personal<'_>) -> Vec<Rule> {
        let rules = self.rules();
        let failed = |code: &str| rules.iter().find(|rule| rule.code == code).cloned();
        let mut violations = Vec::new();
        let length = password.chars().count() as u32;
        let count = |test: fn(char) -> bool| password.chars().filter(|c| test(*c)).count() as u32;
        let checks = [
            ("MIN_LENGTH", length < self.min_length),
            ("MAX_LENGTH", length > self.max_length),
            (
                "MIN_UPPERCASE",
                count(char::is_uppercase) < self.min_uppercase,
            ),
            (
                "MIN_LOWERCASE",
                count(char::is_lowercase) < self.min_lowercase,
            ),
            ("MIN_DIGITS", count(char::is_numeric) < self.min_digits),
            ("MIN_SYMBOLS", count(is_symbol) < self.min_symbols),
            (
                "CONTAINS_PERSONAL_INFO",
                self.forbid_personal_info && contains_personal(password, personal),
            ),
        ];
        violations.extend(
            checks
                .into_iter()
                .filter(|(_, fails)| *fails)
                .filter_map(|(code, _)| failed(code)),
        );
        // zxcvbn is costly on very long input; the length rule has refused those already.
        if (self.forbid_common || self.min_strength_score > 0) && length <= self.max_length {
            let inputs = personal_words(personal);
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let entropy = zxcvbn::zxcvbn(password, &inputs);
            if self.forbid_common && is_common(&entropy) {
                violations.extend(failed("COMMON"));
            }
            if u32::from(u8::from(entropy.score())) < self.min_strength_score {
                violations.extend(failed("MIN_STRENGTH"));
            }
        }
        violations
    }

    /// The rule refusing a reused password, as a violation.
    pub fn reused_rule(&self) -> Option<Rule> {
        self.rules().into_iter().find(|rule| rule.code == REUSED)
    }
}

fn plural(count: u32, noun: &str) -> &str {
    match (count, noun) {
        (1, _) => noun,
        (_, "upper-case letter") => "upper-case letters",
        (_, "lower-case letter") => "lower-case letters",
        (_, "digit") => "digits",
        _ => "symbols (characters that are not letters, digits or spaces)",
    }
}

fn is_symbol(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace()
}

/// The words the personal-information rule looks for, lower-cased.
fn personal_words(personal: Personal<'_>) -> Vec<String> {
    let local = |address: &str| {
        address
            .rsplit_once('@')
            .map_or(address, |(local, _)| local)
            .to_lowercase()
    };
    [
        personal.username.to_lowercase(),
        local(personal.username),
        personal.first_name.to_lowercase(),
        personal.last_name.to_lowercase(),
        local(personal.email),
    ]
    .into_iter()
    .map(|word| word.trim().to_owned())
    .filter(|word| word.chars().count() >= MIN_PERSONAL_WORD)
    .collect()
}

fn contains_personal(password: &str, personal: Personal<'_>) -> bool {
    let password = password.to_lowercase();
    personal_words(personal)
        .iter()
        .any(|word| password.contains(word.as_str()))
}

/// True when the whole password is one entry of zxcvbn's common-password list.
fn is_common(entropy: &zxcvbn::Entropy) -> bool {
    match entropy.sequence() {
        [only] => match &only.pattern {
            // The password list is the dictionary type's default variant; the type itself is
            // not exported by zxcvbn, hence the comparison with `Default::default()`.
            zxcvbn::matching::patterns::MatchPattern::Dictionary(pattern) => {
                pattern.dictionary_name == Default::default()
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(policy: &PasswordPolicy, password: &str) -> Vec<&'static str> {
        policy
            .check(
                password,
                Personal {
                    username: "ada.lovelace@example.com",
                    first_name: "Ada",
                    last_name: "Lovelace",
                    email: "ada.lovelace@example.com",
                },
            )
            .into_iter()
            .map(|rule| rule.code)
            .collect()
    }

    #[test]
    fn default_preset_requires_each_class() {
        let policy = PasswordPolicy::from_preset(Preset::Default);
        assert_eq!(
            codes(&policy, "short"),
            vec!["MIN_LENGTH", "MIN_UPPERCASE", "MIN_DIGITS", "MIN_SYMBOLS"]
        );
        assert_eq!(
            codes(&policy, "alllowercaseletters"),
            vec!["MIN_UPPERCASE", "MIN_DIGITS", "MIN_SYMBOLS"]
        );
        assert!(codes(&policy, "Tr0ub4dor&3-horse").is_empty());
    }

    #[test]
    fn nist_preset_has_length_and_blocklist_only() {
        let policy = PasswordPolicy::from_preset(Preset::Nist);
        assert_eq!(codes(&policy, "correct horse"), vec!["MIN_LENGTH"]);
        assert!(codes(&policy, "correct horse battery staple").is_empty());
        assert_eq!(codes(&policy, "1QAZ2WSX3EDC4RFV"), vec!["COMMON"]);
    }

    #[test]
    fn lengths_count_code_points() {
        let policy = PasswordPolicy {
            min_length: 15,
            ..PasswordPolicy::from_preset(Preset::Nist)
        };
        // 15 code points, 30 bytes.
        assert!(!codes(&policy, "ééééééééééééééé").contains(&"MIN_LENGTH"));
        assert!(codes(&policy, "éééééééééééééé").contains(&"MIN_LENGTH"));
        let long = "x".repeat(129);
        assert!(codes(&policy, &long).contains(&"MAX_LENGTH"));
    }

    #[test]
    fn personal_information_is_refused() {
        let policy = PasswordPolicy::from_preset(Preset::Default);
        assert!(codes(&policy, "My-LOVELACE-99x").contains(&"CONTAINS_PERSONAL_INFO"));
        assert!(codes(&policy, "Ada.Lovelace1!xx").contains(&"CONTAINS_PERSONAL_INFO"));
    }

    #[test]
    fn common_passwords_are_refused_in_any_case_or_l33t() {
        let policy = PasswordPolicy::from_preset(Preset::Nist);
        for password in ["password", "P@ssw0rd", "DRAGON", "iloveyou"] {
            assert!(codes(&policy, password).contains(&"COMMON"), "{password}");
        }
    }

    #[test]
    fn strength_score_is_optional() {
        let policy = PasswordPolicy {
            min_strength_score: 4,
            forbid_common: false,
            ..PasswordPolicy::from_preset(Preset::Nist)
        };
        assert!(codes(&policy, "aaaaaaaaaaaaaaaa").contains(&"MIN_STRENGTH"));
        assert!(!codes(&policy, "violet-tundra-84-lantern-quartz").contains(&"MIN_STRENGTH"));
    }

    #[test]
    fn rules_read_as_sentences() {
        let rules = PasswordPolicy::from_preset(Preset::Default).rules();
        let sentences: Vec<&str> = rules.iter().map(|rule| rule.description.as_str()).collect();
        assert_eq!(sentences[0], "At least 12 characters");
        assert!(sentences.contains(&"At least 1 digit"));
        assert!(sentences.contains(&"Must not be one of your last 5 passwords"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Evaluation never panics, is deterministic, and the length rules agree with a count
        /// of code points, whatever the input.
        #[test]
        fn evaluation_is_total_and_consistent(password in "\\PC{0,40}", min in 8u32..40) {
            let policy = PasswordPolicy { min_length: min, ..PasswordPolicy::from_preset(Preset::Default) };
            let first = codes(&policy, &password);
            proptest::prop_assert_eq!(&first, &codes(&policy, &password));
            let short = (password.chars().count() as u32) < min;
            proptest::prop_assert_eq!(first.contains(&"MIN_LENGTH"), short);
        }
    }

    #[test]
    fn impossible_policies_are_refused() {
        let policy = PasswordPolicy {
            min_length: 200,
            max_length: 64,
            ..PasswordPolicy::from_preset(Preset::Default)
        };
        let fields: Vec<String> = policy
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert!(fields.contains(&"policy.min_length".to_owned()));
        assert!(fields.contains(&"policy.max_length".to_owned()));
    }
}
