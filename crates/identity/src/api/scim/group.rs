//! `/Groups`: Roster's roles as SCIM groups. A group's id is the role's name, its members the
//! account's users holding the role; PATCH and PUT add and remove members (one transaction
//! for all of them), while creating, renaming or deleting a group is refused, since roles are
//! fixed.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::error::ScimError;
use super::filter::{Filter, parse_filter, parse_path};
use super::users::{Params, profile_id};
use super::values::value_matches;
use super::{Scim, ScimCaller, field, json_body, list_response, patch_operations, respond};
use crate::app::assignments::Replaced;
use crate::domain::assignment::Role;
use crate::domain::ids::ProfileId;

pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Most members one PATCH or PUT may add and remove together.
pub const MAX_MEMBERS_PER_PATCH: usize = 1000;

/// Most members a group is read or replaced with: beyond, its members are changed with PATCH
/// add and remove, and a user's groups read from the user.
pub const MAX_LISTED_MEMBERS: usize = 10_000;

/// The members of `role`'s group, or 400 `tooMany` when there are more than
/// [`MAX_LISTED_MEMBERS`] (they are not all read).
async fn members(
    scim: &Scim,
    who: &ScimCaller,
    role: Role,
) -> Result<Vec<(ProfileId, String)>, ScimError> {
    scim.identity
        .role_members(&who.caller, who.account, role, MAX_LISTED_MEMBERS)
        .await?
        .ok_or_else(too_many_members)
}

fn too_many_members() -> ScimError {
    ScimError::new(
        StatusCode::BAD_REQUEST,
        Some("tooMany"),
        format!(
            "the group has more than {MAX_LISTED_MEMBERS} members: read it with \
             excludedAttributes=members (a user's groups are on the user), and change its \
             members with PATCH add and remove"
        ),
    )
}

/// The name a role's group shows.
pub fn display_name(role: Role) -> &'static str {
    match role {
        Role::AccountAdministrator => "Account administrators",
        Role::ContactCenterAgent => "Contact-center agents",
        Role::ContactCenterSupervisor => "Contact-center supervisors",
        Role::StandardUser => "Standard users",
    }
}

fn role_of(id: &str) -> Result<Role, ScimError> {
    Role::from_name(id).ok_or_else(|| ScimError::not_found("Group"))
}

fn fixed() -> ScimError {
    ScimError::new(
        StatusCode::FORBIDDEN,
        None,
        "groups are Roster's fixed roles: they cannot be created, renamed or deleted; add and \
         remove members with PATCH"
            .into(),
    )
}

pub async fn create(_who: ScimCaller) -> ScimError {
    fixed()
}

pub async fn delete(_who: ScimCaller, Path(id): Path<String>) -> ScimError {
    match role_of(&id) {
        Ok(_) => fixed(),
        Err(error) => error,
    }
}

/// The group of `role`; its members unless the projection drops them.
async fn group(
    scim: &Scim,
    who: &ScimCaller,
    role: Role,
    params: &Params,
) -> Result<Value, ScimError> {
    let mut group = json!({
        "schemas": [GROUP_SCHEMA],
        "id": role.as_str(),
        "displayName": display_name(role),
        "meta": {
            "resourceType": "Group",
            "location": scim.location("Groups", role.as_str()),
        },
    });
    if params.projection.keeps("members") {
        let members = members(scim, who, role).await?;
        group["members"] = members
            .into_iter()
            .map(|(id, username)| {
                json!({
                    "value": id.0.to_string(),
                    "display": username,
                    "type": "User",
                })
            })
            .collect();
    }
    params.projection.apply(&mut group);
    Ok(group)
}

pub async fn read(
    State(scim): State<Scim>,
    who: ScimCaller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    let params = Params::parse(query.as_deref())?;
    let role = role_of(&id)?;
    Ok(respond(
        StatusCode::OK,
        &group(&scim, &who, role, &params).await?,
        &[],
    ))
}

pub async fn list(
    State(scim): State<Scim>,
    who: ScimCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    let params = Params::parse(query.as_deref())?;
    let filter = params.filter.as_deref().map(parse_filter).transpose()?;
    let mut matching = Vec::new();
    for role in Role::ALL {
        let summary = json!({
            "id": role.as_str(),
            "displayName": display_name(role),
        });
        if let Some(filter) = &filter {
            check_group_filter(filter)?;
            if !value_matches(filter, &summary)? {
                continue;
            }
        }
        matching.push(role);
    }
    let total = matching.len() as u64;
    let skip = usize::try_from(params.start_index - 1).unwrap_or(usize::MAX);
    let take = usize::try_from(params.count).unwrap_or(usize::MAX);
    let mut resources = Vec::new();
    for role in matching.into_iter().skip(skip).take(take) {
        resources.push(group(&scim, &who, role, &params).await?);
    }
    Ok(respond(
        StatusCode::OK,
        &list_response(resources, total, params.start_index),
        &[],
    ))
}

