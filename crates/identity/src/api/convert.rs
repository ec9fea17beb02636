//! Conversions between stored records and protobuf messages, and from domain errors to
//! [`ApiError`].

use std::collections::HashMap;

use roster_proto::identity::v1 as pb;
use roster_runtime::ApiError;
use roster_runtime::error::FieldViolation;
use uuid::Uuid;

use crate::domain::error::IdentityError;
use crate::domain::policy::Preset;
use crate::store::AccountRecord;

pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// Etags are the row version, opaque to callers.
pub fn etag(version: i64) -> String {
    format!("v{version}")
}

/// The version an etag names; `None` for an empty etag (no check), an error for a malformed one.
pub fn parse_etag(field: &str, etag: &str) -> Result<Option<i64>, ApiError> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.strip_prefix('v')
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid(field, "is not an etag returned by Roster"))
}

/// Parses a UUID field, naming the field when it is not one.
pub fn parse_id(field: &str, value: &str) -> Result<Uuid, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Uuid::parse_str(value).map_err(|_| ApiError::invalid(field, "is not a UUID"))
}

/// Checks a request id (AIP-155): up to 128 printable ASCII characters; empty means none.
pub fn check_request_id(request_id: &str) -> Result<(), ApiError> {
    if request_id.len() > 128 || !request_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "request_id",
            "must be at most 128 printable ASCII characters",
        ));
    }
    Ok(())
}

pub fn page_size(requested: i32) -> Result<u64, ApiError> {
    match requested {
        0 => Ok(100),
        1..=1000 => Ok(requested as u64),
        _ => Err(ApiError::invalid("page_size", "must be between 0 and 1000")),
    }
}

/// Page tokens are the last id of the previous page, opaque to callers.
pub fn parse_page_token(token: &str) -> Result<Option<Uuid>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    hex_uuid(token)
        .map(Some)
        .ok_or_else(|| ApiError::invalid("page_token", "is not a token returned by Roster"))
}

pub fn page_token(last: Uuid) -> String {
    format!("p{}", last.simple())
}

fn hex_uuid(token: &str) -> Option<Uuid> {
    Uuid::try_parse(token.strip_prefix('p')?).ok()
}

pub fn account(record: &AccountRecord) -> pb::Account {
    pb::Account {
        id: record.id.to_string(),
        display_name: record.display_name.clone(),
        create_time: Some(timestamp(record.created_at)),
        update_time: Some(timestamp(record.updated_at)),
        etag: etag(record.version),
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

pub fn policy(account: &AccountRecord) -> pb::PasswordPolicy {
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

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
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
            IdentityError::UsernameRefused { refusal, detail } => {
                use crate::domain::error::Refusal;
                match refusal {
                    Refusal::Invalid => ApiError::InvalidArgument {
                        reason: refusal.reason(),
                        violations: vec![FieldViolation::new("username", detail)],
                    },
                    _ => ApiError::AlreadyExists {
                        reason: refusal.reason(),
                        message: refusal.message().to_owned(),
                        metadata: HashMap::new(),
                    },
                }
            }
            IdentityError::NotFound(resource) => ApiError::NotFound { resource },
            IdentityError::StaleEtag => ApiError::stale_etag(),
            IdentityError::Precondition(message) => ApiError::FailedPrecondition {
                reason: "FAILED_PRECONDITION",
                message,
                subject: String::new(),
            },
            IdentityError::Database(error) => ApiError::internal(error),
            IdentityError::Corrupt(message) => ApiError::internal(message),
        }
    }
}

pub fn profile_status(status: &str) -> pb::ProfileStatus {
    match status {
        crate::store::ACTIVE => pb::ProfileStatus::Active,
        crate::store::SUSPENDED => pb::ProfileStatus::Suspended,
        crate::store::DELETED => pb::ProfileStatus::Deleted,
        _ => pb::ProfileStatus::Unspecified,
    }
}

pub fn role_name(role: pb::Role) -> Option<&'static str> {
    match role {
        pb::Role::Unspecified => None,
        pb::Role::AccountAdministrator => Some("account_administrator"),
        pb::Role::ContactCenterAgent => Some("contact_center_agent"),
        pb::Role::ContactCenterSupervisor => Some("contact_center_supervisor"),
        pb::Role::StandardUser => Some("standard_user"),
    }
}

fn role_from_name(name: &str) -> pb::Role {
    [
        pb::Role::AccountAdministrator,
        pb::Role::ContactCenterAgent,
        pb::Role::ContactCenterSupervisor,
        pb::Role::StandardUser,
    ]
    .into_iter()
    .find(|role| role_name(*role) == Some(name))
    .unwrap_or(pb::Role::Unspecified)
}

fn extension_kind(kind: &str) -> pb::ExtensionKind {
    match kind {
        "physical" => pb::ExtensionKind::Physical,
        "virtual" => pb::ExtensionKind::Virtual,
        _ => pb::ExtensionKind::Unspecified,
    }
}

pub fn profile(record: &crate::store::ProfileRecord) -> pb::Profile {
    let model = &record.profile;
    let mut roles: Vec<i32> = record
        .roles
        .iter()
        .map(|role| role_from_name(role) as i32)
        .collect();
    roles.sort_unstable();
    pb::Profile {
        id: model.id.to_string(),
        account_id: model.account_id.to_string(),
        first_name: model.first_name.clone(),
        last_name: model.last_name.clone(),
        email: model.email.clone(),
        username: model.username.clone(),
        canonical_username: model.canonical_username.clone(),
        job_title: model.job_title.clone().unwrap_or_default(),
        department: model.department.clone().unwrap_or_default(),
        locale: model.locale.clone().unwrap_or_default(),
        time_zone: model.time_zone.clone().unwrap_or_default(),
        status: profile_status(&model.status) as i32,
        roles,
        extensions: record
            .extensions
            .iter()
            .map(|(number, kind)| pb::Extension {
                number: number.clone(),
                kind: extension_kind(kind) as i32,
            })
            .collect(),
        create_time: Some(timestamp(model.created_at)),
        update_time: Some(timestamp(model.updated_at)),
        delete_time: model.deleted_at.map(timestamp),
        etag: etag(model.version),
    }
}
