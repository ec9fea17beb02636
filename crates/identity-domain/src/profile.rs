//! Profiles: the aggregate with the rule of what may change it, its status, its fields as a
//! caller gives them (checked all at once: every invalid field is reported, not only the first),
//! and the patch an update mask makes of a request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::assignment::{Extension, Role};
use super::email::EmailAddress;
use super::error::{IdentityError, Violation};
use super::fields::{ExternalId, FieldError, Locale, OptionalText, PersonName, TimeZone};
use super::ids::{AccountId, ProfileId};
use super::username::Username;

/// Longest job title or department, in characters.
pub const MAX_TEXT_LENGTH: usize = 100;

/// Fields as received, before any check.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawProfile<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    /// Empty means "the email address".
    pub username: &'a str,
    pub job_title: &'a str,
    pub department: &'a str,
    pub locale: &'a str,
    pub time_zone: &'a str,
    /// Empty means none.
    pub external_id: &'a str,
}

/// A profile's fields after every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileFields {
    pub first_name: String,
    pub last_name: String,
    pub email: EmailAddress,
    pub username: Username,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    pub external_id: Option<String>,
}

impl ProfileFields {
    /// Checks every field; the username defaults to the (normalised) email address.
    pub fn parse(raw: RawProfile<'_>) -> Result<ProfileFields, IdentityError> {
        let mut violations = Vec::new();
        let v = &mut violations;
        let first_name = keep(v, PersonName::parse("first_name", raw.first_name));
        let last_name = keep(v, PersonName::parse("last_name", raw.last_name));
        let job_title = keep(
            v,
            OptionalText::parse("job_title", raw.job_title, MAX_TEXT_LENGTH),
        );
        let department = keep(
            v,
            OptionalText::parse("department", raw.department, MAX_TEXT_LENGTH),
        );
        let locale = keep(v, Locale::parse(raw.locale));
        let time_zone = keep(v, TimeZone::parse(raw.time_zone));
        let external_id = keep(v, ExternalId::parse(raw.external_id));
        let email = if raw.email.trim().is_empty() {
            violations.push(Violation::new("email", "is required"));
            None
        } else {
            match EmailAddress::parse(raw.email) {
                Ok(email) => Some(email),
                Err(error) => {
                    violations.push(Violation::new("email", error.to_string()));
                    None
                }
            }
        };
        let username = if raw.username.trim().is_empty() {
            email.as_ref().and_then(|email| {
                Username::parse(email.as_str())
                    .map_err(|error| {
                        violations.push(Violation::new(
                            "username",
                            format!(
                                "the email address cannot serve as the username ({}); choose a username",
                                error.description()
                            ),
                        ))
                    })
                    .ok()
            })
        } else {
            Username::parse(raw.username)
                .map_err(|error| violations.push(Violation::new("username", error.description())))
                .ok()
        };
        match (
            first_name,
            last_name,
            email,
            username,
            job_title,
            department,
            locale,
            time_zone,
            external_id,
        ) {
            (
                Some(first_name),
                Some(last_name),
                Some(email),
                Some(username),
                Some(job_title),
                Some(department),
                Some(locale),
                Some(time_zone),
                Some(external_id),
            ) if violations.is_empty() => Ok(ProfileFields {
                first_name: first_name.as_str().to_owned(),
                last_name: last_name.as_str().to_owned(),
                email,
                username,
                job_title: job_title.map(|text| text.as_str().to_owned()),
                department: department.map(|text| text.as_str().to_owned()),
                locale: locale.map(|locale| locale.as_str().to_owned()),
                time_zone: time_zone.map(|zone| zone.as_str().to_owned()),
                external_id: external_id.map(|id| id.as_str().to_owned()),
            }),
            _ => Err(IdentityError::Invalid(violations)),
        }
    }
}

/// Where a profile stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileStatus {
    Active,
    /// Kept, but may not sign in.
    Suspended,
    /// Soft-deleted: kept for the record, its username retired; it never changes again.
    Deleted,
}

impl ProfileStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileStatus::Active => "active",
            ProfileStatus::Suspended => "suspended",
            ProfileStatus::Deleted => "deleted",
        }
    }

    /// The status stored under `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ProfileStatus::Active,
            ProfileStatus::Suspended,
            ProfileStatus::Deleted,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }
}

