//! How a profile is shown as text: its details, and the changes an update made.

use roster_proto::identity::v1 as pb;

use crate::output;

pub(super) fn profile_of(profile: Option<&pb::Profile>) -> anyhow::Result<&pb::Profile> {
    output::returned(profile, "profile")
}

pub(super) fn status_name(status: i32) -> String {
    output::short_enum(status, "PROFILE_STATUS_", |status: pb::ProfileStatus| {
        status.as_str_name()
    })
}

pub(super) fn roles(profile: &pb::Profile) -> String {
    profile
        .roles
        .iter()
        .map(|role| output::short_enum(*role, "ROLE_", |role: pb::Role| role.as_str_name()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn extensions(profile: &pb::Profile) -> String {
    profile
        .extensions
        .iter()
        .map(|extension| {
            let kind = output::short_enum(
                extension.kind,
                "EXTENSION_KIND_",
                |kind: pb::ExtensionKind| kind.as_str_name(),
            );
            format!("{} ({kind})", extension.number)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn show_profile(
    profile: &pb::Profile,
    changed: &[(String, String, String)],
) -> anyhow::Result<()> {
    if !changed.is_empty() {
        output::outln!("Changed:")?;
        for (field, old, new) in changed {
            output::outln!("  {field}: {old:?} → {new:?}")?;
        }
        output::outln!()?;
    }
    output::outln!(
        "{}",
        output::details(&[
            ("id", profile.id.clone()),
            ("account", profile.account_id.clone()),
            ("username", profile.username.clone()),
            ("canonical", profile.canonical_username.clone()),
            ("first name", profile.first_name.clone()),
            ("last name", profile.last_name.clone()),
            ("email", profile.email.clone()),
            ("job title", profile.job_title.clone()),
            ("department", profile.department.clone()),
            ("locale", profile.locale.clone()),
            ("time zone", profile.time_zone.clone()),
            ("status", status_name(profile.status)),
            ("roles", roles(profile)),
            ("extensions", extensions(profile)),
            ("created", output::time(profile.create_time.as_ref())),
            ("updated", output::time(profile.update_time.as_ref())),
            ("deleted", output::time(profile.delete_time.as_ref())),
            ("etag", profile.etag.clone()),
        ])
    )?;
    Ok(())
}
