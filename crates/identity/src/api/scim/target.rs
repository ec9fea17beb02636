//! What a User attribute path names: a field Roster keeps, a read-only or unkept attribute,
//! or nothing a User has. Names ignore case, as SCIM's do.

use super::filter::AttrPath;
use super::user::{ENTERPRISE_SCHEMA, ROSTER_SCHEMA, USER_SCHEMA};

/// Core attributes accepted in a body and not kept.
pub(super) const NOT_KEPT: [&str; 14] = [
    "displayName",
    "nickName",
    "profileUrl",
    "userType",
    "preferredLanguage",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "x509Certificates",
    "roles",
    "formatted",
    "middleName",
];

/// Attributes the server sets, ignored in a body and refused as a PATCH target.
pub(super) const READ_ONLY: [&str; 4] = ["id", "meta", "groups", "schemas"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextSlot {
    UserName,
    ExternalId,
    Title,
    Department,
    Locale,
    Timezone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Text(TextSlot),
    Name,
    Emails,
    Active,
    Enterprise,
    /// Roster's extension: roles and extensions, read here and written elsewhere.
    Roster,
    Password,
    ReadOnly,
    NotKept,
    Unknown,
}

impl Target {
    pub(super) fn of(attr: &AttrPath) -> Target {
        let name = attr.name.as_str();
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
        match attr.schema.as_deref() {
            Some(schema) if schema.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
                return if is("department") {
                    Target::Text(TextSlot::Department)
                } else {
                    Target::NotKept
                };
            }
            Some(schema) if schema.eq_ignore_ascii_case(ROSTER_SCHEMA) => {
                return Target::Roster;
            }
            Some(schema) if !schema.eq_ignore_ascii_case(USER_SCHEMA) => {
                // A path that is itself a schema URN (`urn:…:enterprise:2.0:User`) parses as
                // schema `urn:…:enterprise:2.0` and name `User`.
                let whole = format!("{schema}:{name}");
                if whole.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) && attr.sub.is_none() {
                    return Target::Enterprise;
                }
                if whole.eq_ignore_ascii_case(ROSTER_SCHEMA) {
                    return Target::Roster;
                }
                return Target::Unknown;
            }
            _ => {}
        }
        if is("userName") {
            Target::Text(TextSlot::UserName)
        } else if is("externalId") {
            Target::Text(TextSlot::ExternalId)
        } else if is("title") {
            Target::Text(TextSlot::Title)
        } else if is("locale") {
            Target::Text(TextSlot::Locale)
        } else if is("timezone") {
            Target::Text(TextSlot::Timezone)
        } else if is("name") {
            Target::Name
        } else if is("emails") {
            Target::Emails
        } else if is("active") {
            Target::Active
        } else if is("password") {
            Target::Password
        } else if READ_ONLY.iter().any(|attr| is(attr)) {
            Target::ReadOnly
        } else if NOT_KEPT.iter().any(|attr| is(attr)) {
            Target::NotKept
        } else {
            Target::Unknown
        }
    }
}

pub(super) fn is_schema_urn(key: &str) -> bool {
    [USER_SCHEMA, ENTERPRISE_SCHEMA, ROSTER_SCHEMA]
        .iter()
        .any(|schema| key.eq_ignore_ascii_case(schema))
}
