//! Accounts: the customer a profile belongs to, with its password policy and extension bounds,
//! and the patches UpdateAccount and UpdatePasswordPolicy make of their update masks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::assignment::ExtensionBounds;
use super::error::{IdentityError, Violation};
use super::ids::AccountId;
use super::policy::{PasswordPolicy, Preset};

/// An account as it is now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub display_name: String,
    pub policy: PasswordPolicy,
    /// How many digits new extension numbers may have.
    pub extension_bounds: ExtensionBounds,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Grows with every change; the etag is made of it.
    pub version: i64,
    /// When DeleteAccount deleted it (`None`: open).
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// When its personal data was purged, `account_retention_days` after its deletion; it
    /// cannot be undeleted after that.
    #[serde(default)]
    pub purged_at: Option<DateTime<Utc>>,
}

impl Account {
    /// FAILED_PRECONDITION when the account was deleted: nothing in it changes until
    /// UndeleteAccount brings it back.
    pub fn ensure_open(&self) -> Result<(), IdentityError> {
        match self.deleted_at {
            None => Ok(()),
            Some(_) => Err(account_deleted()),
        }
    }
}

/// The refusal of a change in a deleted account.
pub fn account_deleted() -> IdentityError {
    IdentityError::Precondition(
        "the account is deleted: nothing in it changes until UndeleteAccount brings it back".into(),
    )
}

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 200;

/// A display name: 1 to 200 characters without control characters, trimmed; the violation
/// names `field`.
pub fn display_name(field: &str, input: &str) -> Result<String, IdentityError> {
    let name = input.trim();
    let length = name.chars().count();
    if length == 0 || length > MAX_DISPLAY_NAME || name.chars().any(char::is_control) {
        return Err(IdentityError::invalid(
            field,
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Extension bounds from a request; violations name `prefix` + the field.
pub fn extension_bounds(
    prefix: &str,
    min: u32,
    max: u32,
) -> Result<ExtensionBounds, IdentityError> {
    ExtensionBounds::new(min, max).map_err(|violations| {
        IdentityError::Invalid(
            violations
                .into_iter()
                .map(|violation| {
                    Violation::new(
                        format!("{prefix}{}", violation.field),
                        violation.description,
                    )
                })
                .collect(),
        )
    })
}

/// The fields an update mask of UpdateAccount may name.
pub const ACCOUNT_FIELDS: [&str; 3] = [
    "display_name",
    "extension_min_length",
    "extension_max_length",
];

/// An update of an account: the values of the fields its mask names.
#[derive(Clone, Debug, Default)]
pub struct AccountPatch {
    /// The new display name, already checked.
    pub display_name: Option<String>,
    pub extension_min_length: Option<u32>,
    pub extension_max_length: Option<u32>,
}

impl AccountPatch {
    /// The display name and bounds `current` has after the patch.
    pub fn apply(&self, current: &Account) -> Result<(String, ExtensionBounds), IdentityError> {
        let bounds = extension_bounds(
            "account.",
            self.extension_min_length
                .unwrap_or(current.extension_bounds.min()),
            self.extension_max_length
                .unwrap_or(current.extension_bounds.max()),
        )?;
        let name = self
            .display_name
            .clone()
            .unwrap_or_else(|| current.display_name.clone());
        Ok((name, bounds))
    }
}

/// The policy fields an update mask of UpdatePasswordPolicy may name.
pub const POLICY_FIELDS: [&str; 11] = [
    "preset",
    "min_length",
    "max_length",
    "min_uppercase",
    "min_lowercase",
    "min_digits",
    "min_symbols",
    "forbid_personal_info",
    "history_count",
    "forbid_common",
    "min_strength_score",
];

/// An update of a password policy: a named preset first replaces every rule, then each other
/// named field is set, which makes the policy CUSTOM.
#[derive(Clone, Debug)]
pub struct PolicyPatch {
    /// The preset, when the mask names it.
    pub preset: Option<Preset>,
    /// The request's values; only those of `paths` are read.
    pub values: PasswordPolicy,
    /// The mask's paths.
    pub paths: Vec<String>,
}

impl PolicyPatch {
    /// The policy after the patch.
    pub fn apply(&self, current: &PasswordPolicy) -> PasswordPolicy {
        let mut policy = self
            .preset
            .map_or_else(|| current.clone(), PasswordPolicy::from_preset);
        let values = &self.values;
        let mut customised = false;
        for path in &self.paths {
            customised |= path != "preset";
            match path.as_str() {
                "min_length" => policy.min_length = values.min_length,
                "max_length" => policy.max_length = values.max_length,
                "min_uppercase" => policy.min_uppercase = values.min_uppercase,
                "min_lowercase" => policy.min_lowercase = values.min_lowercase,
                "min_digits" => policy.min_digits = values.min_digits,
                "min_symbols" => policy.min_symbols = values.min_symbols,
                "forbid_personal_info" => policy.forbid_personal_info = values.forbid_personal_info,
                "history_count" => policy.history_count = values.history_count,
                "forbid_common" => policy.forbid_common = values.forbid_common,
                "min_strength_score" => policy.min_strength_score = values.min_strength_score,
                _ => {}
            }
        }
        if customised {
            policy.preset = Preset::Custom;
        }
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_rule_makes_a_preset_policy_custom() {
        let current = PasswordPolicy::from_preset(Preset::Default);
        let patch = PolicyPatch {
            preset: Some(Preset::Nist),
            values: PasswordPolicy {
                min_length: 20,
                ..current.clone()
            },
            paths: vec!["preset".into(), "min_length".into()],
        };
        let policy = patch.apply(&current);
        assert_eq!(policy.preset, Preset::Custom);
        assert_eq!(policy.min_length, 20);
        assert_eq!(
            policy.forbid_common,
            PasswordPolicy::from_preset(Preset::Nist).forbid_common
        );
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("display_name", " Acme ").unwrap(), "Acme");
        assert!(display_name("display_name", " ").is_err());
        assert!(display_name("display_name", &"x".repeat(201)).is_err());
        assert!(display_name("display_name", "a\u{7}b").is_err());
    }
}
