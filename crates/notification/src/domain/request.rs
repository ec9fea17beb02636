//! A `SendEmail` request parsed into checked types (parse, don't validate): past
//! [`EmailRequest::parse`] the recipient is an address, the template is known, every variable it
//! needs is there and well formed. Every violation is reported, not only the first.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::FieldError;
use super::templates::{Template, VariableKind, template_names};

/// Limits from the API contract (notification.proto).
pub const MAX_REQUEST_ID_CHARS: usize = 128;
/// As a profile's locale in identity (whose emails carry it): a longer limit there than here
/// would make identity queue emails this service refuses.
pub const MAX_LOCALE_CHARS: usize = 64;
pub const MAX_VARIABLES: usize = 32;
pub const MAX_VARIABLE_NAME_CHARS: usize = 64;
pub const MAX_VARIABLE_VALUE_CHARS: usize = 2048;
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
pub const RECIPIENT_CHARS: std::ops::RangeInclusive<usize> = 3..=254;

/// The fields of a `SendEmail` request, as received.
#[derive(Clone, Copy, Debug)]
pub struct RawEmailRequest<'a> {
    pub request_id: &'a str,
    pub account_id: &'a str,
    pub recipient: &'a str,
    pub template: &'a str,
    pub locale: &'a str,
    pub variables: &'a HashMap<String, String>,
    pub account_display_name: &'a str,
}

/// A checked email request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailRequest {
    /// The caller's idempotency key.
    pub request_id: String,
    pub account_id: Uuid,
    /// A bare addr-spec.
    pub recipient: lettre::Address,
    pub template: Template,
    /// A valid BCP 47 tag (`en` when the request left it empty).
    pub locale: String,
    pub variables: BTreeMap<String, String>,
    pub account_display_name: String,
}

impl EmailRequest {
    /// Checks every field; on failure returns every violation.
    pub fn parse(raw: RawEmailRequest<'_>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let request_id = check_request_id(raw.request_id, &mut errors);
        let account_id = parse_uuid("account_id", raw.account_id, &mut errors);
        let recipient = parse_recipient(raw.recipient, &mut errors);
        let template = Template::parse(raw.template);
        if template.is_none() {
            errors.push(FieldError::new(
                "template",
                if raw.template.is_empty() {
                    format!("is required; one of: {}", template_names())
                } else {
                    format!(
                        "{:?} is not a known template; one of: {}",
                        truncate_for_message(raw.template),
                        template_names()
                    )
                },
            ));
        }
        let locale = parse_locale(raw.locale, &mut errors);
        let variables = check_variables(raw.variables, template, &mut errors);
        let account_display_name = check_display_name(raw.account_display_name, &mut errors);
        match (account_id, recipient, template) {
            (Some(account_id), Some(recipient), Some(template)) if errors.is_empty() => Ok(Self {
                request_id,
                account_id,
                recipient,
                template,
                locale,
                variables,
                account_display_name,
            }),
            _ => Err(errors),
        }
    }
}

/// The `request_id` of a request that changes a notification (retry, cancel): the same rule as
/// `SendEmail`'s.
pub fn parse_request_id(value: &str) -> Result<String, Vec<FieldError>> {
    let mut errors = Vec::new();
    let request_id = check_request_id(value, &mut errors);
    if errors.is_empty() {
        Ok(request_id)
    } else {
        Err(errors)
    }
}

fn check_request_id(value: &str, errors: &mut Vec<FieldError>) -> String {
    check_text(
        "request_id",
        value,
        "is required: an idempotency key of 1 to 128 characters",
        MAX_REQUEST_ID_CHARS,
        errors,
    );
    value.to_owned()
}

