//! The `Extensions` and `Roles` cells: a profile's assignments, several values to a cell,
//! separated by `;`.
//!
//! - Roles are written by name: `account_administrator`, `contact_center_agent`,
//!   `contact_center_supervisor`, `standard_user`. Reading ignores case and takes spaces,
//!   hyphens and underscores alike (`Contact Center Agent` is `contact_center_agent`); the
//!   template writes the canonical form. An unknown name is a row error (ROLE_INVALID).
//! - Extensions are written `number` or `number:physical` / `number:virtual`. The number is
//!   kept as written (digits; leading zeros are significant). A number without a kind keeps
//!   the kind the profile holds it with, and a number new to the profile is physical. The
//!   template writes every extension with its kind. Identity checks the account's length
//!   bounds and uniqueness; here only the shape is checked (EXTENSION_INVALID).
//! - An empty cell means "none": with the column in the file, it takes every role or frees
//!   every extension of the profile. Without the column, assignments are left as they are.

use std::collections::BTreeSet;

pub use roster_identity_domain::assignment::{ExtensionKind, MAX_EXTENSIONS, Role};

/// The role a cell value names, ignoring case and taking ` `, `-` and `_` alike.
pub fn parse_role(text: &str) -> Option<Role> {
    let normal = text
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect::<String>()
        .split('_')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
        .to_lowercase();
    Role::from_name(&normal)
}

/// An extension a profile holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extension {
    pub number: String,
    pub kind: ExtensionKind,
}

/// An extension as a cell gives it: the kind may be left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionEntry {
    pub number: String,
    pub kind: Option<ExtensionKind>,
}

fn items(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(';')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Reads a Roles cell; `Err` with one message per problem.
pub fn parse_roles(cell: &str) -> Result<BTreeSet<Role>, Vec<String>> {
    let mut roles = BTreeSet::new();
    let mut problems = Vec::new();
    for item in items(cell) {
        match parse_role(item) {
            Some(role) => {
                roles.insert(role);
            }
            None => problems.push(format!(
                "unknown role '{item}'; expected {}",
                Role::ALL.map(Role::as_str).join(", ")
            )),
        }
    }
    if problems.is_empty() {
        Ok(roles)
    } else {
        Err(problems)
    }
}

/// Reads an Extensions cell; `Err` with one message per problem.
pub fn parse_extensions(cell: &str) -> Result<Vec<ExtensionEntry>, Vec<String>> {
    let listed = items(cell).count();
    if listed > MAX_EXTENSIONS {
        return Err(vec![format!(
            "lists {listed} extensions; a profile holds at most {MAX_EXTENSIONS}"
        )]);
    }
    let mut entries: Vec<ExtensionEntry> = Vec::new();
    let mut problems = Vec::new();
    for item in items(cell) {
        let (number, kind) = match item.split_once(':') {
            Some((number, kind)) => (number.trim(), Some(kind.trim())),
            None => (item, None),
        };
        let kind = match kind.map(str::to_lowercase).as_deref() {
            None => None,
            Some("physical") => Some(ExtensionKind::Physical),
            Some("virtual") => Some(ExtensionKind::Virtual),
            Some(other) => {
                problems.push(format!(
                    "extension '{item}' has the unknown kind '{other}'; write number, \
                     number:physical or number:virtual"
                ));
                continue;
            }
        };
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            problems.push(format!(
                "extension '{item}' is not a number; an extension is digits only"
            ));
            continue;
        }
        if entries.iter().any(|entry| entry.number == number) {
            problems.push(format!("extension '{number}' is given twice"));
            continue;
        }
        entries.push(ExtensionEntry {
            number: number.to_owned(),
            kind,
        });
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// The extensions a cell's entries stand for, by number: a number without a kind keeps the
/// kind in `current`, or is physical when new.
pub fn resolve(entries: &[ExtensionEntry], current: &[Extension]) -> Vec<Extension> {
    let mut resolved: Vec<Extension> = entries
        .iter()
        .map(|entry| Extension {
            number: entry.number.clone(),
            kind: entry.kind.unwrap_or_else(|| {
                current
                    .iter()
                    .find(|held| held.number == entry.number)
                    .map_or(ExtensionKind::Physical, |held| held.kind)
            }),
        })
        .collect();
    resolved.sort();
    resolved
}

/// The Roles cell for `roles`.
pub fn roles_cell(roles: &BTreeSet<Role>) -> String {
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

/// The Extensions cell for `extensions`, each with its kind.
pub fn extensions_cell(extensions: &[Extension]) -> String {
    let mut sorted = extensions.to_vec();
    sorted.sort();
    sorted
        .iter()
        .map(|extension| format!("{}:{}", extension.number, extension.kind.as_str()))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_lists_at_most_as_many_extensions_as_a_profile_holds() {
        let cell = |count: usize| {
            (0..count)
                .map(|n| format!("{}", 100 + n))
                .collect::<Vec<_>>()
                .join(";")
        };
        assert_eq!(parse_extensions(&cell(MAX_EXTENSIONS)).unwrap().len(), 32);
        let refused = parse_extensions(&cell(MAX_EXTENSIONS + 1)).unwrap_err();
        assert_eq!(
            refused,
            ["lists 33 extensions; a profile holds at most 32".to_owned()]
        );
    }

    #[test]
    fn roles_are_read_loosely_and_written_canonically() {
        let roles =
            parse_roles(" Contact Center Agent ; STANDARD-user;;account_administrator").unwrap();
        assert_eq!(
            roles_cell(&roles),
            "account_administrator;contact_center_agent;standard_user"
        );
        assert_eq!(parse_roles("").unwrap(), BTreeSet::new());
        let problems = parse_roles("agent;standard_user").unwrap_err();
        assert!(
            problems[0].starts_with("unknown role 'agent'"),
            "{problems:?}"
        );
    }

    #[test]
    fn extensions_keep_leading_zeros_and_known_kinds() {
        let entries = parse_extensions("0042; 101:Virtual ;202").unwrap();
        let current = [Extension {
            number: "202".into(),
            kind: ExtensionKind::Virtual,
        }];
        let resolved = resolve(&entries, &current);
        assert_eq!(
            extensions_cell(&resolved),
            "0042:physical;101:virtual;202:virtual"
        );
        assert!(parse_extensions("12a").is_err());
        assert!(parse_extensions("12:desk").is_err());
        assert!(parse_extensions("12;12").is_err());
    }
}
