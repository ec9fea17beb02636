//! `roster accounts policy`: read or change an account's password policy. A change names the
//! rules it sets by flags, which become the update mask, and carries the etag of the policy as
//! read, so a concurrent change is refused, not lost.

use clap::Subcommand;
use prost_types::FieldMask;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use tonic::transport::Channel;

use super::Preset;
use crate::client::{Client, RequestIdArg};
use crate::output;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Show an account's password policy.
    Get {
        /// The account's id.
        account: String,
    },
    /// Change an account's password policy: only the rules named by flags change.
    Set {
        /// The account's id.
        account: String,
        #[command(flatten)]
        changes: PolicyChanges,
        /// Change the policy only if it still has this etag (default: the etag read just
        /// before the change).
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
}

/// One flag per policy field; each one given is put in the update mask.
#[derive(clap::Args, Debug)]
pub struct PolicyChanges {
    /// Reset every rule to this preset (applied before the other flags).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Minimum length, 8 to 128.
    #[arg(long)]
    min_length: Option<u32>,
    /// Maximum length, 64 to 1024.
    #[arg(long)]
    max_length: Option<u32>,
    /// Minimum number of upper-case letters, 0 to 16.
    #[arg(long)]
    min_uppercase: Option<u32>,
    /// Minimum number of lower-case letters, 0 to 16.
    #[arg(long)]
    min_lowercase: Option<u32>,
    /// Minimum number of digits, 0 to 16.
    #[arg(long)]
    min_digits: Option<u32>,
    /// Minimum number of symbols, 0 to 16.
    #[arg(long)]
    min_symbols: Option<u32>,
    /// Refuse passwords containing the username, names or the email's local part.
    #[arg(long, value_name = "BOOL")]
    forbid_personal_info: Option<bool>,
    /// Refuse the last N passwords, 0 (off) to 24.
    #[arg(long)]
    history_count: Option<u32>,
    /// Refuse common and breached passwords.
    #[arg(long, value_name = "BOOL")]
    forbid_common: Option<bool>,
    /// Minimum strength score, 0 (off) to 4.
    #[arg(long)]
    min_strength_score: Option<u32>,
}

impl PolicyChanges {
    /// Writes the given values into `policy` and returns the update mask's paths.
    fn apply(&self, policy: &mut pb::PasswordPolicy) -> Vec<String> {
        let mut paths = Vec::new();
        if let Some(preset) = self.preset {
            policy.preset = preset.proto() as i32;
            paths.push("preset".to_owned());
        }
        let numbers = [
            ("min_length", self.min_length, &mut policy.min_length),
            ("max_length", self.max_length, &mut policy.max_length),
            (
                "min_uppercase",
                self.min_uppercase,
                &mut policy.min_uppercase,
            ),
            (
                "min_lowercase",
                self.min_lowercase,
                &mut policy.min_lowercase,
            ),
            ("min_digits", self.min_digits, &mut policy.min_digits),
            ("min_symbols", self.min_symbols, &mut policy.min_symbols),
            (
                "history_count",
                self.history_count,
                &mut policy.history_count,
            ),
            (
                "min_strength_score",
                self.min_strength_score,
                &mut policy.min_strength_score,
            ),
        ];
        set_given(numbers, &mut paths);
        let flags = [
            (
                "forbid_personal_info",
                self.forbid_personal_info,
                &mut policy.forbid_personal_info,
            ),
            (
                "forbid_common",
                self.forbid_common,
                &mut policy.forbid_common,
            ),
        ];
        set_given(flags, &mut paths);
        paths
    }
}

