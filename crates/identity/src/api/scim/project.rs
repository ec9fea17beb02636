//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9): which attributes of a
//! resource a response carries. `id` and `schemas` are always returned.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{AttrPath, parse_path};

/// Attributes always returned, whatever a request asks.
const ALWAYS: [&str; 2] = ["id", "schemas"];

/// Most attribute paths one parameter may list.
const MAX_PATHS: usize = 50;

/// What a response keeps: only `include` when it names any, less `exclude`.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    pub include: Vec<AttrPath>,
    pub exclude: Vec<AttrPath>,
}

impl Projection {
    /// The comma-separated paths of a parameter.
    pub fn paths(text: &str) -> Result<Vec<AttrPath>, ScimError> {
        let paths: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|path| !path.is_empty())
            .collect();
        if paths.len() > MAX_PATHS {
            return Err(ScimError::invalid_value(format!(
                "at most {MAX_PATHS} attributes may be named"
            )));
        }
        paths
            .into_iter()
            .map(|path| {
                let parsed = parse_path(path)?;
                if parsed.filter.is_some() {
                    return Err(ScimError::invalid_value(format!(
                        "{path} takes no value filter here"
                    )));
                }
                Ok(parsed.attr)
            })
            .collect()
    }

    /// True when the response keeps the top-level attribute `name`.
    pub fn keeps(&self, name: &str) -> bool {
        let named = |paths: &[AttrPath]| {
            paths
                .iter()
                .any(|path| path.schema.is_none() && path.name.eq_ignore_ascii_case(name))
        };
        (self.include.is_empty() || named(&self.include)) && !named(&self.exclude)
    }

    /// Removes from `resource` what the request did not ask for.
    pub fn apply(&self, resource: &mut Value) {
        let Some(object) = resource.as_object_mut() else {
            return;
        };
        if !self.include.is_empty() {
            let kept: Map<String, Value> = std::mem::take(object)
                .into_iter()
                .filter_map(|(key, value)| {
                    if ALWAYS.iter().any(|always| key.eq_ignore_ascii_case(always)) {
                        return Some((key, value));
                    }
                    let value = included(&key, value, &self.include)?;
                    Some((key, value))
                })
                .collect();
            *object = kept;
        }
        for path in &self.exclude {
            remove(object, path);
        }
    }
}

/// What of the top-level attribute `key` (a name, or an extension's schema URN) the listed
/// paths ask for.
fn included(key: &str, value: Value, paths: &[AttrPath]) -> Option<Value> {
    if key.starts_with("urn:") {
        // An extension: the whole of it, or the attributes named under its schema.
        let Value::Object(inner) = value else {
            return None;
        };
        let whole = paths.iter().any(|path| {
            path.schema
                .as_deref()
                .is_some_and(|schema| format!("{schema}:{}", path.name).eq_ignore_ascii_case(key))
        });
        if whole {
            return Some(Value::Object(inner));
        }
        let kept: Map<String, Value> = inner
            .into_iter()
            .filter(|(name, _)| {
                paths.iter().any(|path| {
                    path.schema
                        .as_deref()
                        .is_some_and(|schema| schema.eq_ignore_ascii_case(key))
                        && path.name.eq_ignore_ascii_case(name)
                })
            })
            .collect();
        return (!kept.is_empty()).then_some(Value::Object(kept));
    }
    let named: Vec<&AttrPath> = paths
        .iter()
        .filter(|path| core_schema(path) && path.name.eq_ignore_ascii_case(key))
        .collect();
    if named.is_empty() {
        return None;
    }
    if named.iter().any(|path| path.sub.is_none()) {
        return Some(value);
    }
    let keep_sub = |name: &str| {
        named.iter().any(|path| {
            path.sub
                .as_deref()
                .is_some_and(|sub| sub.eq_ignore_ascii_case(name))
        })
    };
    Some(match value {
        Value::Object(inner) => Value::Object(
            inner
                .into_iter()
                .filter(|(name, _)| keep_sub(name))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(inner) => Value::Object(
                        inner
                            .into_iter()
                            .filter(|(name, _)| keep_sub(name))
                            .collect(),
                    ),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    })
}

/// True for a path of the resource's core schema (no URN, or a core one).
fn core_schema(path: &AttrPath) -> bool {
    path.schema
        .as_deref()
        .is_none_or(|schema| schema.to_ascii_lowercase().contains(":core:"))
}

fn remove(object: &mut Map<String, Value>, path: &AttrPath) {
    if ALWAYS
        .iter()
        .any(|always| path.name.eq_ignore_ascii_case(always))
        && path.sub.is_none()
    {
        return;
    }
    let key = |object: &Map<String, Value>, name: &str| {
        object
            .keys()
            .find(|key| key.eq_ignore_ascii_case(name))
            .cloned()
    };
    let (container, name, sub) = match path.schema.as_deref() {
        Some(schema) if !schema.to_ascii_lowercase().contains(":core:") => {
            let whole = format!("{schema}:{}", path.name);
            if let Some(found) = key(object, &whole) {
                object.remove(&found);
                return;
            }
            let Some(found) = key(object, schema) else {
                return;
            };
            match object.get_mut(&found) {
                Some(Value::Object(inner)) => (inner, path.name.as_str(), path.sub.as_deref()),
                _ => return,
            }
        }
        _ => (object, path.name.as_str(), path.sub.as_deref()),
    };
    let Some(found) = key(container, name) else {
        return;
    };
    match sub {
        None => {
            container.remove(&found);
        }
        Some(sub) => match container.get_mut(&found) {
            Some(Value::Object(inner)) => {
                if let Some(found) = key(inner, sub) {
                    inner.remove(&found);
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(inner) = item
                        && let Some(found) = key(inner, sub)
                    {
                        inner.remove(&found);
                    }
                }
            }
            _ => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "1",
            "userName": "ada",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            "meta": {"resourceType": "User"},
        })
    }

    fn projected(include: &str, exclude: &str) -> Value {
        let projection = Projection {
            include: Projection::paths(include).unwrap(),
            exclude: Projection::paths(exclude).unwrap(),
        };
        let mut user = user();
        projection.apply(&mut user);
        user
    }

    #[test]
    fn attributes_keep_only_what_they_name_and_the_id() {
        let user = projected("userName,name.familyName,emails.value", "");
        assert_eq!(
            user,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "1",
                "userName": "ada",
                "name": {"familyName": "Lovelace"},
                "emails": [{"value": "ada@example.com"}],
            })
        );
        let department = projected(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "",
        );
        assert_eq!(
            department["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
            "R&D"
        );
        assert!(department.get("userName").is_none());
    }

    #[test]
    fn excluded_attributes_are_removed_but_never_the_id() {
        let user = projected(
            "",
            "name,EMAILS,id,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        );
        assert!(user.get("name").is_none());
        assert!(user.get("emails").is_none());
        assert_eq!(user["id"], "1");
        assert_eq!(
            user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            json!({})
        );
    }
}
