//! Conversions between stored records and protobuf messages, and from domain errors to
//! [`ApiError`].

use std::collections::HashMap;

use roster_proto::identity::v1 as pb;
use roster_runtime::ApiError;
use roster_runtime::error::FieldViolation;
use roster_runtime::request::etag;

use crate::domain::assignment::{Extension, ExtensionBounds, ExtensionKind, ExtensionNumber, Role};
use crate::domain::error::{IdentityError, Violation};
use crate::domain::policy::Preset;
use crate::store::AccountRecord;

pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn account(record: &AccountRecord) -> pb::Account {
    pb::Account {
        id: record.id.to_string(),
        display_name: record.display_name.clone(),
        create_time: Some(timestamp(record.created_at)),
        update_time: Some(timestamp(record.updated_at)),
        etag: etag(record.version),
        extension_min_length: record.extension_bounds.min(),
        extension_max_length: record.extension_bounds.max(),
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
            IdentityError::Contention(message) => ApiError::Aborted {
                reason: "CONCURRENT_CHANGE",
                message,
            },
            IdentityError::NotFound(resource) => ApiError::NotFound { resource },
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
            IdentityError::Database(error) => ApiError::internal(error),
            IdentityError::Corrupt(message) => ApiError::internal(message),
        }
    }
}

fn field_violations(violations: Vec<Violation>) -> Vec<FieldViolation> {
    violations
        .into_iter()
        .map(|violation| FieldViolation::new(violation.field, violation.description))
        .collect()
}

pub fn profile_status(status: &str) -> pb::ProfileStatus {
    match status {
        crate::store::ACTIVE => pb::ProfileStatus::Active,
        crate::store::SUSPENDED => pb::ProfileStatus::Suspended,
        crate::store::DELETED => pb::ProfileStatus::Deleted,
        _ => pb::ProfileStatus::Unspecified,
    }
}

/// The domain role of a protobuf role; `None` for UNSPECIFIED.
pub fn role(role: pb::Role) -> Option<Role> {
    match role {
        pb::Role::Unspecified => None,
        pb::Role::AccountAdministrator => Some(Role::AccountAdministrator),
        pb::Role::ContactCenterAgent => Some(Role::ContactCenterAgent),
        pb::Role::ContactCenterSupervisor => Some(Role::ContactCenterSupervisor),
        pb::Role::StandardUser => Some(Role::StandardUser),
    }
}

/// The roles a request names, each once. Every value that is not a role is a violation of
/// `field[i]`.
pub fn parse_roles(field: &str, values: &[i32]) -> Result<Vec<Role>, IdentityError> {
    let mut roles = Vec::new();
    let mut violations = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match pb::Role::try_from(*value).ok().and_then(role) {
            Some(role) if !roles.contains(&role) => roles.push(role),
            Some(_) => {}
            None => violations.push(Violation::new(
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
        Err(IdentityError::RoleInvalid(violations))
    }
}

/// An extension a request gives, its number checked against the account's `bounds` unless
/// `held` says the profile holds it already (held numbers are kept whatever the bounds).
/// Violations name `field.number` and `field.kind`; a number's always names the bounds.
pub fn parse_extension(
    field: &str,
    extension: &pb::Extension,
    bounds: ExtensionBounds,
    held: impl Fn(&ExtensionNumber) -> bool,
) -> Result<Extension, Vec<Violation>> {
    let mut violations = Vec::new();
    let number = ExtensionNumber::parse(&extension.number)
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
    let kind = extension_kind(extension.kind);
    if kind.is_none() {
        violations.push(Violation::new(
            format!("{field}.kind"),
            "must be EXTENSION_KIND_PHYSICAL or EXTENSION_KIND_VIRTUAL",
        ));
    }
    match (number, kind) {
        (Some(number), Some(kind)) => Ok(Extension { number, kind }),
        _ => Err(violations),
    }
}

fn role_to_proto(name: &str) -> pb::Role {
    match Role::from_name(name) {
        Some(Role::AccountAdministrator) => pb::Role::AccountAdministrator,
        Some(Role::ContactCenterAgent) => pb::Role::ContactCenterAgent,
        Some(Role::ContactCenterSupervisor) => pb::Role::ContactCenterSupervisor,
        Some(Role::StandardUser) => pb::Role::StandardUser,
        None => pb::Role::Unspecified,
    }
}

/// The domain kind of a protobuf extension kind; `None` for UNSPECIFIED or an unknown value.
pub fn extension_kind(kind: i32) -> Option<ExtensionKind> {
    match pb::ExtensionKind::try_from(kind) {
        Ok(pb::ExtensionKind::Physical) => Some(ExtensionKind::Physical),
        Ok(pb::ExtensionKind::Virtual) => Some(ExtensionKind::Virtual),
        Ok(pb::ExtensionKind::Unspecified) | Err(_) => None,
    }
}

fn extension_kind_to_proto(name: &str) -> pb::ExtensionKind {
    match ExtensionKind::from_name(name) {
        Some(ExtensionKind::Physical) => pb::ExtensionKind::Physical,
        Some(ExtensionKind::Virtual) => pb::ExtensionKind::Virtual,
        None => pb::ExtensionKind::Unspecified,
    }
}

pub fn profile(record: &crate::store::ProfileRecord) -> pb::Profile {
    let model = &record.profile;
    let mut roles: Vec<i32> = record
        .roles
        .iter()
        .map(|role| role_to_proto(role) as i32)
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
                kind: extension_kind_to_proto(kind) as i32,
            })
            .collect(),
        create_time: Some(timestamp(model.created_at)),
        update_time: Some(timestamp(model.updated_at)),
        delete_time: model.deleted_at.map(timestamp),
        etag: etag(model.version),
    }
}
