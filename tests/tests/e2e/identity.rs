//! Identity over gRPC: accounts, profiles and the global username registry, on SQLite and
//! PostgreSQL.

use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::{Identity, upsert_item};
use roster_tests::{Backend, TestServer, both_backends, reason};
use tonic::Code;

fn person(account_id: &str, email: &str, username: &str) -> pb::CreateProfileRequest {
    pb::CreateProfileRequest {
        account_id: account_id.into(),
        first_name: "Alice".into(),
        last_name: "Liddell".into(),
        email: email.into(),
        username: username.into(),
        ..Default::default()
    }
}

async fn create(
    identity: &Identity,
    request: pb::CreateProfileRequest,
) -> Result<pb::Profile, tonic::Status> {
    let response = identity.create_profile(request).await;
    response.map(|response| response.profile.expect("profile"))
}

/// Creates a profile with `username` in `account` and deletes it, which retires the username.
async fn retire(identity: &Identity, account: &str, email: &str, username: &str) {
    let profile = create(identity, person(account, email, username))
        .await
        .unwrap();
    identity
        .delete_profile(pb::DeleteProfileRequest {
            id: profile.id.clone(),
            etag: profile.etag.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

fn assert_refused(result: Result<pb::Profile, tonic::Status>, code: Code, expected: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some(expected), "{status:?}");
}

async fn spawn(backend: Backend) -> Option<(TestServer, Identity)> {
    let server = TestServer::spawn(Service::Identity, backend).await?;
    let identity = Identity::connect(&server).await;
    Some((server, identity))
}

async fn username_defaults_to_the_email(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let profile = create(&identity, person(&account, " Alice@Example.COM ", ""))
        .await
        .unwrap();
    assert_eq!(profile.email, "Alice@example.com");
    assert_eq!(profile.username, "Alice@example.com");
    assert_eq!(profile.canonical_username, "alice@example.com");
    assert_eq!(profile.status, pb::ProfileStatus::Active as i32);
    let fetched = identity
        .get_profile(pb::GetProfileRequest {
            id: profile.id.clone(),
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    assert_eq!(fetched, profile);
}

async fn usernames_are_unique_across_accounts_in_canonical_form(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let first = identity.account("First").await.id;
    let second = identity.account("Second").await.id;
    create(
        &identity,
        person(&first, "alice@example.com", "Alice@Example.com"),
    )
    .await
    .unwrap();
    for variant in [
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "ａｌｉｃｅ@example.com",
        " alice@example.com ",
    ] {
        assert_refused(
            create(&identity, person(&second, "other@example.com", variant)).await,
            Code::AlreadyExists,
            "USERNAME_TAKEN",
        );
    }
    create(&identity, person(&second, "x@example.com", "straße"))
        .await
        .unwrap();
    assert_refused(
        create(&identity, person(&first, "y@example.com", "STRASSE")).await,
        Code::AlreadyExists,
        "USERNAME_TAKEN",
    );
}

async fn confusable_usernames_are_refused(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    create(&identity, person(&account, "p@example.com", "paypal"))
        .await
        .unwrap();
    assert_refused(
        create(&identity, person(&account, "q@example.com", "paypaI")).await,
        Code::AlreadyExists,
        "USERNAME_CONFUSABLE",
    );
}

/// A username written another way (case, width) keeps its canonical form but can look like
/// another: `paypai` rewritten `paypaI` looks like another account's `paypal` and is refused
/// as a new `paypaI` would be — by UpdateProfile and by BatchUpsertProfiles — and `ivan`
/// rewritten `Ivan` (which looks like `lvan`) keeps a later `lvan` out.
async fn rewriting_a_username_in_another_case_cannot_make_it_a_look_alike(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let first = identity.account("Acme").await.id;
    let second = identity.account("Globex").await.id;
    create(&identity, person(&second, "p@example.com", "paypal"))
        .await
        .unwrap();
    let own = create(&identity, person(&first, "q@example.com", "paypai"))
        .await
        .unwrap();
    let rename = |profile: &pb::Profile, username: &str| pb::UpdateProfileRequest {
        profile: Some(pb::Profile {
            id: profile.id.clone(),
            username: username.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["username".into()],
        }),
        request_id: String::new(),
    };
    let refused = identity
        .update_profile(rename(&own, "paypaI"))
        .await
        .map(|response| response.profile.expect("profile"));
    assert_refused(refused, Code::AlreadyExists, "USERNAME_CONFUSABLE");
    let batch = identity
        .batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
            account_id: first.clone(),
            items: vec![pb::ProfileUpsert {
                idempotency_key: "rewrite".into(),
                id: own.id.clone(),
                first_name: own.first_name.clone(),
                last_name: own.last_name.clone(),
                email: own.email.clone(),
                username: "paypaI".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .results;
    assert_eq!(
        (batch[0].outcome, batch[0].error_reason.as_str()),
        (pb::UpsertOutcome::Failed as i32, "USERNAME_CONFUSABLE"),
        "{batch:?}"
    );
    let unchanged = identity.profile(&own.id).await;
    assert_eq!(unchanged.username, "paypai");

    // A rewrite that looks like nobody's goes through, and its look is then registered.
    let ivan = create(&identity, person(&first, "ivan@example.com", "ivan"))
        .await
        .unwrap();
    let rewritten = identity
        .update_profile(rename(&ivan, "Ivan"))
        .await
        .unwrap()
        .profile
        .expect("profile");
    assert_eq!(rewritten.username, "Ivan");
    assert_refused(
        create(&identity, person(&second, "l@example.com", "lvan")).await,
        Code::AlreadyExists,
        "USERNAME_CONFUSABLE",
    );
    // Written as before again, it is the holder's own look: no refusal.
    let back = identity
        .update_profile(rename(&ivan, "ivan"))
        .await
        .unwrap()
        .profile
        .expect("profile");
    assert_eq!(back.username, "ivan");
}

/// Fifty copies at once of a batch without request_id (each item on its own key): every item
/// is created once, and every copy answers each item with that profile — a copy that waited
/// on another's usernames is answered the kept answers of its keys, not USERNAME_TAKEN — or
/// is told to retry.
async fn fifty_copies_of_a_batch_of_item_keys_answer_the_same_profiles(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Twins").await.id;
    let request = pb::BatchUpsertProfilesRequest {
        account_id: account.clone(),
        items: (0..20)
            .map(|n| pb::ProfileUpsert {
                idempotency_key: format!("d{n}"),
                first_name: "Twin".into(),
                last_name: format!("Number {n}"),
                email: format!("twin{n}@example.com"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let answers = futures::future::join_all((0..50).map(|_| {
        let identity = identity.clone();
        let request = request.clone();
        async move { identity.batch_upsert_profiles(request).await }
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    let mut answered = 0;
    for answer in answers {
        let results = match answer {
            Ok(response) => response.results,
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                continue;
            }
        };
        answered += 1;
        for result in &results {
            assert_eq!(
                (
                    pb::UpsertOutcome::try_from(result.outcome).unwrap(),
                    result.error_reason.as_str()
                ),
                (pb::UpsertOutcome::Created, ""),
                "{result:?}"
            );
            ids.insert(result.profile.as_ref().unwrap().id.clone());
        }
    }
    assert!(answered > 0);
    assert_eq!(
        ids.len(),
        20,
        "each item created once, every copy answering it"
    );
}

async fn invalid_input_reports_every_violation(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let status = create(
        &identity,
        pb::CreateProfileRequest {
            account_id: account.clone(),
            first_name: " ".into(),
            last_name: "".into(),
            email: "not an email".into(),
            username: "bad\u{200D}name".into(),
            locale: "english".into(),
            time_zone: "Mars/Olympus".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status).as_deref(), Some("USERNAME_INVALID"));
    let fields = roster_tests::violated_fields(&status);
    for field in [
        "first_name",
        "last_name",
        "email",
        "username",
        "locale",
        "time_zone",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing in {fields:?}"
        );
    }
    for username in [
        "\u{202E}evil",
        "ad\u{0430}min",
        "two words",
        &"a".repeat(255),
    ] {
        assert_refused(
            create(&identity, person(&account, "z@example.com", username)).await,
            Code::InvalidArgument,
            "USERNAME_INVALID",
        );
    }
}

async fn username_is_never_reused_after_delete_or_rename(backend: Backend) {
    let Some((server, identity)) = spawn(backend).await else {
        return;
    };
    let first = identity.account("First").await.id;
    let second = identity.account("Second").await.id;
    retire(&identity, &first, "d@example.com", "dora").await;
    let renamed = create(&identity, person(&first, "r@example.com", "rita"))
        .await
        .unwrap();
    let updated = identity
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: renamed.id.clone(),
                username: "rita2".into(),
                etag: renamed.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["username".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    assert_eq!(updated.username, "rita2");

    let server = server.restart().await;
    let identity = Identity::connect(&server).await;
    for (account, username) in [
        (&second, "dora"),
        (&first, "DORA"),
        (&second, "rita"),
        (&first, "Rita"),
    ] {
        assert_refused(
            create(&identity, person(account, "n@example.com", username)).await,
            Code::AlreadyExists,
            "USERNAME_RETIRED",
        );
    }
    let check = identity
        .check_username(pb::CheckUsernameRequest {
            username: "dora".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!check.available);
    assert_eq!(check.reason, pb::UsernameRefusal::Retired as i32);
}

async fn check_username_explains_and_suggests_free_names(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    create(&identity, person(&account, "ada@example.com", ""))
        .await
        .unwrap();
    create(
        &identity,
        person(
            &account,
            "ada.lovelace@example.com",
            "ada.lovelace@example.com",
        ),
    )
    .await
    .unwrap();
    let free = identity
        .check_username(pb::CheckUsernameRequest {
            username: "Grace@Example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(free.available);
    assert_eq!(free.canonical, "grace@example.com");
    assert!(free.suggestions.is_empty());

    let taken = identity
        .check_username(pb::CheckUsernameRequest {
            username: "ADA@example.com".into(),
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
        })
        .await
        .unwrap();
    assert!(!taken.available);
    assert_eq!(taken.reason, pb::UsernameRefusal::Taken as i32);
    assert!(!taken.suggestions.is_empty() && taken.suggestions.len() <= 5);
    assert!(
        !taken
            .suggestions
            .iter()
            .any(|s| s == "ada.lovelace@example.com")
    );
    for suggestion in &taken.suggestions {
        let check = identity
            .check_username(pb::CheckUsernameRequest {
                username: suggestion.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(check.available, "suggestion {suggestion} is not free");
    }

    let invalid = identity
        .check_username(pb::CheckUsernameRequest {
            username: "a\u{200B}b".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(invalid.reason, pb::UsernameRefusal::Invalid as i32);
    assert!(invalid.message.contains("U+200B"), "{}", invalid.message);
}

async fn request_id_replays_return_the_first_result(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let mut request = person(&account, "idem@example.com", "");
    request.request_id = "create-1".into();
    let first = create(&identity, request.clone()).await.unwrap();
    let again = create(&identity, request).await.unwrap();
    assert_eq!(first, again);

    let update = |etag: String| pb::UpdateProfileRequest {
        profile: Some(pb::Profile {
            id: first.id.clone(),
            job_title: "Engineer".into(),
            etag,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["job_title".into()],
        }),
        request_id: "update-1".into(),
    };
    let updated = identity
        .update_profile(update(first.etag.clone()))
        .await
        .unwrap();
    // The replay carries a now-stale etag and still returns the first result.
    let replayed = identity
        .update_profile(update(first.etag.clone()))
        .await
        .unwrap();
    assert_eq!(updated, replayed);
    let stale = identity
        .update_profile(pb::UpdateProfileRequest {
            request_id: "update-2".into(),
            ..update(first.etag.clone())
        })
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);

    let listed = identity
        .list_profiles(pb::ListProfilesRequest {
            account_id: account.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.profiles.len(), 1);
}

async fn list_pages_and_filters(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let other = identity.account("Other").await.id;
    create(&identity, person(&other, "zed@example.com", ""))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..7 {
        let profile = create(
            &identity,
            person(&account, &format!("user{n}@Example.com"), ""),
        )
        .await
        .unwrap();
        ids.push(profile.id);
    }
    let bob = create(&identity, person(&account, "bob@corp.example", "Bob_1"))
        .await
        .unwrap();
    ids.push(bob.id.clone());
    identity
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: bob.id.clone(),
                status: pb::ProfileStatus::Suspended as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = identity
            .list_profiles(pb::ListProfilesRequest {
                account_id: account.clone(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.profiles.len() <= 3);
        seen.extend(page.profiles.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "every profile once, in creation order");

    let list = |filter: pb::ListProfilesRequest| {
        let identity = identity.clone();
        async move { identity.list_profiles(filter).await.unwrap().profiles }
    };
    let base = pb::ListProfilesRequest {
        account_id: account.clone(),
        ..Default::default()
    };
    let suspended = list(pb::ListProfilesRequest {
        status: pb::ProfileStatus::Suspended as i32,
        ..base.clone()
    })
    .await;
    assert_eq!(
        suspended.iter().map(|p| &p.id).collect::<Vec<_>>(),
        vec![&bob.id]
    );
    let by_username = list(pb::ListProfilesRequest {
        username_prefix: "USER".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(by_username.len(), 7);
    let underscore = list(pb::ListProfilesRequest {
        username_prefix: "bob_".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(underscore.len(), 1);
    let wildcard = list(pb::ListProfilesRequest {
        username_prefix: "b%".into(),
        ..base.clone()
    })
    .await;
    assert!(wildcard.is_empty(), "% is no wildcard");
    let by_email = list(pb::ListProfilesRequest {
        email_prefix: "BOB@".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(by_email.len(), 1);
}

async fn batch_upsert_creates_updates_and_fails_items_alone(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let other = identity.account("Other").await.id;
    let existing = create(&identity, person(&account, "keep@example.com", ""))
        .await
        .unwrap();
    let foreign = create(&identity, person(&other, "foreign@example.com", ""))
        .await
        .unwrap();
    create(&identity, person(&other, "held@example.com", ""))
        .await
        .unwrap();

    let item = upsert_item;
    let items = vec![
        item("k1", "", "new1@example.com", ""),
        item("k2", "", "new2@example.com", ""),
        item("k3", &existing.id, "keep@example.com", ""),
        pb::ProfileUpsert {
            job_title: "Boss".into(),
            ..item("k4", &existing.id, "keep@example.com", "")
        },
        item("k5", "", "held@example.com", ""),
        item("k6", "", "bad", ""),
        item("k7", &foreign.id, "foreign@example.com", ""),
        item("k8", "", "dup@example.com", "new1@example.com"),
    ];
    let request = pb::BatchUpsertProfilesRequest {
        account_id: account.clone(),
        items,
        send_welcome_emails: false,
        ..Default::default()
    };
    let results = identity.upserted(request.clone()).await;
    let outcome = |n: usize| pb::UpsertOutcome::try_from(results[n].outcome).unwrap();
    assert_eq!(results.len(), 8);
    assert_eq!(outcome(0), pb::UpsertOutcome::Created);
    assert_eq!(outcome(1), pb::UpsertOutcome::Created);
    assert_eq!(outcome(2), pb::UpsertOutcome::Unchanged);
    assert_eq!(outcome(3), pb::UpsertOutcome::Updated);
    assert_eq!(results[3].profile.as_ref().unwrap().job_title, "Boss");
    assert_eq!(outcome(4), pb::UpsertOutcome::Failed);
    assert_eq!(results[4].error_reason, "USERNAME_TAKEN");
    assert_eq!(results[4].error_code, Code::AlreadyExists as i32);
    assert_eq!(outcome(5), pb::UpsertOutcome::Failed);
    assert_eq!(results[5].field_errors[0].field, "email");
    assert_eq!(outcome(6), pb::UpsertOutcome::Failed);
    assert_eq!(results[6].error_code, Code::NotFound as i32);
    assert_eq!(outcome(7), pb::UpsertOutcome::Failed);
    assert_eq!(results[7].error_reason, "USERNAME_TAKEN");

    let replay = identity.upserted(request).await;
    for n in [0, 1, 2, 3] {
        assert_eq!(replay[n], results[n], "item {n} replays its first result");
    }
    let listed = identity
        .list_profiles(pb::ListProfilesRequest {
            account_id: account.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .profiles;
    assert_eq!(listed.len(), 3, "two created once, one existing");

    let got = identity
        .batch_get_profiles(pb::BatchGetProfilesRequest {
            account_id: account.clone(),
            ids: vec![existing.id.clone(), foreign.id.clone(), "nonsense".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.profiles.len(), 1);
    assert_eq!(
        got.missing_ids,
        vec![foreign.id.clone(), "nonsense".to_owned()]
    );

    // Extension holders: the account's only, in request order, nobody's left out.
    for (profile, number) in [(&existing, "0042"), (&foreign, "77")] {
        identity
            .give_extension(&profile.id, number, pb::ExtensionKind::Physical)
            .await;
    }
    let holders = |numbers: &[&str]| {
        let identity = identity.clone();
        let request = pb::BatchGetProfilesRequest {
            account_id: account.clone(),
            extension_numbers: numbers.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        async move { identity.batch_get_profiles(request).await }
    };
    let got = holders(&["77", "42", "0042"]).await.unwrap();
    assert_eq!(
        got.extension_holders,
        vec![pb::ExtensionHolder {
            number: "0042".into(),
            profile_id: existing.id.clone(),
            username: existing.username.clone(),
        }],
        "77 is held in another account, 42 by nobody"
    );
    assert!(got.profiles.is_empty() && got.missing_ids.is_empty());
    let spaced = holders(&[" 0042 "]).await.unwrap();
    assert_eq!(
        spaced.extension_holders[0].number, "0042",
        "the number as identity reads it"
    );
    let refused = holders(&["12", "12a", "13", "x"]).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("extension_numbers[1]")
            && refused.message().contains("extension_numbers[3]")
            && !refused.message().contains("extension_numbers[2]"),
        "every bad number is named: {refused:?}"
    );
    let refused = holders(&[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let too_many: Vec<String> = (0..1001).map(|n| n.to_string()).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let refused = holders(&too_many).await.unwrap_err();
    assert!(
        refused.message().contains("extension_numbers"),
        "{refused:?}"
    );
}

/// A batch on a request_id keeps its items' answers in one record: a repeat replays the items
/// answered then, decides the others anew and adds their answers to the record, and fifty
/// concurrent copies of a new batch write its profiles once and all answer alike.
async fn batch_on_a_request_id_keeps_one_record_and_replays_it(backend: Backend) {
    use sea_orm::{ConnectionTrait, Database, Statement};

    let Some((server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let existing = create(&identity, person(&account, "keep@example.com", ""))
        .await
        .unwrap();
    create(&identity, person(&account, "held@example.com", ""))
        .await
        .unwrap();
    let item = |key: &str, id: &str, email: &str| upsert_item(key, id, email, "");
    let mut request = pb::BatchUpsertProfilesRequest {
        account_id: account.clone(),
        items: vec![
            item("k1", "", "new1@example.com"),
            item("k2", "", "held@example.com"),
            pb::ProfileUpsert {
                job_title: "Boss".into(),
                ..item("k3", &existing.id, "keep@example.com")
            },
        ],
        request_id: "window-1".into(),
        ..Default::default()
    };
    let first = identity.upserted(request.clone()).await;
    let outcome = |results: &[pb::ProfileUpsertResult], n: usize| {
        pb::UpsertOutcome::try_from(results[n].outcome).unwrap()
    };
    assert_eq!(outcome(&first, 0), pb::UpsertOutcome::Created);
    assert_eq!(first[1].error_reason, "USERNAME_TAKEN");
    assert_eq!(outcome(&first, 2), pb::UpsertOutcome::Updated);

    let db = Database::connect(&server.database.url).await.unwrap();
    let kept = |db: sea_orm::DatabaseConnection| async move {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT request_id FROM idempotency_keys WHERE scope LIKE '%BatchUpsertProfiles%' \
                 ORDER BY request_id",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.try_get::<String>("", "request_id").unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kept(db.clone()).await,
        ["window-1"],
        "one record, none per item"
    );

    // The repeat with one more item: the answered items replay (the update is not made twice),
    // the refused one is refused again, and the new one is created and added to the record.
    request.items.push(item("k4", "", "new4@example.com"));
    let second = identity.upserted(request.clone()).await;
    assert_eq!(second[0], first[0]);
    assert_eq!(second[2], first[2]);
    assert_eq!(second[1].error_reason, "USERNAME_TAKEN");
    assert_eq!(outcome(&second, 3), pb::UpsertOutcome::Created);
    let third = identity.upserted(request.clone()).await;
    assert_eq!(third[3], second[3], "the added answer was kept");
    assert_eq!(
        third[2].profile.as_ref().unwrap().etag,
        first[2].profile.as_ref().unwrap().etag
    );
    assert_eq!(kept(db.clone()).await, ["window-1"]);

    // Item keys answered inside a batch's record are not looked up on their own: the same
    // item without the request_id is decided anew, and finds its username taken by itself.
    let alone = identity
        .upserted(pb::BatchUpsertProfilesRequest {
            request_id: String::new(),
            items: vec![item("k1", "", "new1@example.com")],
            ..request.clone()
        })
        .await;
    assert_eq!(alone[0].error_reason, "USERNAME_TAKEN");

    // Fifty copies of a new batch at once: its profiles are written once, every copy answers
    // the same profiles.
    let concurrent = pb::BatchUpsertProfilesRequest {
        items: (0..20)
            .map(|n| item(&format!("c{n}"), "", &format!("twin{n}@example.com")))
            .collect(),
        request_id: "window-2".into(),
        ..request.clone()
    };
    let answers = futures::future::join_all((0..50).map(|_| {
        let identity = identity.clone();
        let request = concurrent.clone();
        async move { identity.batch_upsert_profiles(request).await }
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    let mut answered = 0;
    for answer in answers {
        // A copy that lost the race three times is told to retry, never answered wrongly.
        let results = match answer {
            Ok(response) => response.results,
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                continue;
            }
        };
        answered += 1;
        for result in &results {
            assert_eq!(
                pb::UpsertOutcome::try_from(result.outcome).unwrap(),
                pb::UpsertOutcome::Created,
                "{result:?}"
            );
            ids.insert(result.profile.as_ref().unwrap().id.clone());
        }
    }
    assert!(answered > 0);
    assert_eq!(
        ids.len(),
        20,
        "each item created once, every copy answering it"
    );
    let listed = identity
        .list_profiles(pb::ListProfilesRequest {
            account_id: account.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .profiles;
    assert_eq!(listed.len(), 2 + 2 + 20);
    assert_eq!(kept(db.clone()).await, ["window-1", "window-2"]);

    // A record answers one batch at most: a full batch's request_id sent again with an item of
    // another key is refused before anything is written, and the batch itself still replays.
    let full = pb::BatchUpsertProfilesRequest {
        items: (0..1000)
            .map(|n| item(&format!("f{n}"), "", &format!("full{n}@example.com")))
            .collect(),
        request_id: "window-full".into(),
        ..request.clone()
    };
    let answered = identity.upserted(full.clone()).await;
    assert!(answered.iter().all(|result| result.profile.is_some()));
    let mut grown = full.clone();
    grown.items = vec![item("f-extra", "", "extra@example.com")];
    let status = identity.batch_upsert_profiles(grown).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("new request_id"), "{status:?}");
    let check = identity
        .check_username(pb::CheckUsernameRequest {
            username: "extra@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(check.available, "the refused call wrote nothing");
    let replayed = identity.batch_upsert_profiles(full).await.unwrap().results;
    assert_eq!(replayed, answered);
    if backend == Backend::Postgres {
        // A full batch's record is large enough to be compressed, and is compressed with LZ4
        // where the server has it (pglz, PostgreSQL's default, is several times slower).
        let compression = |sql: &'static str| {
            let db = db.clone();
            async move {
                db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                    .await
                    .unwrap()
                    .and_then(|row| row.try_get_by_index::<Option<String>>(0).unwrap())
            }
        };
        let lz4 = compression(
            "SELECT 'lz4' FROM pg_settings \
             WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)",
        )
        .await;
        let stored = compression(
            "SELECT pg_column_compression(response) FROM idempotency_keys \
             WHERE request_id = 'window-full'",
        )
        .await;
        assert_eq!(stored.as_deref(), Some(lz4.as_deref().unwrap_or("pglz")));
    }

    // A request_id is checked like any other.
    let status = identity
        .batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
            request_id: "x".repeat(129),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

/// Two hundred and forty CheckUsername calls at once — more than are looked up one by one, so
/// most of them share registry statements, and fewer than the 256 the test server lets run at
/// once (it sheds the rest) — each answered for its own username: free, taken, retired, a
/// look-alike of a taken one, invalid, and the same names asked many times over.
async fn concurrent_username_checks_each_get_their_own_answer(backend: Backend) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    create(&identity, person(&account, "p@example.com", "paypal"))
        .await
        .unwrap();
    retire(&identity, &account, "d@example.com", "dora").await;

    use pb::UsernameRefusal as R;
    let asked: Vec<(String, R)> = (0..240)
        .map(|n| match n % 6 {
            0 => (format!("free{n}@example.com"), R::Unspecified),
            1 => ("PayPal".to_owned(), R::Taken),
            2 => ("Dora".to_owned(), R::Retired),
            3 => ("paypaI".to_owned(), R::Confusable),
            4 => (format!("bad\u{200B}{n}"), R::Invalid),
            _ => ("free@example.com".to_owned(), R::Unspecified),
        })
        .collect();
    let calls = asked.iter().map(|(username, _)| {
        let identity = identity.clone();
        let username = username.clone();
        tokio::spawn(async move {
            identity
                .check_username(pb::CheckUsernameRequest {
                    username,
                    ..Default::default()
                })
                .await
        })
    });
    let answers = futures::future::join_all(calls).await;
    for ((username, refusal), answer) in asked.iter().zip(answers) {
        let answer = answer.unwrap().expect("CheckUsername");
        assert_eq!(answer.reason, *refusal as i32, "{username}: {answer:?}");
        assert_eq!(answer.available, *refusal == R::Unspecified, "{username}");
        if *refusal != R::Invalid {
            assert_eq!(answer.canonical, username.to_lowercase(), "{username}");
        }
    }
}

both_backends!(
    fifty_copies_of_a_batch_of_item_keys_answer_the_same_profiles,
    rewriting_a_username_in_another_case_cannot_make_it_a_look_alike,
    username_defaults_to_the_email,
    concurrent_username_checks_each_get_their_own_answer,
    usernames_are_unique_across_accounts_in_canonical_form,
    confusable_usernames_are_refused,
    invalid_input_reports_every_violation,
    username_is_never_reused_after_delete_or_rename,
    check_username_explains_and_suggests_free_names,
    request_id_replays_return_the_first_result,
    list_pages_and_filters,
    batch_upsert_creates_updates_and_fails_items_alone,
    batch_on_a_request_id_keeps_one_record_and_replays_it,
    concurrent_changes_without_an_etag_all_apply
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_username_admit_exactly_one() {
    let Some((server, identity)) = spawn(Backend::Postgres).await else {
        return;
    };
    let accounts = [
        identity.account("A").await.id,
        identity.account("B").await.id,
    ];
    let calls = (0..50).map(|n| {
        let identity = identity.clone();
        let account = accounts[n % 2].clone();
        let username = if n % 3 == 0 {
            "Racer@Example.com"
        } else {
            "racer@example.com"
        };
        tokio::spawn(async move {
            create(
                &identity,
                person(&account, &format!("r{n}@example.com"), username),
            )
            .await
        })
    });
    let results = futures::future::join_all(calls).await;
    let mut ok = 0;
    let mut exists = 0;
    for result in results {
        match result.expect("task") {
            Ok(_) => ok += 1,
            Err(status) if status.code() == Code::AlreadyExists => exists += 1,
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    assert_eq!((ok, exists), (1, 49));
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(&server.database.url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM username_registry WHERE canonical = 'racer@example.com'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
}

/// Asserts that every suggestion is free now (CheckUsername says available) and none looks
/// like an address other than `own_email`.
async fn assert_free_and_not_anyones_address(
    identity: &Identity,
    suggestions: &[String],
    own_email: &str,
) {
    assert!(!suggestions.is_empty(), "suggestions arrive");
    assert!(suggestions.len() <= 5, "{suggestions:?}");
    for suggestion in suggestions {
        assert!(
            !suggestion.contains('@') || suggestion.eq_ignore_ascii_case(own_email),
            "{suggestion} reads as somebody's address"
        );
        let check = identity
            .check_username(pb::CheckUsernameRequest {
                username: suggestion.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(check.available, "suggestion {suggestion} is not free");
    }
}

/// The error's ErrorInfo metadata.
fn metadata(status: &tonic::Status) -> std::collections::HashMap<String, String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().expect("ErrorInfo").metadata
}

async fn every_username_refusal_says_where_the_name_came_from_and_offers_free_ones(
    backend: Backend,
) {
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let elsewhere = identity.account("Elsewhere").await.id;
    let account = identity.account("Acme").await.id;
    // Another account holds ada@example.com and ada.lovelace.
    create(&identity, person(&elsewhere, "ada@example.com", ""))
        .await
        .unwrap();
    create(
        &identity,
        person(&elsewhere, "al@example.com", "ada.lovelace"),
    )
    .await
    .unwrap();
    let ada = |username: &str| pb::CreateProfileRequest {
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        ..person(&account, "ada@example.com", username)
    };

    // CreateProfile, username defaulted from the email.
    let status = create(&identity, ada("")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason(&status).as_deref(), Some("USERNAME_TAKEN"));
    assert!(
        status.message().contains("the email address stood in"),
        "{}",
        status.message()
    );
    let info = metadata(&status);
    assert_eq!(info["username_defaulted"], "true");
    let suggestions: Vec<String> = info["suggestions"].split(',').map(str::to_owned).collect();
    assert!(
        !suggestions.contains(&"ada.lovelace".to_owned()),
        "taken elsewhere: {suggestions:?}"
    );
    assert_eq!(suggestions[0], "ada.lovelace2");
    assert!(
        status.message().contains(&suggestions.join(", ")),
        "{}",
        status.message()
    );
    assert_free_and_not_anyones_address(&identity, &suggestions, "ada@example.com").await;

    // CreateProfile, username chosen: the user's own address comes first when it is free.
    let own = pb::CreateProfileRequest {
        email: "ada.l@acme.example".into(),
        ..ada("ada.lovelace")
    };
    let status = create(&identity, own).await.unwrap_err();
    let info = metadata(&status);
    assert_eq!(info["username_defaulted"], "false");
    assert!(
        !status.message().contains("stood in"),
        "{}",
        status.message()
    );
    let suggestions: Vec<String> = info["suggestions"].split(',').map(str::to_owned).collect();
    assert_eq!(suggestions[0], "ada.l@acme.example");
    assert_free_and_not_anyones_address(&identity, &suggestions, "ada.l@acme.example").await;

    // UpdateProfile to a taken username.
    let mine = create(&identity, ada("ada.l")).await.unwrap();
    let status = identity
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: mine.id.clone(),
                username: "ADA.LOVELACE".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["username".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status).as_deref(), Some("USERNAME_TAKEN"));
    let suggestions: Vec<String> = metadata(&status)["suggestions"]
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_free_and_not_anyones_address(&identity, &suggestions, "ada@example.com").await;

    // BatchUpsertProfiles items, defaulted and chosen.
    let results = identity
        .upserted(pb::BatchUpsertProfilesRequest {
            account_id: account.clone(),
            items: vec![
                pb::ProfileUpsert {
                    idempotency_key: "defaulted".into(),
                    first_name: "Ada".into(),
                    last_name: "Lovelace".into(),
                    email: "ada@example.com".into(),
                    ..Default::default()
                },
                pb::ProfileUpsert {
                    idempotency_key: "chosen".into(),
                    first_name: "Ada".into(),
                    last_name: "Lovelace".into(),
                    email: "ada.b@acme.example".into(),
                    username: "ada.lovelace".into(),
                    ..Default::default()
                },
            ],
            send_welcome_emails: false,
            ..Default::default()
        })
        .await;
    let (defaulted, chosen) = (&results[0], &results[1]);
    assert_eq!(defaulted.error_reason, "USERNAME_TAKEN");
    assert!(defaulted.username_defaulted);
    assert!(
        defaulted.error_message.contains("stood in"),
        "{}",
        defaulted.error_message
    );
    assert_free_and_not_anyones_address(
        &identity,
        &defaulted.username_suggestions,
        "ada@example.com",
    )
    .await;
    assert_eq!(chosen.error_reason, "USERNAME_TAKEN");
    assert!(!chosen.username_defaulted);
    assert_eq!(chosen.username_suggestions[0], "ada.b@acme.example");
    assert_free_and_not_anyones_address(
        &identity,
        &chosen.username_suggestions,
        "ada.b@acme.example",
    )
    .await;

    // BatchCheckUsernames with seeds.
    let checks = identity
        .batch_check_usernames(pb::BatchCheckUsernamesRequest {
            usernames: vec!["ada@example.com".into(), "free.name".into()],
            seeds: vec![pb::SuggestionSeeds {
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                email: "ada@example.com".into(),
            }],
        })
        .await
        .unwrap()
        .checks;
    assert_free_and_not_anyones_address(&identity, &checks[0].suggestions, "ada@example.com").await;
    assert!(checks[1].available && checks[1].suggestions.is_empty());
}

both_backends!(every_username_refusal_says_where_the_name_came_from_and_offers_free_ones);

/// Fifty concurrent updates of one profile, and then fifty deletes, none naming an etag: each
/// applies to the version the one before left (none is refused as stale), and the deletes
/// delete it once and all answer it deleted. Fifty renames of its account likewise.
async fn concurrent_changes_without_an_etag_all_apply(backend: Backend) {
    const CALLS: usize = 50;
    let Some((_server, identity)) = spawn(backend).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let created = create(&identity, person(&account, "busy@example.com", ""))
        .await
        .unwrap();
    let updates = futures::future::join_all((0..CALLS).map(|n| {
        identity.update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: created.id.clone(),
                job_title: format!("Title {n}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["job_title".into()],
            }),
            request_id: String::new(),
        })
    }))
    .await;
    let mut titles = std::collections::HashSet::new();
    for update in updates {
        let profile = update.expect("applied").profile.expect("profile");
        titles.insert(profile.job_title);
    }
    assert_eq!(
        titles.len(),
        CALLS,
        "each update answered with its own change"
    );
    let updated = identity.profile(&created.id).await;
    assert!(titles.contains(&updated.job_title));

    let deletes = futures::future::join_all((0..CALLS).map(|_| {
        identity.delete_profile(pb::DeleteProfileRequest {
            id: created.id.clone(),
            etag: String::new(),
            request_id: String::new(),
        })
    }))
    .await;
    let deleted = identity.profile(&created.id).await;
    assert_eq!(deleted.status, pb::ProfileStatus::Deleted as i32);
    for answer in deletes {
        assert_eq!(answer.expect("answered").profile.expect("profile"), deleted);
    }
    let events = identity
        .events_through(&account, "roster.profile.deleted")
        .await;
    let counted = |kind: &str| events.iter().filter(|event| event.r#type == kind).count();
    assert_eq!(counted("roster.profile.deleted"), 1);

    let renames = futures::future::join_all((0..CALLS).map(|n| {
        identity.update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                id: account.clone(),
                display_name: format!("Acme {n}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            request_id: String::new(),
        })
    }))
    .await;
    let mut names = std::collections::HashSet::new();
    for rename in renames {
        names.insert(
            rename
                .expect("applied")
                .account
                .expect("account")
                .display_name,
        );
    }
    assert_eq!(
        names.len(),
        CALLS,
        "each rename answered with its own change"
    );
}
