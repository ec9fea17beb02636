//! Retention under load: two replicas of a service share one database and race for its
//! retention job while a load keeps writing rows; some of those rows are made old in the
//! database (their timestamps moved back, as time would), the others stay young. The expired
//! rows must all go, every young one must stay, and the purge counters of both replicas
//! together must count each deleted row exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as pb;
use roster_proto::notification::v1 as nt;
use roster_runtime::Service;
use roster_tests::clients::{Identity, Imports, Notifications};
use roster_tests::imports::people_csv;
use roster_tests::{
    ADMIN_KEY, Backend, ImportSuite, TestDatabase, TestServer, both_backends, count,
    identity_settings, metric, notification_settings, test_settings,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Value};
use tonic::Code;

both_backends!(
    identity_purges_expired_keys_and_throttles_with_two_replicas,
    notification_purges_finished_notifications_with_two_replicas,
    bulk_import_purges_finished_and_expired_imports_with_two_replicas,
);

/// How long a purge may take to catch up once rows expired.
const WAIT: Duration = Duration::from_secs(60);

/// Load rounds; each writes rows and makes half of them old.
const ROUNDS: usize = 4;

/// The database connections of each server (and of the test's own reads): two replicas per
/// test, tests side by side, and PostgreSQL's connection limit shared by them all.
const CONNECTIONS: u32 = 4;

/// The common settings of a server of `service` on `database` with a small pool.
fn server_settings(service: Service, database: &TestDatabase) -> roster_runtime::CommonSettings {
    roster_runtime::CommonSettings {
        db_max_connections: CONNECTIONS,
        ..test_settings(service, &database.url)
    }
}

/// A moment long before any retention's limit.
fn long_ago() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::days(400)
}

/// Runs `sql` (parameters `$1`, `$2`, … on both backends) with `values`; answers the rows
/// it changed.
/// The test's own connection to `url`, to read and age rows.
async fn open(url: &str) -> DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options.max_connections(2).sqlx_logging(false);
    Database::connect(options).await.expect("database")
}

