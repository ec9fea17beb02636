//! The events a change makes, built from the states before and after it: which types, and
//! which fields changed, old → new.

use chrono::{DateTime, Utc};

use super::{EventType, FieldChange, NewEvent, Subject, Value};
use crate::account::Account;
use crate::assignment::{Extension, Role};
use crate::ids::{AccountId, ProfileId};
use crate::policy::PasswordPolicy;
use crate::profile::{Profile, ProfileStatus};
use crate::scim_token::ScimToken;

/// A change of `field` when `old` and `new` differ.
fn change<T: PartialEq>(
    field: &str,
    old: Option<T>,
    new: Option<T>,
    value: impl Fn(T) -> Value,
) -> Option<FieldChange> {
    (old != new).then(|| FieldChange {
        field: field.to_owned(),
        old: old.map(&value),
        new: new.map(&value),
    })
}

fn text(field: &str, old: Option<&str>, new: Option<&str>) -> Option<FieldChange> {
    change(field, old, new, Value::from)
}

/// Every field of a new subject, as changes from nothing.
fn created(changes: impl IntoIterator<Item = Option<FieldChange>>) -> Vec<FieldChange> {
    changes.into_iter().flatten().collect()
}

fn role_names(roles: &[Role]) -> Value {
    Value::List(roles.iter().map(|role| role.as_str().to_owned()).collect())
}

fn extension_value(extension: &Extension) -> Value {
    Value::Text(format!(
        "{} ({})",
        extension.number.as_str(),
        extension.kind.as_str()
    ))
}

