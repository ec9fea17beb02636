//! `roster profiles`: create, read, list, change and delete user profiles (ProfileService on
//! identity). Changes name their fields (`--set field=value`), which become the update mask,
//! and carry the etag of the profile as read, so a concurrent change is refused, not lost.

use clap::{Subcommand, ValueEnum};
use prost_types::FieldMask;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_runtime::Service;

use crate::client::{Client, RequestIdArg};
use crate::output::{self, Paging};

mod fields;
mod show;

use fields::{apply_sets, field_value};
use show::{extensions, profile_of, roles, show_profile, status_name};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a profile.
    Create {
        /// The account to create the profile in.
        #[arg(long)]
        account: String,
        #[arg(long)]
        first_name: String,
        #[arg(long)]
        last_name: String,
        #[arg(long)]
        email: String,
        /// Username; default: the email address.
        #[arg(long, default_value = "", hide_default_value = true)]
        username: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        job_title: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        department: String,
        /// BCP 47 language tag, e.g. en-GB.
        #[arg(long, default_value = "", hide_default_value = true)]
        locale: String,
        /// IANA time zone, e.g. Europe/Paris.
        #[arg(long, default_value = "", hide_default_value = true)]
        time_zone: String,
        /// Send the new user the welcome email (first name and username).
        #[arg(long)]
        welcome_email: bool,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Show one profile (deleted ones too).
    Get {
        /// The profile's id.
        id: String,
    },
    /// List an account's profiles in creation order (deleted ones only with --status deleted).
    List {
        /// The account whose profiles to list.
        #[arg(long)]
        account: String,
        /// Only profiles in this state; default: every profile that is not deleted.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Only usernames starting with this (compared in canonical form).
        #[arg(long, default_value = "", hide_default_value = true)]
        username_prefix: String,
        /// Only email addresses starting with this (case-insensitive).
        #[arg(long, default_value = "", hide_default_value = true)]
        email_prefix: String,
        /// Only profiles holding this role.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change fields of a profile: --set first_name=Ada --set job_title= (empty clears).
    Update {
        /// The profile's id.
        id: String,
        /// FIELD=VALUE, repeatable. Fields: first_name, last_name, email, username, job_title,
        /// department, locale, time_zone, status (active or suspended).
        #[arg(long = "set", value_name = "FIELD=VALUE", required = true)]
        set: Vec<String>,
        /// Change the profile only if it still has this etag (default: the etag read just
        /// before the change).
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Delete a profile (soft): it stays readable and its username is never given again.
    Delete {
        /// The profile's id.
        id: String,
        /// Delete only if the profile still has this etag.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
    /// Bring a deleted profile back within the restore window: same id and username, its
    /// roles, and each extension it held that no other profile took meanwhile.
    Undelete {
        /// The profile's id.
        id: String,
        /// Undelete only if the profile still has this etag.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        request_id: RequestIdArg,
    },
}

/// A profile's lifecycle state.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Status {
    Active,
    Suspended,
    Deleted,
}

impl Status {
    fn proto(self) -> pb::ProfileStatus {
        match self {
            Status::Active => pb::ProfileStatus::Active,
            Status::Suspended => pb::ProfileStatus::Suspended,
            Status::Deleted => pb::ProfileStatus::Deleted,
        }
    }
}

/// A role a profile can hold.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    AccountAdministrator,
    ContactCenterAgent,
    ContactCenterSupervisor,
    StandardUser,
}

impl RoleArg {
    fn proto(self) -> pb::Role {
        match self {
            RoleArg::AccountAdministrator => pb::Role::AccountAdministrator,
            RoleArg::ContactCenterAgent => pb::Role::ContactCenterAgent,
            RoleArg::ContactCenterSupervisor => pb::Role::ContactCenterSupervisor,
            RoleArg::StandardUser => pb::Role::StandardUser,
        }
    }
}

pub async fn run(command: Command, client: &Client) -> anyhow::Result<()> {
    let mut profiles = ProfileServiceClient::new(client.channel(Service::Identity).await?);
    match command {
        Command::Create {
            account,
            first_name,
            last_name,
            email,
            username,
            job_title,
            department,
            locale,
            time_zone,
            welcome_email,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.ProfileService/CreateProfile",
                    request_id.get(),
                    |request_id| pb::CreateProfileRequest {
                        request_id,
                        account_id: account,
                        first_name,
                        last_name,
                        email,
                        username,
                        job_title,
                        department,
                        locale,
                        time_zone,
                        send_welcome_email: welcome_email,
                    },
                    async |request| profiles.create_profile(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                show_profile(profile_of(response.profile.as_ref())?, &[])
            })
        }
        Command::Get { id } => {
            let response = get_response(client, &mut profiles, id).await?;
            output::show(client.json(), &response, |response| {
                show_profile(profile_of(response.profile.as_ref())?, &[])
            })
        }
        Command::List {
            account,
            status,
            username_prefix,
            email_prefix,
            role,
            paging,
        } => {
            let (items, next) = output::pages(&paging, "profiles", async |page_token| {
                let message = pb::ListProfilesRequest {
                    account_id: account.clone(),
                    page_size: paging.page_size,
                    page_token,
                    status: status.map_or(0, |status| status.proto() as i32),
                    username_prefix: username_prefix.clone(),
                    email_prefix: email_prefix.clone(),
                    role: role.map_or(0, |role| role.proto() as i32),
                };
                let response = client
                    .call(
                        "roster.identity.v1.ProfileService/ListProfiles",
                        None,
                        message,
                        async |request| profiles.clone().list_profiles(request).await,
                    )
                    .await?;
                Ok((response.profiles, response.next_page_token))
            })
            .await?;
            let response = pb::ListProfilesResponse {
                profiles: items,
                next_page_token: next,
            };
            output::show(client.json(), &response, |response| {
                output::listing(
                    "No profiles.",
                    &[
                        "id",
                        "username",
                        "name",
                        "email",
                        "status",
                        "roles",
                        "extensions",
                    ],
                    response.profiles.iter().map(|profile| {
                        [
                            profile.id.clone(),
                            profile.username.clone(),
                            format!("{} {}", profile.first_name, profile.last_name),
                            profile.email.clone(),
                            status_name(profile.status),
                            roles(profile),
                            extensions(profile),
                        ]
                    }),
                    &response.next_page_token,
                )
            })
        }
        Command::Update {
            id,
            set,
            etag,
            request_id,
        } => {
            let before = get(client, &mut profiles, id).await?;
            let mut profile = before.clone();
            let paths = apply_sets(&set, &mut profile)?;
            profile.etag = etag.unwrap_or(before.etag.clone());
            let response = client
                .call_idempotent(
                    "roster.identity.v1.ProfileService/UpdateProfile",
                    request_id.get(),
                    |request_id| pb::UpdateProfileRequest {
                        profile: Some(profile),
                        update_mask: Some(FieldMask {
                            paths: paths.clone(),
                        }),
                        request_id,
                    },
                    async |request| profiles.update_profile(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                let after = profile_of(response.profile.as_ref())?;
                let changed = paths
                    .iter()
                    .map(|path| {
                        (
                            path.clone(),
                            field_value(&before, path),
                            field_value(after, path),
                        )
                    })
                    .collect::<Vec<_>>();
                show_profile(after, &changed)
            })
        }
        Command::Delete {
            id,
            etag,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.ProfileService/DeleteProfile",
                    request_id.get(),
                    |request_id| pb::DeleteProfileRequest {
                        id,
                        etag: etag.unwrap_or_default(),
                        request_id,
                    },
                    async |request| profiles.delete_profile(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                let profile = profile_of(response.profile.as_ref())?;
                output::outln!(
                    "Deleted profile {} ({}); the username {:?} stays retired and is never given \
                     again.",
                    profile.id,
                    profile.email,
                    profile.username
                )?;
                Ok(())
            })
        }
        Command::Undelete {
            id,
            etag,
            request_id,
        } => {
            let response = client
                .call_idempotent(
                    "roster.identity.v1.ProfileService/UndeleteProfile",
                    request_id.get(),
                    |request_id| pb::UndeleteProfileRequest {
                        id,
                        etag: etag.unwrap_or_default(),
                        request_id,
                    },
                    async |request| profiles.undelete_profile(request).await,
                )
                .await?;
            output::show(client.json(), &response, |response| {
                let profile = profile_of(response.profile.as_ref())?;
                output::outln!(
                    "Undeleted profile {} ({}), username {:?}.",
                    profile.id,
                    profile.email,
                    profile.username
                )?;
                if !response.unrestored_extensions.is_empty() {
                    output::outln!(
                        "Not given back, held by another profile now: extensions {}.",
                        response.unrestored_extensions.join(", ")
                    )?;
                }
                Ok(())
            })
        }
    }
}

/// The profile `id`, through GetProfile.
pub async fn get(
    client: &Client,
    profiles: &mut ProfileServiceClient<tonic::transport::Channel>,
    id: String,
) -> anyhow::Result<pb::Profile> {
    output::returned(get_response(client, profiles, id).await?.profile, "profile")
}

async fn get_response(
    client: &Client,
    profiles: &mut ProfileServiceClient<tonic::transport::Channel>,
    id: String,
) -> anyhow::Result<pb::GetProfileResponse> {
    client
        .call(
            "roster.identity.v1.ProfileService/GetProfile",
            None,
            pb::GetProfileRequest { id },
            async |request| profiles.get_profile(request).await,
        )
        .await
}
