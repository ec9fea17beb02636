//! Passwords over gRPC: per-account policy, checking candidates, admin-triggered reset and
//! sign-in verification, on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::Identity;
use roster_tests::{ADMIN_KEY, Backend, TestServer, both_backends, newest_reset_token, reason};
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::Code;
use tonic_types::StatusExt;

const STRONG: &str = "Violet-Tundra-84-Lantern";

struct Fixture {
    server: TestServer,
    identity: Identity,
    account: pb::Account,
    profile: pb::Profile,
}

async fn fixture_with(server: TestServer, preset: pb::PasswordPolicyPreset) -> Fixture {
    let channel = server.channel().await;
    let identity = Identity::new(channel.clone(), ADMIN_KEY);
    let account = identity
        .create_account(pb::CreateAccountRequest {
            display_name: "Acme".into(),
            password_policy_preset: preset as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .account
        .unwrap();
    let profile = Identity::new(channel.clone(), ADMIN_KEY)
        .person(&account.id, "Ada", "Lovelace", "ada@example.com")
        .await;
    Fixture {
        server,
        identity,
        account,
        profile,
    }
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let server = TestServer::spawn(Service::Identity, backend).await?;
    Some(fixture_with(server, pb::PasswordPolicyPreset::Default).await)
}

impl Fixture {
    async fn send_reset(&self, request_id: &str) -> pb::SendPasswordResetResponse {
        self.identity
            .send_password_reset(pb::SendPasswordResetRequest {
                request_id: request_id.into(),
                profile_id: self.profile.id.clone(),
                email: self.profile.email.clone(),
                etag: String::new(),
            })
            .await
            .unwrap()
    }

    async fn complete(&self, token: &str, password: &str) -> Result<(), tonic::Status> {
        self.identity
            .complete_password_reset(pb::CompletePasswordResetRequest {
                token: token.into(),
                new_password: password.into(),
                request_id: String::new(),
            })
            .await
            .map(|_| ())
    }

    async fn set_password(&self, password: &str) {
        self.send_reset("").await;
        let token = newest_reset_token(&self.server).await;
        self.complete(&token, password).await.expect("password set");
    }

    async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<pb::VerifyPasswordResponse, tonic::Status> {
        self.identity
            .verify_password(pb::VerifyPasswordRequest {
                username: username.into(),
                password: password.into(),
            })
            .await
    }
}

async fn policies_read_update_and_refuse_impossible_values(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let policy = f
        .identity
        .get_password_policy(pb::GetPasswordPolicyRequest {
            account_id: f.account.id.clone(),
        })
        .await
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(policy.preset, pb::PasswordPolicyPreset::Default as i32);
    assert_eq!(
        (policy.min_length, policy.min_digits, policy.history_count),
        (12, 1, 5)
    );

    let nist = f
        .identity
        .update_password_policy(pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                account_id: f.account.id.clone(),
                preset: pb::PasswordPolicyPreset::Nist as i32,
                etag: policy.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["preset".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(
        (nist.preset, nist.min_length, nist.min_uppercase),
        (pb::PasswordPolicyPreset::Nist as i32, 15, 0)
    );

    let stale = f
        .identity
        .update_password_policy(pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                account_id: f.account.id.clone(),
                min_length: 20,
                etag: policy.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["min_length".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let invalid = f
        .identity
        .update_password_policy(pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                account_id: f.account.id.clone(),
                min_length: 4,
                max_length: 10,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["min_length".into(), "max_length".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fields: Vec<String> = invalid
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(
        fields.contains(&"policy.min_length".to_owned())
            && fields.contains(&"policy.max_length".to_owned()),
        "{fields:?}"
    );

    let custom = f
        .identity
        .update_password_policy(pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                account_id: f.account.id.clone(),
                min_length: 20,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["min_length".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(
        (custom.preset, custom.min_length),
        (pb::PasswordPolicyPreset::Custom as i32, 20)
    );
}

async fn requirements_are_sentences_and_checks_name_every_failed_rule(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let rules = f
        .identity
        .get_password_requirements(pb::GetPasswordRequirementsRequest {
            account_id: f.account.id.clone(),
        })
        .await
        .unwrap()
        .rules;
    let sentences: Vec<&str> = rules.iter().map(|r| r.description.as_str()).collect();
    assert!(
        sentences.contains(&"At least 12 characters"),
        "{sentences:?}"
    );
    assert!(
        sentences.contains(&"At least 1 symbol (a character that is not a letter, digit or space)")
    );

    let (credentials, account_id, profile_id) = (
        f.identity.clone(),
        f.account.id.clone(),
        f.profile.id.clone(),
    );
    let check = |password: &str| {
        let credentials = credentials.clone();
        let request = pb::CheckPasswordRequest {
            account_id: account_id.clone(),
            profile_id: profile_id.clone(),
            password: password.into(),
        };
        async move {
            let response = credentials.check_password(request).await.unwrap();
            (
                response.acceptable,
                response
                    .violations
                    .into_iter()
                    .map(|v| v.code)
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(
        check("abc").await.1,
        vec!["MIN_LENGTH", "MIN_UPPERCASE", "MIN_DIGITS", "MIN_SYMBOLS"]
    );
    assert!(
        check("Lovelace-2024-xyz")
            .await
            .1
            .contains(&"CONTAINS_PERSONAL_INFO".to_owned())
    );
    assert!(check("P@ssw0rd").await.1.contains(&"COMMON".to_owned()));
    assert_eq!(check(STRONG).await, (true, vec![]));
    f.set_password(STRONG).await;
    // CheckPassword never compares with the history: REUSED would tell a caller, with no
    // throttle and no record, whether a guess is the profile's current password. Setting it
    // again (the reset) is what refuses a reused one.
    assert_eq!(check(STRONG).await, (true, vec![]));
    f.send_reset("again").await;
    let token = newest_reset_token(&f.server).await;
    let reused = f.complete(&token, STRONG).await.unwrap_err();
    assert_eq!(reason(&reused).as_deref(), Some("PASSWORD_POLICY"));
    assert_eq!(violated(&reused), vec!["REUSED"]);
}

/// The rule codes a PASSWORD_POLICY refusal names.
fn violated(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| {
            v.description
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A reset compares the new password with the history (an argon2 verification per stored
/// password) only once every other rule passes: a candidate the cheap rules refuse is refused
/// for them alone, however often it is sent, at no hashing cost.
async fn a_reset_compares_with_the_history_only_what_every_other_rule_lets_through(
    backend: Backend,
) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    // STRONG (24 characters) is set, then the policy asks for 30: STRONG is now refused by a
    // cheap rule (MIN_LENGTH) and is in the history.
    f.set_password(STRONG).await;
    f.identity
        .update_password_policy(pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                account_id: f.account.id.clone(),
                min_length: 30,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["min_length".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    f.send_reset("next").await;
    let token = newest_reset_token(&f.server).await;
    let refused = f.complete(&token, STRONG).await.unwrap_err();
    assert_eq!(violated(&refused), vec!["MIN_LENGTH"]);
    // Long enough, the same password with a suffix is compared, and is new.
    let longer = format!("{STRONG}-Harbour");
    f.complete(&token, &longer).await.unwrap();
    // The history still refuses it the next time.
    f.send_reset("after").await;
    let token = newest_reset_token(&f.server).await;
    let reused = f.complete(&token, &longer).await.unwrap_err();
    assert_eq!(violated(&reused), vec!["REUSED"]);
}

/// A reset link works only while the profile is active and keeps the address it was mailed
/// to: suspending the profile, or changing its email, revokes the links already sent (an admin
/// does either when the mailbox may be someone else's).
async fn suspending_or_readdressing_a_profile_revokes_its_reset_links(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let update = |profile: pb::Profile, path: &str| pb::UpdateProfileRequest {
        profile: Some(pb::Profile {
            id: f.profile.id.clone(),
            ..profile
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![path.into()],
        }),
        request_id: String::new(),
    };
    f.send_reset("before-suspension").await;
    let token = newest_reset_token(&f.server).await;
    f.identity
        .update_profile(update(
            pb::Profile {
                status: pb::ProfileStatus::Suspended as i32,
                ..Default::default()
            },
            "status",
        ))
        .await
        .unwrap();
    let refused = f.complete(&token, STRONG).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused).as_deref(), Some("RESET_TOKEN_INVALID"));
    f.identity
        .update_profile(update(
            pb::Profile {
                status: pb::ProfileStatus::Active as i32,
                ..Default::default()
            },
            "status",
        ))
        .await
        .unwrap();
    // Reactivated, the old link stays revoked.
    let still = f.complete(&token, STRONG).await.unwrap_err();
    assert_eq!(reason(&still).as_deref(), Some("RESET_TOKEN_INVALID"));

    // A change that leaves the address and the status as they were keeps the link.
    f.send_reset("kept").await;
    let token = newest_reset_token(&f.server).await;
    f.identity
        .update_profile(update(
            pb::Profile {
                job_title: "Analyst".into(),
                ..Default::default()
            },
            "job_title",
        ))
        .await
        .unwrap();
    f.complete(&token, STRONG).await.unwrap();
    let later = "Amber-Glacier-51-Compass";

    f.send_reset("before-new-address").await;
    let token = newest_reset_token(&f.server).await;
    f.identity
        .update_profile(update(
            pb::Profile {
                email: "ada.lovelace@example.org".into(),
                ..Default::default()
            },
            "email",
        ))
        .await
        .unwrap();
    let refused = f.complete(&token, later).await.unwrap_err();
    assert_eq!(reason(&refused).as_deref(), Some("RESET_TOKEN_INVALID"));
    assert!(!f.verify("ada@example.com", later).await.unwrap().verified);
}

/// A link sent before the profile, or its account, was deleted sets no password once it comes
/// back: an undelete (or a SCIM restore, which may bring another address) starts without the
/// links of before.
async fn deleting_a_profile_or_its_account_revokes_its_reset_links(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let id = f.profile.id.clone();
    f.send_reset("before-deletion").await;
    let token = newest_reset_token(&f.server).await;
    f.identity
        .delete_profile(pb::DeleteProfileRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    f.identity
        .undelete_profile(pb::UndeleteProfileRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = f.complete(&token, STRONG).await.unwrap_err();
    assert_eq!(reason(&refused).as_deref(), Some("RESET_TOKEN_INVALID"));

    f.send_reset("before-account-deletion").await;
    let token = newest_reset_token(&f.server).await;
    f.identity
        .delete_account(pb::DeleteAccountRequest {
            id: f.account.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    f.identity
        .undelete_account(pb::UndeleteAccountRequest {
            id: f.account.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = f.complete(&token, STRONG).await.unwrap_err();
    assert_eq!(reason(&refused).as_deref(), Some("RESET_TOKEN_INVALID"));
    // A link sent after the undelete works.
    f.send_reset("after-undelete").await;
    let token = newest_reset_token(&f.server).await;
    f.complete(&token, STRONG).await.unwrap();
}

async fn reset_sets_a_password_once_and_every_bad_token_looks_the_same(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let sent = f.send_reset("reset-1").await;
    assert_eq!(sent.profile_id, f.profile.id);
    assert_eq!(sent.email, "ada@example.com");
    let expires = sent.expire_time.unwrap().seconds;
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    assert!((expires - in_an_hour).abs() < 60);
    let token = newest_reset_token(&f.server).await;
    assert_eq!(token.len(), 43, "256 bits, base64url");

    // The replayed request returns the same answer and issues no second token.
    assert_eq!(f.send_reset("reset-1").await, sent);
    assert_eq!(newest_reset_token(&f.server).await, token);

    // Only the hash is stored.
    let db = Database::connect(&f.server.database.url).await.unwrap();
    let stored: Vec<String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT token_hash FROM reset_tokens",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get("", "token_hash").unwrap())
        .collect();
    assert!(!stored.contains(&token));
    assert!(stored.contains(&roster_identity::app::credentials::token_hash(&token)));

    let weak = f.complete(&token, "short").await.unwrap_err();
    assert_eq!(weak.code(), Code::InvalidArgument);
    assert_eq!(reason(&weak).as_deref(), Some("PASSWORD_POLICY"));
    let violations: Vec<String> = weak
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.description)
        .collect();
    assert!(
        violations.iter().any(|v| v.starts_with("MIN_LENGTH")),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| v.starts_with("MIN_DIGITS")),
        "{violations:?}"
    );

    f.complete(&token, STRONG).await.unwrap();
    assert!(f.verify("ADA@example.com", STRONG).await.unwrap().verified);

    let used = f
        .complete(&token, "Another-Strong-77-pass")
        .await
        .unwrap_err();
    let unknown = f
        .complete("not-a-token", "Another-Strong-77-pass")
        .await
        .unwrap_err();
    f.send_reset("").await;
    let first = newest_reset_token(&f.server).await;
    f.send_reset("").await;
    let superseded = f
        .complete(&first, "Another-Strong-77-pass")
        .await
        .unwrap_err();
    for status in [&used, &unknown, &superseded] {
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason(status).as_deref(), Some("RESET_TOKEN_INVALID"));
    }
    assert_eq!(used.message(), unknown.message());
    assert_eq!(used.details(), unknown.details());
    assert_eq!(superseded.message(), unknown.message());
}

async fn reset_links_expire(backend: Backend) {
    let Some(database) = roster_tests::TestDatabase::create(backend).await else {
        return;
    };
    let database = std::sync::Arc::new(database);
    let settings = roster_tests::test_settings(Service::Identity, &database.url);
    let identity = roster_identity::Settings {
        reset_token_ttl_seconds: 1,
        ..roster_tests::identity_settings()
    };
    let server =
        TestServer::start_with(Service::Identity, settings, identity, database, Vec::new()).await;
    let f = fixture_with(server, pb::PasswordPolicyPreset::Default).await;
    f.send_reset("").await;
    let token = newest_reset_token(&f.server).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = f.complete(&token, STRONG).await.unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert_eq!(reason(&expired).as_deref(), Some("RESET_TOKEN_INVALID"));
}

async fn verification_refuses_alike_and_throttles(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.set_password(STRONG).await;
    let ok = f.verify("ada@example.com", STRONG).await.unwrap();
    assert!(ok.verified);
    assert_eq!(
        (ok.profile_id.as_str(), ok.account_id.as_str()),
        (f.profile.id.as_str(), f.account.id.as_str())
    );

    let wrong = f
        .verify("ada@example.com", "Wrong-Password-1")
        .await
        .unwrap();
    let unknown = f
        .verify("nobody@example.com", "Wrong-Password-1")
        .await
        .unwrap();
    assert!(!wrong.verified);
    assert_eq!(
        wrong, unknown,
        "a wrong password and an unknown user look the same"
    );

    for _ in 0..4 {
        assert!(
            !f.verify("ada@example.com", "Wrong-Password-1")
                .await
                .unwrap()
                .verified
        );
    }
    let throttled = f.verify("ada@example.com", STRONG).await.unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    let retry = throttled
        .get_details_retry_info()
        .expect("RetryInfo")
        .retry_delay
        .expect("a delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
}

async fn suspended_and_deleted_profiles_never_verify(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.set_password(STRONG).await;
    f.identity
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: f.profile.id.clone(),
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
    assert!(!f.verify("ada@example.com", STRONG).await.unwrap().verified);
    f.identity
        .delete_profile(pb::DeleteProfileRequest {
            id: f.profile.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!f.verify("ada@example.com", STRONG).await.unwrap().verified);
}

async fn older_hashes_are_upgraded_on_the_next_verify(backend: Backend) {
    let Some(database) = roster_tests::TestDatabase::create(backend).await else {
        return;
    };
    let database = std::sync::Arc::new(database);
    let settings = roster_tests::test_settings(Service::Identity, &database.url);
    let weak = roster_identity::Settings {
        hashing: roster_identity::hashing::HashingSettings {
            memory_kib: 8 * 1024,
            iterations: 1,
            ..Default::default()
        },
        ..roster_tests::identity_settings()
    };
    let server =
        TestServer::start_with(Service::Identity, settings, weak, database, Vec::new()).await;
    let f = fixture_with(server, pb::PasswordPolicyPreset::Default).await;
    f.set_password(STRONG).await;
    let read_hash = |url: String| async move {
        let db = Database::connect(&url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT hash FROM credentials",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<String>("", "hash").unwrap()
    };
    assert!(
        read_hash(f.server.database.url.clone())
            .await
            .contains("m=8192,t=1,p=1")
    );

    let mut server = f.server;
    server.identity = roster_tests::identity_settings();
    let server = server.restart().await;
    let credentials = Identity::new(server.channel().await, ADMIN_KEY);
    let verified = credentials
        .verify_password(pb::VerifyPasswordRequest {
            username: "ada@example.com".into(),
            password: STRONG.into(),
        })
        .await
        .unwrap();
    assert!(verified.verified);
    let upgraded = read_hash(server.database.url.clone()).await;
    assert!(upgraded.contains("m=19456,t=2,p=1"), "{upgraded}");
}

/// A reset sent with a request id is answered its first answer when it comes again — after an
/// answer that was lost, or many copies at once — rather than as a used link; the password is
/// set once. The same id with another password is refused naming `request_id`; without an id
/// a repeat finds the link used. The page takes an id the same way. A completed reset lifts
/// the lock its username's failed sign-ins put on it, and records that, so the new password
/// signs in at once.
async fn a_reset_sent_again_with_its_request_id_is_answered_as_the_first_and_lifts_the_lock(
    backend: Backend,
) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.set_password(STRONG).await;
    for _ in 0..MAX_FAILURES {
        f.verify("ada@example.com", "Wrong-Guess-0000")
            .await
            .unwrap();
    }
    let locked = f.verify("ada@example.com", STRONG).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);

    f.send_reset("").await;
    let token = newest_reset_token(&f.server).await;
    let fresh = "Cobalt-Meadow-52-Harbor";
    let complete = |request_id: &'static str, password: &'static str| {
        let identity = f.identity.clone();
        let token = token.clone();
        async move {
            identity
                .complete_password_reset(pb::CompletePasswordResetRequest {
                    token,
                    new_password: password.into(),
                    request_id: request_id.into(),
                })
                .await
        }
    };
    let copies: Vec<_> = (0..8).map(|_| complete("reset-once", fresh)).collect();
    for answer in futures::future::join_all(copies).await {
        answer.expect("every copy answered as the first");
    }
    complete("reset-once", fresh)
        .await
        .expect("a retry after a lost answer is answered as the first");
    let reused = complete("reset-once", "Another-Strong-77-pass")
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(roster_tests::violated_fields(&reused), ["request_id"]);
    let without_id = complete("", fresh).await.unwrap_err();
    assert_eq!(reason(&without_id).as_deref(), Some("RESET_TOKEN_INVALID"));

    // The lock is lifted: the new password signs in at once; the old one no longer does.
    assert!(f.verify("ada@example.com", fresh).await.unwrap().verified);
    assert!(!f.verify("ada@example.com", STRONG).await.unwrap().verified);
    let events = f
        .identity
        .events_through(&f.account.id, "roster.signin.unlocked")
        .await;
    let of_type = |kind: &str| {
        events
            .iter()
            .filter(|event| event.subject_id == f.profile.id && event.r#type == kind)
            .count()
    };
    // One change for the first password, one for the reset: the copies changed nothing.
    assert_eq!(of_type("roster.credential.password_changed"), 2);
    assert_eq!(of_type("roster.signin.unlocked"), 1);
    assert_eq!(changed_emails(&f.server).await, 2);

    // The page: its submission sent again with the page's id is answered 200 again.
    let addr = f.server.reset_addr.expect("the reset page is on");
    f.send_reset("").await;
    let token = newest_reset_token(&f.server).await;
    let submit = |password: &str| {
        serde_json::json!({"token": token, "password": password, "request_id": "page-1"})
            .to_string()
    };
    let page = "Amber-Glacier-93-Compass";
    for attempt in 0..2 {
        let (status, body) = post_to_page(addr, "/reset/api/complete", &submit(page)).await;
        assert_eq!(status, 200, "submission {attempt}: {body}");
    }
    let (status, body) = post_to_page(addr, "/reset/api/complete", &submit(fresh)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already set from this page"), "{body}");
    assert!(f.verify("ada@example.com", page).await.unwrap().verified);
    assert_eq!(changed_emails(&f.server).await, 3);
}

both_backends!(
    a_reset_sent_again_with_its_request_id_is_answered_as_the_first_and_lifts_the_lock,
    policies_read_update_and_refuse_impossible_values,
    requirements_are_sentences_and_checks_name_every_failed_rule,
    reset_sets_a_password_once_and_every_bad_token_looks_the_same,
    reset_links_expire,
    verification_refuses_alike_and_throttles,
    suspended_and_deleted_profiles_never_verify,
    older_hashes_are_upgraded_on_the_next_verify,
    a_reset_compares_with_the_history_only_what_every_other_rule_lets_through,
    suspending_or_readdressing_a_profile_revokes_its_reset_links,
    deleting_a_profile_or_its_account_revokes_its_reset_links,
    slow_senders_do_not_shut_the_reset_page,
    the_reset_page_bounds_what_it_takes
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_username_answers_promptly_while_verification_is_saturated() {
    let Some(f) = fixture(Backend::Sqlite).await else {
        return;
    };
    f.set_password(STRONG).await;
    let idle_started = Instant::now();
    let check = pb::CheckUsernameRequest {
        username: "someone@example.com".into(),
        ..Default::default()
    };
    f.identity.check_username(check.clone()).await.unwrap();
    let idle = idle_started.elapsed();

    let load: Vec<_> = (0..64)
        .map(|n| {
            let credentials = f.identity.clone();
            tokio::spawn(async move {
                let _ = credentials
                    .verify_password(pb::VerifyPasswordRequest {
                        username: format!("user{n}@example.com"),
                        password: "Wrong-Password-1".into(),
                    })
                    .await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let busy_started = Instant::now();
    f.identity.check_username(check).await.unwrap();
    let busy = busy_started.elapsed();
    futures::future::join_all(load).await;
    // A generous bound: argon2 runs on its own threads, so the executor stays free.
    assert!(
        busy < Duration::from_millis(500) + idle * 10,
        "idle {idle:?}, under load {busy:?}"
    );
}

#[tokio::test]
async fn the_reset_page_is_served_under_a_strict_content_security_policy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(server) = TestServer::spawn(Service::Identity, Backend::Sqlite).await else {
        return;
    };
    let addr = server.reset_addr.expect("the reset page is on");
    for path in ["/reset", "/reset/app.js", "/reset/app.css"] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let head = head.to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{path}: {head}"
        );
        assert!(head.contains("referrer-policy: no-referrer"));
        assert!(head.contains("x-frame-options: deny"));
        // No third-party asset: every URL the page names is its own.
        assert!(
            !body.contains("https://") && !body.contains("//cdn"),
            "{path} loads from elsewhere"
        );
    }
}

/// POSTs `body` (JSON) to the reset page's `path`; the status code and the body answered.
async fn post_to_page(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    // The server may answer before it read a refused body whole, and close.
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The page is anonymous: what it takes is bounded before any lookup, estimate or hash. A
/// password longer than any policy allows is refused by length, a token far longer than a
/// link's is answered as an unknown one, and a body past the page's limit is refused whole;
/// a real link still works afterwards.
async fn the_reset_page_bounds_what_it_takes(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let addr = f.server.reset_addr.expect("the reset page is on");
    f.send_reset("page").await;
    let token = newest_reset_token(&f.server).await;

    let huge = "Aa1-".repeat(1100);
    for path in ["/reset/api/check", "/reset/api/complete"] {
        let (status, body) = post_to_page(
            addr,
            path,
            &serde_json::json!({"token": token, "password": huge}).to_string(),
        )
        .await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("longer than 4096 characters"),
            "{path}: {body}"
        );
    }
    let long_token = "t".repeat(5_000);
    let (status, body) = post_to_page(
        addr,
        "/reset/api/requirements",
        &serde_json::json!({ "token": long_token }).to_string(),
    )
    .await;
    assert_eq!(status, 410, "{body}");
    let (status, _) = post_to_page(
        addr,
        "/reset/api/complete",
        &serde_json::json!({"token": token, "password": "x".repeat(40_000)}).to_string(),
    )
    .await;
    assert_eq!(status, 413);

    let (status, body) = post_to_page(
        addr,
        "/reset/api/complete",
        &serde_json::json!({"token": token, "password": STRONG}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(f.verify("ada@example.com", STRONG).await.unwrap().verified);
}

/// Forty anonymous clients that send a body a byte at a time hold their own connections, not
/// the page's 32 slots: the page and its calls are answered meanwhile, and a body that does
/// not arrive within its time is answered 408.
async fn slow_senders_do_not_shut_the_reset_page(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(f) = fixture(backend).await else {
        return;
    };
    let addr = f.server.reset_addr.expect("the reset page is on");
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!(
                    "POST /reset/api/check HTTP/1.1\r\nHost: {addr}\r\n\
                     Content-Type: application/json\r\nContent-Length: 30000\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for stream in &mut slow {
        stream.write_all(b" ").await.unwrap();
    }
    let page = get_from_page(addr, "/reset").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let started = Instant::now();
    let (status, body) = post_to_page(
        addr,
        "/reset/api/requirements",
        &serde_json::json!({ "token": "no-such-token" }).to_string(),
    )
    .await;
    assert_eq!(status, 410, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The slow ones are ended once their time is up.
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), slow[0].read_to_end(&mut response))
        .await
        .expect("answered within the body's time");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}

/// GET `path` of the page over a plain connection: the response as text.
async fn get_from_page(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// A limit that one test can count up to: with the defaults a lock would be 5 failures.
const MAX_FAILURES: u32 = 5;

/// Two identity replicas on one database, each as `roster serve identity` runs it.
async fn two_replicas(backend: Backend) -> Option<(TestServer, TestServer)> {
    let database = std::sync::Arc::new(roster_tests::TestDatabase::create(backend).await?);
    let identity = roster_identity::Settings {
        signin_max_failures: MAX_FAILURES,
        ..roster_tests::identity_settings()
    };
    // Pools small enough that two replicas and the tests beside them stay within PostgreSQL's
    // max_connections: a refused connection would be an INTERNAL, not the throttle's answer.
    let settings = roster_runtime::CommonSettings {
        db_max_connections: 12,
        ..roster_tests::test_settings(Service::Identity, &database.url)
    };
    let start = || {
        TestServer::start_with(
            Service::Identity,
            settings.clone(),
            identity.clone(),
            database.clone(),
            Vec::new(),
        )
    };
    let first = start().await;
    let second = start().await;
    Some((first, second))
}

async fn concurrent_guesses_never_outrun_the_throttle(backend: Backend) {
    let Some((first, second)) = two_replicas(backend).await else {
        return;
    };
    let f = fixture_with(first, pb::PasswordPolicyPreset::Default).await;
    f.set_password(STRONG).await;
    let channels = [f.server.channel().await, second.channel().await];

    // 64 wrong guesses at once, half through each replica.
    let guesses = (0..64).map(|n| {
        let credentials = Identity::new(channels[n % 2].clone(), ADMIN_KEY);
        async move {
            credentials
                .verify_password(pb::VerifyPasswordRequest {
                    username: "ada@example.com".into(),
                    password: format!("Wrong-Guess-{n}"),
                })
                .await
        }
    });
    let results = futures::future::join_all(guesses).await;
    let evaluated = results.iter().filter(|result| result.is_ok()).count();
    for result in &results {
        match result {
            Ok(response) => assert!(!response.verified),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    matches!(
                        reason(status).as_deref(),
                        Some("SIGNIN_THROTTLED" | "PASSWORD_WORKERS_BUSY")
                    ),
                    "{status:?}"
                );
            }
        }
    }
    assert!(
        evaluated <= MAX_FAILURES as usize,
        "{evaluated} of 64 concurrent guesses were evaluated; the limit is {MAX_FAILURES}"
    );

    // The right password after them is throttled on both replicas.
    for channel in &channels {
        let throttled = Identity::new(channel.clone(), ADMIN_KEY)
            .verify_password(pb::VerifyPasswordRequest {
                username: "ada@example.com".into(),
                password: STRONG.into(),
            })
            .await
            .expect_err("throttled");
        assert_eq!(reason(&throttled).as_deref(), Some("SIGNIN_THROTTLED"));
    }
}

/// How many emails of `template` identity's outbox holds.
async fn outbox_count(server: &TestServer, template: &str) -> usize {
    roster_tests::outbox_emails(server)
        .await
        .iter()
        .filter(|email| email["template"] == template)
        .count()
}

/// How many reset emails identity's outbox holds.
async fn reset_emails(server: &TestServer) -> usize {
    outbox_count(server, "password_reset").await
}

/// How many "password changed" emails identity's outbox holds.
async fn changed_emails(server: &TestServer) -> usize {
    outbox_count(server, "password_changed").await
}

async fn a_reset_goes_only_to_the_address_the_admin_confirmed(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let confirmed = f.profile.clone();
    let send = |email: &str, etag: &str| pb::SendPasswordResetRequest {
        request_id: String::new(),
        profile_id: confirmed.id.clone(),
        email: email.into(),
        etag: etag.into(),
    };

    // Without the confirmed address: refused, naming the field.
    let missing = f
        .identity
        .send_password_reset(send("", ""))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let violations = missing.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "email");

    // Another admin changes the address after the first one confirmed it.
    f.identity
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: confirmed.id.clone(),
                email: "mallory@evil.example".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let changed = f
        .identity
        .send_password_reset(send(&confirmed.email, ""))
        .await
        .unwrap_err();
    assert_eq!(changed.code(), Code::FailedPrecondition);
    assert_eq!(reason(&changed).as_deref(), Some("PROFILE_CHANGED"));
    let failure = changed.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].subject, "email");
    assert!(!changed.message().contains("mallory"), "{changed:?}");

    // The confirmed etag is stale too, even with the new address.
    let stale = f
        .identity
        .send_password_reset(send("mallory@evil.example", &confirmed.etag))
        .await
        .unwrap_err();
    assert_eq!(reason(&stale).as_deref(), Some("PROFILE_CHANGED"));
    let failure = stale.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].subject, "etag");
    assert_eq!(reset_emails(&f.server).await, 0, "nothing was sent");

    // Confirmed anew (in another case): sent, to that address.
    let sent = f
        .identity
        .send_password_reset(send("MALLORY@evil.example", ""))
        .await
        .unwrap();
    assert_eq!(sent.email, "mallory@evil.example");
    assert_eq!(reset_emails(&f.server).await, 1);
}

both_backends!(
    concurrent_guesses_never_outrun_the_throttle,
    a_reset_goes_only_to_the_address_the_admin_confirmed,
);