/// A user profile with its assignments, as it is now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: ProfileId,
    pub account_id: AccountId,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub canonical_username: String,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    /// What the customer's directory calls the profile (SCIM `externalId`). Answers kept
    /// before it existed have none.
    #[serde(default)]
    pub external_id: Option<String>,
    pub status: ProfileStatus,
    /// Sorted, each once.
    pub roles: Vec<Role>,
    /// Sorted by number.
    pub extensions: Vec<Extension>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Grows with every change; the etag is made of it.
    pub version: i64,
}

impl Profile {
    /// A new active profile of `fields`, at version 1.
    pub fn new(
        id: ProfileId,
        account_id: AccountId,
        fields: &ProfileFields,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            account_id,
            first_name: String::new(),
            last_name: String::new(),
            email: String::new(),
            username: String::new(),
            canonical_username: String::new(),
            job_title: None,
            department: None,
            locale: None,
            time_zone: None,
            external_id: None,
            status: ProfileStatus::Active,
            roles: Vec::new(),
            extensions: Vec::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        }
        .with_fields(fields)
    }

    /// This profile with `fields` in place of its own (nothing else changes).
    pub fn with_fields(mut self, fields: &ProfileFields) -> Self {
        self.first_name = fields.first_name.clone();
        self.last_name = fields.last_name.clone();
        self.email = fields.email.as_str().to_owned();
        self.username = fields.username.as_str().to_owned();
        self.canonical_username = fields.username.canonical().to_owned();
        self.job_title = fields.job_title.clone();
        self.department = fields.department.clone();
        self.locale = fields.locale.clone();
        self.time_zone = fields.time_zone.clone();
        self.external_id = fields.external_id.clone();
        self
    }

    /// The one rule of what may change a profile: nothing changes a deleted one, and a caller
    /// that names a version (`expected`, from an etag) changes only that version.
    pub fn ensure_changeable(&self, expected: Option<i64>) -> Result<(), IdentityError> {
        if self.status == ProfileStatus::Deleted {
            return Err(IdentityError::Precondition(
                "the profile is deleted and cannot change".into(),
            ));
        }
        if expected.is_some_and(|version| version != self.version) {
            return Err(IdentityError::StaleEtag);
        }
        Ok(())
    }

    /// True when `fields` are what the profile holds.
    pub fn has_fields(&self, fields: &ProfileFields) -> bool {
        self.first_name == fields.first_name
            && self.last_name == fields.last_name
            && self.email == fields.email.as_str()
            && self.username == fields.username.as_str()
            && self.job_title == fields.job_title
            && self.department == fields.department
            && self.locale == fields.locale
            && self.time_zone == fields.time_zone
            && self.external_id == fields.external_id
    }

    /// The profile's fields as a caller would give them.
    pub fn raw(&self) -> OwnedProfile {
        OwnedProfile {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            email: self.email.clone(),
            username: self.username.clone(),
            job_title: self.job_title.clone().unwrap_or_default(),
            department: self.department.clone().unwrap_or_default(),
            locale: self.locale.clone().unwrap_or_default(),
            time_zone: self.time_zone.clone().unwrap_or_default(),
            external_id: self.external_id.clone().unwrap_or_default(),
        }
    }
}

/// A profile's fields as received, owned (see [`RawProfile`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedProfile {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// Empty means "the email address".
    pub username: String,
    pub job_title: String,
    pub department: String,
    pub locale: String,
    pub time_zone: String,
    /// Empty means none.
    pub external_id: String,
}

impl OwnedProfile {
    /// The fields, borrowed for [`ProfileFields::parse`].
    pub fn as_raw(&self) -> RawProfile<'_> {
        RawProfile {
            first_name: &self.first_name,
            last_name: &self.last_name,
            email: &self.email,
            username: &self.username,
            job_title: &self.job_title,
            department: &self.department,
            locale: &self.locale,
            time_zone: &self.time_zone,
            external_id: &self.external_id,
        }
    }
}

