//! The SCIM User resource (RFC 7643 §4.1 with the enterprise extension) as a view of a
//! profile: how a POST or PUT body and each PATCH operation write the User's attributes, and
//! the profile patch the difference makes (`users` reads a profile as a User). No rule about
//! profiles lives here: the use cases check what is written.
//!
//! Attribute names ignore case, as SCIM's do. Of a User's core attributes Roster keeps
//! `userName`, `externalId`, `name.givenName`, `name.familyName`, one email, `title`, `locale`,
//! `timezone` and `active`, and the enterprise `department`; the other core attributes
//! (`displayName`, `phoneNumbers`, `addresses`, …) are accepted in bodies and not kept, and
//! /Schemas says which are kept. `password` is refused: users set theirs through the emailed
//! link.

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{Filter, PatchPath};
use super::target::{Target, TextSlot, is_schema_urn};
use super::values::{bool_of, chosen_email, optional_text, roles_of, text_of, value_matches};
use crate::domain::assignment::Role;
use crate::domain::profile::{OwnedProfile, Profile, ProfilePatch, ProfileStatus};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const ROSTER_SCHEMA: &str = "urn:roster:params:scim:schemas:extension:roster:2.0:User";

/// The type of the one email a user has.
pub(super) const EMAIL_TYPE: &str = "work";

/// The User attributes a client writes, as they stand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserFields {
    pub user_name: String,
    pub external_id: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub title: String,
    pub department: String,
    pub locale: String,
    pub timezone: String,
    pub active: bool,
    /// The roles, when known or written: a body that leaves Roster's extension out leaves
    /// the roles as they are.
    pub roles: Option<Vec<Role>>,
    /// Whether the user holds extensions (read-only here).
    pub extensions_held: bool,
}

impl UserFields {
    /// A new user's attributes before its body is read: active unless it says otherwise.
    pub fn new() -> Self {
        Self {
            active: true,
            ..Self::default()
        }
    }

    /// The attributes `profile` holds.
    pub fn of(profile: &Profile) -> Self {
        Self {
            user_name: profile.username.clone(),
            external_id: profile.external_id.clone().unwrap_or_default(),
            given_name: profile.first_name.clone(),
            family_name: profile.last_name.clone(),
            email: profile.email.clone(),
            title: profile.job_title.clone().unwrap_or_default(),
            department: profile.department.clone().unwrap_or_default(),
            locale: profile.locale.clone().unwrap_or_default(),
            timezone: profile.time_zone.clone().unwrap_or_default(),
            active: profile.status == ProfileStatus::Active,
            roles: Some(profile.roles.clone()),
            extensions_held: !profile.extensions.is_empty(),
        }
    }

