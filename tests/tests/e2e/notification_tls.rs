//! Notification over TLS, end to end: the service delivers through STARTTLS
//! (`smtp://…?tls=required`) and implicit TLS (`smtps://…`), with AUTH, to the real aiosmtpd
//! server (`tests/support/smtp_server.py --starttls` / `--implicit-tls`), whose certificate for
//! `localhost`/`127.0.0.1` is issued at run time by a throwaway CA (rcgen). With `mail_ca_file`
//! naming that CA the message goes out once, over TLS (the server's record says so); without
//! it the certificate is refused, nothing reaches the server (not even in clear) and the
//! notification is retried.
//!
//! Needs `python3` with `aiosmtpd`, like `tests/notification.rs`: without it the tests say they
//! did not run, and fail under `CI=true`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_proto::notification::v1::{
    GetNotificationRequest, Notification, NotificationState, SendEmailRequest,
};
use roster_runtime::Service;
use roster_tests::clients::Notifications;
use roster_tests::pki::{CertFiles, TestCa};
use roster_tests::smtp::SmtpServer;
use roster_tests::{
    ADMIN_KEY, Backend, TestDatabase, TestServer, notification_settings, test_settings,
};
use uuid::Uuid;

/// A throwaway CA and the certificate it issued the SMTP server.
struct Pki {
    ca: TestCa,
    server: CertFiles,
}

impl Pki {
    fn generate() -> Pki {
        let ca = TestCa::new("mail");
        let server = ca.server("smtp-server");
        Pki { ca, server }
    }

    fn ca(&self) -> PathBuf {
        self.ca.ca_file()
    }

    /// Starts the SMTP server with this certificate in `mode` (`--starttls`/`--implicit-tls`).
    async fn smtp_server(&self, mode: &str) -> Option<SmtpServer> {
        let cert = self.server.cert.display().to_string();
        let key = self.server.key.display().to_string();
        SmtpServer::start(&["--tls-cert", &cert, "--tls-key", &key, mode]).await
    }
}

async fn notification_server(settings: roster_notification::Settings) -> Option<TestServer> {
    let database = Arc::new(TestDatabase::create(Backend::Sqlite).await?);
    let common = test_settings(Service::Notification, &database.url);
    Some(TestServer::start_notification(common, settings, database, Vec::new()).await)
}

fn welcome_request(account: Uuid) -> SendEmailRequest {
    SendEmailRequest {
        request_id: "tls-1".to_owned(),
        account_id: account.to_string(),
        recipient: "grace@example.com".to_owned(),
        template: "welcome".to_owned(),
        locale: "en".to_owned(),
        variables: HashMap::from([
            ("first_name".to_owned(), "Grace".to_owned()),
            ("username".to_owned(), "grace".to_owned()),
        ]),
        account_display_name: "Acme Corp".to_owned(),
    }
}

/// Sends one email and polls it until `done` holds, failing after 20 s.
async fn send_and_wait(server: &TestServer, done: impl Fn(&Notification) -> bool) -> Notification {
    let client = Notifications::new(server.channel().await, ADMIN_KEY);
    let accepted = client
        .send_email(welcome_request(Uuid::new_v4()))
        .await
        .expect("SendEmail")
        .notification
        .expect("a notification");
    let start = Instant::now();
    loop {
        let notification = client
            .get_notification(GetNotificationRequest {
                notification_id: accepted.id.clone(),
            })
            .await
            .expect("GetNotification")
            .notification
            .expect("a notification");
        if done(&notification) {
            return notification;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "notification did not get there in time: {notification:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(notification: &Notification) -> NotificationState {
    NotificationState::try_from(notification.state).expect("known state")
}

/// With the CA trusted, one email goes out once, over TLS, authenticated.
async fn delivers_over_tls(mode: &str, url: fn(&SmtpServer) -> String) {
    let pki = Pki::generate();
    let Some(smtp) = pki.smtp_server(mode).await else {
        return;
    };
    let settings = roster_notification::Settings {
        mail_ca_file: Some(pki.ca()),
        ..notification_settings(&url(&smtp))
    };
    let Some(server) = notification_server(settings).await else {
        return;
    };
    let sent = send_and_wait(&server, |notification| {
        state(notification) == NotificationState::Sent
    })
    .await;
    assert_eq!(sent.attempts, 1, "{sent:?}");

    let records = smtp.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(
        record["message_id"],
        format!("<{}@roster.test>", sent.id).as_str()
    );
    assert_eq!(record["tls"], true, "{record}");
    assert!(
        record["tls_version"]
            .as_str()
            .is_some_and(|version| version.starts_with("TLSv1.")),
        "{record}"
    );
}

/// Without the CA the server's certificate is untrusted: the attempt fails and is retried, and
/// the server never records the message.
async fn refuses_an_untrusted_certificate(mode: &str, url: fn(&SmtpServer) -> String) {
    let pki = Pki::generate();
    let Some(smtp) = pki.smtp_server(mode).await else {
        return;
    };
    let settings = roster_notification::Settings {
        max_attempts: 1000,
        ..notification_settings(&url(&smtp))
    };
    let Some(server) = notification_server(settings).await else {
        return;
    };
    let retrying = send_and_wait(&server, |notification| {
        notification.attempts >= 2 && state(notification) == NotificationState::Retrying
    })
    .await;
    assert!(
        retrying.last_error.contains("UnknownIssuer"),
        "the certificate is refused: {retrying:?}"
    );
    assert!(retrying.next_attempt_time.is_some(), "{retrying:?}");
    assert!(smtp.records().is_empty(), "{:?}", smtp.records());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starttls_with_the_private_ca_delivers_once_over_tls() {
    delivers_over_tls("--starttls", SmtpServer::starttls_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn implicit_tls_with_the_private_ca_delivers_once_over_tls() {
    delivers_over_tls("--implicit-tls", SmtpServer::smtps_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starttls_without_the_ca_refuses_the_certificate_and_retries() {
    refuses_an_untrusted_certificate("--starttls", SmtpServer::starttls_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn implicit_tls_without_the_ca_refuses_the_certificate_and_retries() {
    refuses_an_untrusted_certificate("--implicit-tls", SmtpServer::smtps_url).await;
}
