//! Discovery (RFC 7644 §4, RFC 7643 §5–7): what the endpoint supports, its resource types and
//! the schemas of their attributes (defined in `schemas`) — exactly what works, no more.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::ScimError;
use super::{Scim, list_response, respond};

use super::group::GROUP_SCHEMA;
use super::schemas as definitions;
use super::user::{ENTERPRISE_SCHEMA, ROSTER_SCHEMA, USER_SCHEMA};

/// Most resources one list returns (`filter.maxResults`).
pub const MAX_RESULTS: u64 = 1000;

const CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

fn service_provider_config_of(base: &str) -> Value {
    json!({
        "schemas": [CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A SCIM token of the account, made with `roster accounts scim-token \
                            create`, sent as `Authorization: Bearer <token>`",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

fn resource_types_of(base: &str) -> Vec<Value> {
    vec![user_type(base), group_type(base)]
}

pub fn user_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A user profile of the account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [
            {"schema": ENTERPRISE_SCHEMA, "required": false},
            {"schema": ROSTER_SCHEMA, "required": false},
        ],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    })
}

pub fn group_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "One of Roster's roles; its members are the users holding it. Roles are \
                        fixed: groups cannot be created, renamed or deleted",
        "schema": GROUP_SCHEMA,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
    })
}

fn schemas_of(base: &str) -> Vec<Value> {
    [
        definitions::user(),
        definitions::enterprise(),
        definitions::roster(),
        definitions::group(),
        definitions::config(CONFIG_SCHEMA),
        definitions::resource_type(RESOURCE_TYPE_SCHEMA),
        definitions::schema(SCHEMA_SCHEMA),
    ]
    .into_iter()
    .map(|mut schema| {
        let id = schema["id"].as_str().unwrap_or_default().to_owned();
        schema["schemas"] = json!([SCHEMA_SCHEMA]);
        schema["meta"] = json!({
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{id}"),
        });
        schema
    })
    .collect()
}

pub async fn service_provider_config(State(scim): State<Scim>) -> Response {
    respond(StatusCode::OK, &service_provider_config_of(&scim.base), &[])
}

pub async fn resource_types(State(scim): State<Scim>) -> Response {
    let types = resource_types_of(&scim.base);
    let total = types.len() as u64;
    respond(StatusCode::OK, &list_response(types, total, 1), &[])
}

pub async fn resource_type(
    State(scim): State<Scim>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    resource_types_of(&scim.base)
        .into_iter()
        .find(|kind| kind["id"] == id.as_str())
        .map(|kind| respond(StatusCode::OK, &kind, &[]))
        .ok_or_else(|| ScimError::not_found("resource type"))
}

pub async fn schemas(State(scim): State<Scim>) -> Response {
    let schemas = schemas_of(&scim.base);
    let total = schemas.len() as u64;
    respond(StatusCode::OK, &list_response(schemas, total, 1), &[])
}

pub async fn schema(
    State(scim): State<Scim>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    schemas_of(&scim.base)
        .into_iter()
        .find(|schema| schema["id"] == id.as_str())
        .map(|schema| respond(StatusCode::OK, &schema, &[]))
        .ok_or_else(|| ScimError::not_found("schema"))
}
