use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::assignment::Role;
use crate::ids::ScimTokenId;
use crate::profile::{OwnedProfile, Profile, ProfileFields, ProfileStatus};
use crate::scim_token::{ScimSecret, ScimToken};

fn profile(first_name: &str, username: &str) -> Profile {
    let owned = OwnedProfile {
        first_name: first_name.into(),
        last_name: "Lovelace".into(),
        email: "ada@example.com".into(),
        username: username.into(),
        ..OwnedProfile::default()
    };
    let fields = ProfileFields::parse(owned.as_raw()).unwrap();
    Profile::new(
        ProfileId(Uuid::from_u128(1)),
        AccountId(Uuid::from_u128(2)),
        &fields,
        Utc::now(),
    )
}

#[test]
fn every_type_has_one_wire_name_under_roster() {
    for kind in EventType::ALL {
        assert!(kind.as_str().starts_with("roster."), "{kind}");
        assert_eq!(EventType::from_name(kind.as_str()), Some(kind));
    }
    assert_eq!(EventType::from_name("roster.profile.renamed"), None);
}

#[test]
fn a_created_profile_lists_what_it_was_created_with() {
    let event = profile_created(&profile("Ada", "ada"));
    assert_eq!(event.event_type, EventType::ProfileCreated);
    let username = event
        .changes
        .iter()
        .find(|c| c.field == "username")
        .unwrap();
    assert_eq!(username.old, None);
    assert_eq!(username.new, Some(Value::from("ada")));
    // An unset optional field is no change.
    assert!(event.changes.iter().all(|c| c.field != "job_title"));
}

#[test]
fn a_rename_and_a_new_username_are_two_events_with_old_and_new() {
    let before = profile("Ada", "ada");
    let mut after = profile("Augusta", "augusta");
    after.version = 2;
    let events = profile_changed(&before, &after);
    let types: Vec<_> = events.iter().map(|event| event.event_type).collect();
    assert_eq!(
        types,
        [EventType::ProfileUpdated, EventType::UsernameChanged]
    );
    assert_eq!(
        events[0].changes,
        [FieldChange {
            field: "first_name".into(),
            old: Some(Value::from("Ada")),
            new: Some(Value::from("Augusta")),
        }]
    );
    assert_eq!(events[1].changes[0].old, Some(Value::from("ada")));
}

#[test]
fn nothing_changed_is_no_event() {
    let same = profile("Ada", "ada");
    assert!(profile_changed(&same, &same).is_empty());
}

#[test]
fn a_suspension_and_a_role_are_their_own_events() {
    let before = profile("Ada", "ada");
    let mut after = before.clone();
    after.status = ProfileStatus::Suspended;
    after.roles = vec![Role::StandardUser];
    let types: Vec<_> = profile_changed(&before, &after)
        .iter()
        .map(|event| event.event_type)
        .collect();
    assert_eq!(
        types,
        [EventType::ProfileSuspended, EventType::RolesAssigned]
    );
}

#[test]
fn an_external_id_is_recorded_when_set_and_when_changed() {
    let mut before = profile("Ada", "ada");
    before.external_id = Some("00u1AbC".into());
    let created = profile_created(&before);
    assert!(created.changes.contains(&FieldChange {
        field: "external_id".into(),
        old: None,
        new: Some(Value::from("00u1AbC")),
    }));
    let mut after = before.clone();
    after.external_id = Some("00u1XyZ".into());
    let events = profile_changed(&before, &after);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::ProfileUpdated);
    assert_eq!(
        events[0].changes,
        [FieldChange {
            field: "external_id".into(),
            old: Some(Value::from("00u1AbC")),
            new: Some(Value::from("00u1XyZ")),
        }]
    );
}

#[test]
fn a_scim_token_event_tells_the_token_apart_but_holds_no_secret() {
    let secret = ScimSecret::from_random([42; 32]);
    let token = ScimToken {
        id: ScimTokenId(Uuid::from_u128(3)),
        account_id: AccountId(Uuid::from_u128(2)),
        display_name: "Entra ID".into(),
        send_welcome_emails: true,
        secret_prefix: secret.shown_prefix().to_owned(),
        created_at: Utc::now(),
        revoked_at: None,
    };
    let created = scim_token_created(&token);
    assert_eq!(created.event_type, EventType::ScimTokenCreated);
    assert_eq!(created.subject, Subject::Account(token.account_id));
    let fields: Vec<_> = created.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "scim_token_id",
            "display_name",
            "send_welcome_emails",
            "secret_prefix"
        ]
    );
    assert!(created.changes.iter().all(|c| c.old.is_none()));
    assert_eq!(created.changes[2].new, Some(Value::Bool(true)));
    let revoked = scim_token_revoked(&token);
    assert_eq!(revoked.event_type, EventType::ScimTokenRevoked);
    assert_eq!(
        revoked.changes[0].old,
        Some(Value::Text(token.id.to_string()))
    );
    assert!(revoked.changes.iter().all(|c| c.new.is_none()));
    let written = format!("{created:?}{revoked:?}");
    assert!(!written.contains(secret.expose_secret()));
    assert!(written.contains(secret.shown_prefix()));
}

#[test]
fn values_read_back_as_they_were_written_and_others_are_refused() {
    let values = [
        Value::Bool(true),
        Value::Number(-7),
        Value::Number(i64::MAX),
        Value::Text("ada@example.com".into()),
        Value::Text(String::new()),
        Value::List(vec!["admin".into(), "support".into()]),
        Value::List(Vec::new()),
    ];
    for value in values {
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            value,
            "{json}"
        );
    }
    for refused in [
        "1.5",
        "18446744073709551615",
        "null",
        "{}",
        "[1]",
        "[\"a\", true]",
    ] {
        let error = serde_json::from_str::<Value>(refused).expect_err(refused);
        assert!(
            error
                .to_string()
                .contains("a boolean, an integer, a string or a list of strings")
                || error.to_string().contains("invalid type"),
            "{refused}: {error}"
        );
    }
}