/// Runs one `roster accounts policy` command through `accounts`.
pub(super) async fn run(
    command: PolicyCommand,
    client: &Client,
    accounts: &mut AccountServiceClient<Channel>,
) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Get { account } => {
            let response = read_policy(client, accounts, account).await?;
            output::show(client.json(), &response, |response| {
                show_policy(policy_of(response.policy.as_ref())?, &[])
            })
        }
        PolicyCommand::Set {
            account,
            changes,
            etag,
            request_id,
        } => {
            let before = policy_of(
                read_policy(client, accounts, account)
                    .await?
                    .policy
                    .as_ref(),
            )?
            .clone();
            let mut policy = before.clone();
            let paths = changes.apply(&mut policy);
            if paths.is_empty() {
                anyhow::bail!(
                    "nothing to change: pass --preset or a rule flag such as --min-length (see --help)"
                );
            }
            policy.etag = etag.unwrap_or(before.etag.clone());
            let response = client
                .call_idempotent(
                    "roster.identity.v1.AccountService/UpdatePasswordPolicy",
                    request_id.get(),
                    |request_id| pb::UpdatePasswordPolicyRequest {
                        policy: Some(policy),
                        update_mask: Some(FieldMask { paths }),
                        request_id,
                    },
                    async |request| accounts.update_password_policy(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                let after = policy_of(response.policy.as_ref())?;
                let changed = policy_rows(&before)
                    .into_iter()
                    .zip(policy_rows(after))
                    .filter(|((_, old), (_, new))| old != new)
                    .map(|((field, old), (_, new))| (field, old, new))
                    .collect::<Vec<_>>();
                show_policy(after, &changed)
            })
        }
    }
}

async fn read_policy(
    client: &Client,
    accounts: &mut AccountServiceClient<Channel>,
    account_id: String,
) -> anyhow::Result<pb::GetPasswordPolicyResponse> {
    client
        .call(
            "roster.identity.v1.AccountService/GetPasswordPolicy",
            None,
            pb::GetPasswordPolicyRequest { account_id },
            async |request| accounts.get_password_policy(request).await,
        )
        .await
}

/// Writes each value given into its field and adds the field's path to `paths`.
fn set_given<'a, T: 'a>(
    fields: impl IntoIterator<Item = (&'static str, Option<T>, &'a mut T)>,
    paths: &mut Vec<String>,
) {
    for (path, value, field) in fields {
        if let Some(value) = value {
            *field = value;
            paths.push(path.to_owned());
        }
    }
}

fn policy_of(policy: Option<&pb::PasswordPolicy>) -> anyhow::Result<&pb::PasswordPolicy> {
    output::returned(policy, "policy")
}

fn preset_name(policy: &pb::PasswordPolicy) -> String {
    output::short_enum(
        policy.preset,
        "PASSWORD_POLICY_PRESET_",
        |preset: pb::PasswordPolicyPreset| preset.as_str_name(),
    )
}

/// The policy's rules as table rows, in the order of the message.
fn policy_rows(policy: &pb::PasswordPolicy) -> Vec<(&'static str, String)> {
    vec![
        ("preset", preset_name(policy)),
        ("min length", policy.min_length.to_string()),
        ("max length", policy.max_length.to_string()),
        ("min uppercase", policy.min_uppercase.to_string()),
        ("min lowercase", policy.min_lowercase.to_string()),
        ("min digits", policy.min_digits.to_string()),
        ("min symbols", policy.min_symbols.to_string()),
        (
            "forbid personal info",
            output::yes_no(policy.forbid_personal_info),
        ),
        ("history count", policy.history_count.to_string()),
        ("forbid common", output::yes_no(policy.forbid_common)),
        ("min strength score", policy.min_strength_score.to_string()),
    ]
}

fn show_policy(
    policy: &pb::PasswordPolicy,
    changed: &[(&str, String, String)],
) -> anyhow::Result<()> {
    if !changed.is_empty() {
        output::outln!("Changed:")?;
        for (field, old, new) in changed {
            output::outln!("  {field}: {old} → {new}")?;
        }
        output::outln!()?;
    }
    let mut rows = vec![("account", policy.account_id.clone())];
    rows.extend(policy_rows(policy));
    rows.push(("updated", output::time(policy.update_time.as_ref())));
    rows.push(("etag", policy.etag.clone()));
    output::outln!("{}", output::details(&rows))?;
    Ok(())
}
