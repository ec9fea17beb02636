//! SCIM tokens over gRPC, on SQLite and PostgreSQL: a new token's secret is shown once and kept
//! only as its hash (never in a row, an event or a kept answer); the SCIM endpoint's lookup
//! finds an active token by its secret on any replica and a revoked one nowhere, at once; a
//! key of one account neither names another account's tokens nor reaches them by id; and no
//! number of concurrent creations passes the 20 active tokens an account may have.

use std::collections::BTreeMap;

use roster_identity::app::Identity as UseCases;
use roster_identity::store::Store;
use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::{Identity, refusal};
use roster_tests::{Backend, TestKey, TestServer, both_backends, reason};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TryGetable};
use tonic::Code;

/// Identity's use cases on the server's database, as another replica's SCIM endpoint calls
/// them.
async fn replica(server: &TestServer) -> UseCases {
    UseCases::new(Store::new(database(server).await))
}

async fn database(server: &TestServer) -> DatabaseConnection {
    Database::connect(&server.database.url)
        .await
        .expect("identity's database")
}

/// Every value of `column` that `sql` selects.
async fn column<T: TryGetable>(db: &DatabaseConnection, sql: &str, column: &str) -> Vec<T> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .into_iter()
        .map(|row| row.try_get("", column).expect(column))
        .collect()
}

fn create(account_id: &str, name: &str, request_id: &str) -> pb::CreateScimTokenRequest {
    pb::CreateScimTokenRequest {
        account_id: account_id.into(),
        display_name: name.into(),
        send_welcome_emails: false,
        request_id: request_id.into(),
    }
}

fn revoke(account_id: &str, token_id: &str, request_id: &str) -> pb::RevokeScimTokenRequest {
    pb::RevokeScimTokenRequest {
        account_id: account_id.into(),
        token_id: token_id.into(),
        request_id: request_id.into(),
    }
}

fn list(account_id: &str) -> pb::ListScimTokensRequest {
    pb::ListScimTokensRequest {
        account_id: account_id.into(),
        ..Default::default()
    }
}

