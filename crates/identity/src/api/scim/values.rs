//! The values of User attributes as clients send them: strings, booleans in either form,
//! roles by name, the one email of a list; and the matching of a multi-valued attribute's
//! items against a value filter.

use serde_json::Value;

use super::error::ScimError;
use super::filter::{AttrPath, Filter, Literal, Op};
use super::user::EMAIL_TYPE;
use crate::domain::assignment::Role;

/// The roles a `roles` value names, each once, in order; `null` or nothing: none.
pub(super) fn roles_of(value: Option<&Value>) -> Result<Vec<Role>, ScimError> {
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
pub(super) fn text_of(attribute: &str, value: &Value) -> Result<String, ScimError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(ScimError::invalid_value(format!(
            "{attribute} must be a string"
        ))),
    }
}

pub(super) fn optional_text(attribute: &str, value: Option<&Value>) -> Result<String, ScimError> {
    value.map_or(Ok(String::new()), |value| text_of(attribute, value))
}

/// A boolean; the strings "true" and "false" in any case too, as Entra ID has sent them.
pub(super) fn bool_of(attribute: &str, value: &Value) -> Result<bool, ScimError> {
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
pub(super) fn chosen_email(value: &Value) -> Result<String, ScimError> {
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

pub(super) fn sub_value<'a>(path: &AttrPath, item: &'a Value) -> Option<&'a Value> {
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
