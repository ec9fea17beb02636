//! `roster passwords`: an account's password requirements, checking a candidate against them,
//! admin-triggered reset by email, and verifying a username and password (CredentialService on
//! identity), and a profile's sign-in throttle: reading it and unlocking. Passwords are read from stdin or a prompt without echo, never from arguments; a
//! reset prints where the email goes and when its link expires, never the token.

use std::io::IsTerminal;

use clap::Subcommand;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::credential_service_client::CredentialServiceClient;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_runtime::Service;

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
    /// keeps working until the reset is completed. Shows the profile and asks before sending;
    /// identity refuses the reset when the profile changed since it was shown.
    Reset {
        /// The profile's id.
        profile: String,
        /// The email address the link must go to: refused when the profile's address is another.
        #[arg(long)]
        email: Option<String>,
        /// Send without asking (scripts); needs --email, the address confirmed beforehand.
        #[arg(long, requires = "email")]
        yes: bool,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Check a username and password (read from stdin or a prompt) as the sign-in service does.
    Verify {
        /// The username, in any form with the same canonical form.
        #[arg(long)]
        username: String,
    },
    /// Forget a profile's failed sign-ins and lift its sign-in lock.
    Unlock {
        /// The profile's id.
        profile: String,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Show a profile's failed sign-ins and until when its sign-in is locked.
    SigninState {
        /// The profile's id.
        profile: String,
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
            output::show(client.json(), &response, |response| {
                output::outln!("{}", rules_table(&response.rules))
            })
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
            output::show(client.json(), &response, |response| {
                if response.acceptable {
                    output::outln!("Acceptable: the password satisfies every rule.")
                } else {
                    output::outln!("Not acceptable; it fails these rules:")?;
                    output::outln!("{}", rules_table(&response.violations))
                }
            })
        }
        Command::Reset {
            profile,
            email,
            yes,
            request_id,
        } => {
            let (email, etag) = match (yes, email) {
                (true, Some(email)) => (email, String::new()),
                (_, email) => confirm_reset(client, profile.clone(), email).await?,
            };
            let response = client
                .call_idempotent(
                    "roster.identity.v1.CredentialService/SendPasswordReset",
                    request_id.get(),
                    |request_id| pb::SendPasswordResetRequest {
                        request_id,
                        profile_id: profile,
                        email,
                        etag,
                    },
                    async |request| credentials.send_password_reset(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                output::outln!(
                    "Password reset email queued; the link in it is for the recipient only.\n{}",
                    output::details(&[
                        ("profile", response.profile_id.clone()),
                        ("email", response.email.clone()),
                        ("expires", output::time(response.expire_time.as_ref())),
                    ])
                )
            })
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
            output::show(client.json(), &response, |response| {
                if response.verified {
                    output::outln!(
                        "{}",
                        output::details(&[
                            ("verified", output::yes_no(true)),
                            ("profile", response.profile_id.clone()),
                            ("account", response.account_id.clone()),
                        ])
                    )
                } else {
                    output::outln!(
                        "Not verified: unknown username, wrong password or inactive profile."
                    )
                }
            })
        }
        Command::Unlock {
            profile,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.CredentialService/ClearSignInThrottle",
                    request_id.get(),
                    |request_id| pb::ClearSignInThrottleRequest {
                        request_id,
                        profile_id: profile,
                    },
                    async |request| credentials.clear_sign_in_throttle(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                let lock = if response.unlocked {
                    "its sign-in lock is lifted"
                } else {
                    "its sign-in was not locked"
                };
                output::outln!(
                    "Forgot {} failed sign-ins; {lock}.",
                    response.failures_cleared
                )
            })
        }
        Command::SigninState { profile } => {
            let response = client
                .call(
                    "roster.identity.v1.CredentialService/GetSignInState",
                    None,
                    pb::GetSignInStateRequest {
                        profile_id: profile,
                    },
                    async |request| credentials.get_sign_in_state(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                output::outln!(
                    "{}",
                    output::details(&[
                        ("failures", response.failures.to_string()),
                        (
                            "last failure",
                            output::time(response.last_failure_time.as_ref())
                        ),
                        (
                            "locked until",
                            match &response.locked_until {
                                Some(until) => output::time(Some(until)),
                                None => "not locked".to_owned(),
                            }
                        ),
                    ])
                )
            })
        }
    }
}

/// Shows the profile a reset would go to and asks the operator to confirm its address; the
/// address and etag shown are what identity then checks, so a change in between is refused.
async fn confirm_reset(
    client: &Client,
    id: String,
    expected_email: Option<String>,
) -> anyhow::Result<(String, String)> {
    let mut profiles = ProfileServiceClient::new(client.channel(Service::Identity).await?);
    let profile = crate::profiles::get(client, &mut profiles, id).await?;
    if let Some(expected) = &expected_email
        && !expected.trim().eq_ignore_ascii_case(&profile.email)
    {
        anyhow::bail!(
            "profile {} has the email address {}, not {}; nothing was sent",
            profile.id,
            profile.email,
            expected.trim()
        );
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "a reset needs confirmation: run it at a terminal, or pass --yes with --email {}",
            profile.email
        );
    }
    eprintln!(
        "{}",
        output::details(&[
            ("profile", profile.id.clone()),
            (
                "name",
                format!("{} {}", profile.first_name, profile.last_name)
            ),
            ("username", profile.username.clone()),
            ("email", profile.email.clone()),
        ])
    );
    eprint!("Send a password reset link to {}? [y/N] ", profile.email);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
        anyhow::bail!("not confirmed; nothing was sent");
    }
    Ok((profile.email, profile.etag))
}

fn rules_table(rules: &[pb::PasswordRule]) -> String {
    output::table(
        &["rule", "description"],
        rules
            .iter()
            .map(|rule| [rule.code.clone(), rule.description.clone()]),
    )
}
