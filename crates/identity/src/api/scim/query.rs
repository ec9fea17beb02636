//! A User filter as a query of the account's profiles: each SCIM attribute path named by what
//! it is in Roster, each literal checked against it. `emails[…]` tests the user's one email,
//! whose type is `work` and which is primary.

use chrono::{DateTime, Utc};

use super::error::ScimError;
use super::filter::{AttrPath, Filter, Literal, Op};
use super::user::{ENTERPRISE_SCHEMA, USER_SCHEMA};
use crate::domain::query::{Comparison, ProfileAttribute, ProfileQuery, QueryValue, ValueKind};

/// The profile query a User filter is.
pub fn profile_query(filter: &Filter) -> Result<ProfileQuery, ScimError> {
    let query = translate(filter, None)?;
    query
        .check()
        .map_err(|error| ScimError::invalid_filter(error.to_string()))?;
    Ok(query)
}

/// The terms of `left` and `right` joined by one operator: a side that is itself a join by the
/// same operator (`terms` gives its terms) adds its terms, not itself.
fn chained(
    left: &Filter,
    right: &Filter,
    within: Option<&AttrPath>,
    terms: fn(ProfileQuery) -> Result<Vec<ProfileQuery>, ProfileQuery>,
) -> Result<Vec<ProfileQuery>, ScimError> {
    let mut joined = Vec::new();
    for side in [left, right] {
        match terms(translate(side, within)?) {
            Ok(inner) => joined.extend(inner),
            Err(single) => joined.push(single),
        }
    }
    Ok(joined)
}

/// `within`: the multi-valued attribute a value filter's paths are sub-attributes of.
fn translate(filter: &Filter, within: Option<&AttrPath>) -> Result<ProfileQuery, ScimError> {
    Ok(match filter {
        // A chain of one operator (`a or b or c`, which the parser reads as `(a or b) or c`)
        // is one condition of many terms, not a nesting as deep as the chain is long.
        Filter::And(left, right) => {
            ProfileQuery::And(chained(left, right, within, |query| match query {
                ProfileQuery::And(terms) => Ok(terms),
                other => Err(other),
            })?)
        }
        Filter::Or(left, right) => {
            ProfileQuery::Or(chained(left, right, within, |query| match query {
                ProfileQuery::Or(terms) => Ok(terms),
                other => Err(other),
            })?)
        }
        Filter::Not(inner) => ProfileQuery::Not(Box::new(translate(inner, within)?)),
        Filter::Values { attr, filter } => {
            if within.is_some() {
                return Err(ScimError::invalid_filter(
                    "a value filter cannot hold another".into(),
                ));
            }
            if !attr.is("emails", None) {
                return Err(ScimError::invalid_filter(format!(
                    "{} takes no value filter (only emails does)",
                    attr.display()
                )));
            }
            translate(filter, Some(attr))?
        }
        Filter::Present(path) => match resolve(path, within)? {
            Resolved::Attribute(attribute) => ProfileQuery::Present(attribute),
            Resolved::Constant(_) => ProfileQuery::All,
        },
        Filter::Compare { path, op, value } => match resolve(path, within)? {
            Resolved::Attribute(attribute) => compare(path, attribute, *op, value)?,
            Resolved::Constant(constant) => {
                if constant_matches(path, constant, *op, value)? {
                    ProfileQuery::All
                } else {
                    ProfileQuery::Not(Box::new(ProfileQuery::All))
                }
            }
        },
    })
}

/// What a path names: a profile attribute, or a sub-attribute whose value is the same for
/// every user (an email's type and primary flag).
enum Resolved {
    Attribute(ProfileAttribute),
    Constant(Constant),
}

#[derive(Clone, Copy)]
enum Constant {
    EmailType,
    EmailPrimary,
}