/// The fields an update mask of UpdateProfile may name. The external id is not one of them: it
/// is the customer's directory's to set (through SCIM), and read-only over gRPC.
pub const UPDATABLE: [&str; 9] = {
    let mut all = [""; 9];
    let mut field = 0;
    while field < BATCH_UPDATABLE.len() {
        all[field] = BATCH_UPDATABLE[field];
        field += 1;
    }
    all[8] = "status";
    all
};

/// The fields the update mask of a BatchUpsertProfiles item may name: the profile's own
/// (UpdateProfile's mask may name its status too, [`UPDATABLE`]).
pub const BATCH_UPDATABLE: [&str; 8] = [
    "first_name",
    "last_name",
    "email",
    "username",
    "job_title",
    "department",
    "locale",
    "time_zone",
];

impl OwnedProfile {
    /// The field `path` names (one of [`BATCH_UPDATABLE`], or `external_id`).
    pub fn field_mut(&mut self, path: &str) -> Option<&mut String> {
        Some(match path {
            "first_name" => &mut self.first_name,
            "last_name" => &mut self.last_name,
            "email" => &mut self.email,
            "username" => &mut self.username,
            "job_title" => &mut self.job_title,
            "department" => &mut self.department,
            "locale" => &mut self.locale,
            "time_zone" => &mut self.time_zone,
            "external_id" => &mut self.external_id,
            _ => return None,
        })
    }
}

/// An update of a profile: the values of the fields its mask names (the rest keep theirs).
#[derive(Clone, Debug, Default)]
pub struct ProfilePatch {
    /// `(path, value)` for each masked field but `status`: the paths of [`UPDATABLE`], and
    /// `external_id`.
    pub fields: Vec<(String, String)>,
    /// The new status, when the mask names it: `None` inside for a value that is no status.
    pub status: Option<Option<ProfileStatus>>,
}

impl ProfilePatch {
    /// The fields `current` has after the patch, with their status, every field checked.
    pub fn apply(
        &self,
        current: &Profile,
    ) -> Result<(ProfileFields, ProfileStatus), IdentityError> {
        let status = match self.status {
            None => current.status,
            Some(Some(status @ (ProfileStatus::Active | ProfileStatus::Suspended))) => status,
            Some(_) => {
                return Err(IdentityError::invalid(
                    "profile.status",
                    "must be PROFILE_STATUS_ACTIVE or PROFILE_STATUS_SUSPENDED (DeleteProfile deletes)",
                ));
            }
        };
        let raw = self.raw_after(current);
        if self.names("username") && raw.username.trim().is_empty() {
            return Err(IdentityError::invalid("profile.username", "is required"));
        }
        Ok((ProfileFields::parse(raw.as_raw())?, status))
    }

    /// The fields the profile would have after the patch, unchecked (they seed suggestions).
    pub fn raw_after(&self, current: &Profile) -> OwnedProfile {
        let mut raw = current.raw();
        self.write(&mut raw);
        raw
    }

    /// Writes the patched values over `raw`.
    fn write(&self, raw: &mut OwnedProfile) {
        for (path, value) in &self.fields {
            if let Some(slot) = raw.field_mut(path) {
                slot.clone_from(value);
            }
        }
    }

    fn names(&self, path: &str) -> bool {
        self.fields.iter().any(|(named, _)| named == path)
    }
}

