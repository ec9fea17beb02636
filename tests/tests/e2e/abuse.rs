//! Abuse at the transport and in the fields: floods from one caller key, oversized metadata,
//! requests that are not valid protobuf, strings built to make normalisation expensive.

use std::time::{Duration, Instant};

use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::{Health, Identity};
use roster_tests::{
    ADMIN_KEY, Backend, ImportSuite, TestDatabase, TestKey, TestServer, both_backends, raw,
    raw_unary,
};
use tonic::Code;
use tonic_types::StatusExt;

const FLOODER: &str = "flooding-key";

async fn a_flood_from_one_key_is_refused_while_others_are_served(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let database = std::sync::Arc::new(database);
    let mut settings = roster_tests::test_settings(Service::Identity, &database.url);
    settings.rate_limit_per_second = 5;
    settings.rate_limit_burst = 10;
    let flooder = TestKey {
        key: FLOODER.to_owned(),
        scopes: vec!["accounts"],
        accounts: roster_runtime::auth::AccountAccess::All,
    };
    let server = TestServer::start(Service::Identity, settings, database, vec![flooder]).await;
    let accounts = Identity::new(server.channel().await, ADMIN_KEY);

    let mut refused = None;
    for _ in 0..40 {
        match accounts
            .with_key(FLOODER)
            .list_accounts(pb::ListAccountsRequest::default())
            .await
        {
            Ok(_) => {}
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("the flood is refused before 40 calls");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        roster_tests::reason(&status).as_deref(),
        Some("RATE_LIMITED")
    );
    assert!(
        status
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .is_some()
    );

    accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("another key is still served");
}

both_backends!(a_flood_from_one_key_is_refused_while_others_are_served);

/// A key limited to one account floods VerifyPassword with usernames it cannot see, each
/// costing a full argon2 verification: beyond its share of the hashing pool its calls are
/// refused, and another key's sign-ins still find room instead of RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_flooding_verifications_leaves_the_hashing_pool_to_others() {
    const FLOOD: usize = 12;
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else {
        return;
    };
    let database = std::sync::Arc::new(database);
    let settings = roster_tests::test_settings(Service::Identity, &database.url);
    // One slow worker and a queue of four: the flood alone could fill it.
    let identity = roster_identity::Settings {
        hashing: roster_identity::hashing::HashingSettings {
            memory_kib: 64 * 1024,
            iterations: 3,
            workers: 1,
            queue: 4,
            ..Default::default()
        },
        ..roster_tests::identity_settings()
    };
    let flooder = TestKey::limited(FLOODER, &["signin"], &[uuid::Uuid::new_v4()]);
    let server = TestServer::start_with(
        Service::Identity,
        settings,
        identity,
        database,
        vec![flooder],
    )
    .await;
    let client = Identity::new(server.channel().await, ADMIN_KEY);
    let verify = |client: Identity, username: String| async move {
        client
            .verify_password(pb::VerifyPasswordRequest {
                username,
                password: "guess".into(),
            })
            .await
    };
    let flood: Vec<_> = (0..FLOOD)
        .map(|n| {
            tokio::spawn(verify(
                client.with_key(FLOODER),
                format!("nobody-{n}-{}@example.com", uuid::Uuid::new_v4().simple()),
            ))
        })
        .collect();
    // The flood is in the pool (its share taken, the rest refused) before the other key calls.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = verify(client.clone(), "someone@example.com".into())
        .await
        .expect("another key's sign-in finds room in the pool");
    assert!(!served.verified);
    let mut refused = 0;
    for call in flood {
        match call.await.expect("the call ran") {
            Ok(answer) => assert!(!answer.verified),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= FLOOD - 2,
        "the flooding key holds two places at most; {refused} of {FLOOD} refused"
    );
}

#[tokio::test]
async fn a_huge_metadata_header_list_is_refused() {
    let Some(server) = TestServer::spawn(Service::Identity, roster_tests::Backend::Sqlite).await
    else {
        return;
    };
    let mut padded = Identity::new(server.channel().await, ADMIN_KEY);
    for n in 0..64 {
        padded = padded.with_metadata(&format!("x-padding-{n}"), &"p".repeat(1024));
    }
    padded
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect_err("64 KiB of metadata exceeds the 16 KiB header-list limit");
    let accounts = Identity::new(server.channel().await, ADMIN_KEY);
    accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("the server keeps serving");
}

/// A call under test, answering with its refusal (or OK when it answered without one).
type Refusal = std::pin::Pin<Box<dyn std::future::Future<Output = tonic::Status> + Send>>;

/// 1,000,000 × U+FDFA (3 bytes each, 18 characters each under NFKC): a 3 MB string that
/// normalises to 18 million characters.
fn worst_unicode() -> String {
    "\u{FDFA}".repeat(1_000_000)
}

/// The peak resident memory of this process since the last [`reset_peak_rss`], in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap();
    kib * 1024
}