fn resolve(path: &AttrPath, within: Option<&AttrPath>) -> Result<Resolved, ScimError> {
    let unknown = || {
        ScimError::invalid_filter(format!(
            "{} cannot be filtered on (userName, externalId, id, emails, emails.value, \
             name.givenName, name.familyName, title, department, locale, timezone, active, \
             meta.created and meta.lastModified can)",
            path.display()
        ))
    };
    if within.is_some() {
        if path.sub.is_some() || path.schema.is_some() {
            return Err(unknown());
        }
        return email_sub(&path.name).ok_or_else(unknown);
    }
    let schema = path.schema.as_deref();
    if schema.is_some_and(|schema| schema.eq_ignore_ascii_case(ENTERPRISE_SCHEMA)) {
        return if path.is("department", None) {
            Ok(Resolved::Attribute(ProfileAttribute::Department))
        } else {
            Err(unknown())
        };
    }
    if schema.is_some_and(|schema| !schema.eq_ignore_ascii_case(USER_SCHEMA)) {
        return Err(unknown());
    }
    let attribute = match () {
        () if path.is("id", None) => ProfileAttribute::Id,
        () if path.is("externalId", None) => ProfileAttribute::ExternalId,
        () if path.is("userName", None) => ProfileAttribute::Username,
        () if path.is("emails", None) => ProfileAttribute::Email,
        () if path.is("name", Some("givenName")) => ProfileAttribute::FirstName,
        () if path.is("name", Some("familyName")) => ProfileAttribute::LastName,
        () if path.is("title", None) => ProfileAttribute::JobTitle,
        () if path.is("department", None) => ProfileAttribute::Department,
        () if path.is("locale", None) => ProfileAttribute::Locale,
        () if path.is("timezone", None) => ProfileAttribute::TimeZone,
        () if path.is("active", None) => ProfileAttribute::Active,
        () if path.is("meta", Some("created")) => ProfileAttribute::Created,
        () if path.is("meta", Some("lastModified")) => ProfileAttribute::LastModified,
        () if path.name.eq_ignore_ascii_case("emails") => {
            return path.sub.as_deref().and_then(email_sub).ok_or_else(unknown);
        }
        () => return Err(unknown()),
    };
    Ok(Resolved::Attribute(attribute))
}

fn email_sub(sub: &str) -> Option<Resolved> {
    if sub.eq_ignore_ascii_case("value") {
        Some(Resolved::Attribute(ProfileAttribute::Email))
    } else if sub.eq_ignore_ascii_case("type") {
        Some(Resolved::Constant(Constant::EmailType))
    } else if sub.eq_ignore_ascii_case("primary") {
        Some(Resolved::Constant(Constant::EmailPrimary))
    } else {
        None
    }
}

fn constant_matches(
    path: &AttrPath,
    constant: Constant,
    op: Op,
    value: &Literal,
) -> Result<bool, ScimError> {
    let item = match constant {
        Constant::EmailType => serde_json::json!({ "type": "work" }),
        Constant::EmailPrimary => serde_json::json!({ "primary": true }),
    };
    let sub = match constant {
        Constant::EmailType => "type",
        Constant::EmailPrimary => "primary",
    };
    let filter = Filter::Compare {
        path: AttrPath {
            schema: None,
            name: sub.into(),
            sub: None,
        },
        op,
        value: value.clone(),
    };
    super::values::value_matches(&filter, &item).map_err(|_| {
        ScimError::invalid_filter(format!("{} cannot be compared that way", path.display()))
    })
}

fn compare(
    path: &AttrPath,
    attribute: ProfileAttribute,
    op: Op,
    value: &Literal,
) -> Result<ProfileQuery, ScimError> {
    let value = match (value, attribute.kind()) {
        (Literal::Null, _) => {
            let present = ProfileQuery::Present(attribute);
            return match op {
                Op::Eq => Ok(ProfileQuery::Not(Box::new(present))),
                Op::Ne => Ok(present),
                _ => Err(ScimError::invalid_filter(format!(
                    "{} compares with null only by eq and ne",
                    path.display()
                ))),
            };
        }
        (Literal::Text(text), ValueKind::Time) => QueryValue::Time(time(path, text)?),
        (Literal::Text(text), _) => QueryValue::Text(text.clone()),
        (Literal::Bool(flag), _) => QueryValue::Bool(*flag),
        (Literal::Number(number), _) => {
            return Err(ScimError::invalid_filter(format!(
                "{} holds no number; {number} cannot be compared with it",
                path.display()
            )));
        }
    };
    let comparison = match op {
        Op::Eq => Comparison::Eq,
        Op::Ne => Comparison::Ne,
        Op::Co => Comparison::Contains,
        Op::Sw => Comparison::StartsWith,
        Op::Ew => Comparison::EndsWith,
        Op::Gt => Comparison::Gt,
        Op::Ge => Comparison::Ge,
        Op::Lt => Comparison::Lt,
        Op::Le => Comparison::Le,
    };
    Ok(ProfileQuery::Compare {
        attribute,
        comparison,
        value,
    })
}

