//! `roster accounts`: create, read, list, delete and undelete accounts, read or change an
//! account's password policy, and manage its SCIM tokens (AccountService on identity).
//!
//! - [`policy`]: `roster accounts policy get|set`.
//! - [`scim_tokens`]: `roster accounts scim-token create|list|revoke`.

use clap::{Subcommand, ValueEnum};
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_runtime::Service;

use crate::client::{Client, RequestIdArg};
use crate::output::{self, Paging};

mod policy;
mod scim_tokens;

use policy::PolicyCommand;
use scim_tokens::ScimTokenCommand;

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
        /// Also list deleted accounts.
        #[arg(long)]
        show_deleted: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete an account (offboarding): its profiles are deleted, its keys and SCIM tokens
    /// stop working, its imports and queued emails are cancelled; its personal data is
    /// purged after account_retention_days unless it is undeleted first.
    Delete {
        /// The account's id.
        id: String,
        /// Delete only if the account still has this etag.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Bring a deleted account back before its purge, with the profiles its deletion took.
    Undelete {
        /// The account's id.
        id: String,
        /// Undelete only if the account still has this etag.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Read or change an account's password policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Create, list or revoke the SCIM tokens identity providers provision the account with.
    #[command(subcommand)]
    ScimToken(ScimTokenCommand),
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

pub async fn run(command: Command, client: &Client) -> anyhow::Result<()> {
    let mut accounts = AccountServiceClient::new(client.channel(Service::Identity).await?);
    match command {
        Command::Create {
            name,
            preset,
            request_id,
        } => {
            // Settings this command has no flag for keep the server's defaults.
            #[allow(clippy::needless_update)]
            let message = |request_id| pb::CreateAccountRequest {
                request_id,
                display_name: name,
                password_policy_preset: preset.map_or(0, |preset| preset.proto() as i32),
                ..Default::default()
            };
            let response = client
                .call_idempotent(
                    "roster.identity.v1.AccountService/CreateAccount",
                    request_id.get(),
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
        Command::Delete {
            id,
            etag,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.AccountService/DeleteAccount",
                    request_id.get(),
                    |request_id| pb::DeleteAccountRequest {
                        id,
                        etag: etag.unwrap_or_default(),
                        request_id,
                    },
                    async |request| accounts.delete_account(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show_account(response.account.as_ref())
            })
        }
        Command::Undelete {
            id,
            etag,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.AccountService/UndeleteAccount",
                    request_id.get(),
                    |request_id| pb::UndeleteAccountRequest {
                        id,
                        etag: etag.unwrap_or_default(),
                        request_id,
                    },
                    async |request| accounts.undelete_account(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show_account(response.account.as_ref())
            })
        }
        Command::List {
            show_deleted,
            paging,
        } => {
            let (items, next) = output::pages(&paging, "accounts", async |page_token| {
                let response = client
                    .call(
                        "roster.identity.v1.AccountService/ListAccounts",
                        None,
                        pb::ListAccountsRequest {
                            page_size: paging.page_size,
                            page_token,
                            show_deleted,
                            filter: String::new(),
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
                    &[
                        "id",
                        "display name",
                        "extension digits",
                        "created",
                        "deleted",
                    ],
                    response.accounts.iter().map(|account| {
                        [
                            account.id.clone(),
                            account.display_name.clone(),
                            extension_digits(account),
                            output::time(account.create_time.as_ref()),
                            deleted(account),
                        ]
                    }),
                    &response.next_page_token,
                )
            })
        }
        Command::Policy(command) => policy::run(command, client, &mut accounts).await,
        Command::ScimToken(command) => scim_tokens::run(command, client, &mut accounts).await,
    }
}

/// The digits an extension number given in the account may have, as `2–8`.
fn extension_digits(account: &pb::Account) -> String {
    format!(
        "{}–{}",
        account.extension_min_length, account.extension_max_length
    )
}

/// When the account was deleted, empty while it is open.
fn deleted(account: &pb::Account) -> String {
    account
        .delete_time
        .as_ref()
        .map(|time| output::time(Some(time)))
        .unwrap_or_default()
}

fn show_account(account: Option<&pb::Account>) -> anyhow::Result<()> {
    let account = output::returned(account, "account")?;
    let mut details = vec![
        ("id", account.id.clone()),
        ("display name", account.display_name.clone()),
        ("extension digits", extension_digits(account)),
        ("created", output::time(account.create_time.as_ref())),
        ("updated", output::time(account.update_time.as_ref())),
        ("etag", account.etag.clone()),
    ];
    if account.delete_time.is_some() {
        details.push(("deleted", deleted(account)));
        details.push(("purged at", output::time(account.purge_time.as_ref())));
    }
    output::outln!("{}", output::details(&details))?;
    Ok(())
}
