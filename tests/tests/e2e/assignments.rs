//! Roles and extensions on profiles over gRPC, on SQLite and PostgreSQL: extension numbers
//! unique within an account (decided by the database under concurrency), freed by unassignment
//! or deletion, bounded per account; roles from a fixed set; etag and request_id semantics;
//! assignments through BatchUpsertProfiles.

use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::{Identity, Refusal, refusal, rename_account, upsert_item};
use roster_tests::{Backend, TestKey, TestServer, both_backends, reason};
use tonic::Code;

async fn spawn(backend: Backend) -> Option<(TestServer, Identity)> {
    let server = TestServer::spawn(Service::Identity, backend).await?;
    let identity = Identity::connect(&server).await;
    Some((server, identity))
}

async fn create_account(identity: &Identity, request: pb::CreateAccountRequest) -> pb::Account {
    let response = identity.create_account(request).await;
    response.expect("account created").account.expect("account")
}

async fn account(identity: &Identity, name: &str) -> String {
    identity.account(name).await.id
}

fn extension(number: &str, kind: pb::ExtensionKind) -> pb::Extension {
    pb::Extension {
        number: number.into(),
        kind: kind as i32,
    }
}

fn give(profile_id: &str, number: &str) -> pb::AssignExtensionRequest {
    pb::AssignExtensionRequest {
        profile_id: profile_id.into(),
        extension: Some(extension(number, pb::ExtensionKind::Physical)),
        ..Default::default()
    }
}

async fn assign(
    identity: &Identity,
    request: pb::AssignExtensionRequest,
) -> Result<pb::Profile, tonic::Status> {
    identity
        .assign_extension(request)
        .await
        .map(|response| response.profile.expect("profile"))
}

async fn unassign(
    identity: &Identity,
    request: pb::UnassignExtensionRequest,
) -> Result<pb::Profile, tonic::Status> {
    identity
        .unassign_extension(request)
        .await
        .map(|response| response.profile.expect("profile"))
}

async fn assign_roles(
    identity: &Identity,
    request: pb::AssignRolesRequest,
) -> Result<pb::Profile, tonic::Status> {
    identity
        .assign_roles(request)
        .await
        .map(|response| response.profile.expect("profile"))
}

async fn unassign_roles(
    identity: &Identity,
    request: pb::UnassignRolesRequest,
) -> Result<pb::Profile, tonic::Status> {
    identity
        .unassign_roles(request)
        .await
        .map(|response| response.profile.expect("profile"))
}

fn numbers(profile: &pb::Profile) -> Vec<&str> {
    profile
        .extensions
        .iter()
        .map(|extension| extension.number.as_str())
        .collect()
}

fn roles(values: &[pb::Role]) -> Vec<i32> {
    values.iter().map(|role| *role as i32).collect()
}

/// Everything a caller can observe of a refusal.
fn observable(status: &tonic::Status) -> (Code, String, Vec<u8>) {
    (
        status.code(),
        status.message().to_owned(),
        status.details().to_vec(),
    )
}

fn later(after: &pb::Profile, before: &pb::Profile) -> bool {
    let time = |profile: &pb::Profile| {
        let time = profile.update_time.expect("update time");
        (time.seconds, time.nanos)
    };
    time(after) > time(before)
}

async fn concurrent_assignments_of_one_number_admit_exactly_one(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = account(&identity, "Acme").await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            identity
                .alice(&account, &format!("racer{n}@example.com"))
                .await
                .id,
        );
    }
    let calls = ids.iter().map(|id| {
        let identity = identity.clone();
        let request = give(id, "1000");
        tokio::spawn(async move { assign(&identity, request).await })
    });
    let mut ok = 0;
    let mut taken = 0;
    for result in futures::future::join_all(calls).await {
        match result.expect("task") {
            Ok(profile) => {
                assert_eq!(numbers(&profile), vec!["1000"]);
                ok += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                assert_eq!(reason(&status).as_deref(), Some("EXTENSION_TAKEN"));
                taken += 1;
            }
        }
    }
    assert_eq!((ok, taken), (1, 19));
    let mut holders = 0;
    for id in &ids {
        holders += usize::from(numbers(&identity.profile(id).await) == vec!["1000"]);
    }
    assert_eq!(holders, 1, "exactly one profile holds the number");
}

