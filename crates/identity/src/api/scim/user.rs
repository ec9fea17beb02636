//! The SCIM User resource (RFC 7643 §4.1 with the enterprise extension) as a view of a
//! profile: how a profile reads as a User, how a POST or PUT body and each PATCH operation
//! write the User's attributes, and the profile patch the difference makes. No rule about
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
use super::filter::{AttrPath, Filter, Literal, Op, PatchPath};
use crate::domain::assignment::Role;
use crate::domain::profile::{OwnedProfile, Profile, ProfilePatch, ProfileStatus};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const ROSTER_SCHEMA: &str = "urn:roster:params:scim:schemas:extension:roster:2.0:User";

/// The type of the one email a user has.
const EMAIL_TYPE: &str = "work";

/// Core attributes accepted in a body and not kept.
const NOT_KEPT: [&str; 14] = [
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
const READ_ONLY: [&str; 4] = ["id", "meta", "groups", "schemas"];

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextSlot {
    UserName,
    ExternalId,
    Title,
    Department,
    Locale,
    Timezone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
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
    fn of(attr: &AttrPath) -> Target {
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

fn is_schema_urn(key: &str) -> bool {
    [USER_SCHEMA, ENTERPRISE_SCHEMA, ROSTER_SCHEMA]
        .iter()
        .any(|schema| key.eq_ignore_ascii_case(schema))
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

/// The roles a `roles` value names, each once, in order; `null` or nothing: none.
fn roles_of(value: Option<&Value>) -> Result<Vec<Role>, ScimError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.as_slice(),
        Some(single @ Value::String(_)) => std::slice::from_ref(single),
        Some(_) => {
            return Err(ScimError::invalid_value(
                "roles must be a list of role names",
            ));
        }
    };
    let mut roles = items
        .iter()
        .map(|item| {
            let name = item.as_str().unwrap_or_default();
            Role::from_name(name).ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "roles: {item} is no role ({})",
                    Role::ALL.map(Role::as_str).join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// A string attribute's value; `null` clears it.
fn text_of(attribute: &str, value: &Value) -> Result<String, ScimError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(ScimError::invalid_value(format!(
            "{attribute} must be a string"
        ))),
    }
}

fn optional_text(attribute: &str, value: Option<&Value>) -> Result<String, ScimError> {
    value.map_or(Ok(String::new()), |value| text_of(attribute, value))
}

/// A boolean; the strings "true" and "false" in any case too, as Entra ID has sent them.
fn bool_of(attribute: &str, value: &Value) -> Result<bool, ScimError> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!(
            "{attribute} must be true or false"
        ))),
    }
}

/// The one email of an `emails` value: the primary, else the first `work`, else the first.
fn chosen_email(value: &Value) -> Result<String, ScimError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        Value::Null => return Ok(String::new()),
        _ => {
            return Err(ScimError::invalid_value(
                "emails must be a list of objects with a value",
            ));
        }
    };
    let is_primary = |item: &&Value| {
        item.get("primary")
            .is_some_and(|flag| bool_of("emails.primary", flag).unwrap_or(false))
    };
    let is_work = |item: &&Value| {
        item.get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.eq_ignore_ascii_case(EMAIL_TYPE))
    };
    let chosen = items
        .iter()
        .copied()
        .find(is_primary)
        .or_else(|| items.iter().copied().find(is_work))
        .or_else(|| items.first().copied());
    match chosen {
        None => Ok(String::new()),
        Some(item) => match item.get("value") {
            Some(value) => text_of("emails.value", value),
            None => Err(ScimError::invalid_value("an email needs a value")),
        },
    }
}

