//! `roster accounts`: create, read and list accounts, and read or change an account's password
//! policy (AccountService on identity).

use clap::{Subcommand, ValueEnum};
use prost_types::FieldMask;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_runtime::Service;
use tonic::transport::Channel;

use crate::client::{Client, RequestIdArg};
use crate::output::{self, Paging};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an account.
    Create {
        /// Name shown to users, e.g. in emails (1 to 200 characters).
        #[arg(long)]
        name: String,
        /// Password-policy preset; the server's default is `default`.
        #[arg(long, value_enum)]
        preset: Option<Preset>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Show one account.
    Get {
        /// The account's id.
        id: String,
    },
    /// List the accounts the caller key may see, oldest first.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Read or change an account's password policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

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

/// A password-policy preset.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// Length 12 to 128, upper, lower, digit and symbol, no personal information, history 5.
    Default,
    /// NIST SP 800-63B: length 15 to 128, no composition rules.
    Nist,
}

impl Preset {
    fn proto(self) -> pb::PasswordPolicyPreset {
        match self {
            Preset::Default => pb::PasswordPolicyPreset::Default,
            Preset::Nist => pb::PasswordPolicyPreset::Nist,
        }
    }
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

pub async fn run(command: Command, client: &Client) -> anyhow::Result<()> {
    let mut accounts = AccountServiceClient::new(client.channel(Service::Identity).await?);
    match command {
        Command::Create {
            name,
            preset,
            request_id,
        } => {
            let request_id = request_id.get();
            // Settings this command has no flag for keep the server's defaults.
            #[allow(clippy::needless_update)]
            let message = pb::CreateAccountRequest {
                request_id: request_id.clone(),
                display_name: name,
                password_policy_preset: preset.map_or(0, |preset| preset.proto() as i32),
                ..Default::default()
            };
            let response = client
                .call(
                    "roster.identity.v1.AccountService/CreateAccount",
                    Some(&request_id),
                    message,
                    async |request| accounts.create_account(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show_account(response.account.as_ref())
            })
        }
        Command::Get { id } => {
            let response = client
                .call(
                    "roster.identity.v1.AccountService/GetAccount",
                    None,
                    pb::GetAccountRequest { id },
                    async |request| accounts.get_account(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show_account(response.account.as_ref())
            })
        }
        Command::List { paging } => {
            let (items, next) = output::pages(&paging, "accounts", async |page_token| {
                let response = client
                    .call(
                        "roster.identity.v1.AccountService/ListAccounts",
                        None,
                        pb::ListAccountsRequest {
                            page_size: paging.page_size,
                            page_token,
                        },
                        async |request| accounts.clone().list_accounts(request).await,
                    )
                    .await?;
                Ok((response.accounts, response.next_page_token))
            })
            .await?;
            let response = pb::ListAccountsResponse {
                accounts: items,
                next_page_token: next,
            };
            output::show(client.json(), &response, |response| {
                output::listing(
                    "No accounts.",
                    &["id", "display name", "extension digits", "created"],
                    response.accounts.iter().map(|account| {
                        [
                            account.id.clone(),
                            account.display_name.clone(),
                            extension_digits(account),
                            output::time(account.create_time.as_ref()),
                        ]
                    }),
                    &response.next_page_token,
                )
            })
        }
        Command::Policy(PolicyCommand::Get { account }) => {
            let response = read_policy(client, &mut accounts, account).await?;
            output::show(client.json(), &response, |response| {
                show_policy(policy_of(response.policy.as_ref())?, &[])
            })
        }
        Command::Policy(PolicyCommand::Set {
            account,
            changes,
            etag,
            request_id,
        }) => {
            let before = policy_of(
                read_policy(client, &mut accounts, account)
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
            let request_id = request_id.get();
            let response = client
                .call(
                    "roster.identity.v1.AccountService/UpdatePasswordPolicy",
                    Some(&request_id),
                    pb::UpdatePasswordPolicyRequest {
                        policy: Some(policy),
                        update_mask: Some(FieldMask { paths }),
                        request_id: request_id.clone(),
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

/// The digits an extension number given in the account may have, as `2–8`.
fn extension_digits(account: &pb::Account) -> String {
    format!(
        "{}–{}",
        account.extension_min_length, account.extension_max_length
    )
}

fn show_account(account: Option<&pb::Account>) -> anyhow::Result<()> {
    let account = output::returned(account, "account")?;
    output::outln!(
        "{}",
        output::details(&[
            ("id", account.id.clone()),
            ("display name", account.display_name.clone()),
            ("extension digits", extension_digits(account)),
            ("created", output::time(account.create_time.as_ref())),
            ("updated", output::time(account.update_time.as_ref())),
            ("etag", account.etag.clone()),
        ])
    )?;
    Ok(())
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
