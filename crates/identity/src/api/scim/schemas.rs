//! The attribute definitions /Schemas serves (RFC 7643 §7): Users as Roster keeps them, the
//! enterprise and Roster extensions, Groups, and the three schemas of discovery itself. The
//! User schema lists only the attributes Roster keeps; `locale` and `timezone` give a few
//! canonical values as examples (any BCP 47 tag and IANA zone is taken).

use serde_json::{Value, json};

use super::group::GROUP_SCHEMA;
use super::user::{ENTERPRISE_SCHEMA, ROSTER_SCHEMA, USER_SCHEMA};
use crate::domain::assignment::Role;

/// How an attribute may be written.
#[derive(Clone, Copy)]
enum Mutability {
    ReadWrite,
    ReadOnly,
}

/// One attribute's definition; `sub` for a complex one.
fn attribute(
    name: &str,
    kind: &str,
    description: &str,
    required: bool,
    mutability: Mutability,
    sub: Vec<Value>,
) -> Value {
    let mut attribute = json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": required,
        "caseExact": false,
        "mutability": match mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
        },
        "returned": "default",
        "uniqueness": "none",
    });
    if !sub.is_empty() {
        attribute["subAttributes"] = Value::Array(sub);
    }
    attribute
}

fn text(name: &str, description: &str) -> Value {
    attribute(
        name,
        "string",
        description,
        false,
        Mutability::ReadWrite,
        vec![],
    )
}

fn with(mut attribute: Value, key: &str, value: Value) -> Value {
    attribute[key] = value;
    attribute
}

pub(super) fn user() -> Value {
    let user_name = with(
        attribute(
            "userName",
            "string",
            "The username: unique on the whole platform in its canonical Unicode form, never \
             reused once released, and refused when it can be confused with one in use",
            true,
            Mutability::ReadWrite,
            vec![],
        ),
        "uniqueness",
        json!("server"),
    );
    let name = attribute(
        "name",
        "complex",
        "The user's name",
        true,
        Mutability::ReadWrite,
        vec![
            attribute(
                "givenName",
                "string",
                "Given name, 1 to 100 characters",
                true,
                Mutability::ReadWrite,
                vec![],
            ),
            attribute(
                "familyName",
                "string",
                "Family name, 1 to 100 characters",
                true,
                Mutability::ReadWrite,
                vec![],
            ),
        ],
    );
    let emails = with(
        attribute(
            "emails",
            "complex",
            "The user's one email address, of type work: of several sent, the primary (else \
             the first work one, else the first) is kept",
            true,
            Mutability::ReadWrite,
            vec![
                attribute(
                    "value",
                    "string",
                    "The address",
                    true,
                    Mutability::ReadWrite,
                    vec![],
                ),
                with(
                    text("type", "Always work"),
                    "canonicalValues",
                    json!(["work"]),
                ),
            ],
        ),
        "multiValued",
        json!(true),
    );
    let external_id = with(
        text(
            "externalId",
            "The identifier the customer's directory gives the user, up to 256 characters",
        ),
        "caseExact",
        json!(true),
    );
    let locale = with(
        text("locale", "A BCP 47 language tag such as en-GB"),
        "canonicalValues",
        json!([
            "en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT", "pl-PL"
        ]),
    );
    let timezone = with(
        text("timezone", "An IANA time zone such as Europe/Paris"),
        "canonicalValues",
        json!([
            "Europe/London",
            "Europe/Paris",
            "Europe/Warsaw",
            "America/New_York",
            "America/Los_Angeles",
            "Asia/Tokyo"
        ]),
    );
    let groups = with(
        attribute(
            "groups",
            "complex",
            "The roles the user holds, as groups",
            false,
            Mutability::ReadOnly,
            vec![
                text("value", "The group's id (the role)"),
                text("display", "The group's name"),
                text("type", "Always direct"),
            ]
            .into_iter()
            .map(|sub| with(sub, "mutability", json!("readOnly")))
            .collect(),
        ),
        "multiValued",
        json!(true),
    );
    json!({
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A user profile of the account",
        "attributes": [
            user_name,
            external_id,
            name,
            attribute(
                "displayName",
                "string",
                "Given and family name, as read; not written",
                false,
                Mutability::ReadOnly,
                vec![],
            ),
            emails,
            text("title", "Job title, up to 100 characters"),
            locale,
            timezone,
            attribute(
                "active",
                "boolean",
                "False while the user is suspended; true when a new user's body leaves it out",
                true,
                Mutability::ReadWrite,
                vec![],
            ),
            groups,
        ],
    })
}

pub(super) fn enterprise() -> Value {
    json!({
        "id": ENTERPRISE_SCHEMA,
        "name": "EnterpriseUser",
        "description": "Enterprise attributes Roster keeps",
        "attributes": [text("department", "Department, up to 100 characters")],
    })
}