fn types(events: &[pb::Event]) -> Vec<&str> {
    events.iter().map(|event| event.r#type.as_str()).collect()
}

/// An event's changes as `field → (old, new)`, each value as text.
fn changes(event: &pb::Event) -> BTreeMap<&str, (Option<String>, Option<String>)> {
    use prost_types::value::Kind;
    let text = |value: &Option<prost_types::Value>| {
        value
            .as_ref()
            .and_then(|value| value.kind.as_ref())
            .map(|kind| match kind {
                Kind::StringValue(text) => text.clone(),
                Kind::BoolValue(flag) => flag.to_string(),
                other => format!("{other:?}"),
            })
    };
    event
        .changes
        .iter()
        .map(|change| {
            (
                change.field.as_str(),
                (text(&change.old_value), text(&change.new_value)),
            )
        })
        .collect()
}

async fn a_new_token_shows_its_secret_once_and_only_its_hash_is_kept(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let identity = Identity::connect(&server).await;
    let account = identity.account("Acme").await.id;
    let request = pb::CreateScimTokenRequest {
        send_welcome_emails: true,
        ..create(&account, "  Entra ID production ", "create-entra")
    };
    let created = identity.create_scim_token(request.clone()).await.unwrap();
    let token = created.token.clone().unwrap();
    let secret = created.secret.clone();
    assert_eq!(secret.len(), 49, "{secret}");
    assert!(secret.starts_with("rscim_"), "{secret}");
    assert!(
        secret[6..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "base64url: {secret}"
    );
    assert_eq!(token.secret_prefix, secret[..10]);
    assert_eq!(token.display_name, "Entra ID production");
    assert_eq!(token.account_id, account);
    assert!(token.send_welcome_emails);
    assert!(token.create_time.is_some());
    assert_eq!(token.revoke_time, None);

    // The SCIM endpoint of any replica finds the token by its secret, and nothing by another.
    let replica = replica(&server).await;
    let found = replica
        .scim_token(&secret)
        .await
        .unwrap()
        .expect("the secret's token");
    assert_eq!(found.id.to_string(), token.id);
    assert_eq!(found.account_id.to_string(), account);
    assert_eq!(found.display_name, token.display_name);
    assert!(found.send_welcome_emails);
    let flipped: String = secret
        .char_indices()
        .map(|(at, c)| match (at, c) {
            (20, 'A') => 'B',
            (20, _) => 'A',
            _ => c,
        })
        .collect();
    for other in [
        flipped,
        secret[..48].to_owned(),
        format!("{secret}A"),
        secret.replacen("rscim_", "rscin_", 1),
        String::new(),
        "x".repeat(1 << 20),
    ] {
        assert_eq!(
            replica.scim_token(&other).await.unwrap(),
            None,
            "{other:.60}"
        );
    }

    // The repeated request answers the same token without its secret, and makes none.
    let again = identity.create_scim_token(request).await.unwrap();
    assert_eq!(again.token, created.token);
    assert_eq!(again.secret, "");
    assert_eq!(
        identity.all_scim_tokens(&account).await,
        std::slice::from_ref(&token)
    );

    // The creation is one event of the account, telling the token apart without its secret.
    let events = identity.numbered_events(&account, 2).await;
    assert_eq!(
        types(&events),
        [
            "roster.account.created",
            "roster.account.scim_token_created"
        ]
    );
    let event = &events[1];
    assert_eq!(
        (event.subject_type.as_str(), event.subject_id.as_str()),
        ("account", account.as_str())
    );
    assert_eq!(event.request_id, "create-entra");
    assert_eq!(
        changes(event),
        BTreeMap::from([
            ("scim_token_id", (None, Some(token.id.clone()))),
            ("display_name", (None, Some("Entra ID production".into()))),
            ("send_welcome_emails", (None, Some("true".into()))),
            ("secret_prefix", (None, Some(token.secret_prefix.clone()))),
        ])
    );

    // Only the secret's SHA-256 is kept; neither it nor the secret is in a row of the token,
    // an event or a kept answer.
    let db = database(&server).await;
    let hashes: Vec<String> = column(
        &db,
        "SELECT secret_sha256 FROM scim_tokens",
        "secret_sha256",
    )
    .await;
    assert_eq!(hashes.len(), 1);
    let hash = &hashes[0];
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    let mut stored: Vec<String> = Vec::new();
    for (sql, name) in [
        ("SELECT display_name FROM scim_tokens", "display_name"),
        ("SELECT secret_prefix FROM scim_tokens", "secret_prefix"),
        ("SELECT changes FROM events", "changes"),
        ("SELECT request_id FROM events", "request_id"),
        ("SELECT request_id FROM idempotency_keys", "request_id"),
    ] {
        stored.extend(column::<String>(&db, sql, name).await);
    }
    let kept: Vec<Vec<u8>> = column(&db, "SELECT response FROM idempotency_keys", "response").await;
    stored.extend(
        kept.iter()
            .map(|answer| String::from_utf8_lossy(answer).into_owned()),
    );
    assert!(
        stored.iter().any(|text| text.contains(&token.id)),
        "the kept answer and the event name the token: {stored:?}"
    );
    for text in &stored {
        assert!(!text.contains(&secret), "the secret is stored: {text}");
        assert!(!text.contains(hash.as_str()), "the hash leaked: {text}");
    }
}

async fn a_revoked_token_is_refused_at_once_on_every_replica(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let identity = Identity::connect(&server).await;
    let account = identity.account("Acme").await.id;
    let (okta, okta_secret) = identity.scim_token(&account, "Okta").await;
    let (entra, entra_secret) = identity.scim_token(&account, "Entra ID").await;
    let replicas = [replica(&server).await, replica(&server).await];
    for replica in &replicas {
        assert!(replica.scim_token(&okta_secret).await.unwrap().is_some());
    }

    let revoked = identity
        .revoke_scim_token(revoke(&account, &okta.id, "revoke-okta"))
        .await
        .unwrap()
        .token
        .unwrap();
    assert!(revoked.revoke_time.is_some());
    assert_eq!(
        pb::ScimToken {
            revoke_time: None,
            ..revoked.clone()
        },
        okta
    );
    // No replica finds it any more, the moment the revocation answered; the other token works.
    for replica in &replicas {
        assert_eq!(replica.scim_token(&okta_secret).await.unwrap(), None);
        let still = replica.scim_token(&entra_secret).await.unwrap();
        assert_eq!(
            still.map(|token| token.id.to_string()),
            Some(entra.id.clone())
        );
    }

    // Revoking it again answers it as it is; the repeated request answers the first answer.
    for request_id in ["revoke-okta-again", "revoke-okta", ""] {
        let again = identity
            .revoke_scim_token(revoke(&account, &okta.id, request_id))
            .await
            .unwrap();
        assert_eq!(again.token.as_ref(), Some(&revoked), "{request_id:?}");
    }
    // Listed newest first, the revoked one included.
    assert_eq!(
        identity.all_scim_tokens(&account).await,
        [entra.clone(), revoked.clone()]
    );

    // One more change, so that the log has certainly numbered everything before it: only the
    // revocation that happened is an event.
    identity.scim_token(&account, "Last").await;
    let events = identity.numbered_events(&account, 5).await;
    assert_eq!(
        types(&events),
        [
            "roster.account.created",
            "roster.account.scim_token_created",
            "roster.account.scim_token_created",
            "roster.account.scim_token_revoked",
            "roster.account.scim_token_created",
        ]
    );
    assert_eq!(events[3].request_id, "revoke-okta");
    assert_eq!(
        changes(&events[3]),
        BTreeMap::from([
            ("scim_token_id", (Some(okta.id.clone()), None)),
            ("display_name", (Some("Okta".into()), None)),
            ("send_welcome_emails", (Some("false".into()), None)),
            ("secret_prefix", (Some(okta.secret_prefix.clone()), None)),
        ])
    );
    for event in &events {
        let written = format!("{event:?}");
        assert!(!written.contains(&okta_secret) && !written.contains(&entra_secret));
    }
}

const KEY_A: &str = "key-for-account-a";

async fn a_key_of_one_account_reaches_no_token_of_another(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let admin = Identity::connect(&server).await;
    let a = admin.account("A").await.id;
    let b = admin.account("B").await.id;
    let (theirs, their_secret) = admin.scim_token(&b, "B's Okta").await;
    let limited = TestKey::limited(KEY_A, &["accounts"], &[a.parse().unwrap()]);
    let without_scope =
        TestKey::limited("key-without-accounts", &["profiles"], &[a.parse().unwrap()]);
    let server = server.restart_with_keys(vec![limited, without_scope]).await;
    let admin = Identity::connect(&server).await;
    let as_a = admin.with_key(KEY_A);

    // Naming account B: PERMISSION_DENIED, whatever else the request holds.
    let denied = [
        as_a.create_scim_token(create(&b, "Mallory", ""))
            .await
            .map(|_| ()),
        as_a.list_scim_tokens(list(&b)).await.map(|_| ()),
        as_a.revoke_scim_token(revoke(&b, &theirs.id, ""))
            .await
            .map(|_| ()),
        as_a.create_scim_token(create(&b, "", "x y"))
            .await
            .map(|_| ()),
    ];
    for answer in denied {
        let status = answer.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(reason(&status).as_deref(), Some("ACCOUNT_NOT_PERMITTED"));
    }
    // B's token under A's own account: NOT_FOUND, exactly as a token id that nothing holds.
    let by_their_id = as_a
        .revoke_scim_token(revoke(&a, &theirs.id, ""))
        .await
        .unwrap_err();
    let by_no_id = as_a
        .revoke_scim_token(revoke(&a, &uuid::Uuid::now_v7().to_string(), ""))
        .await
        .unwrap_err();
    assert_eq!(by_their_id.code(), Code::NotFound);
    assert_eq!(
        (by_their_id.message(), by_their_id.details()),
        (by_no_id.message(), by_no_id.details())
    );
    // A key without the `accounts` scope reaches no token, even of its own account; a secret
    // is no caller key.
    let status = admin
        .with_key("key-without-accounts")
        .list_scim_tokens(list(&a))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status).as_deref(), Some("SCOPE_MISSING"));
    let status = admin
        .with_key(&their_secret)
        .list_scim_tokens(list(&b))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // A's key manages A's own tokens, and sees none of B's.
    let (ours, _) = as_a.scim_token(&a, "A's Entra").await;
    assert_eq!(as_a.all_scim_tokens(&a).await, std::slice::from_ref(&ours));
    let revoked = as_a
        .revoke_scim_token(revoke(&a, &ours.id, "revoke-ours"))
        .await
        .unwrap();
    assert!(revoked.token.unwrap().revoke_time.is_some());
    // B's token is as it was, and still works.
    assert_eq!(
        admin.all_scim_tokens(&b).await,
        std::slice::from_ref(&theirs)
    );
    let found = replica(&server)
        .await
        .scim_token(&their_secret)
        .await
        .unwrap();
    assert_eq!(found.map(|token| token.id.to_string()), Some(theirs.id));
}