async fn execute(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> u64 {
    db.execute_raw(roster_runtime::db::statement(db, sql, values))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .rows_affected()
}

/// The number `sql` (a `SELECT COUNT(*) AS n …`) answers.
/// Waits until `done` holds, failing with `what` after [`WAIT`].
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < WAIT,
            "{what} did not happen in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `roster_<service>_retention_purged_total{table}` of each server, summed.
async fn purged(servers: &[&TestServer], service: &str, table: &str) -> u64 {
    let series = format!("roster_{service}_retention_purged_total{{table=\"{table}\"}}");
    let mut total = 0;
    for server in servers {
        total += metric::<u64>(server.metrics_addr(), &series)
            .await
            .unwrap_or_else(|| panic!("no {series}"));
    }
    total
}

async fn identity_purges_expired_keys_and_throttles_with_two_replicas(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await.map(Arc::new) else {
        return;
    };
    let settings = roster_identity::Settings {
        retention_interval_seconds: 1,
        ..identity_settings()
    };
    let start = || {
        TestServer::start_with(
            Service::Identity,
            server_settings(Service::Identity, &database),
            settings.clone(),
            database.clone(),
            Vec::new(),
        )
    };
    let (first, second) = (start().await, start().await);
    let clients = [
        Identity::connect(&first).await,
        Identity::connect(&second).await,
    ];
    let db = open(&database.url).await;
    let people = clients[0].account("People").await.id;

    let per_round = 10;
    let mut young_accounts = HashMap::new();
    for round in 0..ROUNDS {
        // Half the calls' request ids and usernames will be made old, half stay young.
        let calls = (0..2 * per_round).map(|n| {
            let client = clients[n % 2].clone();
            let age = if n % 2 == 0 { "old" } else { "young" };
            let key = format!("{age}-{round}-{n}");
            async move {
                let account = client
                    .create_account(id::CreateAccountRequest {
                        request_id: key.clone(),
                        display_name: key.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("CreateAccount")
                    .account
                    .expect("account");
                // No profile has this username: a failed sign-in, throttled by its name.
                client
                    .verify_password(id::VerifyPasswordRequest {
                        username: key.clone(),
                        password: "not the password".into(),
                    })
                    .await
                    .expect("VerifyPassword");
                (key, account.id)
            }
        });
        for (key, account) in futures::future::join_all(calls).await {
            if key.starts_with("young") {
                young_accounts.insert(key, account);
            }
        }
        // A reset link for an old and a young profile: a token, and an email in the outbox.
        for (n, age) in ["old", "young"].into_iter().enumerate() {
            let client = &clients[n];
            let email = format!("{age}-{round}@example.com");
            let profile = client.person(&people, "Reset", age, &email).await;
            client
                .send_password_reset(id::SendPasswordResetRequest {
                    request_id: format!("{age}-reset-{round}"),
                    profile_id: profile.id,
                    email,
                    ..Default::default()
                })
                .await
                .expect("SendPasswordReset");
        }
        let old = vec![long_ago().into()];
        execute(
            &db,
            "UPDATE reset_tokens SET expires_at = $1 WHERE profile_id IN \
             (SELECT id FROM profiles WHERE email LIKE 'old-%')",
            old.clone(),
        )
        .await;
        // No notification service here: the emails are marked delivered, the old ones long ago.
        execute(
            &db,
            "UPDATE outbox SET delivered_at = $1 WHERE payload LIKE '%old-%'",
            old.clone(),
        )
        .await;
        execute(
            &db,
            "UPDATE outbox SET delivered_at = $1 WHERE payload LIKE '%young-%'",
            vec![chrono::Utc::now().into()],
        )
        .await;
        execute(
            &db,
            "UPDATE idempotency_keys SET created_at = $1 WHERE request_id LIKE 'old-%'",
            old.clone(),
        )
        .await;
        execute(
            &db,
            "UPDATE signin_throttle SET last_failure_at = $1 WHERE canonical LIKE 'old-%'",
            old,
        )
        .await;
    }

    let old_rows = (ROUNDS * per_round) as i64;
    // Each round's reset request left a key too.
    let old_keys = old_rows + ROUNDS as i64;
    let resets = |age: &'static str| {
        let db = db.clone();
        async move {
            let tokens = count(
                &db,
                &format!(
                    "SELECT COUNT(*) AS n FROM reset_tokens WHERE profile_id IN \
                     (SELECT id FROM profiles WHERE email LIKE '{age}-%')"
                ),
                Vec::new(),
            )
            .await;
            let emails = count(
                &db,
                &format!("SELECT COUNT(*) AS n FROM outbox WHERE payload LIKE '%{age}-%'"),
                Vec::new(),
            )
            .await;
            (tokens, emails)
        }
    };
    let left = |table: &'static str, column: &'static str, age: &'static str| {
        let db = db.clone();
        async move {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} LIKE '{age}-%'");
            count(&db, &sql, Vec::new()).await
        }
    };
    let servers = [&first, &second];
    // Gone from the tables and counted: a purge counts what it deleted once the database has
    // answered, a moment after the rows are gone.
    wait_until("the purge of old keys and throttles", || async {
        left("idempotency_keys", "request_id", "old").await == 0
            && left("signin_throttle", "canonical", "old").await == 0
            && resets("old").await == (0, 0)
            && purged(&servers, "identity", "idempotency_keys").await >= old_keys as u64
            && purged(&servers, "identity", "reset_tokens").await >= ROUNDS as u64
            && purged(&servers, "identity", "outbox").await >= ROUNDS as u64
            && purged(&servers, "identity", "signin_throttle").await >= old_rows as u64
    })
    .await;
    assert_eq!(
        left("idempotency_keys", "request_id", "young").await,
        old_keys,
        "every young key is kept"
    );
    assert_eq!(
        resets("young").await,
        (ROUNDS as i64, ROUNDS as i64),
        "every live reset token and young delivered email is kept"
    );
    assert_eq!(
        left("signin_throttle", "canonical", "young").await,
        old_rows,
        "every young throttle is kept"
    );
    let total = |table: &'static str| {
        let db = db.clone();
        async move {
            count(
                &db,
                &format!("SELECT COUNT(*) AS n FROM {table}"),
                Vec::new(),
            )
            .await
        }
    };
    assert_eq!(
        total("idempotency_keys").await,
        old_keys,
        "bounded by the young"
    );
    assert_eq!(
        total("reset_tokens").await,
        ROUNDS as i64,
        "bounded by the live"
    );
    assert_eq!(total("outbox").await, ROUNDS as i64, "bounded by the young");
    assert_eq!(
        total("signin_throttle").await,
        old_rows,
        "bounded by the young"
    );
    assert_eq!(
        purged(&servers, "identity", "idempotency_keys").await,
        old_keys as u64,
        "each purged key counted once"
    );
    for table in ["reset_tokens", "outbox"] {
        assert_eq!(
            purged(&servers, "identity", table).await,
            ROUNDS as u64,
            "{table}: each purged row counted once"
        );
    }
    assert_eq!(
        purged(&servers, "identity", "signin_throttle").await,
        old_rows as u64,
        "each purged throttle counted once"
    );

    // A young request id still answers its first answer; an old one runs as a new request.
    let replay = |key: &str| {
        clients[1].create_account(id::CreateAccountRequest {
            request_id: key.to_owned(),
            display_name: key.to_owned(),
            ..Default::default()
        })
    };
    let young = replay("young-0-1").await.unwrap().account.unwrap();
    assert_eq!(young.id, young_accounts["young-0-1"]);
    let before = total("accounts").await;
    replay("old-0-0").await.unwrap();
    assert_eq!(
        total("accounts").await,
        before + 1,
        "a request id older than request_id_retention_hours runs again"
    );
}

