//! SCIM tokens: the bearer secrets with which an identity provider (Entra ID, Okta, any SCIM
//! client) provisions one account's users. An administrator of the account creates and revokes
//! them at run time; each acts on its own account only, and only through SCIM.
//!
//! A secret is `rscim_` and 43 base64url characters (256 random bits): recognisable to secret
//! scanners and to whoever finds one in a provider's settings. It is shown once, when it is
//! made; identity keeps only its SHA-256 and its first characters ([`SHOWN_PREFIX_LENGTH`]),
//! which tell an account's tokens apart and give nothing away. Identity draws the random bytes
//! and hashes; this module says what a secret looks like, so that anything else is turned away
//! before it costs a query.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::IdentityError;
use crate::fields::OptionalText;
use crate::ids::{AccountId, ScimTokenId};

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "rscim_";
/// Random bytes in a secret.
pub const SECRET_BYTES: usize = 32;
/// Characters of a secret: the prefix and [`SECRET_BYTES`] in base64url without padding.
pub const SECRET_LENGTH: usize = SECRET_PREFIX.len() + (SECRET_BYTES * 8).div_ceil(6);
/// Characters of a secret that are kept and shown: the prefix and 4 more (24 of its 256 bits).
pub const SHOWN_PREFIX_LENGTH: usize = SECRET_PREFIX.len() + 4;
/// The most tokens an account may have active at once.
pub const MAX_ACTIVE_SCIM_TOKENS: u64 = 20;
/// The most characters of a token's display name.
pub const MAX_DISPLAY_NAME_LENGTH: usize = 100;

/// A SCIM token as it is now. Never holds its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimToken {
    pub id: ScimTokenId,
    /// The account it provisions: the only one it may act on.
    pub account_id: AccountId,
    pub display_name: String,
    /// Whether a user it creates is sent a welcome email to set their password.
    pub send_welcome_emails: bool,
    /// The secret's first [`SHOWN_PREFIX_LENGTH`] characters.
    pub secret_prefix: String,
    pub created_at: DateTime<Utc>,
    /// When it was revoked; `None` while it is active.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token's display name: 1 to [`MAX_DISPLAY_NAME_LENGTH`] characters of visible text,
/// trimmed and in NFC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimTokenName(String);

impl ScimTokenName {
    /// Parses the field labelled `field`. The input's bytes are bounded before it is trimmed,
    /// normalised or counted in characters, so an oversized one costs nothing.
    pub fn parse(field: &str, input: &str) -> Result<Self, IdentityError> {
        match OptionalText::parse(field, input, MAX_DISPLAY_NAME_LENGTH) {
            Ok(Some(name)) => Ok(Self(name.as_str().to_owned())),
            Ok(None) => Err(IdentityError::invalid(
                field,
                format!(
                    "{field} is empty; it is required (1 to {MAX_DISPLAY_NAME_LENGTH} characters)."
                ),
            )),
            Err(error) => Err(IdentityError::invalid(error.field, error.description)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A token's secret. Its `Debug` shows only the kept prefix, so logging it by mistake leaks
/// nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct ScimSecret(String);

impl ScimSecret {
    /// The secret made of `random`, which must come from the operating system's generator.
    pub fn from_random(random: [u8; SECRET_BYTES]) -> Self {
        Self(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(random)))
    }

    /// `candidate` if it has the shape of a secret: the prefix, then the base64url encoding of
    /// [`SECRET_BYTES`] bytes. Its length is checked first, so an input of any size is
    /// turned away at once.
    pub fn parse(candidate: &str) -> Option<Self> {
        if candidate.len() != SECRET_LENGTH {
            return None;
        }
        let body = candidate.strip_prefix(SECRET_PREFIX)?;
        let mut random = [0u8; SECRET_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(body, &mut random) {
            Ok(SECRET_BYTES) => Some(Self(candidate.to_owned())),
            _ => None,
        }
    }

    /// The first characters, which are kept and shown.
    pub fn shown_prefix(&self) -> &str {
        &self.0[..SHOWN_PREFIX_LENGTH]
    }

    /// The whole secret, for the one answer that hands it over and for hashing.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ScimSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScimSecret({}…)", self.shown_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_the_prefix_and_43_base64url_characters() {
        let secret = ScimSecret::from_random([0xfb; SECRET_BYTES]);
        let text = secret.expose_secret();
        assert_eq!(text.len(), SECRET_LENGTH);
        assert_eq!(SECRET_LENGTH, 49);
        assert!(text.starts_with("rscim_-_v7"), "{text}");
        assert_eq!(secret.shown_prefix(), "rscim_-_v7");
        assert_eq!(ScimSecret::parse(text), Some(secret.clone()));
        assert!(!format!("{secret:?}").contains(text));
    }

    #[test]
    fn only_a_secret_shaped_input_parses() {
        let text = ScimSecret::from_random([7; SECRET_BYTES])
            .expose_secret()
            .to_owned();
        assert!(ScimSecret::parse(&text).is_some());
        for wrong in [
            String::new(),
            text[..SECRET_LENGTH - 1].to_owned(),
            format!("{text}A"),
            text.replacen("rscim_", "rscin_", 1),
            format!("{}+{}", &text[..20], &text[21..]),
            format!("{}é{}", &text[..20], &text[22..]),
            "x".repeat(3 << 20),
            // The last character holds 2 bits of padding, zero in the one encoding.
            format!("{}B", &text[..SECRET_LENGTH - 1]),
        ] {
            assert_eq!(ScimSecret::parse(&wrong), None, "{wrong:.60}");
        }
    }

    #[test]
    fn display_names_are_trimmed_bounded_and_visible() {
        let name = ScimTokenName::parse("display_name", "  Entra ID production ").unwrap();
        assert_eq!(name.as_str(), "Entra ID production");
        assert!(ScimTokenName::parse("display_name", &"é".repeat(100)).is_ok());
        for wrong in [
            " ".to_owned(),
            "x".repeat(101),
            "a\u{7}b".to_owned(),
            "a\u{202E}b".to_owned(),
        ] {
            let error = ScimTokenName::parse("display_name", &wrong).unwrap_err();
            assert!(
                matches!(&error, IdentityError::Invalid(violations) if violations[0].field == "display_name"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn an_oversized_display_name_is_refused_by_its_bytes() {
        let error = ScimTokenName::parse("display_name", &"é".repeat(3 << 20)).unwrap_err();
        let IdentityError::Invalid(violations) = error else {
            panic!("{error:?}");
        };
        assert!(
            violations[0].description.contains("bytes long"),
            "{violations:?}"
        );
    }
}