/// True when the multi-valued attribute's item (`{"value": …, "type": …}`) matches `filter`,
/// whose paths name the item's sub-attributes. Strings compare ignoring case.
pub fn value_matches(filter: &Filter, item: &Value) -> Result<bool, ScimError> {
    Ok(match filter {
        Filter::And(left, right) => value_matches(left, item)? && value_matches(right, item)?,
        Filter::Or(left, right) => value_matches(left, item)? || value_matches(right, item)?,
        Filter::Not(inner) => !value_matches(inner, item)?,
        Filter::Present(path) => {
            sub_value(path, item).is_some_and(|value| !value.is_null() && value != "")
        }
        Filter::Values { attr, .. } => {
            return Err(ScimError::invalid_filter(format!(
                "{} is no sub-attribute",
                attr.display()
            )));
        }
        Filter::Compare { path, op, value } => {
            let have = sub_value(path, item);
            match (have, value) {
                (Some(Value::String(have)), Literal::Text(want)) => {
                    compare_text(&have.to_lowercase(), *op, &want.to_lowercase())
                }
                (Some(Value::Bool(have)), Literal::Bool(want)) => match op {
                    Op::Eq => have == want,
                    Op::Ne => have != want,
                    _ => {
                        return Err(ScimError::invalid_filter(format!(
                            "{} is a boolean: only eq and ne compare it",
                            path.display()
                        )));
                    }
                },
                (None | Some(Value::Null), Literal::Null) => *op == Op::Eq,
                (Some(_), Literal::Null) => *op == Op::Ne,
                (None, _) => *op == Op::Ne,
                _ => false,
            }
        }
    })
}

fn sub_value<'a>(path: &AttrPath, item: &'a Value) -> Option<&'a Value> {
    let name = path.sub.as_deref().unwrap_or(&path.name);
    item.as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// A text comparison; both sides already in the case they compare in.
pub fn compare_text(have: &str, op: Op, want: &str) -> bool {
    match op {
        Op::Eq => have == want,
        Op::Ne => have != want,
        Op::Co => have.contains(want),
        Op::Sw => have.starts_with(want),
        Op::Ew => have.ends_with(want),
        Op::Gt => have > want,
        Op::Ge => have >= want,
        Op::Lt => have < want,
        Op::Le => have <= want,
    }
}

/// The User a profile reads as; `location` is the resource's URL.
pub fn user_resource(profile: &Profile, location: &str) -> Value {
    let mut schemas = vec![USER_SCHEMA];
    let mut user = json!({
        "id": profile.id.0.to_string(),
        "userName": profile.username,
        "name": {
            "givenName": profile.first_name,
            "familyName": profile.last_name,
        },
        "displayName": format!("{} {}", profile.first_name, profile.last_name),
        "emails": [{"value": profile.email, "type": EMAIL_TYPE}],
        "active": profile.status == ProfileStatus::Active,
        "groups": profile.roles.iter().map(|role| json!({
            "value": role.as_str(),
            "display": super::group::display_name(*role),
            "type": "direct",
        })).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "User",
            "created": super::time(profile.created_at),
            "lastModified": super::time(profile.updated_at),
            "version": super::version(profile.version),
            "location": location,
        },
    });
    for (key, value) in [
        ("externalId", &profile.external_id),
        ("title", &profile.job_title),
        ("locale", &profile.locale),
        ("timezone", &profile.time_zone),
    ] {
        if let Some(value) = value {
            user[key] = Value::String(value.clone());
        }
    }
    // An extension is there when it holds something, and `schemas` names what is there.
    if let Some(department) = &profile.department {
        schemas.push(ENTERPRISE_SCHEMA);
        user[ENTERPRISE_SCHEMA] = json!({ "department": department });
    }
    let mut roster = Map::new();
    if !profile.roles.is_empty() {
        roster.insert(
            "roles".into(),
            json!(
                profile
                    .roles
                    .iter()
                    .map(|role| role.as_str())
                    .collect::<Vec<_>>()
            ),
        );
    }
    if !profile.extensions.is_empty() {
        roster.insert(
            "extensions".into(),
            profile
                .extensions
                .iter()
                .map(|extension| {
                    json!({"number": extension.number.as_str(), "kind": extension.kind.as_str()})
                })
                .collect(),
        );
    }
    if !roster.is_empty() {
        schemas.push(ROSTER_SCHEMA);
        user[ROSTER_SCHEMA] = Value::Object(roster);
    }
    user["schemas"] = json!(schemas);
    user
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