/// A group filter may name `id` and `displayName` (members are read from the group).
fn check_group_filter(filter: &Filter) -> Result<(), ScimError> {
    match filter {
        Filter::And(left, right) | Filter::Or(left, right) => {
            check_group_filter(left)?;
            check_group_filter(right)
        }
        Filter::Not(inner) => check_group_filter(inner),
        Filter::Present(path) | Filter::Compare { path, .. }
            if path.sub.is_none() && (path.is("id", None) || path.is("displayName", None)) =>
        {
            Ok(())
        }
        Filter::Present(path)
        | Filter::Compare { path, .. }
        | Filter::Values { attr: path, .. } => Err(ScimError::invalid_filter(format!(
            "{} cannot be filtered on (id and displayName can)",
            path.display()
        ))),
    }
}

/// Members to add and to remove.
#[derive(Default)]
struct MemberChange {
    add: Vec<ProfileId>,
    remove: Vec<ProfileId>,
}

impl MemberChange {
    fn len(&self) -> usize {
        self.add.len() + self.remove.len()
    }
}

/// The members a PATCH's operations make, applied one after another (RFC 7644 §3.5.2: in
/// order, each on what the one before left): a change to the members as they are, or, once an
/// operation has named the whole list (a replace, or a remove without a value), that list.
enum Members {
    Change(MemberChange),
    Exactly(Vec<ProfileId>),
}

impl Default for Members {
    fn default() -> Self {
        Members::Change(MemberChange::default())
    }
}

impl Members {
    fn add(&mut self, ids: Vec<ProfileId>) {
        match self {
            Members::Change(change) => {
                change.remove.retain(|id| !ids.contains(id));
                for id in ids {
                    if !change.add.contains(&id) {
                        change.add.push(id);
                    }
                }
            }
            Members::Exactly(members) => {
                for id in ids {
                    if !members.contains(&id) {
                        members.push(id);
                    }
                }
            }
        }
    }

    fn remove(&mut self, ids: Vec<ProfileId>) {
        match self {
            Members::Change(change) => {
                change.add.retain(|id| !ids.contains(id));
                for id in ids {
                    if !change.remove.contains(&id) {
                        change.remove.push(id);
                    }
                }
            }
            Members::Exactly(members) => members.retain(|id| !ids.contains(id)),
        }
    }

    fn replace(&mut self, mut ids: Vec<ProfileId>) {
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(*id));
        *self = Members::Exactly(ids);
    }
}

/// The user ids of a `members` value: `[{"value": id}, …]`.
fn member_ids(value: &Value) -> Result<Vec<ProfileId>, ScimError> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        _ => {
            return Err(ScimError::invalid_value(
                "members must be a list of objects with a value (a user id)",
            ));
        }
    };
    items
        .iter()
        .map(|item| {
            let id = item
                .as_object()
                .and_then(|object| field(object, "value"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ScimError::invalid_value("each member needs a value: the user's id")
                })?;
            profile_id(id).map_err(|_| {
                ScimError::invalid_value(format!("member {id:?} is no user of the account"))
            })
        })
        .collect()
}

/// The display name a PATCH or PUT sets must be the group's own.
fn check_display_name(role: Role, value: &Value) -> Result<(), ScimError> {
    match value.as_str() {
        Some(name) if name == display_name(role) || name == role.as_str() => Ok(()),
        _ => Err(ScimError::mutability(format!(
            "displayName is fixed: the group of role {} is {:?}",
            role.as_str(),
            display_name(role)
        ))),
    }
}

