//! The `roster` binary under SIGTERM: health turns NOT_SERVING, the call in flight completes,
//! and the process exits 0 within the grace period.

use crate::common;

use std::time::{Duration, Instant};

use roster_proto::identity::v1::CreateAccountRequest;
use roster_tests::clients::{Health, Identity};
use roster_tests::connect;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use tonic_health::pb::health_check_response::ServingStatus;

const KEY: &str = "shutdown-test-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_call_in_flight_and_exits_zero() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!("sqlite://{}/identity.db?mode=rwc", dir.path().display());
    let keys_file = dir.path().join("keys.toml");
    common::write_admin_keys_file(&keys_file, KEY);
    let port = common::free_port();
    let grace = Duration::from_secs(15);
    let mut child = common::serve(
        "identity",
        &[
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", database_url.clone()),
            ("KEYS_FILE", keys_file.display().to_string()),
            ("SHUTDOWN_GRACE_SECONDS", grace.as_secs().to_string()),
            ("DRAIN_SECONDS", "1".to_owned()),
            (
                "RESET_HTTP_ADDR",
                format!("127.0.0.1:{}", common::free_port()),
            ),
            ("SCIM_ADDR", "off".to_owned()),
        ],
    );
    let channel = connect(format!("127.0.0.1:{port}").parse().expect("address")).await;
    let health = Health::new(channel.clone());
    assert_eq!(
        health.check("").await.expect("health"),
        ServingStatus::Serving
    );

    // Hold SQLite's write lock so the next write waits inside the server: a slow call.
    let mut options = ConnectOptions::new(database_url.clone());
    options.max_connections(1).min_connections(1);
    let blocker = Database::connect(options).await.expect("second connection");
    blocker
        .execute_unprepared("BEGIN EXCLUSIVE")
        .await
        .expect("write lock");
    let accounts = Identity::new(channel.clone(), KEY);
    let slow_call = tokio::spawn(async move {
        accounts
            .create_account(CreateAccountRequest {
                request_id: "slow".into(),
                display_name: "Slow Ltd".into(),
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow_call.is_finished(), "the call waits for the lock");

    let signalled = Instant::now();
    common::signal(&child, "TERM");

    let mut saw_not_serving = false;
    while signalled.elapsed() < Duration::from_secs(1) {
        if let Ok(status) = health.check("").await
            && status == ServingStatus::NotServing
        {
            saw_not_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_not_serving, "health turns NOT_SERVING after SIGTERM");

    tokio::time::sleep(Duration::from_secs(2)).await;
    blocker
        .execute_unprepared("ROLLBACK")
        .await
        .expect("unlock");
    let account = slow_call
        .await
        .expect("task")
        .expect("the call in flight completes")
        .account
        .expect("an account");
    assert_eq!(account.display_name, "Slow Ltd");

    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("task")
        .expect("exit status");
    assert!(exit.success(), "roster exits 0, got {exit:?}");
    assert!(
        signalled.elapsed() < grace,
        "exits within the grace period, took {:?}",
        signalled.elapsed()
    );
}

/// SIGTERM while a delivery worker's email waits for the mail server's reply: the process
/// waits for the worker to finish its batch and record it before it exits, so the email is
/// SENT after one attempt and delivered once — not left SENDING, to go out again when its
/// lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_delivery_worker_finish_and_record_its_batch() {
    use roster_proto::notification::v1::{GetNotificationRequest, NotificationState};
    use roster_tests::clients::Notifications;
    use roster_tests::smtp::SmtpServer;

    let dir = tempfile::tempdir().expect("temporary directory");
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").expect("hold file");
    let held = dir.path().join("hold.held");
    let Some(smtp) = SmtpServer::start(&["--hold-while", hold.to_str().expect("UTF-8 path")]).await
    else {
        return;
    };
    let database_url = format!("sqlite://{}/notification.db?mode=rwc", dir.path().display());
    let keys_file = dir.path().join("keys.toml");
    common::write_admin_keys_file(&keys_file, KEY);
    let port = common::free_port();
    let mut child = common::serve(
        "notification",
        &[
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", database_url.clone()),
            ("KEYS_FILE", keys_file.display().to_string()),
            ("MAIL_URL", smtp.url()),
            ("SHUTDOWN_GRACE_SECONDS", "1".to_owned()),
            ("POLL_INTERVAL_MILLIS", "100".to_owned()),
        ],
    );
    let channel = connect(format!("127.0.0.1:{port}").parse().expect("address")).await;
    let notifications = Notifications::new(channel, KEY);
    let queued = notifications
        .send_email(roster_tests::clients::welcome_email(
            "r-1",
            &uuid::Uuid::new_v4().to_string(),
            "ada@example.com",
        ))
        .await
        .expect("SendEmail")
        .notification
        .expect("notification");

    // The worker has sent the message; the mail server holds its reply.
    let started = Instant::now();
    while !held.exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::signal(&child, "TERM");
    // Past the server's own drain: only the worker keeps the process.
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::remove_file(&hold).expect("release the reply");
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("task")
        .expect("exit status");
    assert!(exit.success(), "roster exits 0, got {exit:?}");

    // Read back by a process of its own, on the same database.
    let port = common::free_port();
    let mut reader = common::serve(
        "notification",
        &[
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", database_url),
            ("KEYS_FILE", keys_file.display().to_string()),
            ("MAIL_URL", smtp.url()),
            ("WORKERS", "0".to_owned()),
        ],
    );
    let channel = connect(format!("127.0.0.1:{port}").parse().expect("address")).await;
    let sent = Notifications::new(channel, KEY)
        .get_notification(GetNotificationRequest {
            notification_id: queued.id.clone(),
        })
        .await
        .expect("GetNotification")
        .notification
        .expect("notification");
    let _ = reader.kill();
    let _ = reader.wait();
    assert_eq!(
        NotificationState::try_from(sent.state),
        Ok(NotificationState::Sent),
        "{sent:?}"
    );
    assert_eq!(sent.attempts, 1);
    assert_eq!(smtp.records().len(), 1);
}
