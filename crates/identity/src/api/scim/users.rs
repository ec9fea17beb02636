//! `/Users`: each handler reads the request, calls one use case with the token's caller and
//! answers the User the profile now is ([`user_resource`]). A deleted profile, a profile of another account and
//! one that never existed are the same 404.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{parse_filter, parse_path};
use super::project::Projection;
use super::user::{EMAIL_TYPE, ENTERPRISE_SCHEMA, ROSTER_SCHEMA, USER_SCHEMA, UserFields};
use super::{
    Scim, ScimCaller, if_match, json_body, list_response, patch_operations, respond, version,
};
use crate::app::RequestId;
use crate::app::profiles::NewProfile;
use crate::domain::error::{IdentityError, Refusal};
use crate::domain::ids::ProfileId;
use crate::domain::profile::{Profile, ProfileStatus};
use crate::domain::query::ProfileQuery;

/// Attempts of a PUT or PATCH without If-Match when another change lands between its read and
/// its write (with If-Match, the first such change is a 412). Each attempt that loses means
/// another change was written, so up to this many changes of one user at once all go through;
/// past it the client is told to retry, never that its If-Match failed.
const ATTEMPTS: usize = 64;

/// The query parameters of a read: `filter`, `startIndex`, `count`, `attributes`,
/// `excludedAttributes` (names ignore case).
pub struct Params {
    pub filter: Option<String>,
    pub start_index: u64,
    pub count: u64,
    pub projection: Projection,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Params, ScimError> {
        let mut params = Params {
            filter: None,
            start_index: 1,
            count: super::discovery::MAX_RESULTS,
            projection: Projection::default(),
        };
        let query = query.unwrap_or_default();
        if query.len() > 2 * super::filter::MAX_FILTER_BYTES {
            return Err(ScimError::invalid_value(
                "the query string is too long".to_owned(),
            ));
        }
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.to_ascii_lowercase().as_str() {
                "filter" => params.filter = Some(value.into_owned()),
                "startindex" => {
                    let index: i64 = value.trim().parse().map_err(|_| {
                        ScimError::invalid_value(format!("startIndex {value:?} is not a number"))
                    })?;
                    params.start_index = u64::try_from(index.max(1)).unwrap_or(1);
                }
                "count" => {
                    let count: i64 = value.trim().parse().map_err(|_| {
                        ScimError::invalid_value(format!("count {value:?} is not a number"))
                    })?;
                    params.count = u64::try_from(count.max(0))
                        .unwrap_or(0)
                        .min(super::discovery::MAX_RESULTS);
                }
                "attributes" => params.projection.include = Projection::paths(&value)?,
                "excludedattributes" => params.projection.exclude = Projection::paths(&value)?,
                _ => {}
            }
        }
        Ok(params)
    }
}

/// A profile id from a URL: anything that is not one is a User that does not exist.
pub fn profile_id(id: &str) -> Result<ProfileId, ScimError> {
    uuid::Uuid::parse_str(id)
        .map(ProfileId)
        .map_err(|_| ScimError::not_found("User"))
}

fn user_response(
    scim: &Scim,
    status: StatusCode,
    profile: &Profile,
    projection: &Projection,
) -> Response {
    let location = scim.location("Users", &profile.id.0.to_string());
    let mut body = user_resource(profile, &location);
    projection.apply(&mut body);
    let mut headers = vec![(header::ETAG, version(profile.version))];
    if status == StatusCode::CREATED {
        headers.push((header::LOCATION, location));
    }
    respond(status, &body, &headers)
}

/// The live (not deleted) profile `id` of the caller's account.
async fn live_profile(scim: &Scim, who: &ScimCaller, id: ProfileId) -> Result<Profile, ScimError> {
    let profile = scim.identity.profile(&who.caller, id).await?;
    if profile.status == ProfileStatus::Deleted {
        return Err(ScimError::not_found("User"));
    }
    Ok(profile)
}

pub async fn create(
    State(scim): State<Scim>,
    who: ScimCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let body = json_body(&headers, body).await?;
    let fields = UserFields::from_body(&body)?;
    if fields.user_name.trim().is_empty() {
        return Err(ScimError::invalid_value("userName is required"));
    }
    let new = NewProfile {
        account_id: who.account,
        fields: fields.to_owned_profile(),
        send_welcome_email: who.token.send_welcome_emails,
        suspended: !fields.active,
        roles: fields.roles.clone().unwrap_or_default(),
    };
    let profile = match scim
        .identity
        .create_profile(&who.caller, RequestId::NONE, new.clone())
        .await
    {
        Ok(profile) => profile,
        // A returning employee: the username was retired by this account's own deleted
        // profile of the same external id, within the restore window. Anything else that
        // retired it keeps it refused.
        Err(
            refused @ IdentityError::UsernameRefused {
                refusal: Refusal::Retired,
                ..
            },
        ) => {
            let since = chrono::Utc::now() - scim.restore_window;
            scim.identity
                .restore_returning_profile(&who.caller, &new, since)
                .await?
                .ok_or(refused)?
        }
        Err(other) => return Err(other.into()),
    };
    Ok(user_response(
        &scim,
        StatusCode::CREATED,
        &profile,
        &Projection::default(),
    ))
}

