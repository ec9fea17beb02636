//! A query over one account's profiles: conditions on their attributes, joined with and, or and
//! not. SCIM's `filter` is one way to write one; the store turns it into SQL, so a page of the
//! answer is read from the database and never from memory.
//!
//! Text comparisons ignore case for every attribute but the id and the external id (SCIM's
//! `caseExact`), and a username is compared in its canonical form for `Eq` and `Ne`: the form
//! uniqueness is decided in. A query is bounded where it is parsed (its text's length and
//! nesting), so nothing here recurses without limit.

use chrono::{DateTime, Utc};

/// Most conditions a query may hold, counting every comparison and presence test.
pub const MAX_CONDITIONS: usize = 50;

/// Deepest nesting of and, or and not.
pub const MAX_DEPTH: usize = 10;

/// Most profiles one page of a query's answer holds.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// The attributes a query may compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileAttribute {
    Id,
    ExternalId,
    Username,
    Email,
    FirstName,
    LastName,
    JobTitle,
    Department,
    Locale,
    TimeZone,
    /// True for an active profile, false for a suspended one.
    Active,
    Created,
    LastModified,
}

impl ProfileAttribute {
    /// The kind of value the attribute holds, which decides the comparisons it takes.
    pub fn kind(self) -> ValueKind {
        match self {
            ProfileAttribute::Active => ValueKind::Bool,
            ProfileAttribute::Created | ProfileAttribute::LastModified => ValueKind::Time,
            _ => ValueKind::Text,
        }
    }

    /// True when text comparisons of the attribute respect case.
    pub fn case_exact(self) -> bool {
        matches!(self, ProfileAttribute::Id | ProfileAttribute::ExternalId)
    }
}

/// The kinds of value an attribute holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Bool,
    Time,
}

/// A comparison of an attribute with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A value compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryValue {
    Text(String),
    Bool(bool),
    Time(DateTime<Utc>),
}

/// Conditions on an account's profiles. Deleted profiles never match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileQuery {
    /// Every profile.
    All,
    Compare {
        attribute: ProfileAttribute,
        comparison: Comparison,
        value: QueryValue,
    },
    /// The attribute has a value (not empty).
    Present(ProfileAttribute),
    Not(Box<ProfileQuery>),
    And(Vec<ProfileQuery>),
    Or(Vec<ProfileQuery>),
}

/// Why a query cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{attribute} holds {kind}; it cannot be compared with {value}")]
    WrongKind {
        attribute: &'static str,
        kind: &'static str,
        value: &'static str,
    },
    #[error("{attribute} takes only eq and ne")]
    EqualityOnly { attribute: &'static str },
    #[error("the filter holds more than {MAX_CONDITIONS} conditions")]
    TooManyConditions,
    #[error("the filter nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl ProfileQuery {
    /// Checks that every comparison fits its attribute's kind and that the query stays within
    /// [`MAX_CONDITIONS`] and [`MAX_DEPTH`].
    pub fn check(&self) -> Result<(), QueryError> {
        let mut conditions = 0;
        self.check_within(1, &mut conditions)
    }

    fn check_within(&self, depth: usize, conditions: &mut usize) -> Result<(), QueryError> {
        if depth > MAX_DEPTH {
            return Err(QueryError::TooDeep);
        }
        match self {
            ProfileQuery::All => Ok(()),
            ProfileQuery::Present(_) => count(conditions),
            ProfileQuery::Compare {
                attribute,
                comparison,
                value,
            } => {
                count(conditions)?;
                check_comparison(*attribute, *comparison, value)
            }
            ProfileQuery::Not(inner) => inner.check_within(depth + 1, conditions),
            ProfileQuery::And(parts) | ProfileQuery::Or(parts) => parts
                .iter()
                .try_for_each(|part| part.check_within(depth + 1, conditions)),
        }
    }
}

fn count(conditions: &mut usize) -> Result<(), QueryError> {
    *conditions += 1;
    if *conditions > MAX_CONDITIONS {
        Err(QueryError::TooManyConditions)
    } else {
        Ok(())
    }
}