async fn concurrent_creations_never_pass_twenty_active_tokens(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let identity = Identity::connect(&server).await;
    let account = identity.account("Acme").await.id;
    let attempts: Vec<_> = (0..50)
        .map(|n| {
            let identity = identity.clone();
            let request = create(&account, &format!("Token {n}"), &format!("create-{n}"));
            tokio::spawn(async move { identity.create_scim_token(request).await })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(status) => {
                let refused = refusal(&status);
                assert_eq!(
                    (refused.code, refused.reason.as_str()),
                    (Code::FailedPrecondition, "SCIM_TOKEN_LIMIT"),
                    "{status:?}"
                );
            }
        }
    }
    assert_eq!(created, 20);
    let tokens = identity.all_scim_tokens(&account).await;
    assert_eq!(tokens.len(), 20);

    // The limit counts active tokens: a revoked one makes room for one more, and only one.
    identity
        .revoke_scim_token(revoke(&account, &tokens[0].id, ""))
        .await
        .unwrap();
    identity.scim_token(&account, "Replacement").await;
    let refused = identity
        .create_scim_token(create(&account, "One too many", ""))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused).as_deref(), Some("SCIM_TOKEN_LIMIT"));
    let active = identity
        .all_scim_tokens(&account)
        .await
        .into_iter()
        .filter(|token| token.revoke_time.is_none())
        .count();
    assert_eq!(active, 20);
}