/// Checks a required `field` of 1 to `max` characters, none of them a control character;
/// `required` is what an empty one is told.
fn check_text(field: &str, value: &str, required: &str, max: usize, errors: &mut Vec<FieldError>) {
    let chars = value.chars().count();
    if chars == 0 {
        errors.push(FieldError::new(field, required));
    } else if chars > max {
        errors.push(FieldError::new(
            field,
            format!("is {chars} characters long; at most {max}"),
        ));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

/// Parses a UUID field, naming the field when it is missing or malformed. (The same rule as
/// `roster_runtime::request::parse_id`, written here so that a `SendEmail` reports all its
/// violations at once and the domain stays free of the transport's error type.)
fn parse_uuid(field: &str, value: &str, errors: &mut Vec<FieldError>) -> Option<Uuid> {
    if value.is_empty() {
        errors.push(FieldError::new(field, "is required"));
        return None;
    }
    let parsed = Uuid::parse_str(value).ok();
    if parsed.is_none() {
        errors.push(FieldError::new(field, "is not a UUID"));
    }
    parsed
}

fn parse_recipient(value: &str, errors: &mut Vec<FieldError>) -> Option<lettre::Address> {
    let chars = value.chars().count();
    if value.is_empty() {
        errors.push(FieldError::new("recipient", "is required"));
        return None;
    }
    if !RECIPIENT_CHARS.contains(&chars) {
        errors.push(FieldError::new(
            "recipient",
            format!("is {chars} characters long; an address has 3 to 254"),
        ));
        return None;
    }
    match value.parse::<lettre::Address>() {
        Ok(address) => Some(address),
        Err(_) => {
            errors.push(FieldError::new(
                "recipient",
                "is not a bare email address such as ada@example.com (no display name)",
            ));
            None
        }
    }
}

fn parse_locale(value: &str, errors: &mut Vec<FieldError>) -> String {
    if value.is_empty() {
        return super::templates::DEFAULT_LOCALE.to_owned();
    }
    let chars = value.chars().count();
    if chars > MAX_LOCALE_CHARS {
        errors.push(FieldError::new(
            "locale",
            format!("is {chars} characters long; at most {MAX_LOCALE_CHARS}"),
        ));
        return String::new();
    }
    let tag = language_tags::LanguageTag::parse(value)
        .map_err(|error| error.to_string())
        .and_then(|tag| {
            tag.validate()
                .map(|()| tag)
                .map_err(|error| error.to_string())
        });
    match tag {
        Ok(tag) => tag.into_string(),
        Err(error) => {
            errors.push(FieldError::new(
                "locale",
                format!("is not a BCP 47 language tag such as en, fr-CA or de: {error}"),
            ));
            String::new()
        }
    }
}

fn check_variables(
    variables: &HashMap<String, String>,
    template: Option<Template>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
    if variables.len() > MAX_VARIABLES {
        // Said once, and none of the entries read: a request of a million entries is answered
        // by one violation, not a million.
        errors.push(FieldError::new(
            "variables",
            format!("has {} entries; at most {MAX_VARIABLES}", variables.len()),
        ));
        return BTreeMap::new();
    }
    // Sorted, so the violations come in a stable order.
    let sorted: BTreeMap<String, String> = variables
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    for (name, value) in &sorted {
        let field = format!("variables[{}]", truncate_for_message(name));
        let name_chars = name.chars().count();
        if name_chars == 0
            || name_chars > MAX_VARIABLE_NAME_CHARS
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            errors.push(FieldError::new(
                &field,
                "the name must be 1 to 64 characters of a-z, 0-9 and _",
            ));
        }
        let value_chars = value.chars().count();
        if value_chars > MAX_VARIABLE_VALUE_CHARS {
            errors.push(FieldError::new(
                &field,
                format!(
                    "the value is {value_chars} characters long; at most {MAX_VARIABLE_VALUE_CHARS}"
                ),
            ));
        } else if value.chars().any(char::is_control) {
            // A carriage return, NUL or escape would reach the mail server as it is in a
            // 7-bit body part; a line break has no place in a name, a link or a time.
            errors.push(FieldError::new(
                &field,
                "the value must not contain control characters (line breaks, tabs and the like)",
            ));
        }
    }
    for variable in template.map(Template::variables).unwrap_or_default() {
        let field = format!("variables[{}]", variable.name);
        let Some(value) = sorted
            .get(variable.name)
            .filter(|value| !value.trim().is_empty())
        else {
            errors.push(FieldError::new(
                field,
                format!(
                    "is required by the {} template",
                    template.map(Template::name).unwrap_or_default()
                ),
            ));
            continue;
        };
        match variable.kind {
            VariableKind::Text => {}
            VariableKind::Url => {
                let absolute_web_url = url::Url::parse(value)
                    .is_ok_and(|url| matches!(url.scheme(), "https" | "http") && url.has_host());
                if !absolute_web_url {
                    errors.push(FieldError::new(
                        field,
                        "must be an absolute https:// (or http://) URL",
                    ));
                }
            }
            VariableKind::Time => {
                if chrono::DateTime::parse_from_rfc3339(value).is_err() {
                    errors.push(FieldError::new(
                        field,
                        "must be an RFC 3339 time such as 2026-11-25T14:30:00Z",
                    ));
                }
            }
        }
    }
    sorted
}

fn check_display_name(value: &str, errors: &mut Vec<FieldError>) -> String {
    let trimmed = value.trim();
    check_text(
        "account_display_name",
        trimmed,
        "is required (1 to 200 characters)",
        MAX_DISPLAY_NAME_CHARS,
        errors,
    );
    trimmed.to_owned()
}

/// Echoes at most 64 characters of caller input in an error message.
fn truncate_for_message(value: &str) -> String {
    super::retry::truncate(value, 64)
}

#[cfg(test)]
mod tests;
