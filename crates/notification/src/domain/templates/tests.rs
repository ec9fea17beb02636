//! Unit tests of the template catalogue, locale fallback and rendering.

use super::*;

fn reset_variables(first_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("first_name".to_owned(), first_name.to_owned()),
        (
            "reset_url".to_owned(),
            "https://id.example.com/reset#t=abc&x=1".to_owned(),
        ),
        (
            "expire_time".to_owned(),
            "2026-11-25T15:30:00+01:00".to_owned(),
        ),
    ])
}

fn render(templates: &Templates, locale: &str, first_name: &str) -> RenderedEmail {
    templates
        .render(&RenderInput {
            template: Template::PasswordReset,
            locale,
            account_display_name: "Acme & Co",
            recipient: "ada@example.com",
            variables: &reset_variables(first_name),
        })
        .expect("renders")
}

#[test]
fn builtins_cover_three_locales_of_every_template() {
    let templates = Templates::builtin().expect("built-ins load");
    assert_eq!(templates.locales(), vec!["de", "en", "fr"]);
}

#[test]
fn locales_fall_back_to_the_language_then_english() {
    let templates = Templates::builtin().unwrap();
    let resolve = |tag| templates.resolve_locale(Template::Welcome, tag);
    assert_eq!(resolve("fr-CA"), "fr");
    assert_eq!(resolve("de"), "de");
    assert_eq!(resolve("DE_at"), "de");
    assert_eq!(resolve("es-MX"), "en");
    assert_eq!(resolve(""), "en");
}

#[test]
fn html_escapes_variables_and_text_keeps_them() {
    let templates = Templates::builtin().unwrap();
    let email = render(&templates, "en", "<script>alert(1)</script>");
    assert!(!email.html.contains("<script>"), "{}", email.html);
    assert!(email.html.contains("&lt;script&gt;"), "{}", email.html);
    assert!(email.html.contains("Acme &amp; Co"), "{}", email.html);
    assert!(email.text.contains("<script>alert(1)</script>"));
    assert!(
        email
            .text
            .contains("https://id.example.com/reset#t=abc&x=1")
    );
    assert!(
        email.text.contains("2026-11-25 14:30 UTC"),
        "{}",
        email.text
    );
    assert!(!email.subject.contains('\n'));
}

#[test]
fn each_locale_speaks_its_language() {
    let templates = Templates::builtin().unwrap();
    let words = [
        ("en", "password"),
        ("fr", "mot de passe"),
        ("de", "Passwort"),
    ];
    for (locale, word) in words {
        let email = render(&templates, locale, "Ada");
        assert!(email.subject.contains(word), "{locale}: {}", email.subject);
        assert!(email.text.contains(word), "{locale}: {}", email.text);
        assert!(email.html.contains(&format!("lang=\"{locale}\"")));
        assert!(email.text.contains("Acme & Co"), "{locale}: {}", email.text);
    }
}

#[test]
fn a_template_dir_overrides_and_adds_locales() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("en")).unwrap();
    std::fs::write(
        dir.path().join("en/welcome.subject.txt"),
        "Hi {{ first_name }} from {{ account_display_name }}",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("es")).unwrap();
    for (file, body) in [
        ("welcome.subject.txt", "Bienvenido {{ first_name }}"),
        ("welcome.txt", "Usuario: {{ username }}"),
        ("welcome.html", "<p>Usuario: {{ username }}</p>"),
    ] {
        std::fs::write(dir.path().join("es").join(file), body).unwrap();
    }
    let templates = Templates::load(Some(dir.path())).expect("overrides load");
    let variables = BTreeMap::from([
        ("first_name".to_owned(), "Ada".to_owned()),
        ("username".to_owned(), "ada".to_owned()),
    ]);
    let input = |locale| RenderInput {
        template: Template::Welcome,
        locale,
        account_display_name: "Acme",
        recipient: "ada@example.com",
        variables: &variables,
    };
    assert_eq!(
        templates.render(&input("en")).unwrap().subject,
        "Hi Ada from Acme"
    );
    assert_eq!(templates.resolve_locale(Template::Welcome, "es-AR"), "es");
    assert_eq!(templates.render(&input("es")).unwrap().text, "Usuario: ada");
    // Spanish has no password reset: it falls back to English.
    assert_eq!(
        templates.resolve_locale(Template::PasswordReset, "es"),
        "en"
    );
}

#[test]
fn a_broken_override_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("en")).unwrap();
    std::fs::write(dir.path().join("en/welcome.txt"), "{{ nope }").unwrap();
    assert!(matches!(
        Templates::load(Some(dir.path())),
        Err(TemplateError::Syntax { .. })
    ));

    std::fs::write(dir.path().join("en/welcome.txt"), "{{ missing_variable }}").unwrap();
    assert!(matches!(
        Templates::load(Some(dir.path())),
        Err(TemplateError::Render { .. })
    ));

    let partial = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(partial.path().join("it")).unwrap();
    std::fs::write(partial.path().join("it/welcome.subject.txt"), "Ciao").unwrap();
    assert!(matches!(
        Templates::load(Some(partial.path())),
        Err(TemplateError::Incomplete { .. })
    ));
}