async fn a_bad_request_names_every_field_and_lists_page_by_page(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let identity = Identity::connect(&server).await;
    let account = identity.account("Acme").await.id;
    for (name, wrong) in [
        ("", "display_name: display_name is empty"),
        ("   ", "display_name: display_name is empty"),
        (
            &"x".repeat(101),
            "display_name: display_name is 101 characters long",
        ),
        (
            "Okta\u{7}",
            "display_name: display_name contains the invisible or control",
        ),
    ] {
        let status = identity
            .create_scim_token(create(&account, name, ""))
            .await
            .unwrap_err();
        let refused = refusal(&status);
        assert_eq!(refused.code, Code::InvalidArgument);
        assert!(
            refused.violations.len() == 1 && refused.violations[0].starts_with(wrong),
            "{name:?}: {refused:?}"
        );
    }
    for (answer, field) in [
        (
            identity
                .create_scim_token(create("acme", "Okta", ""))
                .await
                .map(|_| ()),
            "account_id",
        ),
        (
            identity
                .create_scim_token(create(&account, "Okta", "a b"))
                .await
                .map(|_| ()),
            "request_id",
        ),
        (
            identity
                .revoke_scim_token(revoke(&account, "okta", ""))
                .await
                .map(|_| ()),
            "token_id",
        ),
        (
            identity
                .list_scim_tokens(pb::ListScimTokensRequest {
                    page_token: "not a token".into(),
                    ..list(&account)
                })
                .await
                .map(|_| ()),
            "page_token",
        ),
    ] {
        let refused = refusal(&answer.unwrap_err());
        assert_eq!(refused.code, Code::InvalidArgument, "{field}");
        assert!(refused.violations[0].starts_with(field), "{refused:?}");
    }
    // An account that does not exist has no tokens to list or make.
    let nobody = uuid::Uuid::now_v7().to_string();
    let missing = identity
        .create_scim_token(create(&nobody, "Okta", ""))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = identity.list_scim_tokens(list(&nobody)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Pages of two, newest first, cover every token once.
    let mut made = Vec::new();
    for n in 0..5 {
        made.push(identity.scim_token(&account, &format!("T{n}")).await.0);
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = identity
            .list_scim_tokens(pb::ListScimTokensRequest {
                account_id: account.clone(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap();
        assert!(page.tokens.len() <= 2);
        seen.extend(page.tokens);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, made);
}

both_backends!(
    a_new_token_shows_its_secret_once_and_only_its_hash_is_kept,
    a_revoked_token_is_refused_at_once_on_every_replica,
    a_key_of_one_account_reaches_no_token_of_another,
    concurrent_creations_never_pass_twenty_active_tokens,
    a_bad_request_names_every_field_and_lists_page_by_page,
);