pub async fn patch(
    State(scim): State<Scim>,
    who: ScimCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let role = role_of(&id)?;
    let body = json_body(&headers, body).await?;
    let mut members = Members::default();
    for operation in patch_operations(&body)? {
        let op = operation.op.to_ascii_lowercase();
        let path = operation.path.as_deref().map(parse_path).transpose()?;
        let value = operation.value;
        match (op.as_str(), path) {
            ("add" | "replace", None) => {
                let object = value.as_ref().and_then(Value::as_object).ok_or_else(|| {
                    ScimError::invalid_value("an operation without a path needs an object value")
                })?;
                for (key, value) in object {
                    if key.eq_ignore_ascii_case("displayName") {
                        check_display_name(role, value)?;
                    } else if key.eq_ignore_ascii_case("members") {
                        let ids = member_ids(value)?;
                        if op == "replace" {
                            members.replace(ids);
                        } else {
                            members.add(ids);
                        }
                    } else if !key.eq_ignore_ascii_case("id")
                        && !key.eq_ignore_ascii_case("schemas")
                    {
                        return Err(ScimError::invalid_path(format!(
                            "{key} is no attribute of a Group"
                        )));
                    }
                }
            }
            (op @ ("add" | "replace" | "remove"), Some(path)) => {
                if path.attr.is("displayName", None) {
                    check_display_name(role, value.as_ref().unwrap_or(&Value::Null))?;
                    continue;
                }
                if !path.attr.is("members", None) {
                    return Err(ScimError::invalid_path(format!(
                        "{} is no attribute of a Group that can change",
                        path.attr.display()
                    )));
                }
                match (op, path.filter) {
                    ("remove", Some(filter)) => members.remove(filtered_member_ids(&filter)?),
                    ("remove", None) => match value {
                        Some(value) => members.remove(member_ids(&value)?),
                        // Every member goes.
                        None => members.replace(Vec::new()),
                    },
                    ("add", None) => {
                        members.add(member_ids(value.as_ref().unwrap_or(&Value::Null))?);
                    }
                    ("replace", None) => {
                        members.replace(member_ids(value.as_ref().unwrap_or(&Value::Null))?);
                    }
                    _ => {
                        return Err(ScimError::invalid_path(
                            "members[…] takes only remove".into(),
                        ));
                    }
                }
            }
            ("remove", None) => return Err(ScimError::no_target("a remove needs a path")),
            (other, _) => {
                return Err(ScimError::invalid_syntax(format!(
                    "{other:?} is no PATCH operation (add, replace, remove)"
                )));
            }
        }
    }
    apply(&scim, &who, role, members).await?;
    let params = Params::parse(None)?;
    Ok(respond(
        StatusCode::OK,
        &group(&scim, &who, role, &params).await?,
        &[],
    ))
}

/// The ids a `members[value eq "…"]` filter names (`or` of such comparisons too).
fn filtered_member_ids(filter: &Filter) -> Result<Vec<ProfileId>, ScimError> {
    match filter {
        Filter::Or(left, right) => {
            let mut ids = filtered_member_ids(left)?;
            ids.extend(filtered_member_ids(right)?);
            Ok(ids)
        }
        Filter::Compare {
            path,
            op: super::filter::Op::Eq,
            value: super::filter::Literal::Text(id),
        } if path.is("value", None) => Ok(vec![profile_id(id).map_err(|_| {
            ScimError::invalid_value(format!("member {id:?} is no user of the account"))
        })?]),
        _ => Err(ScimError::invalid_path(
            "members[…] takes value eq \"<user id>\" (joined with or)".into(),
        )),
    }
}

pub async fn replace(
    State(scim): State<Scim>,
    who: ScimCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let role = role_of(&id)?;
    let body = json_body(&headers, body).await?;
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))?;
    if let Some(name) = field(object, "displayName") {
        check_display_name(role, name)?;
    }
    let members = match field(object, "members") {
        Some(value) => member_ids(value)?,
        None => Vec::new(),
    };
    apply(&scim, &who, role, Members::Exactly(members)).await?;
    let params = Params::parse(None)?;
    Ok(respond(
        StatusCode::OK,
        &group(&scim, &who, role, &params).await?,
        &[],
    ))
}

/// Makes the change. To exactly a list: what the group's members lack and hold beyond it,
/// read and changed in one transaction under the group's lock, so that two replacements at
/// once end as one of them. Removing a user who is not a member (deleted since, or never one)
/// changes nothing.
async fn apply(
    scim: &Scim,
    who: &ScimCaller,
    role: Role,
    members: Members,
) -> Result<(), ScimError> {
    let change = match members {
        Members::Change(change) => change,
        Members::Exactly(wanted) => {
            let replaced = scim
                .identity
                .replace_role_members(
                    &who.caller,
                    who.account,
                    role,
                    &wanted,
                    MAX_LISTED_MEMBERS,
                    MAX_MEMBERS_PER_PATCH,
                )
                .await
                .map_err(member_error)?;
            return match replaced {
                Replaced::Done => Ok(()),
                Replaced::TooManyMembers => Err(too_many_members()),
                Replaced::TooLargeChange => Err(too_large_change()),
            };
        }
    };
    if change.len() > MAX_MEMBERS_PER_PATCH {
        return Err(too_large_change());
    }
    if change.len() == 0 {
        return Ok(());
    }
    scim.identity
        .change_role_members(&who.caller, role, &change.add, &change.remove)
        .await
        .map_err(member_error)
}

/// A member to add that is no user of the account is the request's error.
fn member_error(error: crate::domain::error::IdentityError) -> ScimError {
    match error {
        crate::domain::error::IdentityError::NotFound(_) => {
            ScimError::invalid_value("a member is no user of the account")
        }
        other => other.into(),
    }
}

fn too_large_change() -> ScimError {
    ScimError::invalid_value(format!(
        "at most {MAX_MEMBERS_PER_PATCH} members may be added and removed in one request"
    ))
}