/// Starts a new peak for [`peak_rss`] (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
}

/// Runs `call` while asking the server's health every few milliseconds: how long the call took
/// and the slowest health answer meanwhile.
async fn timed_beside_health<F, T>(
    channel: &tonic::transport::Channel,
    call: F,
) -> (T, Duration, Duration)
where
    F: std::future::Future<Output = T>,
{
    let health = Health::new(channel.clone());
    // Warm: the first check opens the stream.
    health.check("").await.unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                health.check("").await.unwrap();
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            slowest
        })
    };
    let started = Instant::now();
    let output = call.await;
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (output, took, prober.await.unwrap())
}

async fn a_huge_username_is_refused_at_once_while_health_answers(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let channel = server.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Acme")
        .await
        .id;
    let username = worst_unicode();
    let profiles = Identity::new(channel.clone(), ADMIN_KEY).unbounded();
    let credentials = Identity::new(channel.clone(), ADMIN_KEY).unbounded();

    reset_peak_rss();
    let before = peak_rss();
    let calls: Vec<(&str, Refusal)> = vec![
        ("CheckUsername", {
            let profiles = profiles.clone();
            let username = username.clone();
            Box::pin(async move {
                match profiles
                    .check_username(pb::CheckUsernameRequest {
                        username,
                        ..Default::default()
                    })
                    .await
                {
                    Ok(response) => {
                        assert!(!response.available);
                        assert_eq!(response.reason, pb::UsernameRefusal::Invalid as i32);
                        assert!(
                            response.message.contains("bytes long"),
                            "{}",
                            response.message
                        );
                        tonic::Status::ok("")
                    }
                    Err(status) => status,
                }
            })
        }),
        ("CreateProfile", {
            let username = username.clone();
            let account = account.clone();
            Box::pin(async move {
                profiles
                    .create_profile(pb::CreateProfileRequest {
                        account_id: account,
                        first_name: "Ada".into(),
                        last_name: "Lovelace".into(),
                        email: "ada@example.com".into(),
                        username,
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
            })
        }),
        ("VerifyPassword", {
            let username = username.clone();
            Box::pin(async move {
                credentials
                    .verify_password(pb::VerifyPasswordRequest {
                        username,
                        password: "Some-Password-1".into(),
                    })
                    .await
                    .unwrap_err()
            })
        }),
        ("BatchCheckUsernames", {
            let profiles = Identity::new(channel.clone(), ADMIN_KEY).unbounded();
            let username = username.clone();
            Box::pin(async move {
                let checks = profiles
                    .batch_check_usernames(pb::BatchCheckUsernamesRequest {
                        usernames: vec![username, "ada@example.com".into()],
                        seeds: Vec::new(),
                    })
                    .await
                    .unwrap()
                    .checks;
                assert_eq!(checks[0].reason, pb::UsernameRefusal::Invalid as i32);
                assert!(checks[1].available);
                // The answer must not echo 3 MB back.
                assert!(
                    checks[0].username.len() <= 1024,
                    "{} bytes echoed",
                    checks[0].username.len()
                );
                tonic::Status::ok("")
            })
        }),
    ];
    for (name, call) in calls {
        let (status, took, slowest_health) = timed_beside_health(&channel, call).await;
        assert!(
            matches!(status.code(), Code::Ok | Code::InvalidArgument),
            "{name}: {status:?}"
        );
        if status.code() == Code::InvalidArgument {
            let violations = status
                .get_details_bad_request()
                .expect("BadRequest")
                .field_violations;
            assert!(
                violations.iter().any(|v| v.field.ends_with("username")),
                "{name}: {violations:?}"
            );
            assert!(
                status.message().len() < 2048,
                "{name}: the refusal does not echo the input"
            );
        }
        assert!(took < Duration::from_millis(100), "{name} took {took:?}");
        assert!(
            slowest_health < Duration::from_millis(100),
            "health waited {slowest_health:?} during {name}"
        );
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 50 * 1024 * 1024,
        "peak RSS grew by {} MiB",
        grown / (1024 * 1024)
    );
}

both_backends!(a_huge_username_is_refused_at_once_while_health_answers);

/// Every string field of every request of every service — read from the descriptor set, so a
/// new RPC or field is covered the day it is added — set alone to 3 MB of the worst Unicode:
/// each call is answered promptly (refused, or served when the field is not read at all), and
/// the server stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_string_field_of_any_request_makes_a_server_work_long() {
    let Some(suite) = ImportSuite::start(Backend::Sqlite).await else {
        return;
    };
    let notification = TestServer::spawn(Service::Notification, Backend::Sqlite)
        .await
        .unwrap();
    let value = worst_unicode();
    let mut slowest: Vec<(Duration, String)> = Vec::new();
    let mut calls = 0;
    for method in raw::methods() {
        let server = match method.service {
            Service::Identity => &suite.identity,
            Service::BulkImport => &suite.imports,
            Service::Notification => &notification,
        };
        let channel = server.channel().await;
        for (field, request) in raw::requests_with_each_string_field(&method.input, &value, 3) {
            let (result, took, slowest_health) = timed_beside_health(
                &channel,
                tokio::time::timeout(
                    Duration::from_secs(10),
                    raw::call(&channel, &method.path, Some(ADMIN_KEY), request),
                ),
            )
            .await;
            let result = result
                .unwrap_or_else(|_| panic!("{} with {field}: no answer in 10 s", method.path));
            if let Err(status) = &result {
                assert!(
                    !matches!(
                        status.code(),
                        Code::Internal | Code::Unknown | Code::DeadlineExceeded
                    ),
                    "{} with {field}: {status:?}",
                    method.path
                );
                assert!(
                    status.message().len() < 4096,
                    "{} with {field}: the refusal echoes the input",
                    method.path
                );
            }
            assert!(
                slowest_health < Duration::from_millis(100),
                "{} with {field}: health waited {slowest_health:?}",
                method.path
            );
            calls += 1;
            slowest.push((took, format!("{} {field}", method.path)));
        }
    }
    slowest.sort();
    slowest.reverse();
    eprintln!(
        "{calls} calls; slowest: {:?}",
        &slowest[..slowest.len().min(8)]
    );
    assert!(
        calls > 60,
        "the descriptor set yields the string fields: {calls}"
    );
    for (took, call) in &slowest {
        assert!(*took < Duration::from_millis(250), "{call} took {took:?}");
    }
}

/// The most a batch may carry, each item as costly as its bounds allow: 1,000 usernames just
/// under the input limit, each expanding 18× under NFKC, and passwords at the longest a policy
/// may allow through the strength estimator. Each call is answered within a bound while health
/// keeps answering. The bounds are for a debug build (the release figures are roster-bench's);
/// before the normalisation was bounded, the first call took over ten seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_costliest_batches_and_passwords_are_answered_promptly() {
    let Some(server) = TestServer::spawn(Service::Identity, Backend::Sqlite).await else {
        return;
    };
    let channel = server.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Acme")
        .await
        .id;
    let heavy = "\u{FDFA}".repeat(roster_identity::domain::username::MAX_INPUT_BYTES / 3);
    let profiles = Identity::new(channel.clone(), ADMIN_KEY);

    let usernames = vec![heavy.clone(); 1000];
    let (result, took, health) = timed_beside_health(
        &channel,
        profiles.batch_check_usernames(pb::BatchCheckUsernamesRequest {
            usernames,
            seeds: Vec::new(),
        }),
    )
    .await;
    let checks = result.unwrap().checks;
    assert!(
        checks
            .iter()
            .all(|check| check.reason == pb::UsernameRefusal::Invalid as i32)
    );
    eprintln!("BatchCheckUsernames: {took:?}, health {health:?}");
    assert!(
        took < Duration::from_secs(2),
        "BatchCheckUsernames took {took:?}"
    );
    assert!(
        health < Duration::from_millis(100),
        "health waited {health:?}"
    );

    let items = (0..1000)
        .map(|n| pb::ProfileUpsert {
            idempotency_key: format!("item-{n}"),
            first_name: "\u{1E9B}\u{0323}".repeat(100),
            last_name: "Lovelace".into(),
            email: format!("ada{n}@example.com"),
            username: heavy.clone(),
            ..Default::default()
        })
        .collect();
    let (result, took, health) = timed_beside_health(
        &channel,
        profiles.batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
            account_id: account.clone(),
            items,
            send_welcome_emails: false,
            ..Default::default()
        }),
    )
    .await;
    let results = result.unwrap().results;
    assert_eq!(results.len(), 1000);
    eprintln!("BatchUpsertProfiles: {took:?}, health {health:?}");
    assert!(
        took < Duration::from_secs(2),
        "BatchUpsertProfiles took {took:?}"
    );
    assert!(
        health < Duration::from_millis(100),
        "health waited {health:?}"
    );

    // The longest password a policy may allow, of the shape the strength estimator finds
    // costliest (many overlapping dictionary and sequence matches).
    let accounts = Identity::new(channel.clone(), ADMIN_KEY);
    let policy = accounts
        .get_password_policy(pb::GetPasswordPolicyRequest {
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .policy
        .unwrap();
    accounts
        .update_password_policy(pb::UpdatePasswordPolicyRequest {
            policy: Some(pb::PasswordPolicy {
                max_length: 1024,
                min_strength_score: 4,
                forbid_common: true,
                ..policy
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "max_length".into(),
                    "min_strength_score".into(),
                    "forbid_common".into(),
                ],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let credentials = Identity::new(channel.clone(), ADMIN_KEY);
    for password in [
        "password1abc".repeat(86)[..1024].to_owned(),
        "aA1!".repeat(256),
        "qwertyuiopasdfghjklzxcvbnm".repeat(40)[..1024].to_owned(),
    ] {
        let (result, took, health) = timed_beside_health(
            &channel,
            credentials.check_password(pb::CheckPasswordRequest {
                account_id: account.clone(),
                password,
                ..Default::default()
            }),
        )
        .await;
        result.unwrap();
        eprintln!("CheckPassword: {took:?}, health {health:?}");
        assert!(
            took < Duration::from_millis(500),
            "CheckPassword took {took:?}"
        );
        assert!(
            health < Duration::from_millis(100),
            "health waited {health:?}"
        );
    }
}

async fn a_request_that_does_not_decode_is_invalid_argument_naming_the_field(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let channel = server.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Acme")
        .await
        .id;

    // A CreateProfileRequest whose account_id (field 2) is right and whose first_name
    // (field 3) holds a byte that is never UTF-8.
    let mut request = vec![0x12, account.len() as u8];
    request.extend_from_slice(account.as_bytes());
    request.extend_from_slice(&[0x1a, 0x03, b'A', 0xff, b'a']);
    let status = raw_unary(
        &channel,
        ADMIN_KEY,
        "/roster.identity.v1.ProfileService/CreateProfile",
        request,
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "invalid request: field `CreateProfileRequest.first_name`: invalid string value: \
             data is not UTF-8 encoded"
    );
    let violations = status
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "first_name");

    // A GetAccountRequest cut off inside its id: a length of 36 with 4 bytes behind it.
    let status = raw_unary(
        &channel,
        ADMIN_KEY,
        "/roster.identity.v1.AccountService/GetAccount",
        [&[0x0a, 36][..], &account.as_bytes()[..4]].concat(),
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("invalid request: field `GetAccountRequest.id`: "),
        "{status:?}"
    );

    // A message cut off inside its first field's tag: prost knows no field to name.
    let status = raw_unary(
        &channel,
        ADMIN_KEY,
        "/roster.identity.v1.AccountService/GetAccount",
        vec![0x80],
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("invalid request: not a valid GetAccountRequest: "),
        "{status:?}"
    );

    // Nothing was created, and well-formed calls are served as before.
    let profiles = Identity::new(channel.clone(), ADMIN_KEY)
        .all_profiles(&account)
        .await;
    assert!(profiles.is_empty(), "{profiles:?}");
}

both_backends!(a_request_that_does_not_decode_is_invalid_argument_naming_the_field);
