//! Conversions between stored records and protobuf messages, and from domain errors to
//! [`ApiError`].

use std::collections::HashMap;

use roster_proto::identity::v1 as pb;
use roster_runtime::ApiError;
use roster_runtime::error::FieldViolation;
use roster_runtime::request::etag;

use crate::domain::account::Account;
use crate::domain::error::{IdentityError, Violation};
use crate::domain::policy::{PasswordPolicy, Preset};
use crate::domain::profile::Profile;
use crate::domain::scim_token::{MAX_ACTIVE_SCIM_TOKENS, ScimToken};

pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// An account as the API shows it; `purge_time` is when a deleted account is purged.
pub fn account(record: &Account, purge_time: Option<chrono::DateTime<chrono::Utc>>) -> pb::Account {
    pb::Account {
        id: record.id.to_string(),
        display_name: record.display_name.clone(),
        create_time: Some(timestamp(record.created_at)),
        update_time: Some(timestamp(record.updated_at)),
        etag: etag(record.version),
        extension_min_length: record.extension_bounds.min(),
        extension_max_length: record.extension_bounds.max(),
        delete_time: record.deleted_at.map(timestamp),
        purge_time: purge_time.map(timestamp),
    }
}

pub fn scim_token(token: &ScimToken) -> pb::ScimToken {
    pb::ScimToken {
        id: token.id.to_string(),
        account_id: token.account_id.to_string(),
        display_name: token.display_name.clone(),
        send_welcome_emails: token.send_welcome_emails,
        secret_prefix: token.secret_prefix.clone(),
        create_time: Some(timestamp(token.created_at)),
        revoke_time: token.revoked_at.map(timestamp),
    }
}

pub fn preset_from_proto(value: i32) -> Result<Preset, ApiError> {
    match pb::PasswordPolicyPreset::try_from(value) {
        Ok(pb::PasswordPolicyPreset::Unspecified | pb::PasswordPolicyPreset::Default) => {
            Ok(Preset::Default)
        }
        Ok(pb::PasswordPolicyPreset::Nist) => Ok(Preset::Nist),
        Ok(pb::PasswordPolicyPreset::Custom) | Err(_) => Err(ApiError::invalid(
            "password_policy_preset",
            "must be PASSWORD_POLICY_PRESET_DEFAULT or PASSWORD_POLICY_PRESET_NIST",
        )),
    }
}

pub fn policy(account: &Account) -> pb::PasswordPolicy {
    let policy = &account.policy;
    pb::PasswordPolicy {
        account_id: account.id.to_string(),
        preset: match policy.preset {
            Preset::Default => pb::PasswordPolicyPreset::Default,
            Preset::Nist => pb::PasswordPolicyPreset::Nist,
            Preset::Custom => pb::PasswordPolicyPreset::Custom,
        } as i32,
        min_length: policy.min_length,
        max_length: policy.max_length,
        min_uppercase: policy.min_uppercase,
        min_lowercase: policy.min_lowercase,
        min_digits: policy.min_digits,
        min_symbols: policy.min_symbols,
        forbid_personal_info: policy.forbid_personal_info,
        history_count: policy.history_count,
        forbid_common: policy.forbid_common,
        min_strength_score: policy.min_strength_score,
        etag: etag(account.version),
        update_time: Some(timestamp(account.updated_at)),
    }
}

