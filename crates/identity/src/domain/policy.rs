//! Password policies: the per-account rules a new password must satisfy, and their presets.

use serde::{Deserialize, Serialize};

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

/// The rules of one account's passwords. Lengths count code points.
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
}