fn time(path: &AttrPath, text: &str) -> Result<DateTime<Utc>, ScimError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            ScimError::invalid_filter(format!(
                "{} is a date-time; {text:?} is not one (RFC 3339, such as \
                 2026-12-01T00:00:00Z)",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::scim::filter::parse_filter;

    fn query(text: &str) -> Result<ProfileQuery, ScimError> {
        profile_query(&parse_filter(text)?)
    }

    fn text(attribute: ProfileAttribute, comparison: Comparison, value: &str) -> ProfileQuery {
        ProfileQuery::Compare {
            attribute,
            comparison,
            value: QueryValue::Text(value.into()),
        }
    }

    #[test]
    fn user_attributes_become_profile_attributes() {
        assert_eq!(
            query(r#"userName eq "Ada""#).unwrap(),
            text(ProfileAttribute::Username, Comparison::Eq, "Ada")
        );
        assert_eq!(
            query(r#"name.familyName sw "Lo" and emails.value co "@example""#).unwrap(),
            ProfileQuery::And(vec![
                text(ProfileAttribute::LastName, Comparison::StartsWith, "Lo"),
                text(ProfileAttribute::Email, Comparison::Contains, "@example"),
            ])
        );
        assert_eq!(
            query("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department pr")
                .unwrap(),
            ProfileQuery::Present(ProfileAttribute::Department)
        );
        assert_eq!(
            query("active eq false").unwrap(),
            ProfileQuery::Compare {
                attribute: ProfileAttribute::Active,
                comparison: Comparison::Eq,
                value: QueryValue::Bool(false),
            }
        );
        assert!(matches!(
            query(r#"meta.lastModified gt "2026-12-01T00:00:00Z""#).unwrap(),
            ProfileQuery::Compare {
                value: QueryValue::Time(_),
                ..
            }
        ));
    }

    #[test]
    fn an_email_value_filter_tests_the_one_work_email() {
        assert_eq!(
            query(r#"emails[type eq "work" and value ew "@example.com"]"#).unwrap(),
            ProfileQuery::And(vec![
                ProfileQuery::All,
                text(
                    ProfileAttribute::Email,
                    Comparison::EndsWith,
                    "@example.com"
                ),
            ])
        );
        assert_eq!(
            query(r#"emails[type eq "home"]"#).unwrap(),
            ProfileQuery::Not(Box::new(ProfileQuery::All))
        );
    }

    #[test]
    fn unknown_attributes_and_wrong_literals_are_invalid_filters() {
        for (filter, says) in [
            (r#"shoeSize eq "42""#, "cannot be filtered on"),
            (r#"phoneNumbers[type eq "work"]"#, "takes no value filter"),
            (r#"meta.lastModified gt "yesterday""#, "date-time"),
            ("active gt true", "eq and ne"),
            ("userName eq 5", "no number"),
            (r#"active eq "yes""#, "boolean"),
        ] {
            let error = query(filter).unwrap_err();
            assert_eq!(error.scim_type, Some("invalidFilter"), "{filter}");
            assert!(error.detail.contains(says), "{filter}: {}", error.detail);
        }
    }

    #[test]
    fn a_chain_of_one_operator_is_one_condition_of_many_terms() {
        // Eleven terms: read as nested pairs, the last one sat eleven levels down, past the
        // depth limit, and the filter was refused as nesting too deep.
        let names: Vec<String> = (1..=11).map(|n| format!("userName eq \"u{n}\"")).collect();
        let or = query(&names.join(" or ")).unwrap();
        let ProfileQuery::Or(terms) = &or else {
            panic!("one Or, got {or:?}");
        };
        assert_eq!(terms.len(), 11);
        assert_eq!(
            terms[10],
            text(ProfileAttribute::Username, Comparison::Eq, "u11")
        );
        let and = query(&names.join(" and ")).unwrap();
        assert!(matches!(&and, ProfileQuery::And(terms) if terms.len() == 11));
        // Mixed operators keep their precedence: `a or b and c or d` is a or (b and c) or d.
        assert_eq!(
            query(r#"userName eq "a" or userName eq "b" and userName eq "c" or userName eq "d""#)
                .unwrap(),
            ProfileQuery::Or(vec![
                text(ProfileAttribute::Username, Comparison::Eq, "a"),
                ProfileQuery::And(vec![
                    text(ProfileAttribute::Username, Comparison::Eq, "b"),
                    text(ProfileAttribute::Username, Comparison::Eq, "c"),
                ]),
                text(ProfileAttribute::Username, Comparison::Eq, "d"),
            ])
        );
        // Fifty terms are the most conditions a filter may hold; fifty-one are refused as such.
        let fifty: Vec<String> = (1..=50).map(|n| format!("userName eq \"u{n}\"")).collect();
        assert!(query(&fifty.join(" or ")).is_ok());
        let error = query(&format!("{} or userName eq \"x\"", fifty.join(" or "))).unwrap_err();
        assert_eq!(error.scim_type, Some("invalidFilter"));
        assert!(!error.detail.contains("deeper"), "{}", error.detail);
    }
}