async fn the_same_number_is_fine_in_two_accounts(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let first = account(&identity, "First").await;
    let second = account(&identity, "Second").await;
    let a = identity.alice(&first, "a@first.example").await;
    let b = identity.alice(&second, "b@second.example").await;
    assert_eq!(
        numbers(&assign(&identity, give(&a.id, "200")).await.unwrap()),
        vec!["200"]
    );
    assert_eq!(
        numbers(&assign(&identity, give(&b.id, "200")).await.unwrap()),
        vec!["200"]
    );
    let again = identity.alice(&first, "c@first.example").await;
    let status = assign(&identity, give(&again.id, "200")).await.unwrap_err();
    assert_eq!(refusal(&status).reason, "EXTENSION_TAKEN");
}

async fn an_unassigned_number_can_be_given_again(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = account(&identity, "Acme").await;
    let first = identity.alice(&account, "first@example.com").await;
    let second = identity.alice(&account, "second@example.com").await;
    let held = assign(
        &identity,
        pb::AssignExtensionRequest {
            extension: Some(extension("0042", pb::ExtensionKind::Virtual)),
            ..give(&first.id, "")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        held.extensions,
        vec![extension("0042", pb::ExtensionKind::Virtual)]
    );
    // Leading zeros are significant: 42 is another number.
    assign(&identity, give(&second.id, "42")).await.unwrap();
    let status = assign(&identity, give(&second.id, "0042"))
        .await
        .unwrap_err();
    assert_eq!(refusal(&status).reason, "EXTENSION_TAKEN");

    // Only the holder can free a number; for anybody else it is not found.
    let status = unassign(
        &identity,
        pb::UnassignExtensionRequest {
            profile_id: second.id.clone(),
            number: "0042".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let freed = unassign(
        &identity,
        pb::UnassignExtensionRequest {
            profile_id: first.id.clone(),
            number: "0042".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(freed.extensions.is_empty());
    let taken = assign(&identity, give(&second.id, "0042")).await.unwrap();
    assert_eq!(numbers(&taken), vec!["0042", "42"]);
    assert!(identity.profile(&first.id).await.extensions.is_empty());
}

async fn deleting_a_profile_frees_its_numbers(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = account(&identity, "Acme").await;
    let leaver = identity.alice(&account, "leaver@example.com").await;
    let joiner = identity.alice(&account, "joiner@example.com").await;
    assign(&identity, give(&leaver.id, "555")).await.unwrap();
    let deleted = identity
        .delete_profile(pb::DeleteProfileRequest {
            id: leaver.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    assert!(deleted.extensions.is_empty());
    assert_eq!(
        numbers(&assign(&identity, give(&joiner.id, "555")).await.unwrap()),
        vec!["555"]
    );

    // A deleted profile cannot be given anything.
    let status = assign(&identity, give(&leaver.id, "556"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: leaver.id.clone(),
            roles: roles(&[pb::Role::StandardUser]),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
}

async fn extension_numbers_respect_the_account_bounds(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let default = create_account(
        &identity,
        pb::CreateAccountRequest {
            display_name: "Default".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (default.extension_min_length, default.extension_max_length),
        (2, 8)
    );
    let someone = identity.alice(&default.id, "someone@example.com").await;
    for number in ["1", "123456789", "12a", "+123", "12 34", ""] {
        let status = assign(&identity, give(&someone.id, number))
            .await
            .unwrap_err();
        let Refusal {
            code,
            reason,
            violations: descriptions,
        } = refusal(&status);
        assert_eq!(
            (code, reason.as_str()),
            (Code::InvalidArgument, "EXTENSION_INVALID"),
            "{number:?}"
        );
        assert!(
            descriptions
                .iter()
                .any(|d| d.starts_with("extension.number") && d.contains("2 to 8 digits")),
            "{number:?}: {descriptions:?}"
        );
    }
    let status = assign(
        &identity,
        pb::AssignExtensionRequest {
            extension: Some(pb::Extension {
                number: "123".into(),
                kind: 0,
            }),
            ..give(&someone.id, "")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refusal(&status).reason, "EXTENSION_INVALID");
    assign(&identity, give(&someone.id, "12345678"))
        .await
        .unwrap();

    let narrow = create_account(
        &identity,
        pb::CreateAccountRequest {
            display_name: "Narrow".into(),
            extension_min_length: 3,
            extension_max_length: 5,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (narrow.extension_min_length, narrow.extension_max_length),
        (3, 5)
    );
    let member = identity.alice(&narrow.id, "member@example.com").await;
    for number in ["12", "123456"] {
        let status = assign(&identity, give(&member.id, number))
            .await
            .unwrap_err();
        let Refusal {
            reason,
            violations: descriptions,
            ..
        } = refusal(&status);
        assert_eq!(reason, "EXTENSION_INVALID");
        assert!(
            descriptions.iter().any(|d| d.contains("3 to 5 digits")),
            "{descriptions:?}"
        );
    }
    let held = assign(&identity, give(&member.id, "12345")).await.unwrap();

    // Bounds change through UpdateAccount; numbers held already are kept.
    let update = |etag: &str, request_id: &str| pb::UpdateAccountRequest {
        account: Some(pb::Account {
            id: narrow.id.clone(),
            extension_min_length: 6,
            extension_max_length: 6,
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["extension_min_length".into(), "extension_max_length".into()],
        }),
        request_id: request_id.into(),
    };
    let updated = identity
        .update_account(update(&narrow.etag, "bounds-1"))
        .await
        .unwrap()
        .account
        .unwrap();
    assert_eq!(
        (updated.extension_min_length, updated.extension_max_length),
        (6, 6)
    );
    assert_eq!(updated.display_name, "Narrow");
    assert_ne!(updated.etag, narrow.etag);
    let replayed = identity
        .update_account(update(&narrow.etag, "bounds-1"))
        .await
        .unwrap()
        .account
        .unwrap();
    assert_eq!(replayed, updated);
    let stale = identity
        .update_account(update(&narrow.etag, "bounds-2"))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(numbers(&identity.profile(&member.id).await), vec!["12345"]);
    let status = assign(&identity, give(&member.id, "54321"))
        .await
        .unwrap_err();
    assert!(
        refusal(&status)
            .violations
            .iter()
            .any(|d| d.contains("6 digits")),
        "{status:?}"
    );
    assign(
        &identity,
        pb::AssignExtensionRequest {
            etag: held.etag.clone(),
            ..give(&member.id, "654321")
        },
    )
    .await
    .unwrap();

    for (min, max) in [(5, 3), (0, 0), (1, 16)] {
        let status = identity
            .update_account(pb::UpdateAccountRequest {
                account: Some(pb::Account {
                    id: narrow.id.clone(),
                    extension_min_length: min,
                    extension_max_length: max,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["extension_min_length".into(), "extension_max_length".into()],
                }),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{min} to {max}");
    }
    let status = identity
        .create_account(pb::CreateAccountRequest {
            display_name: "Inverted".into(),
            extension_min_length: 9,
            extension_max_length: 4,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let renamed = identity
        .update_account(rename_account(&narrow.id, "  Narrow Ltd "))
        .await
        .unwrap()
        .account
        .unwrap();
    assert_eq!(renamed.display_name, "Narrow Ltd");
    assert_eq!(
        (renamed.extension_min_length, renamed.extension_max_length),
        (6, 6)
    );
}

async fn roles_are_assigned_idempotently_and_filter_listings(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = account(&identity, "Acme").await;
    let agent = identity.alice(&account, "agent@example.com").await;
    let boss = identity.alice(&account, "boss@example.com").await;
    identity.alice(&account, "plain@example.com").await;

    let given = assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: agent.id.clone(),
            roles: roles(&[
                pb::Role::ContactCenterSupervisor,
                pb::Role::ContactCenterAgent,
                pb::Role::ContactCenterAgent,
            ]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        given.roles,
        roles(&[
            pb::Role::ContactCenterAgent,
            pb::Role::ContactCenterSupervisor
        ])
    );
    assert_ne!(given.etag, agent.etag);
    let again = assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: agent.id.clone(),
            roles: roles(&[pb::Role::ContactCenterAgent]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(again, given, "assigning a held role changes nothing");
    let not_held = unassign_roles(
        &identity,
        pb::UnassignRolesRequest {
            profile_id: agent.id.clone(),
            roles: roles(&[pb::Role::AccountAdministrator]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(not_held, given, "removing a role not held changes nothing");
    let removed = unassign_roles(
        &identity,
        pb::UnassignRolesRequest {
            profile_id: agent.id.clone(),
            roles: roles(&[pb::Role::ContactCenterSupervisor]),
            etag: given.etag.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(removed.roles, roles(&[pb::Role::ContactCenterAgent]));
    assert_ne!(removed.etag, given.etag);
    assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: boss.id.clone(),
            roles: roles(&[
                pb::Role::AccountAdministrator,
                pb::Role::ContactCenterSupervisor,
            ]),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    for bad in [vec![], vec![0], vec![99], vec![2, 0]] {
        let status = assign_roles(
            &identity,
            pb::AssignRolesRequest {
                profile_id: agent.id.clone(),
                roles: bad.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_deref()),
            (Code::InvalidArgument, Some("ROLE_INVALID")),
            "{bad:?}"
        );
    }

    let listed = |role: pb::Role| {
        let identity = identity.clone();
        let account = account.clone();
        async move {
            identity
                .list_profiles(pb::ListProfilesRequest {
                    account_id: account,
                    role: role as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .profiles
                .into_iter()
                .map(|profile| profile.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(pb::Role::ContactCenterAgent).await,
        vec![agent.id.clone()]
    );
    assert_eq!(
        listed(pb::Role::ContactCenterSupervisor).await,
        vec![boss.id.clone()]
    );
    assert_eq!(
        listed(pb::Role::AccountAdministrator).await,
        vec![boss.id.clone()]
    );
    assert!(listed(pb::Role::StandardUser).await.is_empty());
    assert_eq!(listed(pb::Role::Unspecified).await.len(), 3);
}

async fn assignment_changes_follow_etag_and_request_id_rules(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = account(&identity, "Acme").await;
    let original = identity.alice(&account, "etag@example.com").await;

    let first = assign(
        &identity,
        pb::AssignExtensionRequest {
            etag: original.etag.clone(),
            request_id: "give-100".into(),
            ..give(&original.id, "100")
        },
    )
    .await
    .unwrap();
    assert_ne!(first.etag, original.etag);
    assert!(later(&first, &original), "the update time moves");
    // A replay returns the first result, although its etag is stale now, and writes nothing.
    let replay = assign(
        &identity,
        pb::AssignExtensionRequest {
            etag: original.etag.clone(),
            request_id: "give-100".into(),
            ..give(&original.id, "100")
        },
    )
    .await
    .unwrap();
    assert_eq!(replay, first);
    assert_eq!(identity.profile(&original.id).await, first);
    // A new request with the stale etag is refused.
    let stale = assign(
        &identity,
        pb::AssignExtensionRequest {
            etag: original.etag.clone(),
            request_id: "give-101".into(),
            ..give(&original.id, "101")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(numbers(&identity.profile(&original.id).await), vec!["100"]);

    // Giving a held number again changes nothing; giving it with the other kind changes it.
    assert_eq!(
        assign(&identity, give(&original.id, "100")).await.unwrap(),
        first
    );
    let virtual_ = assign(
        &identity,
        pb::AssignExtensionRequest {
            extension: Some(extension("100", pb::ExtensionKind::Virtual)),
            etag: first.etag.clone(),
            ..give(&original.id, "")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        virtual_.extensions,
        vec![extension("100", pb::ExtensionKind::Virtual)]
    );
    assert_ne!(virtual_.etag, first.etag);

    let roles_given = assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: original.id.clone(),
            roles: roles(&[pb::Role::StandardUser]),
            etag: virtual_.etag.clone(),
            request_id: "roles-1".into(),
        },
    )
    .await
    .unwrap();
    assert!(later(&roles_given, &virtual_));
    let status = assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: original.id.clone(),
            roles: roles(&[pb::Role::ContactCenterAgent]),
            etag: virtual_.etag.clone(),
            request_id: "roles-2".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let replayed = assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: original.id.clone(),
            roles: roles(&[pb::Role::StandardUser]),
            etag: virtual_.etag.clone(),
            request_id: "roles-1".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(replayed, roles_given);

    let freed = unassign(
        &identity,
        pb::UnassignExtensionRequest {
            profile_id: original.id.clone(),
            number: "100".into(),
            etag: roles_given.etag.clone(),
            request_id: "free-100".into(),
        },
    )
    .await
    .unwrap();
    assert!(freed.extensions.is_empty());
    assert_ne!(freed.etag, roles_given.etag);
    // The replay answers as the first call did, though the number is no longer held.
    let replayed = unassign(
        &identity,
        pb::UnassignExtensionRequest {
            profile_id: original.id.clone(),
            number: "100".into(),
            etag: roles_given.etag.clone(),
            request_id: "free-100".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(replayed, freed);
    assert_eq!(identity.profile(&original.id).await, freed);
}

async fn another_accounts_profile_is_not_found_like_a_missing_one(backend: Backend) {
    let Some((server, identity)) = spawn(backend).await else {
        return;
    };
    let mine = account(&identity, "Mine").await;
    let theirs = account(&identity, "Theirs").await;
    let target = identity.alice(&theirs, "target@theirs.example").await;
    assign(&identity, give(&target.id, "700")).await.unwrap();
    const KEY: &str = "key-for-mine";
    let server = server
        .restart_with_keys(vec![TestKey::limited(
            KEY,
            &["accounts", "profiles"],
            &[mine.parse().unwrap()],
        )])
        .await;
    let limited = Identity::new(server.channel().await, KEY);
    let nobody = uuid::Uuid::now_v7().to_string();

    let mut refusals = Vec::new();
    for id in [target.id.clone(), nobody.clone()] {
        let extension = limited
            .assign_extension(give(&id, "701"))
            .await
            .unwrap_err();
        let freed = limited
            .unassign_extension(pb::UnassignExtensionRequest {
                profile_id: id.clone(),
                number: "700".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        let given = limited
            .assign_roles(pb::AssignRolesRequest {
                profile_id: id.clone(),
                roles: roles(&[pb::Role::AccountAdministrator]),
                ..Default::default()
            })
            .await
            .unwrap_err();
        let taken = limited
            .unassign_roles(pb::UnassignRolesRequest {
                profile_id: id.clone(),
                roles: roles(&[pb::Role::AccountAdministrator]),
                ..Default::default()
            })
            .await
            .unwrap_err();
        refusals.push([extension, freed, given, taken].map(|status| observable(&status)));
    }
    assert_eq!(refusals[0], refusals[1]);
    assert!(
        refusals[0]
            .iter()
            .all(|(code, _, _)| *code == Code::NotFound)
    );
    let status = limited
        .update_account(rename_account(&theirs, "Mallory"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let admin = limited.with_key(roster_tests::ADMIN_KEY);
    assert_eq!(
        admin.profile(&target.id).await.extensions,
        vec![extension("700", pb::ExtensionKind::Physical)]
    );
}

async fn batch_upsert_sets_assignments_and_fails_colliding_items_alone(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = account(&identity, "Acme").await;
    let mover = identity.alice(&account, "mover@example.com").await;
    let holder = identity.alice(&account, "holder@example.com").await;
    assign(&identity, give(&mover.id, "100")).await.unwrap();
    assign(&identity, give(&holder.id, "200")).await.unwrap();
    assign_roles(
        &identity,
        pb::AssignRolesRequest {
            profile_id: mover.id.clone(),
            roles: roles(&[pb::Role::StandardUser]),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let item = |key: &str, id: &str, email: &str, role_list: &[pb::Role], numbers: &[&str]| {
        pb::ProfileUpsert {
            roles: roles(role_list),
            extensions: numbers
                .iter()
                .map(|n| extension(n, pb::ExtensionKind::Physical))
                .collect(),
            set_assignments: true,
            ..upsert_item(key, id, email, "")
        }
    };
    let items = vec![
        item(
            "k0",
            "",
            "new0@example.com",
            &[pb::Role::ContactCenterAgent],
            &["300", "0301"],
        ),
        item("k1", "", "new1@example.com", &[], &["300"]),
        item("k2", "", "new2@example.com", &[], &["200"]),
        item(
            "k3",
            &mover.id,
            "mover@example.com",
            &[
                pb::Role::AccountAdministrator,
                pb::Role::ContactCenterSupervisor,
            ],
            &["101"],
        ),
        item(
            "k4",
            "",
            "new4@example.com",
            &[pb::Role::StandardUser],
            &["100"],
        ),
        pb::ProfileUpsert {
            set_assignments: false,
            ..item("k5", "", "new5@example.com", &[pb::Role::StandardUser], &[])
        },
        item("k6", "", "new6@example.com", &[], &["1"]),
        item("k7", "", "new7@example.com", &[], &["700", "700"]),
        pb::ProfileUpsert {
            roles: vec![42],
            ..item("k8", "", "new8@example.com", &[], &[])
        },
        item("k9", &holder.id, "holder@example.com", &[], &["200"]),
    ];
    let request = pb::BatchUpsertProfilesRequest {
        account_id: account.clone(),
        items,
        send_welcome_emails: false,
        ..Default::default()
    };
    let results = identity.upserted(request.clone()).await;
    let outcome = |n: usize| pb::UpsertOutcome::try_from(results[n].outcome).unwrap();
    let held = |n: usize| {
        numbers(results[n].profile.as_ref().unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(results.len(), 10);

    assert_eq!(outcome(0), pb::UpsertOutcome::Created);
    assert_eq!(held(0), vec!["0301", "300"]);
    assert_eq!(
        results[0].profile.as_ref().unwrap().roles,
        roles(&[pb::Role::ContactCenterAgent])
    );
    // The first item of the batch to claim 300 wins it.
    assert_eq!(outcome(1), pb::UpsertOutcome::Failed);
    assert_eq!(
        (results[1].error_code, results[1].error_reason.as_str()),
        (Code::AlreadyExists as i32, "EXTENSION_TAKEN")
    );
    // 200 is held by a profile outside the batch.
    assert_eq!(outcome(2), pb::UpsertOutcome::Failed);
    assert_eq!(
        (results[2].error_code, results[2].error_reason.as_str()),
        (Code::AlreadyExists as i32, "EXTENSION_TAKEN")
    );
    assert!(
        results[2].error_message.contains("200"),
        "{}",
        results[2].error_message
    );
    // Replacing the mover's assignments frees 100, which a later item takes.
    assert_eq!(outcome(3), pb::UpsertOutcome::Updated);
    let moved = results[3].profile.as_ref().unwrap();
    assert_eq!(numbers(moved), vec!["101"]);
    assert_eq!(
        moved.roles,
        roles(&[
            pb::Role::AccountAdministrator,
            pb::Role::ContactCenterSupervisor
        ])
    );
    assert_ne!(moved.etag, mover.etag);
    assert_eq!(outcome(4), pb::UpsertOutcome::Created);
    assert_eq!(held(4), vec!["100"]);
    // Roles without set_assignments would be dropped silently: refused instead.
    assert_eq!(outcome(5), pb::UpsertOutcome::Failed);
    assert_eq!(results[5].error_code, Code::InvalidArgument as i32);
    assert_eq!(results[5].field_errors[0].field, "set_assignments");
    assert_eq!(outcome(6), pb::UpsertOutcome::Failed);
    assert_eq!(results[6].error_reason, "EXTENSION_INVALID");
    assert_eq!(results[6].field_errors[0].field, "extensions[0].number");
    assert!(
        results[6].field_errors[0]
            .description
            .contains("2 to 8 digits")
    );
    assert_eq!(outcome(7), pb::UpsertOutcome::Failed);
    assert_eq!(results[7].error_reason, "EXTENSION_INVALID");
    assert_eq!(outcome(8), pb::UpsertOutcome::Failed);
    assert_eq!(results[8].error_reason, "ROLE_INVALID");
    // The holder keeps its number and is unchanged.
    assert_eq!(outcome(9), pb::UpsertOutcome::Unchanged);

    // Failed items wrote nothing: their usernames are still free.
    for n in [1, 2, 5, 6, 7, 8] {
        let check = identity
            .check_username(pb::CheckUsernameRequest {
                username: format!("new{n}@example.com"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(check.available, "new{n} was written");
    }
    assert_eq!(numbers(&identity.profile(&holder.id).await), vec!["200"]);
    assert_eq!(identity.profile(&mover.id).await, *moved);

    // Replays answer as the first time; equal fields and assignments are UNCHANGED.
    let replay = identity.upserted(request).await;
    for n in [0, 3, 4, 9] {
        assert_eq!(replay[n], results[n], "item {n}");
    }
    let same = identity
        .upserted(pb::BatchUpsertProfilesRequest {
            account_id: account.clone(),
            items: vec![
                item(
                    "again-3",
                    &mover.id,
                    "mover@example.com",
                    &[
                        pb::Role::ContactCenterSupervisor,
                        pb::Role::AccountAdministrator,
                    ],
                    &["101"],
                ),
                pb::ProfileUpsert {
                    set_assignments: false,
                    ..item("again-9", &holder.id, "holder@example.com", &[], &[])
                },
                item(
                    "clear-0",
                    &results[0].profile.as_ref().unwrap().id,
                    "new0@example.com",
                    &[],
                    &[],
                ),
                item("take-300", "", "late@example.com", &[], &["300"]),
                item("twice-9", &holder.id, "holder@example.com", &[], &["201"]),
            ],
            send_welcome_emails: false,
            ..Default::default()
        })
        .await;
    assert_eq!(
        pb::UpsertOutcome::try_from(same[0].outcome).unwrap(),
        pb::UpsertOutcome::Unchanged
    );
    assert_eq!(same[0].profile.as_ref().unwrap().etag, moved.etag);
    assert_eq!(
        pb::UpsertOutcome::try_from(same[1].outcome).unwrap(),
        pb::UpsertOutcome::Unchanged
    );
    // Empty lists with set_assignments take every role and free every number.
    assert_eq!(
        pb::UpsertOutcome::try_from(same[2].outcome).unwrap(),
        pb::UpsertOutcome::Updated
    );
    let cleared = same[2].profile.as_ref().unwrap();
    assert!(cleared.roles.is_empty() && cleared.extensions.is_empty());
    assert_eq!(
        pb::UpsertOutcome::try_from(same[3].outcome).unwrap(),
        pb::UpsertOutcome::Created,
        "{:?}",
        same[3]
    );
    // Assignments are set by the only item of a batch naming the profile.
    assert_eq!(
        pb::UpsertOutcome::try_from(same[4].outcome).unwrap(),
        pb::UpsertOutcome::Failed
    );
    assert_eq!(same[4].field_errors[0].field, "id");
    assert_eq!(numbers(&identity.profile(&holder.id).await), vec!["200"]);
}

/// A profile holds at most 32 extensions: the 33rd AssignExtension is refused (one it holds
/// may still change kind), and a batch item listing more is refused before its numbers are
/// read — even a list of 250,000, answered at once, not after comparing each number with
/// every other.
async fn a_profile_holds_a_bounded_number_of_extensions(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = account(&identity, "Exchange").await;
    let profile = identity
        .person(&account, "Grace", "Hopper", "grace@example.com")
        .await;
    for n in 0..32 {
        assign(&identity, give(&profile.id, &format!("{}", 100 + n)))
            .await
            .unwrap();
    }
    let refused = assign(&identity, give(&profile.id, "200"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(reason(&refused).as_deref(), Some("EXTENSION_INVALID"));
    assert!(refused.message().contains("32 extensions"), "{refused:?}");
    let mut virtual_one = give(&profile.id, "100");
    virtual_one.extension = Some(extension("100", pb::ExtensionKind::Virtual));
    assign(&identity, virtual_one).await.unwrap();

    let item = |key: &str, count: usize| pb::ProfileUpsert {
        idempotency_key: key.into(),
        first_name: "Many".into(),
        last_name: "Numbers".into(),
        email: format!("{key}@example.com"),
        set_assignments: true,
        extensions: (0..count)
            .map(|n| extension(&format!("{}", 10_000_000 + n), pb::ExtensionKind::Physical))
            .collect(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let results = identity
        .batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
            account_id: account.clone(),
            items: vec![
                item("thirty-three", 33),
                item("huge", 250_000),
                item("fine", 32),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .results;
    let took = started.elapsed();
    for result in &results[..2] {
        assert_eq!(
            (result.outcome, result.error_reason.as_str()),
            (pb::UpsertOutcome::Failed as i32, "EXTENSION_INVALID"),
            "{result:?}"
        );
        assert!(
            result.error_message.contains("a profile holds at most 32"),
            "{result:?}"
        );
    }
    assert_eq!(
        results[2].outcome,
        pb::UpsertOutcome::Created as i32,
        "{:?}",
        results[2]
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "answered in {took:?}"
    );
}

both_backends!(
    a_profile_holds_a_bounded_number_of_extensions,
    concurrent_assignments_of_one_number_admit_exactly_one,
    the_same_number_is_fine_in_two_accounts,
    an_unassigned_number_can_be_given_again,
    deleting_a_profile_frees_its_numbers,
    extension_numbers_respect_the_account_bounds,
    roles_are_assigned_idempotently_and_filter_listings,
    assignment_changes_follow_etag_and_request_id_rules,
    another_accounts_profile_is_not_found_like_a_missing_one,
    batch_upsert_sets_assignments_and_fails_colliding_items_alone
);