async fn notification_purges_finished_notifications_with_two_replicas(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await.map(Arc::new) else {
        return;
    };
    let mail = tempfile::tempdir().expect("mail directory");
    let settings = roster_notification::Settings {
        retention_interval_seconds: 1,
        ..notification_settings(&format!("file://{}", mail.path().display()))
    };
    let start = || {
        TestServer::start_notification(
            server_settings(Service::Notification, &database),
            settings.clone(),
            database.clone(),
            Vec::new(),
        )
    };
    let (first, second) = (start().await, start().await);
    let clients = [
        Notifications::new(first.channel().await, ADMIN_KEY),
        Notifications::new(second.channel().await, ADMIN_KEY),
    ];
    let db = open(&database.url).await;
    let account = uuid::Uuid::new_v4();

    let per_round = 6;
    let mut sent = HashMap::new();
    for round in 0..ROUNDS {
        let calls = (0..2 * per_round).map(|n| {
            let client = clients[n % 2].clone();
            let age = if n % 2 == 0 { "old" } else { "young" };
            let key = format!("{age}-{round}-{n}");
            async move {
                let notification = client
                    .send_email(welcome(&key, account))
                    .await
                    .expect("SendEmail")
                    .notification
                    .expect("notification");
                (key, notification.id)
            }
        });
        sent.extend(futures::future::join_all(calls).await);
        wait_until("delivery", || async {
            count(
                &db,
                "SELECT COUNT(*) AS n FROM notifications WHERE state <> 'SENT'",
                Vec::new(),
            )
            .await
                == 0
        })
        .await;
        execute(
            &db,
            "UPDATE notifications SET updated_at = $1 WHERE id IN \
             (SELECT notification_id FROM notification_request_keys WHERE request_id LIKE 'old-%')",
            vec![long_ago().into()],
        )
        .await;
    }

    let old = (ROUNDS * per_round) as i64;
    let keys_left = |age: &'static str| {
        let db = db.clone();
        async move {
            count(
                &db,
                &format!(
                    "SELECT COUNT(*) AS n FROM notification_request_keys \
                     WHERE request_id LIKE '{age}-%'"
                ),
                Vec::new(),
            )
            .await
        }
    };
    let total = |table: &'static str| {
        let db = db.clone();
        async move {
            count(
                &db,
                &format!("SELECT COUNT(*) AS n FROM {table}"),
                Vec::new(),
            )
            .await
        }
    };
    let servers = [&first, &second];
    let tables = [
        "notifications",
        "notification_attempts",
        "notification_request_keys",
    ];
    // Gone from the table and counted: a purge counts what it deleted once its transaction
    // has committed, a moment after the rows are gone.
    wait_until("the purge of old notifications", || async {
        if total("notifications").await != old {
            return false;
        }
        for table in tables {
            if purged(&servers, "notification", table).await < old as u64 {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(keys_left("old").await, 0, "old request keys go with them");
    assert_eq!(keys_left("young").await, old, "every young key is kept");
    // Each message was sent at its first attempt: one attempt per notification.
    assert_eq!(
        total("notification_attempts").await,
        old,
        "the attempts of young notifications are kept, the old ones' deleted"
    );
    for table in tables {
        assert_eq!(
            purged(&servers, "notification", table).await,
            old as u64,
            "{table}: each purged row counted once"
        );
    }

    let old_id = sent["old-0-0"].clone();
    let gone = clients[0]
        .get_notification(nt::GetNotificationRequest {
            notification_id: old_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let young = clients[0]
        .send_email(welcome("young-0-1", account))
        .await
        .unwrap()
        .notification
        .unwrap();
    assert_eq!(
        young.id, sent["young-0-1"],
        "a kept request id answers its notification"
    );
    let again = clients[0]
        .send_email(welcome("old-0-0", account))
        .await
        .unwrap()
        .notification
        .unwrap();
    assert_ne!(
        again.id, old_id,
        "a purged request id queues a new notification"
    );
}

fn welcome(request_id: &str, account: uuid::Uuid) -> nt::SendEmailRequest {
    nt::SendEmailRequest {
        request_id: request_id.to_owned(),
        account_id: account.to_string(),
        recipient: format!("{request_id}@example.com"),
        template: "welcome".to_owned(),
        locale: "en".to_owned(),
        variables: HashMap::from([
            ("first_name".to_owned(), "Grace".to_owned()),
            ("username".to_owned(), "grace".to_owned()),
        ]),
        account_display_name: "Acme Corp".to_owned(),
    }
}

async fn bulk_import_purges_finished_and_expired_imports_with_two_replicas(backend: Backend) {
    let Some(suite) = ImportSuite::start_configured(
        backend,
        identity_settings(),
        |server| server.db_max_connections = CONNECTIONS,
        |settings| settings.retention_interval_seconds = 1,
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let replica = suite.replica().await;
    let clients = [
        suite.import_client().await,
        Imports::new(replica.channel().await, ADMIN_KEY),
    ];
    let account = suite.account("Acme").await;
    let db = open(&suite.imports.database.url).await;
    let rows_of = |import: &str| {
        let db = db.clone();
        let import: uuid::Uuid = import.parse().expect("an import id");
        async move {
            count(
                &db,
                "SELECT COUNT(*) AS n FROM import_rows WHERE import_id = $1",
                vec![import.into()],
            )
            .await
        }
    };

    // One import never submitted, larger than a purge batch: its rows go over several
    // statements once its expiry passed.
    let big = clients[0]
        .validated_csv(&account, people_csv("big", 2500), WAIT)
        .await;
    let mut old = vec![(big.id.clone(), rows_of(&big.id).await)];
    assert_eq!(old[0].1, 2500);
    let big_id: uuid::Uuid = big.id.parse().unwrap();
    let claims_of_big = "SELECT COUNT(*) AS n FROM import_claims WHERE import_id = $1";
    assert_eq!(
        count(&db, claims_of_big, vec![big_id.into()]).await,
        0,
        "a validation that ended leaves no claims"
    );
    // A validation cut off by a cancel leaves its claims (a username's skeleton a row): the
    // purge takes them with the import, over several statements.
    execute(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 2501) \
         INSERT INTO import_claims (import_id, kind, value, row_number, held) \
         SELECT $1, 1, 'left-' || i, i, FALSE FROM n",
        vec![big_id.into()],
    )
    .await;
    assert_eq!(count(&db, claims_of_big, vec![big_id.into()]).await, 2500);
    execute(
        &db,
        "UPDATE imports SET expire_at = 1 WHERE id = $1",
        vec![big_id.into()],
    )
    .await;

    let mut young = Vec::new();
    for round in 0..ROUNDS {
        let work = (0..2).map(|n| {
            let client = clients[n].clone();
            let account = account.clone();
            async move {
                let validated = client
                    .validated_csv(&account, people_csv(&format!("r{round}n{n}-"), 3), WAIT)
                    .await;
                client.submit(&validated.id, false).await;
                client
                    .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
                    .await;
                validated.id
            }
        });
        let [made_old, stays_young]: [String; 2] = futures::future::join_all(work)
            .await
            .try_into()
            .expect("two imports");
        old.push((made_old.clone(), rows_of(&made_old).await));
        young.push((stays_young.clone(), rows_of(&stays_young).await));
        // Finished long ago, as far as retention can tell.
        execute(
            &db,
            "UPDATE imports SET updated_at = 1 WHERE id = $1",
            vec![made_old.parse::<uuid::Uuid>().unwrap().into()],
        )
        .await;
    }

    let total = |table: &'static str| {
        let db = db.clone();
        async move {
            count(
                &db,
                &format!("SELECT COUNT(*) AS n FROM {table}"),
                Vec::new(),
            )
            .await
        }
    };
    let young_rows: i64 = young.iter().map(|(_, rows)| rows).sum();
    let old_rows: i64 = old.iter().map(|(_, rows)| rows).sum();
    wait_until("the purge of old imports and their rows", || async {
        total("imports").await == young.len() as i64
            && total("import_rows").await == young_rows
            // Every row of a completed import has its outcome; the big one was never applied.
            && total("import_outcomes").await == young_rows
            && total("import_purges").await == 0
            && total("import_claims").await == 0
    })
    .await;
    for (import, rows) in &young {
        assert_eq!(
            rows_of(import).await,
            *rows,
            "a young import keeps its rows"
        );
        assert!(clients[1].report(import).await.is_ok(), "its report too");
    }
    for (import, _) in &old {
        let refused = clients[0]
            .get_import(pb::GetImportRequest {
                import_id: import.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
        let report = match clients[1]
            .download_report(pb::DownloadReportRequest {
                import_id: import.clone(),
            })
            .await
        {
            Err(status) => status,
            Ok(mut stream) => stream
                .message()
                .await
                .expect_err("no report of a purged import"),
        };
        assert_eq!(report.code(), Code::NotFound, "{report:?}");
    }
    let servers = [&suite.imports, &replica];
    assert_eq!(
        purged(&servers, "bulk_import", "imports").await,
        old.len() as u64,
        "each purged import counted once"
    );
    assert_eq!(
        purged(&servers, "bulk_import", "import_rows").await,
        old_rows as u64,
        "each purged row counted once"
    );
    assert_eq!(
        purged(&servers, "bulk_import", "import_outcomes").await,
        (old_rows - 2500) as u64,
        "each purged outcome counted once"
    );
    assert_eq!(
        purged(&servers, "bulk_import", "import_claims").await,
        2500,
        "each purged claim counted once"
    );
}
