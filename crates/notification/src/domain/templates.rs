//! Email templates: the catalogue of what can be sent, locale fallback, and rendering.
//!
//! Each template has, per locale, three minijinja files: `<locale>/<name>.subject.txt`,
//! `<locale>/<name>.txt` (the plain-text part) and `<locale>/<name>.html` (the HTML part, which
//! extends the shared `layout.html`); `<locale>/footer.txt` and `footer.html` hold the
//! "sent on behalf of" line. HTML files are auto-escaped, so a variable can never inject markup.
//! The built-in files are compiled in; a `template_dir` may override any of them or add locales.
//! Every template of every locale is rendered once with sample values at load, so a broken
//! override stops the service at start instead of failing emails later.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value};

mod catalogue;

pub use catalogue::{Template, Variable, VariableKind, template_names};

/// The locale every template has and every request falls back to.
pub const DEFAULT_LOCALE: &str = "en";

/// Everything a template is rendered with.
#[derive(Clone, Debug)]
pub struct RenderInput<'a> {
    pub template: Template,
    /// A locale [`Templates::resolve_locale`] returned.
    pub locale: &'a str,
    pub account_display_name: &'a str,
    pub recipient: &'a str,
    pub variables: &'a BTreeMap<String, String>,
}

/// A rendered email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line, white space collapsed.
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A template that is missing, does not compile or does not render. Each message holds
/// minijinja's (which names the line), so the error is no `source` as well: a report of the
/// chain would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template directory {path}: {message}")]
    Directory { path: String, message: String },
    #[error("template {name}: {error}")]
    Syntax {
        name: String,
        error: minijinja::Error,
    },
    #[error("locale {locale} of template {template} lacks {file}")]
    Incomplete {
        template: &'static str,
        locale: String,
        file: String,
    },
    #[error("rendering {name}: {error}")]
    Render {
        name: String,
        error: minijinja::Error,
    },
}

macro_rules! builtin {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $path)))),*]
    };
}

/// The compiled-in templates, by name.
const BUILTIN: &[(&str, &str)] = builtin![
    "layout.html",
    "en/footer.txt",
    "en/footer.html",
    "en/password_reset.subject.txt",
    "en/password_reset.txt",
    "en/password_reset.html",
    "en/password_changed.subject.txt",
    "en/password_changed.txt",
    "en/password_changed.html",
    "en/welcome.subject.txt",
    "en/welcome.txt",
    "en/welcome.html",
    "fr/footer.txt",
    "fr/footer.html",
    "fr/password_reset.subject.txt",
    "fr/password_reset.txt",
    "fr/password_reset.html",
    "fr/password_changed.subject.txt",
    "fr/password_changed.txt",
    "fr/password_changed.html",
    "fr/welcome.subject.txt",
    "fr/welcome.txt",
    "fr/welcome.html",
    "de/footer.txt",
    "de/footer.html",
    "de/password_reset.subject.txt",
    "de/password_reset.txt",
    "de/password_reset.html",
    "de/password_changed.subject.txt",
    "de/password_changed.txt",
    "de/password_changed.html",
    "de/welcome.subject.txt",
    "de/welcome.txt",
    "de/welcome.html",
];

/// The loaded templates: built-ins plus overrides, checked.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("locales", &self.locales())
            .finish()
    }
}

impl Templates {
    /// The built-in templates only.
    pub fn builtin() -> Result<Self, TemplateError> {
        Self::load(None)
    }

