//! The outbox relay's key, on SQLite and PostgreSQL: read from a file as well as from a value,
//! required when a notification address is set, and — when NotificationService refuses it —
//! treated as the configuration error it is: counted, logged, and the email kept without
//! spending its attempts. An email of an account deleted before it was handed over is
//! dropped, not retried for ever; one notification refuses as invalid, or an unreadable row,
//! is given up a day after it was written.

use std::sync::Arc;
use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_runtime::{Service, SharedKeyRing, Shutdown};
use roster_tests::clients::Identity;
use roster_tests::{
    ADMIN_KEY, Backend, MailDrop, TestDatabase, TestServer, both_backends, identity_settings,
    notification_settings, scrape_metrics, test_settings,
};
use sea_orm::{ConnectionTrait, Database, Statement};

const WAIT: Duration = Duration::from_secs(60);

/// Identity on a fresh database of `backend`, with `settings`.
async fn identity(backend: Backend, settings: roster_identity::Settings) -> Option<TestServer> {
    let database = Arc::new(TestDatabase::create(backend).await?);
    Some(
        TestServer::start_with(
            Service::Identity,
            test_settings(Service::Identity, &database.url),
            settings,
            database,
            Vec::new(),
        )
        .await,
    )
}

/// Creates a profile with a welcome email, which identity writes to its outbox.
async fn welcome(identity: &TestServer, email: &str) {
    let channel = identity.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Relay Ltd")
        .await
        .id;
    Identity::new(channel, ADMIN_KEY)
        .create_profile(pb::CreateProfileRequest {
            account_id: account,
            first_name: "Grace".to_owned(),
            last_name: "Hopper".to_owned(),
            email: email.to_owned(),
            send_welcome_email: true,
            ..Default::default()
        })
        .await
        .expect("profile created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_url_without_a_key_stops_identity_at_start() {
    let database = TestDatabase::create(Backend::Sqlite)
        .await
        .expect("SQLite is always there");
    let common = test_settings(Service::Identity, &database.url);
    let start = |settings: roster_identity::Settings| {
        let common = common.clone();
        async move {
            roster_identity::start(&common, settings, SharedKeyRing::default(), Shutdown::new())
                .await
                .err()
                .map(|error| format!("{error:#}"))
        }
    };
    let notification_url = Some("http://127.0.0.1:9".to_owned());

    let error = start(roster_identity::Settings {
        notification_url: notification_url.clone(),
        ..identity_settings()
    })
    .await
    .expect("refused without a key");
    assert!(
        error.contains("ROSTER_IDENTITY__NOTIFICATION_KEY")
            && error.contains("ROSTER_IDENTITY__NOTIFICATION_KEY_FILE"),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notification.key");
    std::fs::write(&file, "a-key\n").unwrap();
    let error = start(roster_identity::Settings {
        notification_url,
        notification_key: Some("another-key".to_owned()),
        notification_key_file: Some(file),
        ..identity_settings()
    })
    .await
    .expect("refused with two keys");
    assert!(
        error.contains("ROSTER_IDENTITY__NOTIFICATION_KEY: set together with")
            && error.contains("ROSTER_IDENTITY__NOTIFICATION_KEY_FILE"),
        "{error}"
    );
}

async fn the_relay_reads_its_key_from_notification_key_file(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notification.key");
    // As a Secret mounted as a file holds it: with a line break.
    std::fs::write(&file, format!("{ADMIN_KEY}\n")).unwrap();
    let settings = roster_identity::Settings {
        notification_key: None,
        notification_key_file: Some(file),
        ..mail.identity_settings()
    };
    let Some(identity) = identity(backend, settings).await else {
        return;
    };
    welcome(&identity, "grace@example.com").await;
    let messages = mail.wait_for(1, WAIT).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].contains("To: grace@example.com"),
        "{}",
        messages[0]
    );
}

