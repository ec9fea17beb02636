//! Usernames to offer when the one asked for is refused.
//!
//! The candidates follow the shape usernames have on the platform, without ever looking like
//! somebody else's address: the user's own email address (when it is not the refused name
//! itself), then `first.last`, `first.last2` … `first.last9`, `firstlast`, `f.last`, and the
//! refused name's or the email's local part with a number. None of them carries an `@` except
//! the user's own address, so a suggestion never reads as another person's mailbox at the
//! user's domain (`ada2@example.com` is somebody's address, or will be).
//!
//! This module only proposes; the store checks which candidates are free.

use super::email::EmailAddress;
use super::fields::PersonName;
use super::username::Username;

/// How many free suggestions a refusal carries.
pub const MAX_SUGGESTIONS: usize = 5;

/// What suggestions are built from. Every field is optional; the strings are those of the
/// request, which the caller has bounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seeds<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    /// The username that was refused, if it parsed.
    pub refused: Option<&'a Username>,
}

/// Candidate usernames, best first, each a valid username and none the refused one.
pub fn candidates(seeds: Seeds<'_>) -> Vec<Username> {
    let email = EmailAddress::parse(seeds.email).ok();
    let first = stem(seeds.first_name);
    let last = stem(seeds.last_name);
    let mut texts: Vec<String> = Vec::new();
    if let Some(email) = &email {
        texts.push(email.as_str().to_owned());
    }
    if !first.is_empty() && !last.is_empty() {
        let full = format!("{first}.{last}");
        texts.push(full.clone());
        texts.extend((2..=9).map(|n| format!("{full}{n}")));
        texts.push(format!("{first}{last}"));
        if let Some(initial) = first.chars().next() {
            texts.push(format!("{initial}.{last}"));
        }
    }
    let local = seeds
        .refused
        .map(|username| local_part(username.as_str()).to_owned())
        .or_else(|| email.as_ref().map(|email| email.local_part().to_owned()))
        .map(|local| stem(&local))
        .filter(|local| !local.is_empty());
    if let Some(local) = local {
        texts.push(local.clone());
        texts.extend((2..=9).map(|n| format!("{local}{n}")));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(refused) = seeds.refused {
        seen.insert(refused.canonical().to_owned());
    }
    texts
        .iter()
        .filter_map(|text| Username::parse(text).ok())
        .filter(|username| seen.insert(username.canonical().to_owned()))
        .collect()
}

/// A name as part of a username: lower case, without white space, `@` or commas (suggestions
/// travel comma-separated in error details).
fn stem(name: &str) -> String {
    let name = PersonName::parse("name", name)
        .map(|name| name.as_str().to_lowercase())
        .unwrap_or_default();
    name.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '@' | ','))
        .collect()
}

/// The part of `name` before its last `@`, or all of it.
fn local_part(name: &str) -> &str {
    name.rsplit_once('@').map_or(name, |(local, _)| local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(seeds: Seeds<'_>) -> Vec<String> {
        candidates(seeds)
            .iter()
            .map(|username| username.as_str().to_owned())
            .collect()
    }

    #[test]
    fn a_taken_email_username_is_offered_names_without_anyone_elses_address() {
        let refused = Username::parse("ada@example.com").unwrap();
        let offered = texts(Seeds {
            first_name: "Ada",
            last_name: "Lovelace",
            email: "ada@example.com",
            refused: Some(&refused),
        });
        assert_eq!(
            &offered[..4],
            [
                "ada.lovelace",
                "ada.lovelace2",
                "ada.lovelace3",
                "ada.lovelace4"
            ]
        );
        assert!(offered.contains(&"adalovelace".to_owned()));
        assert!(offered.contains(&"a.lovelace".to_owned()));
        assert!(offered.contains(&"ada2".to_owned()));
        assert!(
            offered.iter().all(|name| !name.contains('@')),
            "{offered:?}"
        );
    }

    #[test]
    fn a_taken_chosen_username_is_offered_the_users_own_address_first() {
        let refused = Username::parse("ada").unwrap();
        let offered = texts(Seeds {
            first_name: "Ada",
            last_name: "Lovelace",
            email: "Ada.L@Example.com",
            refused: Some(&refused),
        });
        assert_eq!(offered[0], "Ada.L@example.com");
        assert!(
            offered[1..].iter().all(|name| !name.contains('@')),
            "{offered:?}"
        );
        assert!(
            !offered.contains(&"ada".to_owned()),
            "never the refused name"
        );
    }

    #[test]
    fn names_with_spaces_and_commas_make_single_words() {
        let offered = texts(Seeds {
            first_name: "Mary Ann",
            last_name: "Smith, Jr",
            ..Default::default()
        });
        assert_eq!(offered[0], "maryann.smithjr");
    }

    #[test]
    fn nothing_to_build_from_offers_nothing() {
        assert!(candidates(Seeds::default()).is_empty());
    }
}