    /// The attributes a POST or PUT body gives (a PUT replaces: what it leaves out is unset).
    pub fn from_body(body: &Value) -> Result<Self, ScimError> {
        let object = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))?;
        let mut fields = Self::new();
        fields.write_object(None, object, Write::Body)?;
        Ok(fields)
    }

    /// The profile's fields as a create takes them.
    pub fn to_owned_profile(&self) -> OwnedProfile {
        OwnedProfile {
            first_name: self.given_name.clone(),
            last_name: self.family_name.clone(),
            email: self.email.clone(),
            username: self.user_name.clone(),
            job_title: self.title.clone(),
            department: self.department.clone(),
            locale: self.locale.clone(),
            time_zone: self.timezone.clone(),
            external_id: self.external_id.clone(),
        }
    }

    /// The patch that turns `current`'s attributes into these.
    pub fn patch_from(&self, current: &UserFields) -> ProfilePatch {
        let mut fields = Vec::new();
        for (path, new, old) in [
            ("username", &self.user_name, &current.user_name),
            ("external_id", &self.external_id, &current.external_id),
            ("first_name", &self.given_name, &current.given_name),
            ("last_name", &self.family_name, &current.family_name),
            ("email", &self.email, &current.email),
            ("job_title", &self.title, &current.title),
            ("department", &self.department, &current.department),
            ("locale", &self.locale, &current.locale),
            ("time_zone", &self.timezone, &current.timezone),
        ] {
            if new != old {
                fields.push((path.to_owned(), new.clone()));
            }
        }
        let status = (self.active != current.active).then_some(Some(if self.active {
            ProfileStatus::Active
        } else {
            ProfileStatus::Suspended
        }));
        ProfilePatch { fields, status }
    }

    /// Applies one PATCH operation (RFC 7644 §3.5.2); `op` in any case.
    pub fn apply(
        &mut self,
        op: &str,
        path: Option<&PatchPath>,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        let op = op.to_ascii_lowercase();
        match (op.as_str(), path) {
            ("add" | "replace", None) => {
                let object = value.and_then(Value::as_object).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "an {op} without a path needs an object of attributes as its value"
                    ))
                })?;
                self.write_object(None, object, Write::Patch)
            }
            ("add" | "replace", Some(path)) => {
                let value = value.ok_or_else(|| {
                    ScimError::invalid_value(format!("an {op} of {} needs a value", show(path)))
                })?;
                self.write_path(path, Some(value))
            }
            ("remove", Some(path)) => self.write_path(path, None),
            ("remove", None) => Err(ScimError::no_target("a remove needs a path")),
            _ => Err(ScimError::invalid_syntax(format!(
                "{op:?} is no PATCH operation (add, replace, remove)"
            ))),
        }
    }

    /// Writes the attributes of a body or of a PATCH value object; `schema` when the object is
    /// an extension's.
    fn write_object(
        &mut self,
        schema: Option<&str>,
        object: &Map<String, Value>,
        write: Write,
    ) -> Result<(), ScimError> {
        for (key, value) in object {
            if schema.is_none() && is_schema_urn(key) {
                match value {
                    Value::Object(inner) => self.write_object(Some(key), inner, write)?,
                    _ if write == Write::Body => continue,
                    _ => {
                        return Err(ScimError::invalid_value(format!(
                            "{key} must be an object of the extension's attributes"
                        )));
                    }
                }
                continue;
            }
            let path = match super::filter::parse_path(key) {
                Ok(path) => path,
                Err(_) if write == Write::Body => continue,
                Err(error) => return Err(error),
            };
            let mut path = path;
            if path.attr.schema.is_none() {
                path.attr.schema = schema.map(str::to_owned);
            }
            let target = Target::of(&path.attr);
            match (target, write) {
                (Target::ReadOnly | Target::NotKept | Target::Unknown, Write::Body) => continue,
                (Target::NotKept, Write::Patch) => continue,
                _ => self.write_path(&path, Some(value))?,
            }
        }
        Ok(())
    }

    /// Writes `value` (`None`: removes) at `path`.
    fn write_path(&mut self, path: &PatchPath, value: Option<&Value>) -> Result<(), ScimError> {
        let attr = &path.attr;
        match Target::of(attr) {
            Target::Unknown => Err(ScimError::invalid_path(format!(
                "{} is no attribute of a User",
                show(path)
            ))),
            Target::ReadOnly => Err(ScimError::mutability(format!(
                "{} is set by the server and cannot be written",
                show(path)
            ))),
            Target::Password => Err(ScimError::mutability(
                "passwords are not set through SCIM: a user sets theirs through the link \
                 Roster emails (changePassword is not supported)",
            )),
            Target::NotKept => Ok(()),
            Target::Roster => self.write_roster(path, value),
            Target::Name => self.write_name(path, value),
            Target::Emails => self.write_emails(path, value),
            Target::Text(slot) => {
                reject_filter(path)?;
                let text = match value {
                    None => String::new(),
                    Some(value) => text_of(&show(path), value)?,
                };
                *self.slot(slot) = text;
                Ok(())
            }
            Target::Active => {
                reject_filter(path)?;
                self.active = match value {
                    None => {
                        return Err(ScimError::mutability(
                            "active cannot be removed; set it to true or false",
                        ));
                    }
                    Some(value) => bool_of("active", value)?,
                };
                Ok(())
            }
            Target::Enterprise => {
                // The enterprise extension as a whole: only `department` is kept.
                reject_filter(path)?;
                match value {
                    None => self.department.clear(),
                    Some(Value::Object(inner)) => {
                        for (key, value) in inner {
                            if key.eq_ignore_ascii_case("department") {
                                self.department = text_of("department", value)?;
                            }
                        }
                    }
                    Some(_) => {
                        return Err(ScimError::invalid_value(format!(
                            "{ENTERPRISE_SCHEMA} must be an object"
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// Roster's extension: `roles` are written (all of them at once); `extensions` are
    /// read-only, and a write that would change nothing is accepted.
    fn write_roster(&mut self, path: &PatchPath, value: Option<&Value>) -> Result<(), ScimError> {
        reject_filter(path)?;
        let whole = path
            .attr
            .schema
            .as_deref()
            .is_some_and(|schema| !schema.eq_ignore_ascii_case(ROSTER_SCHEMA));
        if !whole {
            return self.write_roster_attribute(&path.attr.name, value);
        }
        match value {
            None | Some(Value::Null) => {
                self.write_roster_attribute("extensions", None)?;
                self.roles = Some(Vec::new());
                Ok(())
            }
            Some(Value::Object(inner)) => {
                for (key, value) in inner {
                    if !key.eq_ignore_ascii_case("schemas") {
                        self.write_roster_attribute(key, Some(value))?;
                    }
                }
                Ok(())
            }
            Some(_) => Err(ScimError::invalid_value(format!(
                "{ROSTER_SCHEMA} must be an object"
            ))),
        }
    }

    fn write_roster_attribute(
        &mut self,
        name: &str,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        if name.eq_ignore_ascii_case("roles") {
            self.roles = Some(roles_of(value)?);
            return Ok(());
        }
        if !name.eq_ignore_ascii_case("extensions") {
            return Err(ScimError::invalid_path(format!(
                "{name} is no attribute of {ROSTER_SCHEMA} (roles, extensions)"
            )));
        }
        let empty = match value {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => items.is_empty(),
            Some(_) => false,
        };
        if empty && !self.extensions_held {
            Ok(())
        } else {
            Err(ScimError::mutability(
                "extensions are read-only here: assign them through Roster's API",
            ))
        }
    }

    fn write_name(&mut self, path: &PatchPath, value: Option<&Value>) -> Result<(), ScimError> {
        reject_filter(path)?;
        match path.attr.sub.as_deref() {
            Some(sub) if sub.eq_ignore_ascii_case("givenName") => {
                self.given_name = optional_text("name.givenName", value)?;
            }
            Some(sub) if sub.eq_ignore_ascii_case("familyName") => {
                self.family_name = optional_text("name.familyName", value)?;
            }
            Some(_) => {}
            None => match value {
                None => {
                    self.given_name.clear();
                    self.family_name.clear();
                }
                Some(Value::Object(inner)) => {
                    for (key, value) in inner {
                        if key.eq_ignore_ascii_case("givenName") {
                            self.given_name = text_of("name.givenName", value)?;
                        } else if key.eq_ignore_ascii_case("familyName") {
                            self.family_name = text_of("name.familyName", value)?;
                        }
                    }
                }
                Some(_) => return Err(ScimError::invalid_value("name must be an object")),
            },
        }
        Ok(())
    }

    /// `emails`: a user has one, the primary (else the first `work`, else the first) of what
    /// the client sends.
    fn write_emails(&mut self, path: &PatchPath, value: Option<&Value>) -> Result<(), ScimError> {
        let sub = path
            .attr
            .sub
            .as_deref()
            .or(path.sub.as_deref())
            .map(str::to_ascii_lowercase);
        if let Some(filter) = &path.filter
            && !self.email_matches(filter)?
        {
            return match value {
                // Adding a value of a type the user has none of: it becomes the user's email
                // when it is the only one named.
                Some(value) if sub.as_deref() == Some("value") => {
                    self.email = text_of("emails.value", value)?;
                    Ok(())
                }
                Some(_) => Ok(()),
                None => Err(ScimError::no_target(format!(
                    "{} matches no email of the user",
                    show(path)
                ))),
            };
        }
        match (sub.as_deref(), value) {
            (Some("value"), value) => {
                self.email = optional_text("emails.value", value)?;
                Ok(())
            }
            // The type and primary flag of the one email are fixed.
            (Some("type" | "primary" | "display"), _) => Ok(()),
            (Some(other), _) => Err(ScimError::invalid_path(format!(
                "emails.{other} is no sub-attribute of emails"
            ))),
            (None, None) => {
                self.email.clear();
                Ok(())
            }
            (None, Some(value)) => {
                self.email = chosen_email(value)?;
                Ok(())
            }
        }
    }

    fn email_matches(&self, filter: &Filter) -> Result<bool, ScimError> {
        let item = json!({"value": self.email, "type": EMAIL_TYPE, "primary": true});
        value_matches(filter, &item)
    }

    fn slot(&mut self, slot: TextSlot) -> &mut String {
        match slot {
            TextSlot::UserName => &mut self.user_name,
            TextSlot::ExternalId => &mut self.external_id,
            TextSlot::Title => &mut self.title,
            TextSlot::Department => &mut self.department,
            TextSlot::Locale => &mut self.locale,
            TextSlot::Timezone => &mut self.timezone,
        }
    }
}

/// Where a write comes from: a body (lenient: what the server sets or does not keep is
/// ignored) or a PATCH target (strict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Body,
    Patch,
}

fn show(path: &PatchPath) -> String {
    path.attr.display()
}

fn reject_filter(path: &PatchPath) -> Result<(), ScimError> {
    if path.filter.is_some() {
        Err(ScimError::invalid_path(format!(
            "{} is single-valued and takes no value filter",
            show(path)
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::scim::filter::parse_path;

    fn ada() -> UserFields {
        UserFields {
            user_name: "ada".into(),
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            active: true,
            ..UserFields::default()
        }
    }

    fn patch(fields: &mut UserFields, op: &str, path: Option<&str>, value: Value) {
        let path = path.map(|path| parse_path(path).unwrap());
        fields
            .apply(op, path.as_ref(), Some(&value))
            .unwrap_or_else(|error| panic!("{op} {path:?}: {error:?}"));
    }

    #[test]
    fn a_body_writes_the_kept_attributes_and_ignores_the_rest() {
        let fields = UserFields::from_body(&json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
            "id": "ignored",
            "UserName": "ada@example.com",
            "externalId": "E-1",
            "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "x"},
            "displayName": "Ada L.",
            "emails": [
                {"value": "home@example.com", "type": "home"},
                {"value": "ada@example.com", "type": "work", "primary": "True"}
            ],
            "phoneNumbers": [{"value": "+1"}],
            "title": "Engineer",
            "active": "False",
            ENTERPRISE_SCHEMA: {"department": "R&D", "employeeNumber": "7"},
            "unknownThing": 1,
        }))
        .unwrap();
        assert_eq!(fields.user_name, "ada@example.com");
        assert_eq!(fields.external_id, "E-1");
        assert_eq!(fields.given_name, "Ada");
        assert_eq!(fields.email, "ada@example.com");
        assert_eq!(fields.title, "Engineer");
        assert_eq!(fields.department, "R&D");
        assert!(!fields.active);
    }

    #[test]
    fn entra_id_patch_shapes_apply() {
        let mut fields = ada();
        patch(&mut fields, "Replace", Some("active"), json!("False"));
        assert!(!fields.active);
        patch(
            &mut fields,
            "Replace",
            Some(r#"emails[type eq "work"].value"#),
            json!("new@example.com"),
        );
        assert_eq!(fields.email, "new@example.com");
        patch(&mut fields, "Add", Some("name.givenName"), json!("Augusta"));
        assert_eq!(fields.given_name, "Augusta");
        patch(
            &mut fields,
            "Replace",
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            json!("Maths"),
        );
        assert_eq!(fields.department, "Maths");
        patch(
            &mut fields,
            "add",
            None,
            json!({"title": "Countess", "name.familyName": "King", "displayName": "x"}),
        );
        assert_eq!(fields.title, "Countess");
        assert_eq!(fields.family_name, "King");
    }

    #[test]
    fn okta_patch_shapes_apply() {
        let mut fields = ada();
        patch(&mut fields, "replace", None, json!({"active": false}));
        assert!(!fields.active);
        patch(
            &mut fields,
            "replace",
            None,
            json!({"name": {"givenName": "A"}, "emails": [{"value": "a@example.com", "primary": true}]}),
        );
        assert_eq!(fields.given_name, "A");
        assert_eq!(fields.email, "a@example.com");
    }

    #[test]
    fn remove_clears_and_bad_targets_are_refused() {
        let mut fields = ada();
        fields.title = "Engineer".into();
        let title = parse_path("title").unwrap();
        fields.apply("REMOVE", Some(&title), None).unwrap();
        assert_eq!(fields.title, "");
        let id = parse_path("id").unwrap();
        let error = fields
            .apply("replace", Some(&id), Some(&json!("x")))
            .unwrap_err();
        assert_eq!(error.scim_type, Some("mutability"));
        let unknown = parse_path("shoeSize").unwrap();
        let error = fields
            .apply("replace", Some(&unknown), Some(&json!("x")))
            .unwrap_err();
        assert_eq!(error.scim_type, Some("invalidPath"));
        let error = fields
            .apply("merge", Some(&title), Some(&json!("x")))
            .unwrap_err();
        assert_eq!(error.scim_type, Some("invalidSyntax"));
        let password = parse_path("password").unwrap();
        let error = fields
            .apply("replace", Some(&password), Some(&json!("hunter2")))
            .unwrap_err();
        assert!(error.detail.contains("link"), "{}", error.detail);
        let home = parse_path(r#"emails[type eq "home"]"#).unwrap();
        let error = fields.apply("remove", Some(&home), None).unwrap_err();
        assert_eq!(error.scim_type, Some("noTarget"));
    }

    #[test]
    fn the_patch_names_only_what_changed() {
        let current = ada();
        let mut next = current.clone();
        next.family_name = "Byron".into();
        next.active = false;
        let patch = next.patch_from(&current);
        assert_eq!(
            patch.fields,
            vec![("last_name".to_owned(), "Byron".to_owned())]
        );
        assert_eq!(patch.status, Some(Some(ProfileStatus::Suspended)));
        assert!(current.patch_from(&current).fields.is_empty());
    }
}