/// The profile fields a user sees, by name.
fn profile_fields(profile: &Profile) -> [(&'static str, Option<&str>); 8] {
    [
        ("first_name", Some(profile.first_name.as_str())),
        ("last_name", Some(profile.last_name.as_str())),
        ("email", Some(profile.email.as_str())),
        ("job_title", profile.job_title.as_deref()),
        ("department", profile.department.as_deref()),
        ("locale", profile.locale.as_deref()),
        ("time_zone", profile.time_zone.as_deref()),
        ("external_id", profile.external_id.as_deref()),
    ]
}

fn profile_event(profile: &Profile, event_type: EventType, changes: Vec<FieldChange>) -> NewEvent {
    NewEvent {
        account_id: profile.account_id,
        subject: Subject::Profile(profile.id),
        event_type,
        changes,
    }
}

/// `roster.profile.created`, with every field it was created with.
pub fn profile_created(profile: &Profile) -> NewEvent {
    let mut changes = created(
        profile_fields(profile)
            .into_iter()
            .map(|(field, value)| text(field, None, value)),
    );
    changes.push(FieldChange {
        field: "username".into(),
        old: None,
        new: Some(Value::from(profile.username.as_str())),
    });
    changes.push(FieldChange {
        field: "status".into(),
        old: None,
        new: Some(Value::from(profile.status.as_str())),
    });
    profile_event(profile, EventType::ProfileCreated, changes)
}

/// `roster.profile.created`, then the roles and extensions it was created with.
pub fn profile_created_with_assignments(profile: &Profile) -> Vec<NewEvent> {
    let bare = Profile {
        roles: Vec::new(),
        extensions: Vec::new(),
        ..profile.clone()
    };
    let mut events = vec![profile_created(profile)];
    events.extend(assignments_changed(&bare, profile));
    events
}

/// The events of a profile changed from `before` to `after`: its username
/// (`username_changed`), its status (`suspended`, `activated`, `deleted`, or `restored` when a
/// deleted one comes back) and its other
/// fields (`updated`), each an event of its own, none where nothing changed.
pub fn profile_changed(before: &Profile, after: &Profile) -> Vec<NewEvent> {
    let mut events = Vec::new();
    let fields: Vec<FieldChange> = profile_fields(before)
        .into_iter()
        .zip(profile_fields(after))
        .filter_map(|((field, old), (_, new))| text(field, old, new))
        .collect();
    if !fields.is_empty() {
        events.push(profile_event(after, EventType::ProfileUpdated, fields));
    }
    if let Some(username) = text("username", Some(&before.username), Some(&after.username)) {
        events.push(profile_event(
            after,
            EventType::UsernameChanged,
            vec![username],
        ));
    }
    if let Some(status) = text(
        "status",
        Some(before.status.as_str()),
        Some(after.status.as_str()),
    ) {
        let event_type = match after.status {
            _ if before.status == ProfileStatus::Deleted => EventType::ProfileRestored,
            ProfileStatus::Active => EventType::ProfileActivated,
            ProfileStatus::Suspended => EventType::ProfileSuspended,
            ProfileStatus::Deleted => EventType::ProfileDeleted,
        };
        events.push(profile_event(after, event_type, vec![status]));
    }
    events.extend(assignments_changed(before, after));
    events
}

/// The events of a profile's roles and extensions changed from `before` to `after`: roles
/// assigned and unassigned (the whole list old → new), each extension assigned or unassigned.
pub fn assignments_changed(before: &Profile, after: &Profile) -> Vec<NewEvent> {
    let mut events = Vec::new();
    let roles = FieldChange {
        field: "roles".into(),
        old: Some(role_names(&before.roles)),
        new: Some(role_names(&after.roles)),
    };
    if after.roles.iter().any(|role| !before.roles.contains(role)) {
        events.push(profile_event(
            after,
            EventType::RolesAssigned,
            vec![roles.clone()],
        ));
    }
    if before.roles.iter().any(|role| !after.roles.contains(role)) {
        events.push(profile_event(
            after,
            EventType::RolesUnassigned,
            vec![roles],
        ));
    }
    for extension in &after.extensions {
        if !before.extensions.contains(extension) {
            let change = FieldChange {
                field: "extensions".into(),
                old: None,
                new: Some(extension_value(extension)),
            };
            events.push(profile_event(
                after,
                EventType::ExtensionAssigned,
                vec![change],
            ));
        }
    }
    for extension in &before.extensions {
        if !after.extensions.contains(extension) {
            let change = FieldChange {
                field: "extensions".into(),
                old: Some(extension_value(extension)),
                new: None,
            };
            events.push(profile_event(
                after,
                EventType::ExtensionUnassigned,
                vec![change],
            ));
        }
    }
    events
}

/// A profile's credential event (`password_reset_requested`, `password_changed`, sign-in
/// locked or unlocked): no fields, since none of it may be told.
pub fn credential(profile: &Profile, event_type: EventType) -> NewEvent {
    profile_event(profile, event_type, Vec::new())
}

/// `roster.signin.locked`: the profile's failed sign-ins reached the limit; it is throttled
/// until `until`.
pub fn signin_locked(profile: &Profile, failures: u32, until: DateTime<Utc>) -> NewEvent {
    profile_event(
        profile,
        EventType::SignInLocked,
        vec![
            FieldChange {
                field: "failures".into(),
                old: None,
                new: Some(Value::from(failures)),
            },
            FieldChange {
                field: "locked_until".into(),
                old: None,
                new: Some(Value::Text(until.to_rfc3339())),
            },
        ],
    )
}

fn account_event(account: &Account, event_type: EventType, changes: Vec<FieldChange>) -> NewEvent {
    NewEvent {
        account_id: account.id,
        subject: Subject::Account(account.id),
        event_type,
        changes,
    }
}

fn account_fields(account: &Account) -> [(&'static str, Value); 3] {
    [
        ("display_name", Value::from(account.display_name.as_str())),
        (
            "extension_min_length",
            Value::from(account.extension_bounds.min()),
        ),
        (
            "extension_max_length",
            Value::from(account.extension_bounds.max()),
        ),
    ]
}

fn policy_fields(policy: &PasswordPolicy) -> [(&'static str, Value); 11] {
    [
        ("preset", Value::from(policy.preset.as_str())),
        ("min_length", Value::from(policy.min_length)),
        ("max_length", Value::from(policy.max_length)),
        ("min_uppercase", Value::from(policy.min_uppercase)),
        ("min_lowercase", Value::from(policy.min_lowercase)),
        ("min_digits", Value::from(policy.min_digits)),
        ("min_symbols", Value::from(policy.min_symbols)),
        (
            "forbid_personal_info",
            Value::Bool(policy.forbid_personal_info),
        ),
        ("history_count", Value::from(policy.history_count)),
        ("forbid_common", Value::Bool(policy.forbid_common)),
        ("min_strength_score", Value::from(policy.min_strength_score)),
    ]
}

fn diff<const N: usize>(
    old: [(&'static str, Value); N],
    new: [(&'static str, Value); N],
) -> Vec<FieldChange> {
    old.into_iter()
        .zip(new)
        .filter_map(|((field, old), (_, new))| change(field, Some(old), Some(new), |value| value))
        .collect()
}

/// `roster.account.created`, with its fields and password policy.
pub fn account_created(account: &Account) -> NewEvent {
    let changes = account_fields(account)
        .into_iter()
        .chain(policy_fields(&account.policy))
        .map(|(field, value)| FieldChange {
            field: field.to_owned(),
            old: None,
            new: Some(value),
        })
        .collect();
    account_event(account, EventType::AccountCreated, changes)
}

/// `roster.account.updated`, when the display name or extension bounds changed.
pub fn account_updated(before: &Account, after: &Account) -> Option<NewEvent> {
    let changes = diff(account_fields(before), account_fields(after));
    (!changes.is_empty()).then(|| account_event(after, EventType::AccountUpdated, changes))
}

/// `roster.account.password_policy_changed`, when any rule of the policy changed.
pub fn policy_changed(before: &Account, after: &Account) -> Option<NewEvent> {
    let changes = diff(policy_fields(&before.policy), policy_fields(&after.policy));
    (!changes.is_empty()).then(|| account_event(after, EventType::PasswordPolicyChanged, changes))
}

/// `roster.account.deleted`: when, and how many of the account's profiles the deletion took
/// with it (they are deleted by this one event; their own last events stay as they were).
pub fn account_deleted(account: &Account, profiles: u64) -> NewEvent {
    let deleted_at = account.deleted_at.map(|at| Value::Text(at.to_rfc3339()));
    account_event(
        account,
        EventType::AccountDeleted,
        vec![
            FieldChange {
                field: "delete_time".to_owned(),
                old: None,
                new: deleted_at,
            },
            FieldChange {
                field: "profiles_deleted".to_owned(),
                old: None,
                new: Some(Value::from(profiles)),
            },
        ],
    )
}

/// `roster.account.restored`: the deletion undone, and how many profiles came back with it.
pub fn account_restored(before: &Account, after: &Account, profiles: u64) -> NewEvent {
    let deleted_at = before.deleted_at.map(|at| Value::Text(at.to_rfc3339()));
    account_event(
        after,
        EventType::AccountRestored,
        vec![
            FieldChange {
                field: "delete_time".to_owned(),
                old: deleted_at,
                new: None,
            },
            FieldChange {
                field: "profiles_restored".to_owned(),
                old: None,
                new: Some(Value::from(profiles)),
            },
        ],
    )
}

/// `roster.account.purged`: the deleted account's personal data is being removed; it can no
/// longer be undeleted.
pub fn account_purged(account: AccountId) -> NewEvent {
    NewEvent {
        account_id: account,
        subject: Subject::Account(account),
        event_type: EventType::AccountPurged,
        changes: Vec::new(),
    }
}

/// `roster.profile.purged`: a deleted profile's names, email and credentials removed; its id
/// and username stay (the username is never used again).
pub fn profile_purged(account: AccountId, profile: ProfileId) -> NewEvent {
    NewEvent {
        account_id: account,
        subject: Subject::Profile(profile),
        event_type: EventType::ProfilePurged,
        changes: Vec::new(),
    }
}

/// What tells a SCIM token apart in its events: its id, display name, welcome-email setting
/// and the shown prefix of its secret. Never the secret, nor its hash.
fn scim_token_fields(token: &ScimToken) -> [(&'static str, Value); 4] {
    [
        ("scim_token_id", Value::Text(token.id.to_string())),
        ("display_name", Value::from(token.display_name.as_str())),
        (
            "send_welcome_emails",
            Value::Bool(token.send_welcome_emails),
        ),
        ("secret_prefix", Value::from(token.secret_prefix.as_str())),
    ]
}

/// An event of the account that `token` provisions: the account is its subject, as the token
/// is part of the account's set-up.
fn scim_token_event(
    token: &ScimToken,
    event_type: EventType,
    change: impl Fn(Value) -> (Option<Value>, Option<Value>),
) -> NewEvent {
    NewEvent {
        account_id: token.account_id,
        subject: Subject::Account(token.account_id),
        event_type,
        changes: scim_token_fields(token)
            .into_iter()
            .map(|(field, value)| {
                let (old, new) = change(value);
                FieldChange {
                    field: field.to_owned(),
                    old,
                    new,
                }
            })
            .collect(),
    }
}

/// `roster.account.scim_token_created`: the new token's fields, from nothing.
pub fn scim_token_created(token: &ScimToken) -> NewEvent {
    scim_token_event(token, EventType::ScimTokenCreated, |value| {
        (None, Some(value))
    })
}

/// `roster.account.scim_token_revoked`: the revoked token's fields, to nothing, as an
/// unassigned extension's are.
pub fn scim_token_revoked(token: &ScimToken) -> NewEvent {
    scim_token_event(token, EventType::ScimTokenRevoked, |value| {
        (Some(value), None)
    })
}
