//! `roster usernames check`: whether a username can be taken, its canonical form, why not,
//! and free alternatives (ProfileService.CheckUsername on identity). Usernames are global, so
//! the answer holds across every account.

use clap::Subcommand;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_runtime::Service;

use crate::client::Client;
use crate::output;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Tell whether a username is free; exits 0 whenever the check ran, whatever the answer.
    Check {
        /// The username to check.
        username: String,
        /// Email address, to build suggestions from.
        #[arg(long, default_value = "", hide_default_value = true)]
        email: String,
        /// First name, to build suggestions from.
        #[arg(long, default_value = "", hide_default_value = true)]
        first_name: String,
        /// Last name, to build suggestions from.
        #[arg(long, default_value = "", hide_default_value = true)]
        last_name: String,
    },
}

pub async fn run(command: Command, client: &Client) -> anyhow::Result<()> {
    let Command::Check {
        username,
        email,
        first_name,
        last_name,
    } = command;
    let mut profiles = ProfileServiceClient::new(client.channel(Service::Identity).await?);
    let response = client
        .call(
            "roster.identity.v1.ProfileService/CheckUsername",
            None,
            pb::CheckUsernameRequest {
                username: username.clone(),
                email,
                first_name,
                last_name,
            },
            async |request| profiles.check_username(request).await,
        )
        .await?;
    output::show(client.json(), &response, |response| {
        show(&username, response)
    })
}

fn show(username: &str, response: &pb::CheckUsernameResponse) -> anyhow::Result<()> {
    let reason = if response.available {
        String::new()
    } else {
        let short = output::short_enum(
            response.reason,
            "USERNAME_REFUSAL_",
            |reason: pb::UsernameRefusal| reason.as_str_name(),
        );
        format!("{short}: {}", response.message)
    };
    output::outln!(
        "{}",
        output::details(&[
            ("username", username.to_owned()),
            ("canonical", response.canonical.clone()),
            ("available", output::yes_no(response.available)),
            ("reason", reason),
            ("suggestions", response.suggestions.join(", ")),
        ])
    )?;
    Ok(())
}