async fn a_refused_key_is_counted_as_a_configuration_error_and_the_email_kept(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let settings = roster_identity::Settings {
        notification_key: Some("a-key-notification-does-not-know".to_owned()),
        ..mail.identity_settings()
    };
    let Some(identity) = identity(backend, settings).await else {
        return;
    };
    welcome(&identity, "grace@example.com").await;

    let started = std::time::Instant::now();
    let refused = loop {
        let (_, text) = scrape_metrics(identity.metrics_addr()).await;
        let refused = text
            .lines()
            .find_map(|line| line.strip_prefix("roster_outbox_relay_refused_total "))
            .map(|value| value.trim().parse::<f64>().expect("a number"));
        match refused {
            Some(count) if count >= 1.0 => break count,
            _ if started.elapsed() > WAIT => panic!("no refusal counted:\n{text}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    // One refusal pauses the relay: the email is not sent again and again meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, text) = scrape_metrics(identity.metrics_addr()).await;
    assert!(
        text.contains(&format!("roster_outbox_relay_refused_total {refused}")),
        "the relay kept calling:\n{text}"
    );

    assert!(mail.messages().is_empty());
    let db = Database::connect(&identity.database.url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT attempts, last_error, delivered_at IS NULL AS waiting FROM outbox",
        ))
        .await
        .unwrap()
        .expect("the email is in the outbox");
    assert_eq!(row.try_get::<i32>("", "attempts").unwrap(), 0);
    assert!(row.try_get::<bool>("", "waiting").unwrap());
    let error = row
        .try_get::<Option<String>>("", "last_error")
        .unwrap()
        .unwrap_or_default();
    assert!(error.contains("Unauthenticated"), "{error}");
}

async fn an_email_of_an_account_deleted_before_its_hand_over_is_dropped(backend: Backend) {
    // Notification's address is known, but nothing listens there yet: the welcome email waits
    // in the outbox while the account is deleted.
    let port = std::net::SocketAddr::from(([127, 0, 0, 1], roster_tests::free_port()));
    let settings = roster_identity::Settings {
        notification_url: Some(format!("http://{port}")),
        notification_key: Some(ADMIN_KEY.to_owned()),
        ..identity_settings()
    };
    let Some(identity) = identity(backend, settings).await else {
        return;
    };
    welcome(&identity, "grace@example.com").await;
    let admin = Identity::new(identity.channel().await, ADMIN_KEY);
    let account = admin
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .unwrap()
        .accounts[0]
        .id
        .clone();
    admin
        .delete_account(pb::DeleteAccountRequest {
            id: account.clone(),
            ..Default::default()
        })
        .await
        .expect("DeleteAccount");

    // Now notification starts there, reading the deleted accounts from identity.
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let mail = tempfile::tempdir().expect("mail directory");
    let mut common = test_settings(Service::Notification, &database.url);
    common.listen_addr = port;
    let notification = TestServer::start_notification(
        common,
        roster_notification::Settings {
            identity: roster_runtime::peer::PeerSettings {
                url: Some(format!("http://{}", identity.addr)),
                key: Some(ADMIN_KEY.to_owned()),
                ..Default::default()
            },
            ..notification_settings(&format!("file://{}", mail.path().display()))
        },
        Arc::new(database),
        Vec::new(),
    )
    .await;

    let db = Database::connect(&identity.database.url).await.unwrap();
    let started = std::time::Instant::now();
    let error = loop {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT last_error, payload, delivered_at IS NULL AS waiting FROM outbox",
            ))
            .await
            .unwrap()
            .expect("the email's outbox row");
        let error: Option<String> = row.try_get("", "last_error").unwrap();
        if !row.try_get::<bool>("", "waiting").unwrap() {
            assert_eq!(row.try_get::<String>("", "payload").unwrap(), "{}");
            break error.unwrap_or_default();
        }
        assert!(
            started.elapsed() < WAIT,
            "the email is still in the outbox: {error:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(error.contains("deleted"), "{error}");
    // Nothing reached notification for the account, and the drop is no relay failure.
    let listed = roster_tests::clients::Notifications::new(notification.channel().await, ADMIN_KEY)
        .list_notifications(roster_proto::notification::v1::ListNotificationsRequest {
            account_id: account,
            ..Default::default()
        })
        .await
        .expect("ListNotifications");
    assert!(listed.notifications.is_empty(), "{listed:?}");
    assert!(std::fs::read_dir(mail.path()).unwrap().next().is_none());
    let (_, text) = scrape_metrics(identity.metrics_addr()).await;
    assert!(
        text.contains("roster_identity_outbox_relay_failures_total{reason=\"rejected\"} 0"),
        "{text}"
    );
}

/// Writes an outbox row as an identity of another release might have: `payload` as it is,
/// written `age` ago, due now.
async fn an_outbox_row(db: &sea_orm::DatabaseConnection, payload: &str, age: chrono::Duration) {
    let written = chrono::Utc::now() - age;
    let due = chrono::Utc::now();
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO outbox (id, payload, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, 0, $3, $4)"
        }
        _ => {
            "INSERT INTO outbox (id, payload, attempts, next_attempt_at, created_at) \
             VALUES (?, ?, 0, ?, ?)"
        }
    };
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [
            uuid::Uuid::now_v7().into(),
            payload.into(),
            due.into(),
            written.into(),
        ],
    ))
    .await
    .expect("outbox row written");
}