pub(super) fn roster() -> Value {
    let read_only = |name: &str, description: &str| {
        attribute(
            name,
            "string",
            description,
            false,
            Mutability::ReadOnly,
            vec![],
        )
    };
    json!({
        "id": ROSTER_SCHEMA,
        "name": "RosterUser",
        "description": "The user's roles and extensions in Roster: roles are written here or \
                        through the groups' members, extensions through Roster's API",
        "attributes": [
            with(
                with(
                    attribute(
                        "roles",
                        "string",
                        "The roles the user holds, by name; a body without this extension leaves \
                         them as they are",
                        false,
                        Mutability::ReadWrite,
                        vec![],
                    ),
                    "canonicalValues",
                    json!(Role::ALL.map(Role::as_str)),
                ),
                "multiValued",
                json!(true),
            ),
            with(
                attribute(
                    "extensions",
                    "complex",
                    "The phone extensions the user holds",
                    false,
                    Mutability::ReadOnly,
                    vec![
                        read_only("number", "The extension's number"),
                        read_only("kind", "physical (a desk phone) or virtual"),
                    ],
                ),
                "multiValued",
                json!(true),
            ),
        ],
    })
}

pub(super) fn group() -> Value {
    let members = with(
        attribute(
            "members",
            "complex",
            "The users holding the role",
            false,
            Mutability::ReadWrite,
            vec![
                with(
                    with(
                        text("value", "The user's id"),
                        "mutability",
                        json!("immutable"),
                    ),
                    "caseExact",
                    json!(true),
                ),
                with(
                    text("display", "The user's username"),
                    "mutability",
                    json!("readOnly"),
                ),
                with(
                    text("type", "Always User"),
                    "mutability",
                    json!("immutable"),
                ),
            ],
        ),
        "multiValued",
        json!(true),
    );
    json!({
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "One of Roster's roles",
        "attributes": [
            attribute(
                "displayName",
                "string",
                "The role's name; fixed",
                true,
                Mutability::ReadOnly,
                vec![],
            ),
            members,
        ],
    })
}

/// A read-only attribute of a discovery resource.
fn read(name: &str, kind: &str, description: &str, sub: Vec<Value>) -> Value {
    attribute(name, kind, description, false, Mutability::ReadOnly, sub)
}

fn many(attribute: Value) -> Value {
    with(attribute, "multiValued", json!(true))
}

fn supported(name: &str, description: &str, extra: Vec<Value>) -> Value {
    let mut sub = vec![read(
        "supported",
        "boolean",
        "Whether it is supported",
        vec![],
    )];
    sub.extend(extra);
    read(name, "complex", description, sub)
}

pub(super) fn config(id: &str) -> Value {
    json!({
        "id": id,
        "name": "ServiceProviderConfig",
        "description": "What this service provider supports",
        "attributes": [
            read("documentationUri", "reference", "Where it is documented", vec![]),
            supported("patch", "PATCH", vec![]),
            supported("bulk", "Bulk operations", vec![
                read("maxOperations", "integer", "Most operations in one request", vec![]),
                read("maxPayloadSize", "integer", "Largest payload, in bytes", vec![]),
            ]),
            supported("filter", "Filters", vec![
                read("maxResults", "integer", "Most resources one list returns", vec![]),
            ]),
            supported("changePassword", "Changing passwords", vec![]),
            supported("sort", "Sorting", vec![]),
            supported("etag", "Entity tags", vec![]),
            many(read("authenticationSchemes", "complex", "How clients authenticate", vec![
                read("type", "string", "The scheme", vec![]),
                read("name", "string", "Its name", vec![]),
                read("description", "string", "What it is", vec![]),
                read("primary", "boolean", "Whether it is the main one", vec![]),
            ])),
        ],
    })
}

pub(super) fn resource_type(id: &str) -> Value {
    json!({
        "id": id,
        "name": "ResourceType",
        "description": "A type of resource",
        "attributes": [
            read("id", "string", "The type's id", vec![]),
            read("name", "string", "The type's name", vec![]),
            read("description", "string", "What it is", vec![]),
            read("endpoint", "reference", "Where its resources are", vec![]),
            read("schema", "reference", "Its core schema", vec![]),
            many(read("schemaExtensions", "complex", "Its schema extensions", vec![
                read("schema", "reference", "The extension's schema", vec![]),
                read("required", "boolean", "Whether every resource has it", vec![]),
            ])),
        ],
    })
}

pub(super) fn schema(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Schema",
        "description": "The attributes of a resource or extension",
        "attributes": [
            read("id", "string", "The schema's URN", vec![]),
            read("name", "string", "The schema's name", vec![]),
            read("description", "string", "What it describes", vec![]),
            many(read("attributes", "complex", "Its attributes", vec![
                read("name", "string", "The attribute's name", vec![]),
                read("type", "string", "Its type", vec![]),
                read("multiValued", "boolean", "Whether it holds several values", vec![]),
                read("description", "string", "What it is", vec![]),
                read("required", "boolean", "Whether it is required", vec![]),
                read("caseExact", "boolean", "Whether case matters", vec![]),
                read("mutability", "string", "How it may be written", vec![]),
                read("returned", "string", "When it is returned", vec![]),
                read("uniqueness", "string", "How unique it is", vec![]),
            ])),
        ],
    })
}