/// The value of a check, or `None` with its violation recorded.
fn keep<T>(violations: &mut Vec<Violation>, result: Result<T, FieldError>) -> Option<T> {
    result
        .map_err(|error| violations.push(Violation::new(error.field, error.description)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invalid_field_is_reported() {
        let error = ProfileFields::parse(RawProfile {
            first_name: " ",
            last_name: "",
            email: "not-an-email",
            locale: "english",
            time_zone: "Mars/Olympus",
            ..RawProfile::default()
        })
        .unwrap_err();
        let IdentityError::Invalid(violations) = error else {
            panic!("expected field violations, got {error:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        for field in ["first_name", "last_name", "email", "locale", "time_zone"] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn username_defaults_to_the_normalised_email() {
        let fields = ProfileFields::parse(RawProfile {
            first_name: "Ada",
            last_name: "Lovelace",
            email: " Ada@Example.COM ",
            ..RawProfile::default()
        })
        .unwrap();
        assert_eq!(fields.email.as_str(), "Ada@example.com");
        assert_eq!(fields.username.as_str(), "Ada@example.com");
        assert_eq!(fields.username.canonical(), "ada@example.com");
    }

    fn profile() -> Profile {
        let fields = ProfileFields::parse(RawProfile {
            first_name: "Ada",
            last_name: "Lovelace",
            email: "ada@example.com",
            ..RawProfile::default()
        })
        .unwrap();
        Profile::new(
            ProfileId::generate(),
            AccountId::generate(),
            &fields,
            chrono::Utc::now(),
        )
    }

    #[test]
    fn nothing_changes_a_deleted_profile_and_an_etag_names_one_version() {
        let mut current = profile();
        assert!(current.ensure_changeable(Some(1)).is_ok());
        assert!(matches!(
            current.ensure_changeable(Some(2)),
            Err(IdentityError::StaleEtag)
        ));
        current.status = ProfileStatus::Deleted;
        assert!(matches!(
            current.ensure_changeable(None),
            Err(IdentityError::Precondition(_))
        ));
    }

    #[test]
    fn a_patch_changes_only_the_fields_its_mask_names() {
        let current = profile();
        let patch = ProfilePatch {
            fields: vec![("last_name".into(), "Byron".into())],
            status: Some(Some(ProfileStatus::Suspended)),
        };
        let (fields, status) = patch.apply(&current).unwrap();
        assert_eq!(fields.last_name, "Byron");
        assert_eq!(fields.first_name, "Ada");
        assert_eq!(fields.username.as_str(), "ada@example.com");
        assert_eq!(status, ProfileStatus::Suspended);
    }

    #[test]
    fn a_patch_sets_the_external_id_and_keeps_it_when_it_names_other_fields() {
        let current = profile();
        let setting = ProfilePatch {
            fields: vec![("external_id".into(), " 00u1AbC ".into())],
            status: None,
        };
        let (fields, _) = setting.apply(&current).unwrap();
        assert_eq!(fields.external_id.as_deref(), Some("00u1AbC"));
        let linked = current.with_fields(&fields);
        assert!(linked.has_fields(&fields));
        let renaming = ProfilePatch {
            fields: vec![("first_name".into(), "Augusta".into())],
            status: None,
        };
        let (fields, _) = renaming.apply(&linked).unwrap();
        assert_eq!(fields.external_id.as_deref(), Some("00u1AbC"));
        let clearing = ProfilePatch {
            fields: vec![("external_id".into(), String::new())],
            status: None,
        };
        assert_eq!(clearing.apply(&linked).unwrap().0.external_id, None);
    }

    #[test]
    fn an_invalid_external_id_is_a_violation_of_its_own() {
        let error = ProfileFields::parse(RawProfile {
            first_name: "Ada",
            last_name: "Lovelace",
            email: "ada@example.com",
            external_id: "line\nbreak",
            ..RawProfile::default()
        })
        .unwrap_err();
        let IdentityError::Invalid(violations) = error else {
            panic!("expected field violations, got {error:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["external_id"]);
    }

    #[test]
    fn a_profile_kept_before_external_ids_reads_back_without_one() {
        let mut kept = serde_json::to_value(profile()).unwrap();
        kept.as_object_mut().unwrap().remove("external_id");
        let read: Profile = serde_json::from_value(kept).unwrap();
        assert_eq!(read.external_id, None);
    }

    #[test]
    fn a_patch_refuses_deletion_and_an_emptied_username() {
        let current = profile();
        let deleting = ProfilePatch {
            fields: Vec::new(),
            status: Some(Some(ProfileStatus::Deleted)),
        };
        assert!(
            matches!(deleting.apply(&current), Err(IdentityError::Invalid(v)) if v[0].field == "profile.status")
        );
        let emptied = ProfilePatch {
            fields: vec![("username".into(), " ".into())],
            status: None,
        };
        assert!(
            matches!(emptied.apply(&current), Err(IdentityError::Invalid(v)) if v[0].field == "profile.username")
        );
    }
}
