//! `roster passwords`: an account's password requirements, checking a candidate against them,
//! admin-triggered reset by email, and verifying a username and password (CredentialService on
//! identity). Passwords are read from stdin or a prompt without echo, never from arguments; a
//! reset prints where the email goes and when its link expires, never the token.

use clap::Subcommand;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::credential_service_client::CredentialServiceClient;
use roster_runtime::Service;
use serde_json::json;

use crate::client::{Client, RequestIdArg};
use crate::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show an account's password requirements as sentences.
    Requirements {
        /// The account's id.
        account: String,
    },
    /// Check a candidate password (read from stdin or a prompt) against an account's policy.
    Check {
        /// The account whose policy applies.
        #[arg(long)]
        account: String,
        /// The profile the password is for, for the personal-information and history rules.
        #[arg(long, default_value = "", hide_default_value = true)]
        profile: String,
    },
    /// Email a profile's owner a single-use link to set a new password. The current password
    /// keeps working until the reset is completed.
    Reset {
        /// The profile's id.
        profile: String,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Check a username and password (read from stdin or a prompt) as the sign-in service does.
    Verify {
        /// The username, in any form with the same canonical form.
        #[arg(long)]
        username: String,
    },
}

pub async fn run(command: Command, client: &Client) -> anyhow::Result<()> {
    let mut credentials = CredentialServiceClient::new(client.channel(Service::Identity).await?);
    match command {
        Command::Requirements { account } => {
            let response = client
                .call(
                    "roster.identity.v1.CredentialService/GetPasswordRequirements",
                    None,
                    pb::GetPasswordRequirementsRequest {
                        account_id: account,
                    },
                    async |request| credentials.get_password_requirements(request).await,
                )
                .await?;
            if client.json() {
                return output::print_json(&json!({ "rules": rules_json(&response.rules) }));
            }
            output::outln!("{}", rules_table(&response.rules))?;
            Ok(())
        }
        Command::Check { account, profile } => {
            let password = output::read_secret("password")?;
            let response = client
                .call(
                    "roster.identity.v1.CredentialService/CheckPassword",
                    None,
                    pb::CheckPasswordRequest {
                        account_id: account,
                        profile_id: profile,
                        password,
                    },
                    async |request| credentials.check_password(request).await,
                )
                .await?;
            if client.json() {
                return output::print_json(&json!({
                    "acceptable": response.acceptable,
                    "violations": rules_json(&response.violations),
                }));
            }
            if response.acceptable {
                output::outln!("Acceptable: the password satisfies every rule.")?;
            } else {
                output::outln!("Not acceptable; it fails these rules:")?;
                output::outln!("{}", rules_table(&response.violations))?;
            }
            Ok(())
        }
        Command::Reset {
            profile,
            request_id,
        } => {
            let request_id = request_id.get();
            let response = client
                .call(
                    "roster.identity.v1.CredentialService/SendPasswordReset",
                    Some(&request_id),
                    pb::SendPasswordResetRequest {
                        request_id: request_id.clone(),
                        profile_id: profile,
                    },
                    async |request| credentials.send_password_reset(request).await,
                )
                .await?;
            if client.json() {
                return output::print_json(&json!({
                    "profile_id": response.profile_id,
                    "email": response.email,
                    "expire_time": output::json_time(response.expire_time.as_ref()),
                }));
            }
            output::outln!(
                "Password reset email queued; the link in it is for the recipient only.\n{}",
                output::details(&[
                    ("profile", response.profile_id),
                    ("email", response.email),
                    ("expires", output::time(response.expire_time.as_ref())),
                ])
            )?;
            Ok(())
        }
        Command::Verify { username } => {
            let password = output::read_secret("password")?;
            let response = client
                .call(
                    "roster.identity.v1.CredentialService/VerifyPassword",
                    None,
                    pb::VerifyPasswordRequest {
                        username: username.clone(),
                        password,
                    },
                    async |request| credentials.verify_password(request).await,
                )
                .await?;
            if client.json() {
                return output::print_json(&json!({
                    "verified": response.verified,
                    "profile_id": response.profile_id,
                    "account_id": response.account_id,
                }));
            }
            if response.verified {
                output::outln!(
                    "{}",
                    output::details(&[
                        ("verified", output::yes_no(true)),
                        ("profile", response.profile_id),
                        ("account", response.account_id),
                    ])
                )?;
            } else {
                output::outln!(
                    "Not verified: unknown username, wrong password or inactive profile."
                )?;
            }
            Ok(())
        }
    }
}

fn rules_json(rules: &[pb::PasswordRule]) -> Vec<serde_json::Value> {
    rules
        .iter()
        .map(|rule| json!({ "code": rule.code, "description": rule.description }))
        .collect()
}

fn rules_table(rules: &[pb::PasswordRule]) -> String {
    output::table(
        &["rule", "description"],
        rules
            .iter()
            .map(|rule| [rule.code.clone(), rule.description.clone()]),
    )
}