fn check_comparison(
    attribute: ProfileAttribute,
    comparison: Comparison,
    value: &QueryValue,
) -> Result<(), QueryError> {
    let name = attribute.name();
    let (kind, kind_name) = match attribute.kind() {
        ValueKind::Text => (ValueKind::Text, "text"),
        ValueKind::Bool => (ValueKind::Bool, "a boolean"),
        ValueKind::Time => (ValueKind::Time, "a date-time"),
    };
    let (value_kind, value_name) = match value {
        QueryValue::Text(_) => (ValueKind::Text, "text"),
        QueryValue::Bool(_) => (ValueKind::Bool, "a boolean"),
        QueryValue::Time(_) => (ValueKind::Time, "a date-time"),
    };
    if kind != value_kind {
        return Err(QueryError::WrongKind {
            attribute: name,
            kind: kind_name,
            value: value_name,
        });
    }
    if kind == ValueKind::Bool && !matches!(comparison, Comparison::Eq | Comparison::Ne) {
        return Err(QueryError::EqualityOnly { attribute: name });
    }
    if kind == ValueKind::Time
        && matches!(
            comparison,
            Comparison::Contains | Comparison::StartsWith | Comparison::EndsWith
        )
    {
        return Err(QueryError::WrongKind {
            attribute: name,
            kind: kind_name,
            value: "a text match (co, sw, ew)",
        });
    }
    Ok(())
}

impl ProfileAttribute {
    /// The attribute's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            ProfileAttribute::Id => "id",
            ProfileAttribute::ExternalId => "external id",
            ProfileAttribute::Username => "username",
            ProfileAttribute::Email => "email",
            ProfileAttribute::FirstName => "first name",
            ProfileAttribute::LastName => "last name",
            ProfileAttribute::JobTitle => "job title",
            ProfileAttribute::Department => "department",
            ProfileAttribute::Locale => "locale",
            ProfileAttribute::TimeZone => "time zone",
            ProfileAttribute::Active => "active",
            ProfileAttribute::Created => "created",
            ProfileAttribute::LastModified => "last modified",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(attribute: ProfileAttribute, comparison: Comparison, value: &str) -> ProfileQuery {
        ProfileQuery::Compare {
            attribute,
            comparison,
            value: QueryValue::Text(value.into()),
        }
    }

    #[test]
    fn a_comparison_must_fit_its_attribute() {
        assert!(
            text(ProfileAttribute::Username, Comparison::StartsWith, "ada")
                .check()
                .is_ok()
        );
        let active_co = ProfileQuery::Compare {
            attribute: ProfileAttribute::Active,
            comparison: Comparison::Gt,
            value: QueryValue::Bool(true),
        };
        assert_eq!(
            active_co.check(),
            Err(QueryError::EqualityOnly {
                attribute: "active"
            })
        );
        let active_text = text(ProfileAttribute::Active, Comparison::Eq, "yes");
        assert!(matches!(
            active_text.check(),
            Err(QueryError::WrongKind { .. })
        ));
        let time_sw = ProfileQuery::Compare {
            attribute: ProfileAttribute::LastModified,
            comparison: Comparison::StartsWith,
            value: QueryValue::Time(Utc::now()),
        };
        assert!(matches!(time_sw.check(), Err(QueryError::WrongKind { .. })));
    }

    #[test]
    fn a_query_is_bounded_in_size_and_depth() {
        let many = ProfileQuery::Or(
            (0..=MAX_CONDITIONS)
                .map(|i| text(ProfileAttribute::Email, Comparison::Eq, &format!("{i}")))
                .collect(),
        );
        assert_eq!(many.check(), Err(QueryError::TooManyConditions));
        let mut deep = ProfileQuery::Present(ProfileAttribute::Email);
        for _ in 0..MAX_DEPTH {
            deep = ProfileQuery::Not(Box::new(deep));
        }
        assert_eq!(deep.check(), Err(QueryError::TooDeep));
    }
}
