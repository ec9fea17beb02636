//! The audit log over gRPC, on SQLite and PostgreSQL: every committed change is one event with
//! its diff and who made it; a refused or replayed call writes none; WatchEvents replays from a
//! cursor and follows, without gap or duplicate across a reconnect; a key of one account sees
//! only that account's events; and with `events_nats_url` every event reaches NATS JetStream
//! once, in order.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::{Identity, refusal, rename_account};
use roster_tests::{
    Backend, TestDatabase, TestKey, TestServer, both_backends, identity_settings, test_settings,
};
use tonic::Code;

async fn start(
    backend: Backend,
    settings: roster_identity::Settings,
    keys: Vec<TestKey>,
) -> Option<(TestServer, Identity)> {
    let database = Arc::new(TestDatabase::create(backend).await?);
    let common = test_settings(Service::Identity, &database.url);
    let server = TestServer::start_with(Service::Identity, common, settings, database, keys).await;
    let identity = Identity::connect(&server).await;
    Some((server, identity))
}

/// CreateProfile of Ada Lovelace (ada@acme.example) in `account`, on `request_id`.
fn ada(account: &str, request_id: &str) -> pb::CreateProfileRequest {
    pb::CreateProfileRequest {
        account_id: account.to_owned(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada@acme.example".into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// The events of `account`, which was created, got one profile and is now renamed "Acme Ltd":
/// the rename is the last change, so the log has certainly numbered everything before it.
/// Asserts that those are all of its events.
async fn created_then_renamed(identity: &Identity, account: &str) -> Vec<pb::Event> {
    identity
        .update_account(rename_account(account, "Acme Ltd"))
        .await
        .unwrap();
    let events = identity.numbered_events(account, 3).await;
    assert_eq!(
        types(&events),
        [
            "roster.account.created",
            "roster.profile.created",
            "roster.account.updated"
        ]
    );
    events
}

fn types(events: &[pb::Event]) -> Vec<&str> {
    events.iter().map(|event| event.r#type.as_str()).collect()
}

fn text(value: &Option<prost_types::Value>) -> Option<String> {
    match value.as_ref()?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(text) => Some(text.clone()),
        other => Some(format!("{other:?}")),
    }
}

/// The change of `field` in `event` as (old, new).
fn change(event: &pb::Event, field: &str) -> (Option<String>, Option<String>) {
    let change = event
        .changes
        .iter()
        .find(|change| change.field == field)
        .unwrap_or_else(|| panic!("{} changes no {field}: {:?}", event.r#type, event.changes));
    (text(&change.old_value), text(&change.new_value))
}

async fn every_change_is_one_event_with_its_diff_and_its_author(backend: Backend) {
    let Some((_server, identity)) = start(backend, identity_settings(), Vec::new()).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let profile = identity
        .create_profile(pb::CreateProfileRequest {
            account_id: account.clone(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@acme.example".into(),
            request_id: "create-ada".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    let renamed = identity
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: profile.id.clone(),
                first_name: "Augusta".into(),
                username: "augusta".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["first_name".into(), "username".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    identity
        .assign_roles(pb::AssignRolesRequest {
            profile_id: profile.id.clone(),
            roles: vec![pb::Role::StandardUser as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    identity
        .send_password_reset(pb::SendPasswordResetRequest {
            profile_id: profile.id.clone(),
            email: renamed.email.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    identity
        .delete_profile(pb::DeleteProfileRequest {
            id: profile.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let events = identity.numbered_events(&account, 7).await;
    assert_eq!(
        types(&events),
        [
            "roster.account.created",
            "roster.profile.created",
            "roster.profile.updated",
            "roster.profile.username_changed",
            "roster.profile.roles_assigned",
            "roster.credential.password_reset_requested",
            "roster.profile.deleted",
        ]
    );
    for pair in events.windows(2) {
        assert!(pair[0].sequence < pair[1].sequence, "{pair:?}");
    }
    let created = &events[1];
    assert_eq!(created.subject_type, "profile");
    assert_eq!(created.subject_id, profile.id);
    assert_eq!(created.actor, "test-admin");
    assert_eq!(created.caller, "test-admin");
    assert_eq!(created.source, "grpc");
    assert_eq!(created.request_id, "create-ada");
    assert_eq!(
        change(created, "email"),
        (None, Some("ada@acme.example".into()))
    );
    assert_eq!(
        change(&events[2], "first_name"),
        (Some("Ada".into()), Some("Augusta".into()))
    );
    assert_eq!(
        change(&events[3], "username"),
        (Some("ada@acme.example".into()), Some("augusta".into()))
    );
    assert_eq!(
        change(&events[6], "status"),
        (Some("active".into()), Some("deleted".into()))
    );
    // The reset event says that a link was sent, never the link.
    assert!(events[5].changes.is_empty(), "{:?}", events[5].changes);

    // Filters: by subject, by type, by actor.
    let about_account = identity
        .list_events(pb::ListEventsRequest {
            subject_id: account.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(types(&about_account.events), ["roster.account.created"]);
    let deletions = identity
        .list_events(pb::ListEventsRequest {
            account_id: account.clone(),
            r#type: "roster.profile.deleted".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(deletions.events.len(), 1);
    let by_nobody = identity
        .list_events(pb::ListEventsRequest {
            actor: "someone-else".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(by_nobody.events.is_empty());
    let unknown_type = identity
        .list_events(pb::ListEventsRequest {
            r#type: "roster.profile.renamed".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refusal(&unknown_type).code, Code::InvalidArgument);
    assert!(
        refusal(&unknown_type).violations[0].starts_with("type: is not an event type"),
        "{:?}",
        refusal(&unknown_type)
    );

    // Paging, newest first, two at a time, covers everything once.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = identity
            .list_events(pb::ListEventsRequest {
                account_id: account.clone(),
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.events.iter().map(|event| event.sequence));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut expected: Vec<i64> = events.iter().map(|event| event.sequence).collect();
    expected.reverse();
    assert_eq!(seen, expected);
}

async fn a_refused_call_writes_no_event_and_a_replay_none_twice(backend: Backend) {
    let Some((_server, identity)) = start(backend, identity_settings(), Vec::new()).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let create = ada(&account, "once");
    let first = identity.create_profile(create.clone()).await.unwrap();
    let again = identity.create_profile(create).await.unwrap();
    assert_eq!(first, again);
    // A stale etag, a taken username: refused, nothing written.
    let stale = identity
        .delete_profile(pb::DeleteProfileRequest {
            id: first.profile.as_ref().unwrap().id.clone(),
            etag: "v99".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let taken = identity
        .create_profile(pb::CreateProfileRequest {
            account_id: account.clone(),
            first_name: "Ada".into(),
            last_name: "Again".into(),
            email: "ada@acme.example".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let events = created_then_renamed(&identity, &account).await;
    assert_eq!(
        change(&events[2], "display_name"),
        (Some("Acme".into()), Some("Acme Ltd".into()))
    );
}

/// Fifty copies of one CreateProfile at once (one request id): every copy answers the same
/// profile, and the account has that one profile and its one event, with the request's id on
/// it. (On PostgreSQL a first creation is one statement; the copies that find its username or
/// its key held answer its kept answer.)
async fn fifty_copies_of_a_create_write_one_profile_and_one_event(backend: Backend) {
    let Some((_server, identity)) = start(backend, identity_settings(), Vec::new()).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let create = ada(&account, "fifty");
    let answers = futures::future::join_all((0..50).map(|_| {
        let identity = identity.clone();
        let create = create.clone();
        async move {
            identity
                .create_profile(create)
                .await
                .map(|answer| answer.profile)
        }
    }))
    .await;
    let first = answers[0].clone().expect("CreateProfile").expect("profile");
    for answer in &answers {
        assert_eq!(
            answer.as_ref().ok(),
            Some(&Some(first.clone())),
            "{answer:?}"
        );
    }
    let listed = identity
        .list_profiles(pb::ListProfilesRequest {
            account_id: account.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.profiles, vec![first.clone()]);
    let events = created_then_renamed(&identity, &account).await;
    assert_eq!(events[1].subject_id, first.id);
    assert_eq!(events[1].request_id, "fifty");
    assert_eq!(
        change(&events[1], "username"),
        (None, Some("ada@acme.example".into()))
    );
}

/// Sixty-four creations at once — more than run a statement each, so most share statements —
/// in two accounts and a deleted one, four of them claiming one username and one request sent
/// twice on its request id: each is answered as it would be alone, every profile has exactly one
/// `roster.profile.created` event, and nothing is written for the deleted account.
async fn concurrent_creations_each_get_their_own_answer(backend: Backend) {
    let Some((_server, identity)) = start(backend, identity_settings(), Vec::new()).await else {
        return;
    };
    let accounts = [
        identity.account("A").await.id,
        identity.account("B").await.id,
    ];
    let gone = identity.account("Gone").await.id;
    identity
        .delete_account(pb::DeleteAccountRequest {
            id: gone.clone(),
            ..Default::default()
        })
        .await
        .expect("deleted");

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        Gone,
        Claim,
        Twin,
        Own,
    }
    let asked: Vec<(Kind, pb::CreateProfileRequest)> = (0..64)
        .map(|n| {
            let kind = match n % 16 {
                0 => Kind::Gone,
                1 => Kind::Claim,
                2 if n < 32 => Kind::Twin,
                _ => Kind::Own,
            };
            let account = match kind {
                Kind::Gone => gone.clone(),
                Kind::Claim | Kind::Twin => accounts[0].clone(),
                Kind::Own => accounts[n % 2].clone(),
            };
            let (username, request_id) = match kind {
                Kind::Claim => ("claimed".to_owned(), String::new()),
                Kind::Twin => ("twin".to_owned(), "twin".to_owned()),
                _ if n % 3 == 0 => (String::new(), format!("own-{n}")),
                _ => (String::new(), String::new()),
            };
            // Twins are one request sent twice.
            let (last_name, email) = match kind {
                Kind::Twin => ("Twin".to_owned(), "twin@acme.example".to_owned()),
                _ => (format!("Number {n}"), format!("ada{n}@acme.example")),
            };
            let request = pb::CreateProfileRequest {
                account_id: account,
                first_name: "Ada".into(),
                last_name,
                email,
                username,
                request_id,
                ..Default::default()
            };
            (kind, request)
        })
        .collect();
    let answers = futures::future::join_all(asked.iter().map(|(_, request)| {
        let identity = identity.clone();
        let request = request.clone();
        async move {
            identity
                .create_profile(request)
                .await
                .map(|answer| answer.profile.expect("profile"))
        }
    }))
    .await;

    let mut created = std::collections::HashMap::new();
    let (mut claimed, mut twins) = (Vec::new(), Vec::new());
    for ((kind, request), answer) in asked.iter().zip(&answers) {
        match (kind, answer) {
            (Kind::Gone, Err(status)) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                continue;
            }
            (Kind::Claim, Err(status)) => {
                assert_eq!(refusal(status).reason, "USERNAME_TAKEN", "{status:?}");
                continue;
            }
            (Kind::Claim, Ok(profile)) => claimed.push(profile.clone()),
            (Kind::Twin, Ok(profile)) => twins.push(profile.clone()),
            (Kind::Own, Ok(profile)) => {
                assert_eq!(profile.email, request.email);
                assert_eq!(profile.username, request.email);
            }
            (kind, answer) => panic!("{kind:?}: {answer:?}"),
        }
        let profile = answer.as_ref().unwrap();
        assert_eq!(profile.account_id, request.account_id);
        created.insert(profile.id.clone(), profile.account_id.clone());
    }
    assert_eq!(claimed.len(), 1, "one of the four claims wins: {claimed:?}");
    assert_eq!(twins.len(), 2);
    assert_eq!(twins[0], twins[1], "twins answer the same profile");
    // 64 asked: 4 into the deleted account, 3 claims refused, 2 twins as one.
    assert_eq!(created.len(), 64 - 4 - 3 - 1);

    for account in &accounts {
        let mine: Vec<&String> = created
            .iter()
            .filter(|(_, of)| *of == account)
            .map(|(id, _)| id)
            .collect();
        // One event for the account, one per profile: wait for them all to be numbered.
        let events = identity.numbered_events(account, 1 + mine.len()).await;
        let mut subjects: Vec<&String> = events
            .iter()
            .filter(|event| event.r#type == "roster.profile.created")
            .map(|event| &event.subject_id)
            .collect();
        subjects.sort();
        let mut expected = mine.clone();
        expected.sort();
        assert_eq!(
            subjects, expected,
            "one created event per profile of {account}"
        );
        assert_eq!(events.len(), 1 + mine.len(), "{:?}", types(&events));
    }
    let gone_events = identity.all_events(&gone).await;
    assert!(
        !types(&gone_events).contains(&"roster.profile.created"),
        "{:?}",
        types(&gone_events)
    );
}

/// The next event of a watch, skipping heartbeats.
async fn next_event(stream: &mut tonic::Streaming<pb::WatchEventsResponse>) -> pb::Event {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("no error");
        if let Some(pb::watch_events_response::Kind::Event(event)) = message.kind {
            return event;
        }
    }
}

async fn a_watch_resumed_from_its_cursor_sees_every_event_once_in_order(backend: Backend) {
    let settings = roster_identity::Settings {
        events_heartbeat_seconds: 1,
        ..identity_settings()
    };
    let Some((_server, identity)) = start(backend, settings, Vec::new()).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    let watch = pb::WatchEventsRequest {
        account_id: account.clone(),
        cursor: "0".into(),
        ..Default::default()
    };
    let mut stream = identity.watch_events(watch.clone()).await.unwrap();
    let writer = identity.clone();
    let account_id = account.clone();
    let writes = tokio::spawn(async move {
        for n in 0..20 {
            writer
                .person(
                    &account_id,
                    "Ada",
                    &format!("N{n}"),
                    &format!("ada{n}@acme.example"),
                )
                .await;
        }
    });
    let mut seen = Vec::new();
    for _ in 0..8 {
        seen.push(next_event(&mut stream).await);
    }
    // The client goes away half-way, and comes back from the last sequence it saw.
    drop(stream);
    let cursor = seen.last().unwrap().sequence;
    writes.await.unwrap();
    let mut stream = identity
        .watch_events(pb::WatchEventsRequest {
            cursor: cursor.to_string(),
            ..watch.clone()
        })
        .await
        .unwrap();
    while seen.len() < 21 {
        seen.push(next_event(&mut stream).await);
    }
    let sequences: Vec<i64> = seen.iter().map(|event| event.sequence).collect();
    let expected: Vec<i64> = (1..=21).collect();
    assert_eq!(sequences, expected, "no gap, no duplicate, in order");
    assert_eq!(seen[0].r#type, "roster.account.created");

    // Quiet: a heartbeat carries the cursor to resume from.
    let heartbeat = loop {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a heartbeat within 5 s")
            .unwrap()
            .unwrap();
        if let Some(pb::watch_events_response::Kind::Heartbeat(heartbeat)) = message.kind {
            break heartbeat;
        }
    };
    assert_eq!(heartbeat.cursor, "21");

    // Live: a change after the watch started arrives on it.
    identity
        .person(&account, "Live", "One", "live@acme.example")
        .await;
    assert_eq!(next_event(&mut stream).await.sequence, 22);

    // "now" starts after the log's end; a cursor ahead of it is refused.
    let mut from_now = identity
        .watch_events(pb::WatchEventsRequest {
            cursor: "now".into(),
            ..watch.clone()
        })
        .await
        .unwrap();
    identity
        .person(&account, "Later", "One", "later@acme.example")
        .await;
    assert_eq!(next_event(&mut from_now).await.sequence, 23);
    let ahead = identity
        .watch_events(pb::WatchEventsRequest {
            cursor: "999".into(),
            ..watch.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(ahead.code(), Code::InvalidArgument);
    let garbage = identity
        .watch_events(pb::WatchEventsRequest {
            cursor: "yesterday".into(),
            ..watch
        })
        .await
        .unwrap_err();
    assert!(refusal(&garbage).violations[0].starts_with("cursor:"));
}

/// A key may hold `events_watches_per_key` watches at once: the next is refused
/// RESOURCE_EXHAUSTED (TOO_MANY_WATCHES) while other keys still watch, and a watch that ends
/// gives its place back.
async fn a_key_holds_a_bounded_number_of_watches(backend: Backend) {
    let settings = roster_identity::Settings {
        events_watches_per_key: 2,
        ..identity_settings()
    };
    let Some((server, admin)) = start(backend, settings, Vec::new()).await else {
        return;
    };
    let a = admin.account("A").await.id;
    let key = TestKey::limited("events-of-a", &["events"], &[a.parse().unwrap()]);
    let server = server.restart_with_keys(vec![key]).await;
    let admin = Identity::connect(&server).await;
    let as_a = admin.with_key("events-of-a");
    let now = pb::WatchEventsRequest {
        cursor: "now".into(),
        ..Default::default()
    };
    let first = as_a.watch_events(now.clone()).await.unwrap();
    let _second = as_a.watch_events(now.clone()).await.unwrap();
    let refused = as_a.watch_events(now.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(refusal(&refused).reason, "TOO_MANY_WATCHES");
    assert!(
        refused.message().contains("2 WatchEvents streams"),
        "{refused:?}"
    );
    // Another key's watches are its own.
    let _admins = admin.watch_events(now.clone()).await.unwrap();
    drop(first);
    let started = std::time::Instant::now();
    loop {
        match as_a.watch_events(now.clone()).await {
            Ok(_third) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the ended watch kept its place"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

async fn a_key_of_one_account_reads_only_that_accounts_events(backend: Backend) {
    let Some((server, admin)) = start(backend, identity_settings(), Vec::new()).await else {
        return;
    };
    let a = admin.account("A").await.id;
    let b = admin.account("B").await.id;
    let key = TestKey::limited(
        "events-of-a",
        &["events", "profiles"],
        &[a.parse().unwrap()],
    );
    let profiles_only = TestKey::limited("profiles-of-a", &["profiles"], &[a.parse().unwrap()]);
    let mut server = server.restart_with_keys(vec![key, profiles_only]).await;
    let admin = Identity::connect(&server).await;
    let as_a = admin.with_key("events-of-a");
    admin.person(&b, "Bob", "B", "bob@b.example").await;
    as_a.person(&a, "Ann", "A", "ann@a.example").await;

    let mut watch_all = as_a
        .watch_events(pb::WatchEventsRequest {
            cursor: "0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Everything the key sees, listed or watched, is A's.
    let listed = as_a.numbered_events("", 2).await;
    assert!(
        listed.iter().all(|event| event.account_id == a),
        "{listed:?}"
    );
    assert_eq!(
        types(&listed),
        ["roster.account.created", "roster.profile.created"]
    );
    assert_eq!(listed[1].actor, "events-of-a");
    for expected in &listed {
        assert_eq!(next_event(&mut watch_all).await.sequence, expected.sequence);
    }
    admin.person(&b, "Bea", "B", "bea@b.example").await;
    admin.person(&a, "Amy", "A", "amy@a.example").await;
    let next = next_event(&mut watch_all).await;
    assert_eq!(
        (next.account_id.as_str(), next.r#type.as_str()),
        (a.as_str(), "roster.profile.created")
    );

    // Naming B is refused, listed or watched; B's profile id reads as nothing.
    let list_b = as_a
        .list_events(pb::ListEventsRequest {
            account_id: b.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(list_b.code(), Code::PermissionDenied);
    let watch_b = as_a
        .watch_events(pb::WatchEventsRequest {
            account_id: b.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(watch_b.code(), Code::PermissionDenied);
    let bob = admin.all_profiles(&b).await[0].id.clone();
    let about_bob = as_a
        .list_events(pb::ListEventsRequest {
            subject_id: bob,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(about_bob.events.is_empty());
    // Without the `events` scope, nothing at all.
    let no_scope = admin
        .with_key("profiles-of-a")
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(no_scope.code(), Code::PermissionDenied);
    server.stop().await;
}

fn nats_settings(url: String) -> roster_identity::Settings {
    roster_identity::Settings {
        events_nats_url: Some(url),
        ..identity_settings()
    }
}

/// Checks what the stream holds for one account against the log: every event once (by
/// Nats-Msg-Id), in sequence order, on its subject, with its JSON form.
fn assert_published_as_logged(published: &[roster_tests::nats::Published], logged: &[pb::Event]) {
    let ids: Vec<&str> = published
        .iter()
        .map(|message| message.message_id.as_str())
        .collect();
    let expected: Vec<&str> = logged.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids, expected, "each event once, in the log's order");
    for (message, event) in published.iter().zip(logged) {
        assert_eq!(&message.event, event);
        assert_eq!(
            message.subject,
            format!("roster.events.{}.{}", event.account_id, event.r#type)
        );
        assert_eq!(message.json["sequence"], event.sequence.to_string());
        assert_eq!(message.json["type"], event.r#type.as_str());
    }
}

async fn every_event_reaches_jetstream_once_in_order(backend: Backend) {
    let Some(nats) = roster_tests::nats::connect().await else {
        return;
    };
    let settings = nats_settings(roster_tests::nats::url());
    let Some((server, identity)) = start(backend, settings, Vec::new()).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    identity
        .person(&account, "Zoë", "Ångström", "zoe@acme.example")
        .await;
    for n in 0..8 {
        identity
            .person(
                &account,
                "Ada",
                &format!("N{n}"),
                &format!("ada{n}@acme.example"),
            )
            .await;
    }
    let published =
        roster_tests::nats::published(&nats, &account, 10, Duration::from_secs(20)).await;
    let logged = identity.numbered_events(&account, 10).await;
    assert_published_as_logged(&published, &logged);
    // Names beyond ASCII travel in the JSON header as escapes, and read back the same.
    let first_name = published[1].json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["field"] == "first_name")
        .unwrap()["newValue"]
        .clone();
    assert_eq!(first_name, "Zoë");

    // A restart goes on from the stored progress: nothing again, nothing missed.
    let server = server.restart().await;
    let identity = Identity::connect(&server).await;
    identity
        .person(&account, "After", "Restart", "after@acme.example")
        .await;
    let published =
        roster_tests::nats::published(&nats, &account, 11, Duration::from_secs(20)).await;
    let logged = identity.numbered_events(&account, 11).await;
    assert_published_as_logged(&published, &logged);
    // Nothing more arrives later.
    let again = roster_tests::nats::published(&nats, &account, 12, Duration::from_secs(1)).await;
    assert_eq!(again.len(), 11);
}

async fn events_wait_while_nats_is_down_and_all_arrive_after(backend: Backend) {
    let Some(nats) = roster_tests::nats::connect().await else {
        return;
    };
    let upstream = roster_tests::nats::url()
        .trim_start_matches("nats://")
        .to_owned();
    let proxy = roster_tests::proxy::Proxy::start(upstream).await;
    let Some((server, identity)) = start(
        backend,
        nats_settings(format!("nats://{}", proxy.addr)),
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = identity.account("Acme").await.id;
    roster_tests::nats::published(&nats, &account, 1, Duration::from_secs(20)).await;
    // The stream holding the event is not yet the relay knowing it: its ACK may still be on the
    // way back. The outage starts once the relay has recorded the publication.
    let metrics = server.metrics_addr();
    assert_eq!(
        unpublished(metrics, 0).await,
        0,
        "the relay's lag before the outage"
    );

    proxy.set(false);
    for n in 0..5 {
        identity
            .person(
                &account,
                "Ada",
                &format!("N{n}"),
                &format!("ada{n}@acme.example"),
            )
            .await;
    }
    // Identity serves on, and its metrics show the events waiting.
    identity.numbered_events(&account, 6).await;
    assert_eq!(
        unpublished(metrics, 5).await,
        5,
        "the relay's lag while NATS is away"
    );
    // Still waiting a while later: nothing reached the stream while NATS was away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = roster_tests::nats::published(&nats, &account, 2, Duration::from_secs(1)).await;
    assert_eq!(held.len(), 1, "only what was published before the outage");

    proxy.set(true);
    let published =
        roster_tests::nats::published(&nats, &account, 6, Duration::from_secs(60)).await;
    let logged = identity.numbered_events(&account, 6).await;
    assert_published_as_logged(&published, &logged);
}

/// The relay's lag as identity's metrics show it, read until it is `expected` or five seconds
/// have passed; the last value read.
async fn unpublished(metrics: std::net::SocketAddr, expected: i64) -> i64 {
    let mut waiting = -1;
    for _ in 0..50 {
        waiting = roster_tests::metric(metrics, "roster_identity_events_unpublished")
            .await
            .unwrap_or(-1);
        if waiting == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    waiting
}

async fn retention_purges_old_events_but_never_unpublished_ones(backend: Backend) {
    use roster_identity::events::{EventSettings, purge_expired};
    use roster_runtime::metrics::prometheus_client::metrics::counter::Counter;
    let Some((server, identity)) = start(backend, identity_settings(), Vec::new()).await else {
        return;
    };
    let account = identity.account("Acme").await.id;
    for n in 0..4 {
        identity
            .person(
                &account,
                "Ada",
                &format!("N{n}"),
                &format!("ada{n}@acme.example"),
            )
            .await;
    }
    let logged = identity.numbered_events(&account, 5).await;
    let store = roster_identity::store::Store::new(
        sea_orm::Database::connect(&server.database.url)
            .await
            .unwrap(),
    );
    let purged = Counter::default();
    // Everything is older than a retention of 0 days, but with publication on and nothing
    // published yet, nothing may go.
    let published = EventSettings {
        retention_days: 0,
        published: true,
        heartbeat: Duration::from_secs(15),
    };
    assert_eq!(purge_expired(&store, &published, &purged).await.unwrap(), 0);
    // NATS has the first three: those three go, oldest first.
    let relay = "test-relay";
    store
        .claim_relay(relay, chrono::Utc::now() + chrono::Duration::seconds(30))
        .await
        .unwrap()
        .expect("the relay's lease");
    assert!(
        store
            .mark_published(relay, logged[2].sequence)
            .await
            .unwrap()
    );
    assert_eq!(purge_expired(&store, &published, &purged).await.unwrap(), 3);
    let kept = identity.all_events(&account).await;
    assert_eq!(kept, logged[3..]);
    // Within the retention, nothing goes; without publication, everything expired goes.
    let within = EventSettings {
        retention_days: 400,
        published: false,
        ..published.clone()
    };
    assert_eq!(purge_expired(&store, &within, &purged).await.unwrap(), 0);
    let unpublished = EventSettings {
        published: false,
        ..published
    };
    assert_eq!(
        purge_expired(&store, &unpublished, &purged).await.unwrap(),
        2
    );
    assert_eq!(purged.get(), 5);
    assert!(identity.all_events(&account).await.is_empty());
}

/// A log written before events were numbered in a table of their own keeps its numbers through
/// the upgrade, and the events still waiting for one are numbered after them.
async fn an_upgraded_log_keeps_its_numbers_and_numbers_the_waiting_events(backend: Backend) {
    use roster_identity::store::{EventFilter, Migrator, Numbered, Store};
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::MigratorTrait;
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let before = Migrator::migrations()
        .iter()
        .position(|migration| migration.name() == "m20261206_000009_event_numbers")
        .expect("the event_numbers migration");
    Migrator::up(&db, Some(before as u32)).await.unwrap();
    let (account, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let subjects: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    // Two numbered events and one whose transaction had ended but was not numbered yet, in
    // the old schema; on SQLite the unnumbered ones always came after the numbered.
    let insert = match backend {
        Backend::Postgres => {
            "INSERT INTO events (sequence, id, occurred_at, account_id, subject_type, subject_id, \
             event_type, actor, caller, source, request_id, trace_id, changes) \
             VALUES ($1, $2, $3, $4, 'profile', $5, 'roster.profile.created', 'ops', 'ops', \
             'grpc', '', '', '[]')"
        }
        Backend::Sqlite => {
            "INSERT INTO events (sequence, id, occurred_at, account_id, subject_type, subject_id, \
             event_type, actor, caller, source, request_id, trace_id, changes) \
             VALUES (?, ?, ?, ?, 'profile', ?, 'roster.profile.created', 'ops', 'ops', \
             'grpc', '', '', '[]')"
        }
    };
    let owners = [account, other, account];
    for (n, (subject, owner)) in subjects.iter().zip(owners).enumerate() {
        let sequence = (n < 2).then_some(n as i64 + 1);
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            insert,
            [
                sequence.into(),
                uuid::Uuid::now_v7().into(),
                chrono::Utc::now().into(),
                owner.into(),
                (*subject).into(),
            ],
        ))
        .await
        .unwrap();
    }
    db.execute_unprepared("UPDATE event_sequencer SET last_sequence = 2")
        .await
        .unwrap();
    Migrator::up(&db, None).await.unwrap();

    let store = Store::new(db);
    let all = EventFilter::default();
    let listed = store.list_events(&all, None, 10).await.unwrap();
    let numbered: Vec<(i64, uuid::Uuid)> = listed
        .iter()
        .map(|event| (event.sequence, event.subject.id()))
        .collect();
    assert_eq!(numbered, [(2, subjects[1]), (1, subjects[0])]);
    assert_eq!(store.unnumbered_events().await.unwrap(), 1);
    // Numbered once every transaction that was running when it committed has ended — on
    // PostgreSQL, the other databases' too (other tests may hold one open a while).
    let nothing_yet = Numbered::Events { count: 0, last: 2 };
    let mut numbered = nothing_yet;
    for _ in 0..600 {
        numbered = store.number_events(100).await.unwrap();
        if numbered != nothing_yet {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(numbered, Numbered::Events { count: 1, last: 3 });
    assert_eq!(store.unnumbered_events().await.unwrap(), 0);
    store.tidy_waiting_events().await.unwrap();
    // The readers' selections still hold: by account, by subject, after a number.
    let of_account = EventFilter {
        account: Some(roster_identity::domain::ids::AccountId(account)),
        ..EventFilter::default()
    };
    let sequences = |events: Vec<roster_identity::domain::event::Event>| -> Vec<i64> {
        events.iter().map(|event| event.sequence).collect()
    };
    assert_eq!(
        sequences(store.list_events(&of_account, None, 10).await.unwrap()),
        [3, 1]
    );
    let of_subject = EventFilter {
        subject: Some(subjects[2]),
        ..EventFilter::default()
    };
    assert_eq!(
        sequences(store.events_after(&of_subject, 0, 3, 10).await.unwrap()),
        [3]
    );
    assert_eq!(
        sequences(store.events_after(&all, 1, 3, 10).await.unwrap()),
        [2, 3]
    );
}

both_backends!(
    an_upgraded_log_keeps_its_numbers_and_numbers_the_waiting_events,
    retention_purges_old_events_but_never_unpublished_ones,
    every_event_reaches_jetstream_once_in_order,
    events_wait_while_nats_is_down_and_all_arrive_after,
    every_change_is_one_event_with_its_diff_and_its_author,
    a_refused_call_writes_no_event_and_a_replay_none_twice,
    fifty_copies_of_a_create_write_one_profile_and_one_event,
    concurrent_creations_each_get_their_own_answer,
    a_watch_resumed_from_its_cursor_sees_every_event_once_in_order,
    a_key_of_one_account_reads_only_that_accounts_events,
    a_key_holds_a_bounded_number_of_watches,
);
