//! `roster accounts scim-token`: create, list and revoke the SCIM tokens an identity provider
//! (Entra ID, Okta) provisions an account's users with. `create` prints the token's secret
//! once: the server keeps only its hash, so nothing can show it again.

use clap::Subcommand;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use tonic::transport::Channel;

use crate::client::{Client, RequestIdArg};
use crate::output::{self, Paging};

#[derive(Subcommand, Debug)]
pub enum ScimTokenCommand {
    /// Create a SCIM token and print its secret, once (at most 20 are active per account).
    Create {
        /// The account's id.
        account: String,
        /// Name for people, e.g. "Entra ID production" (1 to 100 characters).
        #[arg(long)]
        name: String,
        /// Send each user the token creates a welcome email to set their password.
        #[arg(long)]
        send_welcome_emails: bool,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// List an account's SCIM tokens, newest first, revoked ones included.
    List {
        /// The account's id.
        account: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Revoke a SCIM token: every replica refuses it from the next SCIM request on.
    Revoke {
        /// The account's id.
        account: String,
        /// The token's id (see `roster accounts scim-token list`).
        token: String,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
}

/// Runs one `roster accounts scim-token` command through `accounts`.
pub(super) async fn run(
    command: ScimTokenCommand,
    client: &Client,
    accounts: &mut AccountServiceClient<Channel>,
) -> anyhow::Result<()> {
    match command {
        ScimTokenCommand::Create {
            account,
            name,
            send_welcome_emails,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.AccountService/CreateScimToken",
                    request_id.get(),
                    |request_id| pb::CreateScimTokenRequest {
                        account_id: account,
                        display_name: name,
                        send_welcome_emails,
                        request_id,
                    },
                    async |request| accounts.create_scim_token(request).await,
                )
                .await?;
            output::show(client.json(), &response, show_created)
        }
        ScimTokenCommand::List { account, paging } => {
            let (items, next) = output::pages(&paging, "SCIM tokens", async |page_token| {
                let response = client
                    .call(
                        "roster.identity.v1.AccountService/ListScimTokens",
                        None,
                        pb::ListScimTokensRequest {
                            account_id: account.clone(),
                            page_size: paging.page_size,
                            page_token,
                        },
                        async |request| accounts.clone().list_scim_tokens(request).await,
                    )
                    .await?;
                Ok((response.tokens, response.next_page_token))
            })
            .await?;
            let response = pb::ListScimTokensResponse {
                tokens: items,
                next_page_token: next,
            };
            output::show(client.json(), &response, |response| {
                output::listing(
                    "No SCIM tokens.",
                    &[
                        "id",
                        "display name",
                        "secret prefix",
                        "welcome emails",
                        "created",
                        "revoked",
                    ],
                    response.tokens.iter().map(|token| {
                        [
                            token.id.clone(),
                            token.display_name.clone(),
                            token.secret_prefix.clone(),
                            output::yes_no(token.send_welcome_emails),
                            output::time(token.create_time.as_ref()),
                            output::time(token.revoke_time.as_ref()),
                        ]
                    }),
                    &response.next_page_token,
                )
            })
        }
        ScimTokenCommand::Revoke {
            account,
            token,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.AccountService/RevokeScimToken",
                    request_id.get(),
                    |request_id| pb::RevokeScimTokenRequest {
                        account_id: account,
                        token_id: token,
                        request_id,
                    },
                    async |request| accounts.revoke_scim_token(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show_token(output::returned(response.token.as_ref(), "token")?)
            })
        }
    }
}

fn show_created(response: &pb::CreateScimTokenResponse) -> anyhow::Result<()> {
    let token = output::returned(response.token.as_ref(), "token")?;
    if response.secret.is_empty() {
        // A repeated request id: the first answer held the secret, which nothing keeps.
        eprintln!(
            "This request id created the token before, and its secret was shown then: it will \
             not be shown again. If it was lost, revoke this token and create another."
        );
    } else {
        output::outln!(
            "New SCIM token {:?}. Its secret is shown only now and will not be shown again: \
             enter it in the identity provider as the SCIM bearer token.\n\n  {}\n",
            token.display_name,
            response.secret
        )?;
    }
    show_token(token)
}

fn show_token(token: &pb::ScimToken) -> anyhow::Result<()> {
    output::outln!(
        "{}",
        output::details(&[
            ("id", token.id.clone()),
            ("account", token.account_id.clone()),
            ("display name", token.display_name.clone()),
            ("secret prefix", token.secret_prefix.clone()),
            ("welcome emails", output::yes_no(token.send_welcome_emails)),
            ("created", output::time(token.create_time.as_ref())),
            ("revoked", output::time(token.revoke_time.as_ref())),
        ])
    )?;
    Ok(())
}