/// The one map from identity's failures to what callers see, for calls and batch items alike.
pub fn api_error(error: IdentityError) -> ApiError {
    match error {
        IdentityError::Invalid(violations) => ApiError::InvalidArgument {
            // An invalid username is worth its own reason, so callers can offer another.
            reason: if violations
                .iter()
                .any(|violation| violation.field == "username")
            {
                "USERNAME_INVALID"
            } else {
                "INVALID_ARGUMENT"
            },
            violations: violations
                .into_iter()
                .map(|violation| FieldViolation::new(violation.field, violation.description))
                .collect(),
        },
        IdentityError::UsernameRefused {
            refusal,
            defaulted,
            suggestions,
        } => {
            use crate::domain::error::Refusal;
            let message = refusal.explain(defaulted, &suggestions);
            match refusal {
                Refusal::Invalid => ApiError::InvalidArgument {
                    reason: refusal.reason(),
                    violations: vec![FieldViolation::new("username", message)],
                },
                _ => ApiError::AlreadyExists {
                    reason: refusal.reason(),
                    message,
                    metadata: HashMap::from([
                        ("username_defaulted".to_owned(), defaulted.to_string()),
                        ("suggestions".to_owned(), suggestions.join(",")),
                    ]),
                },
            }
        }
        IdentityError::ExtensionInvalid(violations) => ApiError::InvalidArgument {
            reason: "EXTENSION_INVALID",
            violations: field_violations(violations),
        },
        IdentityError::InvalidFilter(error) => ApiError::InvalidArgument {
            reason: "FILTER_INVALID",
            violations: vec![FieldViolation::new("filter", error.to_string())],
        },
        IdentityError::RoleInvalid(violations) => ApiError::InvalidArgument {
            reason: "ROLE_INVALID",
            violations: field_violations(violations),
        },
        IdentityError::ExtensionTaken { number } => ApiError::AlreadyExists {
            reason: "EXTENSION_TAKEN",
            message: format!(
                "extension {number} is held by another profile of this account; unassign it there first"
            ),
            metadata: HashMap::from([("number".to_owned(), number)]),
        },
        IdentityError::InvalidResetToken => ApiError::FailedPrecondition {
            reason: "RESET_TOKEN_INVALID",
            message: crate::domain::policy::INVALID_TOKEN.to_owned(),
            subject: "token".to_owned(),
        },
        IdentityError::PasswordPolicy(rules) => ApiError::InvalidArgument {
            reason: "PASSWORD_POLICY",
            violations: rules
                .into_iter()
                .map(|rule| {
                    FieldViolation::new(
                        "new_password",
                        format!("{}: {}", rule.code, rule.description),
                    )
                })
                .collect(),
        },
        IdentityError::Throttled(wait) => ApiError::ResourceExhausted {
            reason: "SIGNIN_THROTTLED",
            message: "too many failed sign-ins for this username; retry later".into(),
            retry_after: Some(wait),
        },
        IdentityError::HashingBusy => ApiError::ResourceExhausted {
            reason: "PASSWORD_WORKERS_BUSY",
            message: "every password worker is busy; retry shortly".into(),
            retry_after: Some(std::time::Duration::from_millis(200)),
        },
        IdentityError::Internal(message) => ApiError::internal(message),
        IdentityError::ScimTokenLimit => ApiError::FailedPrecondition {
            reason: "SCIM_TOKEN_LIMIT",
            message: format!(
                "the account has {MAX_ACTIVE_SCIM_TOKENS} active SCIM tokens, the most it may \
                 have; revoke one it no longer needs first"
            ),
            subject: "account_id".to_owned(),
        },
        IdentityError::Contention(message) => ApiError::Aborted {
            reason: "CONCURRENT_CHANGE",
            message,
        },
        IdentityError::NotFound(resource) => ApiError::NotFound { resource },
        IdentityError::NotPermitted(message) => ApiError::PermissionDenied {
            reason: "ACCOUNT_NOT_PERMITTED",
            message,
        },
        IdentityError::StaleEtag => ApiError::stale_etag(),
        IdentityError::Precondition(message) => ApiError::FailedPrecondition {
            reason: "FAILED_PRECONDITION",
            message,
            subject: String::new(),
        },
        IdentityError::Changed { field, message } => ApiError::FailedPrecondition {
            reason: "PROFILE_CHANGED",
            message,
            subject: field.to_owned(),
        },
        IdentityError::Storage(error) => ApiError::Internal(error),
        IdentityError::Corrupt(message) => ApiError::internal(message),
    }
}

fn field_violations(violations: Vec<Violation>) -> Vec<FieldViolation> {
    violations
        .into_iter()
        .map(|violation| FieldViolation::new(violation.field, violation.description))
        .collect()
}

pub use roster_proto::convert::{
    extension_kind, profile_status as profile_status_from_proto, refusal, role, role_values,
};

/// A password policy message's values as a domain policy (its preset as given).
pub fn policy_values(message: &pb::PasswordPolicy, preset: Preset) -> PasswordPolicy {
    PasswordPolicy {
        preset,
        min_length: message.min_length,
        max_length: message.max_length,
        min_uppercase: message.min_uppercase,
        min_lowercase: message.min_lowercase,
        min_digits: message.min_digits,
        min_symbols: message.min_symbols,
        forbid_personal_info: message.forbid_personal_info,
        history_count: message.history_count,
        forbid_common: message.forbid_common,
        min_strength_score: message.min_strength_score,
    }
}

pub fn profile(profile: &Profile) -> pb::Profile {
    let mut roles: Vec<i32> = profile
        .roles
        .iter()
        .map(|role| pb::Role::from(*role) as i32)
        .collect();
    roles.sort_unstable();
    pb::Profile {
        id: profile.id.to_string(),
        account_id: profile.account_id.to_string(),
        first_name: profile.first_name.clone(),
        last_name: profile.last_name.clone(),
        email: profile.email.clone(),
        username: profile.username.clone(),
        canonical_username: profile.canonical_username.clone(),
        job_title: profile.job_title.clone().unwrap_or_default(),
        department: profile.department.clone().unwrap_or_default(),
        locale: profile.locale.clone().unwrap_or_default(),
        time_zone: profile.time_zone.clone().unwrap_or_default(),
        external_id: profile.external_id.clone().unwrap_or_default(),
        status: pb::ProfileStatus::from(profile.status) as i32,
        roles,
        extensions: profile
            .extensions
            .iter()
            .map(|extension| pb::Extension {
                number: extension.number.as_str().to_owned(),
                kind: pb::ExtensionKind::from(extension.kind) as i32,
            })
            .collect(),
        create_time: Some(timestamp(profile.created_at)),
        update_time: Some(timestamp(profile.updated_at)),
        delete_time: profile.deleted_at.map(timestamp),
        etag: etag(profile.version),
    }
}
