//! The catalogue of what can be sent: each template's name, and the variables it needs with
//! how each is checked and shown.

/// How a variable's value is checked and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariableKind {
    /// Free text.
    Text,
    /// An absolute `https://` or `http://` URL (it becomes a link).
    Url,
    /// An RFC 3339 instant, shown in UTC.
    Time,
}

/// A variable a template requires.
#[derive(Clone, Copy, Debug)]
pub struct Variable {
    pub name: &'static str,
    pub kind: VariableKind,
}

const fn var(name: &'static str, kind: VariableKind) -> Variable {
    Variable { name, kind }
}

/// The emails Roster can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Template {
    PasswordReset,
    PasswordChanged,
    Welcome,
}

impl Template {
    pub const ALL: [Template; 3] = [
        Template::PasswordReset,
        Template::PasswordChanged,
        Template::Welcome,
    ];

    /// The name callers use.
    pub fn name(self) -> &'static str {
        match self {
            Template::PasswordReset => "password_reset",
            Template::PasswordChanged => "password_changed",
            Template::Welcome => "welcome",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|template| template.name() == name)
    }

    /// The variables a request must give.
    pub fn variables(self) -> &'static [Variable] {
        use VariableKind::*;
        const PASSWORD_RESET: &[Variable] = &[
            var("first_name", Text),
            var("reset_url", Url),
            var("expire_time", Time),
        ];
        const PASSWORD_CHANGED: &[Variable] = &[var("first_name", Text), var("change_time", Time)];
        const WELCOME: &[Variable] = &[var("first_name", Text), var("username", Text)];
        match self {
            Template::PasswordReset => PASSWORD_RESET,
            Template::PasswordChanged => PASSWORD_CHANGED,
            Template::Welcome => WELCOME,
        }
    }

    pub(super) fn subject_file(self, locale: &str) -> String {
        format!("{locale}/{}.subject.txt", self.name())
    }

    pub(super) fn text_file(self, locale: &str) -> String {
        format!("{locale}/{}.txt", self.name())
    }

    pub(super) fn html_file(self, locale: &str) -> String {
        format!("{locale}/{}.html", self.name())
    }
}

/// The comma-separated names of every template, for error messages.
pub fn template_names() -> String {
    Template::ALL
        .iter()
        .map(|template| template.name())
        .collect::<Vec<_>>()
        .join(", ")
}
