//! What a profile can be given after creation: roles (a fixed set of privileges) and telephone
//! extensions (numbers unique within the account, each physical or virtual).
//!
//! Extension numbers are text, not integers: `0042` and `42` are different extensions, and the
//! leading zeros are part of what a user dials. How many digits a number may have is an account
//! setting ([`ExtensionBounds`]); it governs numbers being given, never numbers already held, so
//! tightening the bounds does not take anybody's extension away.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::Violation;

/// A privilege a profile can hold. The set is fixed; the protobuf `Role` enum mirrors it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the account's profiles and settings.
    AccountAdministrator,
    /// Handles contact-center interactions.
    ContactCenterAgent,
    /// Supervises contact-center agents.
    ContactCenterSupervisor,
    /// An ordinary user of the platform.
    StandardUser,
}

impl Role {
    /// Every role, in the order the protobuf enum lists them.
    pub const ALL: [Role; 4] = [
        Role::AccountAdministrator,
        Role::ContactCenterAgent,
        Role::ContactCenterSupervisor,
        Role::StandardUser,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::AccountAdministrator => "account_administrator",
            Role::ContactCenterAgent => "contact_center_agent",
            Role::ContactCenterSupervisor => "contact_center_supervisor",
            Role::StandardUser => "standard_user",
        }
    }

    /// The role stored under `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// How an extension rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionKind {
    /// Rings a desk phone.
    Physical,
    /// Rings soft clients only.
    Virtual,
}

impl ExtensionKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionKind::Physical => "physical",
            ExtensionKind::Virtual => "virtual",
        }
    }

    /// The kind stored under `name`.
    pub fn from_name(name: &str) -> Option<ExtensionKind> {
        [ExtensionKind::Physical, ExtensionKind::Virtual]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// The most extensions one profile may hold. Checked before a list is read further, so that
/// no call or file makes the per-number checks (each against every other number) run over a
/// huge list.
pub const MAX_EXTENSIONS: usize = 32;

/// An extension number: 1 to [`ExtensionBounds::LIMIT`] ASCII digits, leading zeros kept.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExtensionNumber(String);

impl ExtensionNumber {
    /// Parses a number, trimming surrounding white space. Only the digits 0-9 are accepted:
    /// no signs, spaces, separators or other scripts' digits.
    pub fn parse(input: &str) -> Result<Self, String> {
        let number = input.trim();
        if number.is_empty() {
            return Err("is required".to_owned());
        }
        if !number.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!("{number:?} must hold the digits 0-9 only"));
        }
        let length = number.len();
        if length > ExtensionBounds::LIMIT as usize {
            return Err(format!(
                "{number:?} has {length} digits; no extension has more than {}",
                ExtensionBounds::LIMIT
            ));
        }
        Ok(Self(number.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExtensionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An extension to give a profile.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Extension {
    pub number: ExtensionNumber,
    pub kind: ExtensionKind,
}

/// How many digits an account's new extension numbers may have, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionBounds {
    min: u32,
    max: u32,
}

impl Default for ExtensionBounds {
    fn default() -> Self {
        Self {
            min: Self::DEFAULT_MIN,
            max: Self::DEFAULT_MAX,
        }
    }
}

impl ExtensionBounds {
    /// Shortest length of a new account's extensions.
    pub const DEFAULT_MIN: u32 = 2;
    /// Longest length of a new account's extensions.
    pub const DEFAULT_MAX: u32 = 8;
    /// No extension is longer than this, whatever the account says (E.164 numbers have at most
    /// 15 digits, and an extension is dialled within one).
    pub const LIMIT: u32 = 15;

    /// Bounds from `min` to `max` digits; each message names the field that is wrong.
    pub fn new(min: u32, max: u32) -> Result<Self, Vec<Violation>> {
        let mut errors = Vec::new();
        if !(1..=Self::LIMIT).contains(&min) {
            errors.push(Violation::new(
                "extension_min_length",
                format!("must be 1 to {}, not {min}", Self::LIMIT),
            ));
        }
        if !(1..=Self::LIMIT).contains(&max) {
            errors.push(Violation::new(
                "extension_max_length",
                format!("must be 1 to {}, not {max}", Self::LIMIT),
            ));
        }
        if errors.is_empty() && min > max {
            errors.push(Violation::new(
                "extension_max_length",
                format!("must not be below extension_min_length ({max} < {min})"),
            ));
        }
        if errors.is_empty() {
            Ok(Self { min, max })
        } else {
            Err(errors)
        }
    }

    pub fn min(self) -> u32 {
        self.min
    }

    pub fn max(self) -> u32 {
        self.max
    }

    /// Checks that `number` may be given in this account; the refusal names the bounds.
    pub fn admit(self, number: &ExtensionNumber) -> Result<(), String> {
        let length = number.as_str().len() as u32;
        if (self.min..=self.max).contains(&length) {
            Ok(())
        } else {
            Err(format!(
                "{:?} has {length} digits; this account's extensions have {}",
                number.as_str(),
                self.describe()
            ))
        }
    }

    /// "2 to 8 digits", or "4 digits" when both bounds are equal.
    pub fn describe(self) -> String {
        if self.min == self.max {
            format!("{} digits", self.min)
        } else {
            format!("{} to {} digits", self.min, self.max)
        }
    }
}

/// An extension a request gives, as far as the transport could read it: its number as typed and
/// its kind, `None` when the request named no kind.
#[derive(Clone, Copy, Debug)]
pub struct RequestedExtension<'a> {
    pub number: &'a str,
    pub kind: Option<ExtensionKind>,
}

impl RequestedExtension<'_> {
    /// The extension, its number checked against the account's `bounds` unless `held` says the
    /// profile holds it already (held numbers are kept whatever the bounds). Violations name
    /// `field.number` and `field.kind`; a number's always names the bounds.
    pub fn check(
        self,
        field: &str,
        bounds: ExtensionBounds,
        held: impl Fn(&ExtensionNumber) -> bool,
    ) -> Result<Extension, Vec<Violation>> {
        let mut violations = Vec::new();
        let number = ExtensionNumber::parse(self.number)
            .map_err(|error| {
                format!(
                    "{error}; this account's extensions have {}",
                    bounds.describe()
                )
            })
            .and_then(|number| {
                if held(&number) {
                    Ok(number)
                } else {
                    bounds.admit(&number).map(|()| number)
                }
            })
            .map_err(|error| violations.push(Violation::new(format!("{field}.number"), error)))
            .ok();
        if self.kind.is_none() {
            violations.push(Violation::new(
                format!("{field}.kind"),
                "must be EXTENSION_KIND_PHYSICAL or EXTENSION_KIND_VIRTUAL",
            ));
        }
        match (number, self.kind) {
            (Some(number), Some(kind)) => Ok(Extension { number, kind }),
            _ => Err(violations),
        }
    }
}

