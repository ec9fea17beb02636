//! `roster keys`: make caller keys and their keys-file entries, offline.
//!
//! Servers store only a key's SHA-256 (see `roster_runtime::auth`). `keys new` generates a
//! random key, prints it once and prints the `[[keys]]` stanza to add to the keys file; this is
//! how an operator rotates a key (README: "Rotate a caller key"). `keys hash` prints the hash of
//! an existing key read from stdin.

use clap::Subcommand;
use roster_runtime::KeyRing;
use roster_runtime::auth::hash_key_hex;
use serde_json::json;

use crate::output;

/// The scopes a key may hold (`admin` grants every other).
const SCOPES: [&str; 8] = [
    "admin",
    "accounts",
    "profiles",
    "credentials",
    "signin",
    "events",
    "imports",
    "notifications",
];

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a random caller key; print it once, with the keys-file stanza holding its SHA-256.
    New {
        /// The key's name, shown in the servers' logs (e.g. signin-service-2025-06).
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: admin, or any of accounts, profiles, credentials, signin,
        /// events, imports, notifications.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Comma-separated account ids the key may touch, or * for every account.
        #[arg(long, value_delimiter = ',', required = true)]
        accounts: Vec<String>,
    },
    /// Print the SHA-256 of a key read from stdin (or a prompt), as the keys file holds it.
    Hash,
}

pub fn run(command: Command, json: bool) -> anyhow::Result<()> {
    match command {
        Command::New {
            name,
            scopes,
            accounts,
        } => {
            let key = format!("rst_{}", hex::encode(rand::random::<[u8; 32]>()));
            let sha256 = hash_key_hex(&key);
            let stanza = stanza(&name, &sha256, &scopes, &accounts)?;
            if json {
                return output::print_json(&json!({
                    "name": name,
                    "key": key,
                    "sha256": sha256,
                    "scopes": scopes,
                    "accounts": accounts,
                    "stanza": stanza,
                }));
            }
            output::outln!(
                "New caller key {name:?}. It is shown only now: hand it to the caller through \
                 your secret store.\n\n  {key}\n\nAdd this entry to the keys file (the roster-keys \
                 Secret's keys.toml):\n\n{stanza}"
            )?;
            Ok(())
        }
        Command::Hash => {
            let key = output::read_secret("key")?;
            let key = key.trim();
            let sha256 = hash_key_hex(key);
            if json {
                return output::print_json(&json!({ "sha256": sha256 }));
            }
            output::outln!("{sha256}")?;
            Ok(())
        }
    }
}

/// The `[[keys]]` entry for a key, checked by the parser the servers use.
fn stanza(
    name: &str,
    sha256: &str,
    scopes: &[String],
    accounts: &[String],
) -> anyhow::Result<String> {
    if name.trim().is_empty() {
        anyhow::bail!("--name is empty: name the key after its caller");
    }
    let scopes = listed(scopes);
    if scopes.is_empty() {
        anyhow::bail!(
            "--scopes is empty: give at least one of {}",
            SCOPES.join(", ")
        );
    }
    if let Some(unknown) = scopes.iter().find(|scope| !SCOPES.contains(scope)) {
        anyhow::bail!(
            "--scopes: unknown scope {unknown:?}; scopes: {}",
            SCOPES.join(", ")
        );
    }
    let accounts = listed(accounts);
    if accounts.is_empty() {
        anyhow::bail!("--accounts is empty: give account ids, or * for every account");
    }
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|item| toml_string(item))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let stanza = format!(
        "[[keys]]\nname = {}\nsha256 = {}\nscopes = [{}]\naccounts = [{}]\n",
        toml_string(name),
        toml_string(sha256),
        list(&scopes),
        list(&accounts),
    );
    KeyRing::parse(&stanza).map_err(|error| anyhow::anyhow!("--accounts: {error}"))?;
    Ok(stanza)
}

/// The items of a list flag, each trimmed, empty ones left out.
fn listed(items: &[String]) -> Vec<&str> {
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .collect()
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stanza_loads_and_authenticates_its_key() {
        let key = "rst_example";
        let text = stanza(
            "ops \"night\"",
            &hash_key_hex(key),
            &["profiles".to_owned(), "credentials".to_owned()],
            &["*".to_owned()],
        )
        .expect("valid stanza");
        let ring = KeyRing::parse(&text).expect("the servers' parser reads it");
        let caller = ring.authenticate(key).expect("the key is known");
        assert_eq!(caller.name, "ops \"night\"");
        assert!(caller.has_scope("profiles"));
        assert!(!caller.has_scope("accounts"));
    }

    #[test]
    fn unknown_scopes_and_malformed_accounts_are_refused() {
        let sha = hash_key_hex("k");
        let star = ["*".to_owned()];
        assert!(stanza("a", &sha, &["root".to_owned()], &star).is_err());
        assert!(stanza("a", &sha, &["admin".to_owned()], &["acme".to_owned()]).is_err());
        assert!(stanza(" ", &sha, &["admin".to_owned()], &star).is_err());
    }
}
