//! Unit tests of the `SendEmail` request checks.

use super::*;

fn variables(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn valid_variables() -> HashMap<String, String> {
    variables(&[
        ("first_name", "Ada"),
        ("reset_url", "https://id.example.com/reset#token"),
        ("expire_time", "2026-11-25T14:30:00Z"),
    ])
}

fn raw(variables: &HashMap<String, String>) -> RawEmailRequest<'_> {
    RawEmailRequest {
        request_id: "outbox-1",
        account_id: "0b6f3f0e-6a52-4f7e-9a53-2b1c7f0d9e11",
        recipient: "ada@example.com",
        template: "password_reset",
        locale: "fr-CA",
        variables,
        account_display_name: " Acme ",
    }
}

#[test]
fn a_valid_request_parses() {
    let variables = valid_variables();
    let request = EmailRequest::parse(raw(&variables)).expect("valid");
    assert_eq!(request.template, Template::PasswordReset);
    assert_eq!(request.locale, "fr-CA");
    assert_eq!(request.recipient.to_string(), "ada@example.com");
    assert_eq!(request.account_display_name, "Acme");
}

#[test]
fn an_empty_locale_means_english() {
    let variables = valid_variables();
    let request = EmailRequest::parse(RawEmailRequest {
        locale: "",
        ..raw(&variables)
    })
    .unwrap();
    assert_eq!(request.locale, "en");
}

#[test]
fn every_violation_is_reported() {
    let variables = variables(&[
        ("reset_url", "javascript:alert(1)"),
        ("expire_time", "tomorrow"),
        ("Bad-Name", "x"),
    ]);
    let errors = EmailRequest::parse(RawEmailRequest {
        request_id: "",
        account_id: "not-a-uuid",
        recipient: "Ada <ada@example.com>",
        template: "password_reset",
        locale: "not a locale",
        variables: &variables,
        account_display_name: "",
    })
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
    for expected in [
        "request_id",
        "account_id",
        "recipient",
        "locale",
        "variables[Bad-Name]",
        "variables[first_name]",
        "variables[reset_url]",
        "variables[expire_time]",
        "account_display_name",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {fields:?}"
        );
    }
}

#[test]
fn unknown_templates_name_the_known_ones() {
    let variables = HashMap::new();
    let errors = EmailRequest::parse(RawEmailRequest {
        template: "newsletter",
        ..raw(&variables)
    })
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].description.contains("password_reset"));
}

#[test]
fn limits_are_enforced() {
    let mut many = valid_variables();
    for index in 0..40 {
        many.insert(format!("extra_{index}"), "x".repeat(2049));
    }
    let errors = EmailRequest::parse(RawEmailRequest {
        request_id: &"r".repeat(129),
        ..raw(&many)
    })
    .unwrap_err();
    assert!(errors.iter().any(|error| error.field == "variables"));
    assert!(errors.iter().any(|error| error.field == "request_id"));
    // Too many entries is one violation: none of them is read.
    assert!(
        !errors
            .iter()
            .any(|error| error.field.starts_with("variables["))
    );
    let flood: HashMap<String, String> = (0..100_000)
        .map(|index| (format!("A{index}"), String::new()))
        .collect();
    let errors = EmailRequest::parse(raw(&flood)).unwrap_err();
    assert_eq!(errors.len(), 1, "{:?}", &errors[..errors.len().min(3)]);
    let too_long = variables(&[("first_name", &"x".repeat(2049))]);
    let errors = EmailRequest::parse(raw(&too_long)).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|error| error.field == "variables[first_name]")
    );
}

#[test]
fn variable_values_with_control_characters_are_refused() {
    for value in [
        "Ada\r.\rMAIL FROM:<ceo@corp>",
        "Ada\nBcc: x@y",
        "A\u{0}",
        "A\u{1b}[31m",
        "A\tB",
    ] {
        let mut given = valid_variables();
        given.insert("first_name".to_owned(), value.to_owned());
        let errors = EmailRequest::parse(raw(&given)).unwrap_err();
        assert_eq!(
            errors
                .iter()
                .map(|error| error.field.as_str())
                .collect::<Vec<_>>(),
            ["variables[first_name]"],
            "{value:?}"
        );
        assert!(
            errors[0].description.contains("control characters"),
            "{errors:?}"
        );
    }
}
