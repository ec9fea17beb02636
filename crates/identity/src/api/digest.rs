//! What a request's digest covers (see [`crate::app::RequestId`]): what the server acts on, so
//! that an honest retry is the same request and another request is not.
//!
//! Left out: etags, a precondition that a client retrying a read-modify-write reads anew once
//! its first attempt changed the version (`roster profiles update --request-id …` reads the
//! profile and sends its etag); the fields an update's mask leaves out, which such a client
//! fills from what it read; and output-only fields (times, canonical forms). What stays names
//! the object, and the change asked of it.

use prost::Message as _;
use roster_proto::identity::v1 as pb;

/// A request as its digest sees it.
pub(crate) trait Canonical: prost::Message + Sized {
    /// The request with what a retry may send differently, and the server does not act on,
    /// cleared.
    fn canonical(&self) -> Self;

    /// The bytes the digest is taken of: the canonical form's wire encoding.
    fn canonical_bytes(&self) -> Vec<u8> {
        self.canonical().encode_to_vec()
    }
}

/// Requests the server acts on whole but for their etag.
macro_rules! without_etag {
    ($($request:ty),*) => {
        $(impl Canonical for $request {
            fn canonical(&self) -> Self {
                Self {
                    etag: String::new(),
                    ..self.clone()
                }
            }
        })*
    };
}

/// Requests the server acts on whole.
macro_rules! whole {
    ($($request:ty),*) => {
        $(impl Canonical for $request {
            fn canonical(&self) -> Self {
                self.clone()
            }

            // The request itself, without a copy (CreateProfile's path).
            fn canonical_bytes(&self) -> Vec<u8> {
                self.encode_to_vec()
            }
        })*
    };
}

without_etag!(
    pb::DeleteAccountRequest,
    pb::UndeleteAccountRequest,
    pb::DeleteProfileRequest,
    pb::UndeleteProfileRequest,
    pb::AssignRolesRequest,
    pb::UnassignRolesRequest,
    pb::AssignExtensionRequest,
    pb::UnassignExtensionRequest,
    pb::SendPasswordResetRequest
);

whole!(
    pb::CreateAccountRequest,
    pb::CreateScimTokenRequest,
    pb::RevokeScimTokenRequest,
    pb::CreateProfileRequest,
    pb::ClearSignInThrottleRequest,
    // The token is a secret of 256 bits: the digest tells nothing of the password beside it.
    pb::CompletePasswordResetRequest
);

/// The mask's paths, or none.
fn paths(mask: &Option<prost_types::FieldMask>) -> &[String] {
    mask.as_ref().map_or(&[], |mask| mask.paths.as_slice())
}

impl Canonical for pb::UpdateProfileRequest {
    fn canonical(&self) -> Self {
        let given = self.profile.clone().unwrap_or_default();
        let mut profile = pb::Profile {
            id: given.id.clone(),
            ..Default::default()
        };
        for path in paths(&self.update_mask) {
            match path.as_str() {
                "first_name" => profile.first_name.clone_from(&given.first_name),
                "last_name" => profile.last_name.clone_from(&given.last_name),
                "email" => profile.email.clone_from(&given.email),
                "username" => profile.username.clone_from(&given.username),
                "job_title" => profile.job_title.clone_from(&given.job_title),
                "department" => profile.department.clone_from(&given.department),
                "locale" => profile.locale.clone_from(&given.locale),
                "time_zone" => profile.time_zone.clone_from(&given.time_zone),
                "status" => profile.status = given.status,
                // Refused by the mask's check; the path is in the digest through the mask.
                _ => {}
            }
        }
        Self {
            profile: self.profile.as_ref().map(|_| profile),
            update_mask: self.update_mask.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl Canonical for pb::UpdateAccountRequest {
    fn canonical(&self) -> Self {
        let given = self.account.clone().unwrap_or_default();
        let mut account = pb::Account {
            id: given.id.clone(),
            ..Default::default()
        };
        for path in paths(&self.update_mask) {
            match path.as_str() {
                "display_name" => account.display_name.clone_from(&given.display_name),
                "extension_min_length" => {
                    account.extension_min_length = given.extension_min_length;
                }
                "extension_max_length" => {
                    account.extension_max_length = given.extension_max_length;
                }
                _ => {}
            }
        }
        Self {
            account: self.account.as_ref().map(|_| account),
            update_mask: self.update_mask.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl Canonical for pb::UpdatePasswordPolicyRequest {
    fn canonical(&self) -> Self {
        let given = self.policy.clone().unwrap_or_default();
        let mut policy = pb::PasswordPolicy {
            account_id: given.account_id.clone(),
            ..Default::default()
        };
        for path in paths(&self.update_mask) {
            match path.as_str() {
                "preset" => policy.preset = given.preset,
                "min_length" => policy.min_length = given.min_length,
                "max_length" => policy.max_length = given.max_length,
                "min_uppercase" => policy.min_uppercase = given.min_uppercase,
                "min_lowercase" => policy.min_lowercase = given.min_lowercase,
                "min_digits" => policy.min_digits = given.min_digits,
                "min_symbols" => policy.min_symbols = given.min_symbols,
                "forbid_personal_info" => policy.forbid_personal_info = given.forbid_personal_info,
                "history_count" => policy.history_count = given.history_count,
                "forbid_common" => policy.forbid_common = given.forbid_common,
                "min_strength_score" => policy.min_strength_score = given.min_strength_score,
                _ => {}
            }
        }
        Self {
            policy: self.policy.as_ref().map(|_| policy),
            update_mask: self.update_mask.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        })
    }

    #[test]
    fn a_retried_read_modify_write_is_the_same_request() {
        // The first attempt read version 1; its retry reads what the first attempt wrote.
        let first = pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: "p".into(),
                first_name: "Ann".into(),
                last_name: "Old".into(),
                etag: "v1".into(),
                ..Default::default()
            }),
            update_mask: mask(&["first_name"]),
            request_id: "r".into(),
        };
        let retry = pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                last_name: "Changed meanwhile".into(),
                etag: "v2".into(),
                update_time: Some(prost_types::Timestamp {
                    seconds: 9,
                    nanos: 0,
                }),
                ..first.profile.clone().unwrap()
            }),
            ..first.clone()
        };
        assert_eq!(first.canonical(), retry.canonical());

        let other_value = pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                first_name: "Anna".into(),
                ..first.profile.clone().unwrap()
            }),
            ..first.clone()
        };
        assert_ne!(first.canonical(), other_value.canonical());
        let other_profile = pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: "q".into(),
                ..first.profile.clone().unwrap()
            }),
            ..first.clone()
        };
        assert_ne!(first.canonical(), other_profile.canonical());
        let other_mask = pb::UpdateProfileRequest {
            update_mask: mask(&["first_name", "last_name"]),
            ..first.clone()
        };
        assert_ne!(first.canonical(), other_mask.canonical());
    }

    #[test]
    fn a_policy_retry_and_an_etag_retry_are_the_same_request() {
        let first = pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                account_id: "a".into(),
                min_length: 14,
                max_length: 128,
                etag: "v3".into(),
                ..Default::default()
            }),
            update_mask: mask(&["min_length"]),
            request_id: "r".into(),
        };
        let retry = pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                max_length: 64,
                etag: "v4".into(),
                ..first.policy.clone().unwrap()
            }),
            ..first.clone()
        };
        assert_eq!(first.canonical(), retry.canonical());
        let delete = |etag: &str| pb::DeleteProfileRequest {
            id: "p".into(),
            etag: etag.into(),
            request_id: "r".into(),
        };
        assert_eq!(delete("v1").canonical(), delete("v2").canonical());
    }
}
