//! A profile's fields as a caller gives them, checked all at once: every invalid field is
//! reported, not only the first.

use super::email::EmailAddress;
use super::error::{IdentityError, Violation};
use super::fields::{FieldError, Locale, OptionalText, PersonName, TimeZone};
use super::username::Username;

/// Longest job title or department, in characters.
pub const MAX_TEXT_LENGTH: usize = 100;

/// Fields as received, before any check.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawProfile<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    /// Empty means "the email address".
    pub username: &'a str,
    pub job_title: &'a str,
    pub department: &'a str,
    pub locale: &'a str,
    pub time_zone: &'a str,
}

/// A profile's fields after every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileFields {
    pub first_name: String,
    pub last_name: String,
    pub email: EmailAddress,
    pub username: Username,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
}

impl ProfileFields {
    /// Checks every field; the username defaults to the (normalised) email address.
    pub fn parse(raw: RawProfile<'_>) -> Result<ProfileFields, IdentityError> {
        let mut violations = Vec::new();
        let v = &mut violations;
        let first_name = keep(v, PersonName::parse("first_name", raw.first_name));
        let last_name = keep(v, PersonName::parse("last_name", raw.last_name));
        let job_title = keep(
            v,
            OptionalText::parse("job_title", raw.job_title, MAX_TEXT_LENGTH),
        );
        let department = keep(
            v,
            OptionalText::parse("department", raw.department, MAX_TEXT_LENGTH),
        );
        let locale = keep(v, Locale::parse(raw.locale));
        let time_zone = keep(v, TimeZone::parse(raw.time_zone));
        let email = if raw.email.trim().is_empty() {
            violations.push(Violation::new("email", "is required"));
            None
        } else {
            match EmailAddress::parse(raw.email) {
                Ok(email) => Some(email),
                Err(error) => {
                    violations.push(Violation::new("email", error.to_string()));
                    None
                }
            }
        };
        let username = if raw.username.trim().is_empty() {
            email.as_ref().and_then(|email| {
                Username::parse(email.as_str())
                    .map_err(|error| {
                        violations.push(Violation::new(
                            "username",
                            format!(
                                "the email address cannot serve as the username ({}); choose a username",
                                error.description()
                            ),
                        ))
                    })
                    .ok()
            })
        } else {
            Username::parse(raw.username)
                .map_err(|error| violations.push(Violation::new("username", error.description())))
                .ok()
        };
        match (
            first_name, last_name, email, username, job_title, department, locale, time_zone,
        ) {
            (
                Some(first_name),
                Some(last_name),
                Some(email),
                Some(username),
                Some(job_title),
                Some(department),
                Some(locale),
                Some(time_zone),
            ) if violations.is_empty() => Ok(ProfileFields {
                first_name: first_name.as_str().to_owned(),
                last_name: last_name.as_str().to_owned(),
                email,
                username,
                job_title: job_title.map(|text| text.as_str().to_owned()),
                department: department.map(|text| text.as_str().to_owned()),
                locale: locale.map(|locale| locale.as_str().to_owned()),
                time_zone: time_zone.map(|zone| zone.as_str().to_owned()),
            }),
            _ => Err(IdentityError::Invalid(violations)),
        }
    }
}

/// The value of a check, or `None` with its violation recorded.
fn keep<T>(violations: &mut Vec<Violation>, result: Result<T, FieldError>) -> Option<T> {
    result
        .map_err(|error| violations.push(Violation::new(error.field, error.description)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invalid_field_is_reported() {
        let error = ProfileFields::parse(RawProfile {
            first_name: " ",
            last_name: "",
            email: "not-an-email",
            locale: "english",
            time_zone: "Mars/Olympus",
            ..RawProfile::default()
        })
        .unwrap_err();
        let IdentityError::Invalid(violations) = error else {
            panic!("expected field violations, got {error:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        for field in ["first_name", "last_name", "email", "locale", "time_zone"] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn username_defaults_to_the_normalised_email() {
        let fields = ProfileFields::parse(RawProfile {
            first_name: "Ada",
            last_name: "Lovelace",
            email: " Ada@Example.COM ",
            ..RawProfile::default()
        })
        .unwrap();
        assert_eq!(fields.email.as_str(), "Ada@example.com");
        assert_eq!(fields.username.as_str(), "Ada@example.com");
        assert_eq!(fields.username.canonical(), "ada@example.com");
    }
}
