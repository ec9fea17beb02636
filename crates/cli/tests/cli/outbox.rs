//! Identity killed between writing a reset email to its outbox and relaying it: after a
//! restart the email is still delivered, exactly once.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_proto::identity::v1 as pb;
use roster_proto::notification::v1::ListNotificationsRequest;
use roster_runtime::Service;
use roster_tests::clients::{Identity, Notifications};

use roster_tests::{ADMIN_KEY, Backend, TestDatabase, TestServer, connect};
use sea_orm::{ConnectionTrait, Database, Statement};

fn eml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

async fn undelivered(database_url: &str) -> i64 {
    let db = Database::connect(database_url)
        .await
        .expect("identity database");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL",
        ))
        .await
        .expect("query")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_email_survives_identity_being_killed_before_the_relay() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let identity_db = format!("sqlite://{}/identity.db?mode=rwc", dir.path().display());
    let keys_file = dir.path().join("keys.toml");
    common::write_admin_keys_file(&keys_file, ADMIN_KEY);
    let identity_port = common::free_port();
    let notification_port = common::free_port();
    let identity_env = [
        ("LISTEN_ADDR", format!("127.0.0.1:{identity_port}")),
        ("DATABASE_URL", identity_db.clone()),
        ("KEYS_FILE", keys_file.display().to_string()),
        (
            "RESET_HTTP_ADDR",
            format!("127.0.0.1:{}", common::free_port()),
        ),
        ("SCIM_ADDR", "off".to_owned()),
        (
            "NOTIFICATION_URL",
            format!("http://127.0.0.1:{notification_port}"),
        ),
        ("NOTIFICATION_KEY", ADMIN_KEY.to_owned()),
    ];

    // Identity runs while the notification service is down: the email waits in the outbox.
    let mut identity = common::serve("identity", &identity_env);
    let channel = connect(format!("127.0.0.1:{identity_port}").parse().unwrap()).await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Acme")
        .await
        .id;
    let profile = Identity::new(channel.clone(), ADMIN_KEY)
        .person(&account, "Ada", "Lovelace", "ada@example.com")
        .await;
    Identity::new(channel, ADMIN_KEY)
        .send_password_reset(pb::SendPasswordResetRequest {
            request_id: "reset-once".into(),
            profile_id: profile.id.clone(),
            email: profile.email.clone(),
            etag: String::new(),
        })
        .await
        .expect("reset accepted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::signal(&identity, "KILL");
    let _ = identity.wait();
    assert_eq!(
        undelivered(&identity_db).await,
        1,
        "the email waits in the outbox"
    );

    // The notification service comes up; identity restarts and relays what it had written.
    let mail_dir = dir.path().join("mail");
    let notification_db = Arc::new(TestDatabase::create(Backend::Sqlite).await.unwrap());
    let mut settings = roster_tests::test_settings(Service::Notification, &notification_db.url);
    settings.listen_addr = format!("127.0.0.1:{notification_port}").parse().unwrap();
    let notification = TestServer::start_notification(
        settings,
        roster_tests::notification_settings(&format!("file://{}", mail_dir.display())),
        notification_db,
        Vec::new(),
    )
    .await;
    let mut identity = common::serve("identity", &identity_env);

    // The killed relay may have held the row's lease (30 s); it is claimable once that lapses.
    let started = Instant::now();
    while eml_files(&mail_dir).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the email never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give a duplicate every chance to show up before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emails = eml_files(&mail_dir);
    assert_eq!(emails.len(), 1, "delivered exactly once: {emails:?}");
    let message = std::fs::read_to_string(&emails[0]).unwrap();
    assert!(message.contains("ada@example.com"));
    assert_eq!(undelivered(&identity_db).await, 0);
    let listed = Notifications::new(notification.channel().await, ADMIN_KEY)
        .list_notifications(ListNotificationsRequest {
            account_id: account.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .notifications;
    assert_eq!(listed.len(), 1);

    common::signal(&identity, "TERM");
    let _ = identity.wait();
}