    /// The built-in templates, with the files of `dir` (when given) overriding or adding to them.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // A template naming a variable the request did not give is an error, not an empty
        // string: a silently blank reset link is worse than a FAILED notification.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // `{% … %}` on a line of its own leaves no blank line in the plain-text part.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|error| TemplateError::Syntax {
                name: "syntax".to_owned(),
                error,
            })?;
        env.set_syntax(syntax);
        for (name, source) in BUILTIN {
            env.add_template(name, source)
                .map_err(|error| TemplateError::Syntax {
                    name: (*name).to_owned(),
                    error,
                })?;
        }
        if let Some(dir) = dir {
            for (name, source) in read_dir_templates(dir)? {
                env.add_template_owned(name.clone(), source)
                    .map_err(|error| TemplateError::Syntax { name, error })?;
            }
        }
        let templates = Self { env };
        templates.check()?;
        Ok(templates)
    }

    /// Every locale that has at least one template's subject.
    pub fn locales(&self) -> Vec<String> {
        let mut locales: Vec<String> = self
            .env
            .templates()
            .filter_map(|(name, _)| {
                let (locale, file) = name.split_once('/')?;
                file.ends_with(".subject.txt").then(|| locale.to_owned())
            })
            .collect();
        locales.sort();
        locales.dedup();
        locales
    }

    /// The closest locale `template` exists in for the requested BCP 47 tag: the whole tag,
    /// then shorter prefixes (`zh-Hant-TW` → `zh-hant` → `zh`), then [`DEFAULT_LOCALE`].
    pub fn resolve_locale(&self, template: Template, requested: &str) -> String {
        let mut candidate = requested.trim().replace('_', "-").to_ascii_lowercase();
        while !candidate.is_empty() {
            if self.has(template, &candidate) {
                return candidate;
            }
            match candidate.rfind('-') {
                Some(end) => candidate.truncate(end),
                None => break,
            }
        }
        DEFAULT_LOCALE.to_owned()
    }

    fn has(&self, template: Template, locale: &str) -> bool {
        self.env
            .get_template(&template.subject_file(locale))
            .is_ok()
    }

    /// Renders the subject, the plain-text part and the HTML part.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<RenderedEmail, TemplateError> {
        let locale = if self.has(input.template, input.locale) {
            input.locale
        } else {
            DEFAULT_LOCALE
        };
        let context = context(input, locale);
        let render = |name: String| -> Result<String, TemplateError> {
            self.env
                .get_template(&name)
                .and_then(|template| template.render(&context))
                .map_err(|error| TemplateError::Render { name, error })
        };
        let subject = render(input.template.subject_file(locale))?;
        Ok(RenderedEmail {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: render(input.template.text_file(locale))?,
            html: render(input.template.html_file(locale))?,
        })
    }

    /// Every locale of every template is complete and renders with sample values.
    fn check(&self) -> Result<(), TemplateError> {
        for locale in self.locales() {
            for template in Template::ALL {
                let files = [
                    template.subject_file(&locale),
                    template.text_file(&locale),
                    template.html_file(&locale),
                ];
                let present = files
                    .iter()
                    .filter(|file| self.env.get_template(file).is_ok())
                    .count();
                if present == 0 && locale != DEFAULT_LOCALE {
                    continue;
                }
                if let Some(missing) = files
                    .iter()
                    .find(|file| self.env.get_template(file).is_err())
                {
                    return Err(TemplateError::Incomplete {
                        template: template.name(),
                        locale,
                        file: missing.clone(),
                    });
                }
                let variables = sample_variables(template);
                self.render(&RenderInput {
                    template,
                    locale: &locale,
                    account_display_name: "Example Company",
                    recipient: "someone@example.com",
                    variables: &variables,
                })?;
            }
        }
        Ok(())
    }
}

/// The values a template sees: the request's variables (instants shown in UTC), the account's
/// display name, the recipient and the locale.
fn context(input: &RenderInput<'_>, locale: &str) -> Value {
    let mut values: BTreeMap<String, Value> = input
        .variables
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
        .collect();
    for variable in input.template.variables() {
        if variable.kind == VariableKind::Time
            && let Some(value) = input.variables.get(variable.name)
        {
            values.insert(variable.name.to_owned(), Value::from(show_time(value)));
        }
    }
    values.insert(
        "account_display_name".to_owned(),
        Value::from(input.account_display_name),
    );
    values.insert("recipient".to_owned(), Value::from(input.recipient));
    values.insert("locale".to_owned(), Value::from(locale));
    Value::from(values)
}

/// An RFC 3339 instant as `2026-11-25 14:30 UTC`, readable in every locale.
fn show_time(value: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|time| {
            time.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| value.to_owned())
}

fn sample_variables(template: Template) -> BTreeMap<String, String> {
    template
        .variables()
        .iter()
        .map(|variable| {
            let value = match variable.kind {
                VariableKind::Text => "Sample",
                VariableKind::Url => "https://example.com/reset#token",
                VariableKind::Time => "2026-01-01T00:00:00Z",
            };
            (variable.name.to_owned(), value.to_owned())
        })
        .collect()
}

/// Every file under `dir`, named by its path relative to `dir` with `/` separators.
fn read_dir_templates(dir: &Path) -> Result<Vec<(String, String)>, TemplateError> {
    let failed = |message: String| TemplateError::Directory {
        path: dir.display().to_string(),
        message,
    };
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|error| failed(format!("{}: {error}", current.display())))?;
        for entry in entries {
            let path = entry.map_err(|error| failed(error.to_string()))?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .map_err(|error| failed(error.to_string()))?;
            let name = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if name.starts_with('.') || name.contains("/.") {
                continue;
            }
            let source = std::fs::read_to_string(&path)
                .map_err(|error| failed(format!("{}: {error}", path.display())))?;
            found.push((name, source));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
