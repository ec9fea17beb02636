//! `update --set FIELD=VALUE`: the fields it may change, as the update mask names them, read
//! into a profile and back out of one to show what changed.

use anyhow::Context as _;
use roster_proto::identity::v1 as pb;

use super::show::status_name;

/// The fields `update --set` accepts, as the update mask names them.
const UPDATABLE: [&str; 9] = [
    "first_name",
    "last_name",
    "email",
    "username",
    "job_title",
    "department",
    "locale",
    "time_zone",
    "status",
];

/// Parses the `--set FIELD=VALUE` arguments into mask paths, writing the values into `profile`.
pub(super) fn apply_sets(
    sets: &[String],
    profile: &mut pb::Profile,
) -> anyhow::Result<Vec<String>> {
    let mut paths: Vec<String> = Vec::new();
    for set in sets {
        let (field, value) = set
            .split_once('=')
            .with_context(|| format!("--set {set:?}: expected FIELD=VALUE"))?;
        let field = field.trim().replace('-', "_");
        if !UPDATABLE.contains(&field.as_str()) {
            anyhow::bail!(
                "--set {set:?}: {field:?} cannot be changed; fields: {}",
                UPDATABLE.join(", ")
            );
        }
        if paths.contains(&field) {
            anyhow::bail!("--set names {field} twice");
        }
        let value = value.to_owned();
        match field.as_str() {
            "first_name" => profile.first_name = value,
            "last_name" => profile.last_name = value,
            "email" => profile.email = value,
            "username" => profile.username = value,
            "job_title" => profile.job_title = value,
            "department" => profile.department = value,
            "locale" => profile.locale = value,
            "time_zone" => profile.time_zone = value,
            _ => {
                profile.status = match value.to_ascii_lowercase().as_str() {
                    "active" => pb::ProfileStatus::Active,
                    "suspended" => pb::ProfileStatus::Suspended,
                    _ => anyhow::bail!(
                        "--set status={value}: a status is active or suspended (delete with \
                         `roster profiles delete`)"
                    ),
                } as i32
            }
        }
        paths.push(field);
    }
    Ok(paths)
}

/// The value of an updatable field, for showing old → new.
pub(super) fn field_value(profile: &pb::Profile, path: &str) -> String {
    match path {
        "first_name" => profile.first_name.clone(),
        "last_name" => profile.last_name.clone(),
        "email" => profile.email.clone(),
        "username" => profile.username.clone(),
        "job_title" => profile.job_title.clone(),
        "department" => profile.department.clone(),
        "locale" => profile.locale.clone(),
        "time_zone" => profile.time_zone.clone(),
        "status" => status_name(profile.status),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_become_mask_paths_and_values() {
        let mut profile = pb::Profile::default();
        let paths = apply_sets(
            &[
                "first-name=Ada".to_owned(),
                "job_title=".to_owned(),
                "status=Suspended".to_owned(),
            ],
            &mut profile,
        )
        .expect("valid sets");
        assert_eq!(paths, ["first_name", "job_title", "status"]);
        assert_eq!(profile.first_name, "Ada");
        assert_eq!(profile.status, pb::ProfileStatus::Suspended as i32);
    }

    #[test]
    fn unknown_repeated_or_malformed_sets_are_refused() {
        let mut profile = pb::Profile::default();
        for sets in [
            vec!["id=x".to_owned()],
            vec!["email".to_owned()],
            vec!["email=a@b.c".to_owned(), "email=d@e.f".to_owned()],
            vec!["status=deleted".to_owned()],
        ] {
            assert!(apply_sets(&sets, &mut profile).is_err(), "{sets:?}");
        }
    }
}