/// Notification refuses an email as invalid (a template it does not know, as an older release
/// would refuse a newer identity's), and another row cannot be read: each is retried while it
/// is younger than `outbox_give_up_seconds`, and given up at its first failure after — logged,
/// counted, its payload dropped, out of the outbox's depth — while good emails go out.
async fn an_email_refused_as_invalid_for_a_day_is_given_up(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let Some(identity) = identity(backend, mail.identity_settings()).await else {
        return;
    };
    let db = Database::connect(&identity.database.url).await.unwrap();
    let email = |template: &str| {
        serde_json::json!({
            "account_id": uuid::Uuid::new_v4(),
            "account_display_name": "Relay Ltd",
            "recipient": "grace@example.com",
            "template": template,
            "locale": "en",
            "variables": {},
        })
        .to_string()
    };
    let two_days = chrono::Duration::days(2);
    an_outbox_row(&db, &email("account_closed"), two_days).await;
    an_outbox_row(&db, "{\"written by\": \"another release\"", two_days).await;
    an_outbox_row(&db, &email("account_closed"), chrono::Duration::minutes(1)).await;
    welcome(&identity, "ada@example.com").await;

    let rows = || async {
        db.query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload, attempts, last_error, delivered_at IS NULL AS waiting \
             FROM outbox ORDER BY created_at",
        ))
        .await
        .unwrap()
    };
    let started = std::time::Instant::now();
    loop {
        let rows = rows().await;
        let done = rows
            .iter()
            .filter(|row| !row.try_get::<bool>("", "waiting").unwrap())
            .count();
        // The two old rows and the welcome email done, the young row tried at least twice.
        let young_retried = rows[2].try_get::<i32>("", "attempts").unwrap() >= 2;
        if done == 3 && young_retried {
            break;
        }
        assert!(started.elapsed() < WAIT, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = rows().await;
    for (row, said) in rows[..2]
        .iter()
        .zip(["InvalidArgument", "unreadable outbox payload"])
    {
        let error: String = row.try_get("", "last_error").unwrap();
        assert!(
            error.starts_with("given up 86400 s after it was written: ") && error.contains(said),
            "{error}"
        );
        assert_eq!(row.try_get::<String>("", "payload").unwrap(), "{}");
    }
    // The young one waits on, with the refusal as its last error and its payload whole.
    assert!(rows[2].try_get::<bool>("", "waiting").unwrap());
    let error: String = rows[2].try_get("", "last_error").unwrap();
    assert!(error.starts_with("InvalidArgument"), "{error}");
    assert!(
        rows[2]
            .try_get::<String>("", "payload")
            .unwrap()
            .contains("account_closed")
    );
    let messages = mail.wait_for(1, WAIT).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].contains("To: ada@example.com"),
        "{}",
        messages[0]
    );
    let (_, text) = scrape_metrics(identity.metrics_addr()).await;
    for expected in [
        "roster_identity_outbox_given_up_total 2",
        "roster_identity_outbox_depth 1",
        "roster_identity_outbox_relay_failures_total{reason=\"unreadable_payload\"} 1",
    ] {
        assert!(text.contains(expected), "{expected}:\n{text}");
    }
}

both_backends!(
    an_email_refused_as_invalid_for_a_day_is_given_up,
    an_email_in_the_longest_locale_a_profile_may_have_is_delivered,
    the_relay_reads_its_key_from_notification_key_file,
    a_refused_key_is_counted_as_a_configuration_error_and_the_email_kept,
    an_email_of_an_account_deleted_before_its_hand_over_is_dropped
);

/// A profile's locale may be as long as identity allows (64 characters, such as a tag with
/// Unicode extensions); notification takes every locale identity sends. With a shorter limit
/// there, the email was refused at each hand-over and retried for ever, a reset link with it.
async fn an_email_in_the_longest_locale_a_profile_may_have_is_delivered(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let Some(identity) = identity(backend, mail.identity_settings()).await else {
        return;
    };
    let locale = "de-DE-u-co-phonebk-ca-gregory-nu-latn-hc-h23-fw-mon-tz-deber-x-a";
    assert_eq!(
        locale.len(),
        roster_identity::domain::fields::MAX_LOCALE_LENGTH
    );
    let channel = identity.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Locale Ltd")
        .await
        .id;
    let profile = Identity::new(channel, ADMIN_KEY)
        .create_profile(pb::CreateProfileRequest {
            account_id: account,
            first_name: "Grete".to_owned(),
            last_name: "Hermann".to_owned(),
            email: "grete@example.com".to_owned(),
            locale: locale.to_owned(),
            send_welcome_email: true,
            ..Default::default()
        })
        .await
        .expect("profile created")
        .profile
        .unwrap();
    assert_eq!(profile.locale, locale);
    let messages = mail.wait_for(1, WAIT).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].contains("To: grete@example.com"),
        "{}",
        messages[0]
    );
}