pub async fn read(
    State(scim): State<Scim>,
    who: ScimCaller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    let params = Params::parse(query.as_deref())?;
    let profile = live_profile(&scim, &who, profile_id(&id)?).await?;
    Ok(user_response(
        &scim,
        StatusCode::OK,
        &profile,
        &params.projection,
    ))
}

pub async fn list(
    State(scim): State<Scim>,
    who: ScimCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    let params = Params::parse(query.as_deref())?;
    let query = match &params.filter {
        Some(filter) => super::query::profile_query(&parse_filter(filter)?)?,
        None => ProfileQuery::All,
    };
    let (profiles, total) = scim
        .identity
        .find_profiles(
            &who.caller,
            who.account,
            &query,
            params.start_index - 1,
            params.count,
        )
        .await?;
    let resources = profiles
        .iter()
        .map(|profile| {
            let mut user =
                user_resource(profile, &scim.location("Users", &profile.id.0.to_string()));
            params.projection.apply(&mut user);
            user
        })
        .collect();
    Ok(respond(
        StatusCode::OK,
        &list_response(resources, total, params.start_index),
        &[],
    ))
}

pub async fn replace(
    State(scim): State<Scim>,
    who: ScimCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let id = profile_id(&id)?;
    let expected = if_match(&headers)?;
    let body = json_body(&headers, body).await?;
    let wanted = UserFields::from_body(&body)?;
    // A PUT that leaves `active` out keeps the user's status, as one that leaves Roster's
    // extension out keeps its roles: reading "unset" as active would let a client that never
    // sends the attribute lift a suspension it did not mean to.
    let names_active = body
        .as_object()
        .is_some_and(|object| object.keys().any(|key| key.eq_ignore_ascii_case("active")));
    let profile = change(&scim, &who, id, expected, |current| {
        let mut wanted = wanted.clone();
        if !names_active {
            wanted.active = current.active;
        }
        Ok(wanted)
    })
    .await?;
    Ok(user_response(
        &scim,
        StatusCode::OK,
        &profile,
        &Projection::default(),
    ))
}

pub async fn patch(
    State(scim): State<Scim>,
    who: ScimCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let id = profile_id(&id)?;
    let expected = if_match(&headers)?;
    let body = json_body(&headers, body).await?;
    let operations = patch_operations(&body)?
        .into_iter()
        .map(|operation| {
            let path = operation.path.as_deref().map(parse_path).transpose()?;
            Ok((operation.op, path, operation.value))
        })
        .collect::<Result<Vec<_>, ScimError>>()?;
    let profile = change(&scim, &who, id, expected, |current| {
        let mut fields = current.clone();
        for (op, path, value) in &operations {
            fields.apply(op, path.as_ref(), value.as_ref())?;
        }
        Ok(fields)
    })
    .await?;
    Ok(user_response(
        &scim,
        StatusCode::OK,
        &profile,
        &Projection::default(),
    ))
}

/// Reads the profile, makes the attributes `edit` wants of its current ones, and writes the
/// difference at the version read (or the one If-Match named). Without If-Match, a change
/// that lands in between is read again, up to [`ATTEMPTS`] times.
async fn change(
    scim: &Scim,
    who: &ScimCaller,
    id: ProfileId,
    expected: Option<i64>,
    edit: impl Fn(&UserFields) -> Result<UserFields, ScimError>,
) -> Result<Profile, ScimError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = live_profile(scim, who, id).await?;
        if expected.is_some_and(|version| version != current.version) {
            return Err(ScimError::stale());
        }
        let before = UserFields::of(&current);
        let after = edit(&before)?;
        let patch = after.patch_from(&before);
        let roles = after.roles.filter(|roles| *roles != current.roles);
        if patch.fields.is_empty() && patch.status.is_none() && roles.is_none() {
            return Ok(current);
        }
        match scim
            .identity
            .update_profile_and_roles(&who.caller, id, Some(current.version), patch, roles)
            .await
        {
            Err(IdentityError::StaleEtag) if expected.is_none() => {
                if attempt < ATTEMPTS {
                    continue;
                }
                return Err(ScimError::busy_resource());
            }
            result => return Ok(result?),
        }
    }
}

pub async fn delete(
    State(scim): State<Scim>,
    who: ScimCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let id = profile_id(&id)?;
    let expected = if_match(&headers)?;
    live_profile(&scim, &who, id).await?;
    scim.identity
        .delete_profile(&who.caller, RequestId::NONE, id, expected)
        .await?;
    Ok(respond_empty())
}

fn respond_empty() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
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