/// The roles a request names, each once, from what the transport read of each value (`Err`
/// holds a value that is not a role). Every such value is a violation of `field[i]`.
pub fn requested_roles(
    field: &str,
    values: &[Result<Role, i32>],
) -> Result<Vec<Role>, Vec<Violation>> {
    let mut roles = Vec::new();
    let mut violations = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match value {
            Ok(role) if !roles.contains(role) => roles.push(*role),
            Ok(_) => {}
            Err(value) => violations.push(Violation::new(
                format!("{field}[{index}]"),
                format!(
                    "{value} is not a role; roles are ROLE_ACCOUNT_ADMINISTRATOR, \
                     ROLE_CONTACT_CENTER_AGENT, ROLE_CONTACT_CENTER_SUPERVISOR and ROLE_STANDARD_USER"
                ),
            )),
        }
    }
    if violations.is_empty() {
        Ok(roles)
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_leading_zeros_and_lose_surrounding_space() {
        assert_eq!(ExtensionNumber::parse(" 0042 ").unwrap().as_str(), "0042");
        assert_ne!(
            ExtensionNumber::parse("0042").unwrap(),
            ExtensionNumber::parse("42").unwrap()
        );
    }

    #[test]
    fn numbers_are_ascii_digits_only() {
        for input in [
            "",
            " ",
            "12a",
            "+123",
            "12 34",
            "12-34",
            "١٢٣",
            "１２３",
            "1.5",
        ] {
            assert!(ExtensionNumber::parse(input).is_err(), "{input:?} accepted");
        }
        assert!(ExtensionNumber::parse(&"9".repeat(16)).is_err());
        assert!(ExtensionNumber::parse(&"9".repeat(15)).is_ok());
    }

    #[test]
    fn default_bounds_are_two_to_eight_digits_and_named_on_refusal() {
        let bounds = ExtensionBounds::default();
        let number = |digits: &str| ExtensionNumber::parse(digits).unwrap();
        assert!(bounds.admit(&number("12")).is_ok());
        assert!(bounds.admit(&number("12345678")).is_ok());
        let short = bounds.admit(&number("1")).unwrap_err();
        assert!(short.contains("2 to 8 digits"), "{short}");
        let long = bounds.admit(&number("123456789")).unwrap_err();
        assert!(
            long.contains("9 digits") && long.contains("2 to 8"),
            "{long}"
        );
    }

    #[test]
    fn bounds_must_be_ordered_and_within_the_limit() {
        assert!(ExtensionBounds::new(4, 4).is_ok());
        assert_eq!(ExtensionBounds::new(4, 4).unwrap().describe(), "4 digits");
        assert_eq!(
            ExtensionBounds::new(5, 3).unwrap_err()[0].field,
            "extension_max_length"
        );
        assert_eq!(
            ExtensionBounds::new(0, 3).unwrap_err()[0].field,
            "extension_min_length"
        );
        assert_eq!(ExtensionBounds::new(2, 16).unwrap_err().len(), 1);
    }

    #[test]
    fn roles_and_kinds_round_trip_through_their_stored_names() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.as_str()), Some(role));
        }
        assert_eq!(Role::from_name("root"), None);
        for kind in [ExtensionKind::Physical, ExtensionKind::Virtual] {
            assert_eq!(ExtensionKind::from_name(kind.as_str()), Some(kind));
        }
    }
}
