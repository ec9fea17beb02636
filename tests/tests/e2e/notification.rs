//! Notification end to end: `SendEmail` over gRPC, delivery by the service's own workers to a
//! real SMTP server listening on TCP (aiosmtpd, `tests/support/smtp_server.py`, with AUTH), and
//! what callers read back. Deliveries are counted from the SMTP server's records by Message-ID,
//! never from logs.
//!
//! The SMTP server needs `python3` with `aiosmtpd` (`scripts/test` provides it). Without it these
//! tests say they did not run ([`roster_tests::not_run`]), and fail under `CI=true`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use roster_proto::notification::v1::{
    CancelNotificationRequest, GetNotificationRequest, ListNotificationsRequest, Notification,
    NotificationState, RetryNotificationRequest, SendEmailRequest,
};
use roster_runtime::Service;
use roster_tests::clients::Notifications;
use roster_tests::smtp::SmtpServer;
use roster_tests::{
    ADMIN_KEY, Backend, TestDatabase, TestKey, TestServer, both_backends, notification_settings,
    reason, test_settings,
};
use tonic::Code;
use uuid::Uuid;

const RESET_URL: &str = "https://id.example.com/reset#token=Zm9v&account=acme";

/// Starts the notification service on a fresh database of `backend`, mailing to `mail_url`.
async fn notification_server(
    backend: Backend,
    settings: roster_notification::Settings,
    keys: Vec<TestKey>,
) -> Option<TestServer> {
    let database = Arc::new(TestDatabase::create(backend).await?);
    let common = test_settings(Service::Notification, &database.url);
    Some(TestServer::start_notification(common, settings, database, keys).await)
}

/// A notification service on a fresh database of `backend`, delivering to a mail server that
/// accepts everything, and a client of it.
async fn delivering(backend: Backend) -> Option<(SmtpServer, TestServer, Notifications)> {
    let smtp = SmtpServer::start(&[]).await?;
    let server =
        notification_server(backend, notification_settings(&smtp.url()), Vec::new()).await?;
    let client = client(&server).await;
    Some((smtp, server, client))
}

/// A notification service whose mail server is down (stopped, to be restarted by the test),
/// retrying each email without end, from 100 ms apart up to `retry_max_millis`.
async fn while_smtp_is_down(
    backend: Backend,
    retry_max_millis: u64,
) -> Option<(SmtpServer, TestServer, Notifications)> {
    let mut smtp = SmtpServer::start(&[]).await?;
    smtp.stop();
    let settings = roster_notification::Settings {
        max_attempts: 1000,
        retry_base_millis: 100,
        retry_max_millis,
        ..notification_settings(&smtp.url())
    };
    let server = notification_server(backend, settings, Vec::new()).await?;
    let client = client(&server).await;
    Some((smtp, server, client))
}

/// A notification service on a fresh database of `backend` with no delivery workers (its emails
/// stay QUEUED), mailing to files in the directory handed back, and a client of it.
async fn without_workers(
    backend: Backend,
) -> Option<(tempfile::TempDir, TestServer, Notifications)> {
    let mail = tempfile::tempdir().unwrap();
    let settings = roster_notification::Settings {
        workers: 0,
        ..notification_settings(&format!("file://{}", mail.path().display()))
    };
    let server = notification_server(backend, settings, Vec::new()).await?;
    let client = client(&server).await;
    Some((mail, server, client))
}

async fn client(server: &TestServer) -> Notifications {
    Notifications::new(server.channel().await, ADMIN_KEY)
}

fn reset_request(
    request_id: &str,
    account: Uuid,
    recipient: &str,
    locale: &str,
) -> SendEmailRequest {
    SendEmailRequest {
        request_id: request_id.to_owned(),
        account_id: account.to_string(),
        recipient: recipient.to_owned(),
        template: "password_reset".to_owned(),
        locale: locale.to_owned(),
        variables: HashMap::from([
            ("first_name".to_owned(), "Ada".to_owned()),
            ("reset_url".to_owned(), RESET_URL.to_owned()),
            ("expire_time".to_owned(), "2026-11-25T15:30:00Z".to_owned()),
        ]),
        account_display_name: "Acme Corp".to_owned(),
    }
}

fn welcome_request(request_id: &str, account: Uuid, recipient: &str) -> SendEmailRequest {
    SendEmailRequest {
        request_id: request_id.to_owned(),
        account_id: account.to_string(),
        recipient: recipient.to_owned(),
        template: "welcome".to_owned(),
        locale: "en".to_owned(),
        variables: HashMap::from([
            ("first_name".to_owned(), "Grace".to_owned()),
            ("username".to_owned(), "grace".to_owned()),
        ]),
        account_display_name: "Acme Corp".to_owned(),
    }
}

async fn send(client: &Notifications, request: SendEmailRequest) -> Notification {
    client
        .send_email(request)
        .await
        .expect("SendEmail")
        .notification
        .expect("a notification")
}

async fn get(client: &Notifications, id: &str) -> Notification {
    client
        .get_notification(GetNotificationRequest {
            notification_id: id.to_owned(),
        })
        .await
        .expect("GetNotification")
        .notification
        .expect("a notification")
}

/// An account's notifications by id (at most 1,000).
async fn by_id(client: &Notifications, account: Uuid) -> HashMap<String, Notification> {
    client
        .list_notifications(ListNotificationsRequest {
            account_id: account.to_string(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("ListNotifications")
        .notifications
        .into_iter()
        .map(|notification| (notification.id.clone(), notification))
        .collect()
}

/// Polls `GetNotification` until `done` holds, failing after `limit`.
async fn wait_for(
    client: &Notifications,
    id: &str,
    limit: Duration,
    done: impl Fn(&Notification) -> bool,
) -> Notification {
    let start = Instant::now();
    loop {
        let notification = get(client, id).await;
        if done(&notification) {
            return notification;
        }
        assert!(
            start.elapsed() < limit,
            "notification {id} did not get there in {limit:?}: {notification:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `account` a welcome email to grace@example.com, whom the test's mail server refuses
/// for now (`--tempfail`, 451), and waits until it is FAILED (its attempts spent).
async fn failed_welcome(client: &Notifications, request_id: &str, account: Uuid) -> Notification {
    let queued = send(
        client,
        welcome_request(request_id, account, "grace@example.com"),
    )
    .await;
    wait_for(
        client,
        &queued.id,
        Duration::from_secs(20),
        is(NotificationState::Failed),
    )
    .await
}

fn state(notification: &Notification) -> NotificationState {
    NotificationState::try_from(notification.state).expect("known state")
}

fn is(expected: NotificationState) -> impl Fn(&Notification) -> bool {
    move |notification| state(notification) == expected
}

fn message_id(notification: &Notification) -> String {
    format!("<{}@roster.test>", notification.id)
}

async fn send_email_reports_every_invalid_field(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Notification, backend).await else {
        return;
    };
    let client = client(&server).await;
    let status = client
        .send_email(SendEmailRequest {
            request_id: String::new(),
            account_id: "acme".to_owned(),
            recipient: "Ada <ada@example.com>".to_owned(),
            template: "password_reset".to_owned(),
            locale: "not a locale".to_owned(),
            variables: HashMap::from([
                ("reset_url".to_owned(), "javascript:alert(1)".to_owned()),
                ("expire_time".to_owned(), "tomorrow".to_owned()),
            ]),
            account_display_name: String::new(),
        })
        .await
        .expect_err("invalid request");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: HashSet<String> = roster_tests::violated_fields(&status).into_iter().collect();
    for field in [
        "request_id",
        "account_id",
        "recipient",
        "locale",
        "variables[first_name]",
        "variables[reset_url]",
        "variables[expire_time]",
        "account_display_name",
    ] {
        assert!(fields.contains(field), "{field} missing from {fields:?}");
    }

    let unknown = client
        .send_email(SendEmailRequest {
            template: "newsletter".to_owned(),
            ..welcome_request("r-1", Uuid::new_v4(), "ada@example.com")
        })
        .await
        .expect_err("unknown template");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("password_reset"),
        "{}",
        unknown.message()
    );

    // A carriage return in a variable would reach the mail server as it is.
    let mut smuggling = welcome_request("r-2", Uuid::new_v4(), "ada@example.com");
    smuggling.variables.insert(
        "first_name".to_owned(),
        "Ada\r.\rMAIL FROM:<ceo@example.com>".to_owned(),
    );
    let refused = client.send_email(smuggling).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        roster_tests::violated_fields(&refused),
        ["variables[first_name]"]
    );
    // A map of 100,000 entries is one violation, not 100,000.
    let mut flood = welcome_request("r-3", Uuid::new_v4(), "ada@example.com");
    flood.variables = (0..100_000)
        .map(|index| (format!("A{index}"), String::new()))
        .collect();
    let refused = client.send_email(flood).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().len() < 4096,
        "{} bytes",
        refused.message().len()
    );
}

async fn a_key_limited_to_one_account_cannot_reach_another(backend: Backend) {
    let account_a = Uuid::new_v4();
    let account_b = Uuid::new_v4();
    let limited = TestKey::limited("key-a", &["notifications"], &[account_a]);
    let mail = tempfile::tempdir().unwrap();
    let settings = notification_settings(&format!("file://{}", mail.path().display()));
    let Some(server) = notification_server(backend, settings, vec![limited]).await else {
        return;
    };
    let client = client(&server).await;
    let of_b = send(&client, welcome_request("b-1", account_b, "b@example.com")).await;

    let denied = client
        .with_key("key-a")
        .send_email(welcome_request("a-1", account_b, "b@example.com"))
        .await
        .expect_err("another account");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason(&denied).as_deref(), Some("ACCOUNT_NOT_PERMITTED"));
    let denied = client
        .with_key("key-a")
        .list_notifications(ListNotificationsRequest {
            account_id: account_b.to_string(),
            ..Default::default()
        })
        .await
        .expect_err("another account's list");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // B's notification by id is indistinguishable from one that does not exist.
    let get_as_a = |id: String| {
        let client = client.clone();
        async move {
            client
                .with_key("key-a")
                .get_notification(GetNotificationRequest {
                    notification_id: id,
                })
                .await
                .expect_err("not visible")
        }
    };
    let hidden = get_as_a(of_b.id.clone()).await;
    let missing = get_as_a(Uuid::now_v7().to_string()).await;
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(hidden.code(), missing.code());
    assert_eq!(hidden.message(), missing.message());
    assert_eq!(hidden.details(), missing.details());

    let own = client
        .with_key("key-a")
        .send_email(welcome_request("a-1", account_a, "a@example.com"))
        .await
        .expect("own account")
        .notification
        .unwrap();
    let read = client
        .with_key("key-a")
        .get_notification(GetNotificationRequest {
            notification_id: own.id.clone(),
        })
        .await
        .expect("own notification")
        .notification
        .unwrap();
    assert_eq!(read.id, own.id);
}

async fn lists_page_newest_first_and_filter_by_state(backend: Backend) {
    // No workers: everything stays QUEUED while the pages are read.
    let Some((_mail, _server, client)) = without_workers(backend).await else {
        return;
    };
    let account = Uuid::new_v4();
    let mut sent = Vec::new();
    for index in 0..5 {
        let request = welcome_request(&format!("r-{index}"), account, "grace@example.com");
        sent.push(send(&client, request).await.id);
    }
    send(
        &client,
        welcome_request("other", Uuid::new_v4(), "x@example.com"),
    )
    .await;
    sent.reverse();

    let list = |page_token: String, state: NotificationState| {
        let client = client.clone();
        async move {
            client
                .list_notifications(ListNotificationsRequest {
                    account_id: account.to_string(),
                    page_size: 2,
                    page_token,
                    state: state as i32,
                })
                .await
        }
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(token, NotificationState::Unspecified)
            .await
            .expect("page");
        pages += 1;
        seen.extend(
            page.notifications
                .into_iter()
                .map(|notification| notification.id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, sent, "newest first, each once");

    let queued = list(String::new(), NotificationState::Queued)
        .await
        .unwrap();
    assert_eq!(queued.notifications.len(), 2);
    assert!(
        queued
            .notifications
            .iter()
            .all(|notification| state(notification) == NotificationState::Queued)
    );
    assert!(
        queued
            .notifications
            .iter()
            .all(|notification| notification.message_id.is_empty())
    );
    let sent_only = list(String::new(), NotificationState::Sent).await.unwrap();
    assert!(sent_only.notifications.is_empty());

    // A token belongs to its filter.
    let wrong = list(queued.next_page_token, NotificationState::Unspecified)
        .await
        .expect_err("token of another filter");
    assert_eq!(wrong.code(), Code::InvalidArgument);
    let garbage = list("not-a-token".to_owned(), NotificationState::Unspecified)
        .await
        .expect_err("garbage token");
    assert_eq!(garbage.code(), Code::InvalidArgument);
}

async fn a_replayed_request_id_is_one_notification_and_one_delivery(backend: Backend) {
    let Some((smtp, _server, client)) = delivering(backend).await else {
        return;
    };
    let account = Uuid::new_v4();
    let request = reset_request("outbox-42", account, "ada@example.com", "en");
    // Fifty concurrent twins as well as a later repeat.
    let twins = futures::future::join_all((0..50).map(|_| {
        let client = client.clone();
        let request = request.clone();
        async move { send(&client, request).await.id }
    }))
    .await;
    let first = twins[0].clone();
    assert!(twins.iter().all(|id| *id == first), "{twins:?}");

    let sent = wait_for(
        &client,
        &first,
        Duration::from_secs(20),
        is(NotificationState::Sent),
    )
    .await;
    let again = send(&client, request.clone()).await;
    assert_eq!(again.id, first);
    assert_eq!(
        state(&again),
        NotificationState::Sent,
        "a repeat returns the current state"
    );
    // The id answers only its request: another account's, recipient's or variables' email
    // under it is refused, and nothing is queued for it.
    let other_account = Uuid::new_v4();
    let mut variables = request.variables.clone();
    variables.insert("first_name".to_owned(), "Bob".to_owned());
    for other in [
        SendEmailRequest {
            account_id: other_account.to_string(),
            recipient: "bob@example.com".to_owned(),
            ..request.clone()
        },
        SendEmailRequest {
            recipient: "bob@example.com".to_owned(),
            ..request.clone()
        },
        SendEmailRequest {
            locale: "fr".to_owned(),
            ..request.clone()
        },
    ] {
        let refused = client.send_email(other).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(roster_tests::violated_fields(&refused), ["request_id"]);
    }
    assert!(by_id(&client, other_account).await.is_empty());
    // Sent, its variables are discarded: the rest of the request still has to match.
    let replay_after = send(
        &client,
        SendEmailRequest {
            variables,
            ..request.clone()
        },
    )
    .await;
    assert_eq!(replay_after.id, first);
    assert_eq!(sent.attempts, 1);
    assert_eq!(sent.message_id, message_id(&sent));
    assert!(sent.sent_time.is_some());

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(by_id(&client, account).await.len(), 1);
    let deliveries = smtp.deliveries();
    assert_eq!(deliveries.get(&sent.message_id), Some(&1), "{deliveries:?}");
    assert_eq!(deliveries.len(), 1);
}

/// Eighty SendEmail calls at once — 48 with request ids of their own, 8 request ids sent four
/// times each — on PostgreSQL go in shared statements: each call gets the answer a statement of
/// its own would have given, and each email is queued and delivered once.
async fn concurrent_emails_each_get_their_own_answer(backend: Backend) {
    let Some((smtp, _server, client)) = delivering(backend).await else {
        return;
    };
    let account = Uuid::new_v4();
    let mut requests: Vec<(String, SendEmailRequest)> = (0..48)
        .map(|n| {
            let request_id = format!("alone-{n}");
            let request = reset_request(&request_id, account, &format!("p{n}@example.com"), "en");
            (request_id, request)
        })
        .collect();
    for n in 0..8 {
        let request_id = format!("twin-{n}");
        let request = reset_request(&request_id, account, &format!("t{n}@example.com"), "en");
        for _ in 0..4 {
            requests.push((request_id.clone(), request.clone()));
        }
    }
    let answers = futures::future::join_all(requests.into_iter().map(|(request_id, request)| {
        let client = client.clone();
        async move { (request_id, send(&client, request).await) }
    }))
    .await;

    let mut by_request: HashMap<String, HashSet<String>> = HashMap::new();
    for (request_id, notification) in &answers {
        assert_eq!(notification.account_id, account.to_string());
        by_request
            .entry(request_id.clone())
            .or_default()
            .insert(notification.id.clone());
    }
    assert_eq!(by_request.len(), 56);
    assert!(
        by_request.values().all(|ids| ids.len() == 1),
        "every call of a request id gets its one notification: {by_request:?}"
    );
    let ids: HashSet<&String> = by_request.values().flatten().collect();
    assert_eq!(ids.len(), 56, "no two request ids share a notification");
    let listed = by_id(&client, account).await;
    assert_eq!(listed.len(), 56, "one notification per request id");
    for (request_id, notification) in &answers {
        let recipient = &listed[&notification.id].recipient;
        let expected = match request_id.strip_prefix("alone-") {
            Some(n) => format!("p{n}@example.com"),
            None => format!("t{}@example.com", &request_id["twin-".len()..]),
        };
        assert_eq!(recipient, &expected, "{request_id}'s own email");
    }

    let mut message_ids = HashSet::new();
    for id in &ids {
        let sent = wait_for(
            &client,
            id,
            Duration::from_secs(30),
            is(NotificationState::Sent),
        )
        .await;
        assert_eq!(sent.attempts, 1);
        message_ids.insert(message_id(&sent));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deliveries = smtp.deliveries();
    assert_eq!(deliveries.len(), 56, "{deliveries:?}");
    assert!(
        message_ids
            .iter()
            .all(|message_id| deliveries.get(message_id) == Some(&1)),
        "each email delivered once: {deliveries:?}"
    );
}

async fn a_permanent_rejection_fails_at_once_and_the_next_message_goes_out(backend: Backend) {
    let Some(smtp) = SmtpServer::start(&["--reject", "gone@example.com"]).await else {
        return;
    };
    let Some(server) =
        notification_server(backend, notification_settings(&smtp.url()), Vec::new()).await
    else {
        return;
    };
    let client = client(&server).await;
    let account = Uuid::new_v4();
    let rejected = send(&client, welcome_request("r-1", account, "gone@example.com")).await;
    let accepted = send(
        &client,
        welcome_request("r-2", account, "grace@example.com"),
    )
    .await;

    let failed = wait_for(
        &client,
        &rejected.id,
        Duration::from_secs(20),
        is(NotificationState::Failed),
    )
    .await;
    assert_eq!(failed.attempts, 1, "5xx is not retried");
    assert!(
        failed.last_error.starts_with("550"),
        "{}",
        failed.last_error
    );
    assert!(
        failed.last_error.contains("mailbox unavailable"),
        "{}",
        failed.last_error
    );
    assert!(failed.next_attempt_time.is_none());

    let sent = wait_for(
        &client,
        &accepted.id,
        Duration::from_secs(20),
        is(NotificationState::Sent),
    )
    .await;
    assert!(sent.last_error.is_empty());
    let deliveries = smtp.deliveries();
    assert_eq!(deliveries.get(&message_id(&sent)), Some(&1));
    assert!(!deliveries.contains_key(&message_id(&failed)));
}

async fn an_smtp_outage_is_retried_until_the_server_returns(backend: Backend) {
    let Some((mut smtp, _server, client)) = while_smtp_is_down(backend, 400).await else {
        return;
    };
    let account = Uuid::new_v4();
    let mut ids = Vec::new();
    for index in 0..20 {
        ids.push(
            send(
                &client,
                welcome_request(&format!("r-{index}"), account, "grace@example.com"),
            )
            .await
            .id,
        );
    }

    // While the server is down every message fails, again and again, and waits its turn.
    let start = Instant::now();
    loop {
        let all = by_id(&client, account).await;
        let retried = all
            .values()
            .filter(|notification| {
                notification.attempts >= 2 && !notification.last_error.is_empty()
            })
            .count();
        assert!(
            all.values()
                .all(|notification| state(notification) != NotificationState::Sent),
            "nothing is sent while the server is down"
        );
        if retried == ids.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not all retried: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retrying = wait_for(
        &client,
        &ids[0],
        Duration::from_secs(10),
        is(NotificationState::Retrying),
    )
    .await;
    assert!(retrying.next_attempt_time.is_some());

    smtp.restart().await;
    for id in &ids {
        let sent = wait_for(
            &client,
            id,
            Duration::from_secs(20),
            is(NotificationState::Sent),
        )
        .await;
        assert!(sent.attempts >= 2);
        assert!(
            !sent.last_error.is_empty(),
            "the outage's error stays readable"
        );
    }
    let deliveries = smtp.deliveries();
    assert_eq!(deliveries.len(), ids.len());
    assert!(
        deliveries.values().all(|count| *count == 1),
        "{deliveries:?}"
    );
}

both_backends!(
    send_email_reports_every_invalid_field,
    a_key_limited_to_one_account_cannot_reach_another,
    lists_page_newest_first_and_filter_by_state,
    a_replayed_request_id_is_one_notification_and_one_delivery,
    concurrent_emails_each_get_their_own_answer,
    a_permanent_rejection_fails_at_once_and_the_next_message_goes_out,
    an_smtp_outage_is_retried_until_the_server_returns,
    a_failed_email_retried_after_the_server_is_fixed_is_delivered_once_with_its_message_id,
    a_cancelled_email_is_never_sent_even_after_the_server_returns,
    cancels_racing_the_workers_never_leave_an_email_both_sent_and_cancelled,
    concurrent_twins_of_a_cancel_or_a_retry_all_get_its_answer
);

async fn retry(
    client: &Notifications,
    id: &str,
    request_id: &str,
) -> Result<Notification, tonic::Status> {
    client
        .retry_notification(RetryNotificationRequest {
            notification_id: id.to_owned(),
            request_id: request_id.to_owned(),
        })
        .await
        .map(|response| response.notification.expect("a notification"))
}

async fn cancel(
    client: &Notifications,
    id: &str,
    request_id: &str,
) -> Result<Notification, tonic::Status> {
    client
        .cancel_notification(CancelNotificationRequest {
            notification_id: id.to_owned(),
            request_id: request_id.to_owned(),
        })
        .await
        .map(|response| response.notification.expect("a notification"))
}

/// A FAILED_PRECONDITION with `expected_reason` whose message names `state`.
fn assert_refused(refusal: &tonic::Status, expected_reason: &str, state: &str) {
    assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
    assert_eq!(reason(refusal).as_deref(), Some(expected_reason));
    assert!(refusal.message().contains(state), "{}", refusal.message());
}

async fn a_failed_email_retried_after_the_server_is_fixed_is_delivered_once_with_its_message_id(
    backend: Backend,
) {
    let Some(mut smtp) = SmtpServer::start(&["--tempfail", "grace@example.com"]).await else {
        return;
    };
    let account = Uuid::new_v4();
    let settings = roster_notification::Settings {
        max_attempts: 2,
        retry_base_millis: 100,
        retry_max_millis: 200,
        ..notification_settings(&smtp.url())
    };
    let other_account = TestKey::limited("key-other", &["notifications"], &[Uuid::new_v4()]);
    let Some(server) = notification_server(backend, settings, vec![other_account]).await else {
        return;
    };
    let client = client(&server).await;
    let failed = failed_welcome(&client, "r-1", account).await;
    assert_eq!(failed.attempts, 2);
    assert!(failed.last_error.starts_with("451"), "{failed:?}");
    assert_eq!(failed.message_id, message_id(&failed));
    assert!(
        smtp.deliveries().is_empty(),
        "the server refused every attempt"
    );

    // Another account's key is answered as if the notification did not exist.
    let other = client.with_key("key-other");
    for hidden_id in [failed.id.clone(), Uuid::now_v7().to_string()] {
        let retried = retry(&other, &hidden_id, "other-1").await.unwrap_err();
        let cancelled = cancel(&other, &hidden_id, "other-1").await.unwrap_err();
        for refusal in [retried, cancelled] {
            assert_eq!(refusal.code(), Code::NotFound);
            assert_eq!(refusal.message(), "notification not found");
        }
    }
    let hidden = retry(&other, &failed.id, "other-2").await.unwrap_err();
    let missing = retry(&other, &Uuid::now_v7().to_string(), "other-2")
        .await
        .unwrap_err();
    assert_eq!(hidden.message(), missing.message());
    assert_eq!(hidden.details(), missing.details());
    assert_eq!(
        get(&client, &failed.id).await,
        failed,
        "untouched by the other account's key"
    );

    smtp.restart_with(&[]).await;
    let retried = retry(&client, &failed.id, "retry-1").await.expect("retry");
    assert_eq!(retried.id, failed.id);
    assert_ne!(state(&retried), NotificationState::Failed);
    assert_eq!(retried.message_id, failed.message_id);
    let sent = wait_for(
        &client,
        &failed.id,
        Duration::from_secs(20),
        is(NotificationState::Sent),
    )
    .await;
    assert_eq!(sent.attempts, 3, "one attempt after the retry");
    assert_eq!(sent.message_id, failed.message_id);

    // The same request id is answered with the notification, as it is now; nothing more is
    // queued. A new request finds it SENT.
    let replayed = retry(&client, &failed.id, "retry-1").await.expect("replay");
    assert_eq!(replayed, get(&client, &failed.id).await);
    assert_refused(
        &retry(&client, &failed.id, "retry-2").await.unwrap_err(),
        "NOTIFICATION_NOT_FAILED",
        "SENT",
    );
    assert_refused(
        &cancel(&client, &failed.id, "cancel-1").await.unwrap_err(),
        "NOTIFICATION_NOT_WAITING",
        "SENT",
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = smtp.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["message_id"], failed.message_id.as_str());
}

async fn a_cancelled_email_is_never_sent_even_after_the_server_returns(backend: Backend) {
    let Some((mut smtp, _server, client)) = while_smtp_is_down(backend, 200).await else {
        return;
    };
    let account = Uuid::new_v4();
    let waiting = send(&client, welcome_request("r-1", account, "ada@example.com")).await;
    wait_for(
        &client,
        &waiting.id,
        Duration::from_secs(20),
        |notification| notification.attempts >= 1 && !notification.last_error.is_empty(),
    )
    .await;

    // It is waiting for the server, or being sent this instant: not FAILED, so not retried.
    let refusal = retry(&client, &waiting.id, "retry-1").await.unwrap_err();
    assert_refused(
        &refusal,
        "NOTIFICATION_NOT_FAILED",
        "only a FAILED notification",
    );
    assert!(
        ["QUEUED", "RETRYING", "SENDING"]
            .iter()
            .any(|state| refusal.message().contains(&format!("is {state}"))),
        "{}",
        refusal.message()
    );

    // Between two attempts it waits and is cancelled; during one, a worker holds it and the
    // cancel is refused naming SENDING. A refused cancel keeps no request id, so the same one
    // is tried again.
    let start = Instant::now();
    let cancelled = loop {
        match cancel(&client, &waiting.id, "cancel-1").await {
            Ok(cancelled) => break cancelled,
            Err(refusal) => assert_refused(&refusal, "NOTIFICATION_NOT_WAITING", "SENDING"),
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(state(&cancelled), NotificationState::Cancelled);
    assert!(cancelled.next_attempt_time.is_none());
    assert_eq!(
        cancel(&client, &waiting.id, "cancel-1")
            .await
            .expect("replay"),
        cancelled,
        "a repeat is answered the same"
    );
    assert_refused(
        &cancel(&client, &waiting.id, "cancel-2").await.unwrap_err(),
        "NOTIFICATION_NOT_WAITING",
        "CANCELLED",
    );

    // The server returns: a later email goes out, the cancelled one never does.
    smtp.restart().await;
    let later = send(&client, welcome_request("r-2", account, "ada@example.com")).await;
    let sent = wait_for(
        &client,
        &later.id,
        Duration::from_secs(20),
        is(NotificationState::Sent),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get(&client, &waiting.id).await, cancelled);
    let deliveries = smtp.deliveries();
    assert_eq!(deliveries.get(&sent.message_id), Some(&1), "{deliveries:?}");
    assert!(
        !deliveries.contains_key(&message_id(&cancelled)),
        "{deliveries:?}"
    );
    let listed = client
        .list_notifications(ListNotificationsRequest {
            account_id: account.to_string(),
            state: NotificationState::Cancelled as i32,
            ..Default::default()
        })
        .await
        .expect("ListNotifications")
        .notifications;
    assert_eq!(listed, [cancelled]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporary_rejections_are_retried_up_to_the_limit_then_fail() {
    let Some(smtp) = SmtpServer::start(&["--tempfail", "busy@example.com"]).await else {
        return;
    };
    // Each wait between attempts lasts half to all of its delay: at least 0.5 s, so that the
    // poll below sees the message RETRYING however late a loaded machine wakes it.
    let settings = roster_notification::Settings {
        max_attempts: 3,
        retry_base_millis: 1_000,
        retry_max_millis: 2_000,
        ..notification_settings(&smtp.url())
    };
    let Some(server) = notification_server(Backend::Sqlite, settings, Vec::new()).await else {
        return;
    };
    let client = client(&server).await;
    let account = Uuid::new_v4();
    let busy = send(&client, welcome_request("r-1", account, "busy@example.com")).await;
    let fine = send(
        &client,
        welcome_request("r-2", account, "grace@example.com"),
    )
    .await;

    let retrying = wait_for(&client, &busy.id, Duration::from_secs(20), |notification| {
        state(notification) == NotificationState::Retrying
    })
    .await;
    assert!(retrying.last_error.starts_with("451"), "{retrying:?}");
    let failed = wait_for(
        &client,
        &busy.id,
        Duration::from_secs(20),
        is(NotificationState::Failed),
    )
    .await;
    assert_eq!(failed.attempts, 3);
    assert!(
        failed.last_error.starts_with("451"),
        "{}",
        failed.last_error
    );
    wait_for(
        &client,
        &fine.id,
        Duration::from_secs(20),
        is(NotificationState::Sent),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_password_reset_email_renders_in_each_locale_with_both_parts_and_the_link() {
    let Some((smtp, _server, client)) = delivering(Backend::Sqlite).await else {
        return;
    };
    let account = Uuid::new_v4();
    // requested locale → rendered locale, a word of its subject, a phrase of its body
    let cases = [
        ("en", "en", "password", "Hello Ada"),
        ("fr", "fr", "mot de passe", "Bonjour Ada"),
        ("de", "de", "Passwort", "Hallo Ada"),
        ("fr-CA", "fr", "mot de passe", "Bonjour Ada"),
        ("de-AT", "de", "Passwort", "Hallo Ada"),
        ("es-MX", "en", "password", "Hello Ada"),
        ("", "en", "password", "Hello Ada"),
    ];
    let mut queued = Vec::new();
    for (index, (requested, ..)) in cases.iter().enumerate() {
        let request = reset_request(
            &format!("reset-{index}"),
            account,
            &format!("user{index}@example.com"),
            requested,
        );
        queued.push(send(&client, request).await);
    }
    let records: HashMap<String, serde_json::Value> = {
        for notification in &queued {
            wait_for(
                &client,
                &notification.id,
                Duration::from_secs(20),
                is(NotificationState::Sent),
            )
            .await;
        }
        smtp.records()
            .into_iter()
            .map(|record| (record["message_id"].as_str().unwrap().to_owned(), record))
            .collect()
    };
    for ((requested, rendered, subject_word, greeting), notification) in cases.iter().zip(&queued) {
        assert_eq!(notification.locale, *rendered, "{requested:?}");
        let record = &records[&message_id(notification)];
        let at = format!("locale {requested:?}");
        assert_eq!(record["content_type"], "multipart/alternative", "{at}");
        assert_eq!(
            record["rcpt_tos"],
            serde_json::json!([notification.recipient]),
            "{at}"
        );
        assert_eq!(record["auto_submitted"], "auto-generated", "{at}");
        let subject = record["subject"].as_str().unwrap();
        assert!(subject.contains(subject_word), "{at}: {subject}");
        assert!(subject.contains("Acme Corp"), "{at}: {subject}");
        let text = record["text"].as_str().expect("a text/plain part");
        assert!(text.contains(greeting), "{at}: {text}");
        assert!(text.contains(RESET_URL), "{at}: the link in the text part");
        assert!(text.contains("2026-11-25 15:30 UTC"), "{at}: {text}");
        assert!(text.contains("Acme Corp"), "{at}: the account's name");
        let html = record["html"].as_str().expect("a text/html part");
        assert!(
            html.contains(&format!("<html lang=\"{rendered}\">")),
            "{at}"
        );
        assert!(html.contains(greeting), "{at}: {html}");
        let links: Vec<&str> = record["html_links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|link| link.as_str().unwrap())
            .collect();
        assert!(links.contains(&RESET_URL), "{at}: {links:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_transport_writes_one_eml_per_notification() {
    let mail = tempfile::tempdir().unwrap();
    let settings = notification_settings(&format!("file://{}", mail.path().display()));
    let Some(server) = notification_server(Backend::Sqlite, settings, Vec::new()).await else {
        return;
    };
    let client = client(&server).await;
    let queued = send(
        &client,
        welcome_request("r-1", Uuid::new_v4(), "grace@example.com"),
    )
    .await;
    assert_eq!(state(&queued), NotificationState::Queued);
    let sent = wait_for(
        &client,
        &queued.id,
        Duration::from_secs(20),
        is(NotificationState::Sent),
    )
    .await;
    let eml = std::fs::read_to_string(mail.path().join(format!("{}.eml", sent.id))).expect("eml");
    assert!(eml.contains(&format!("Message-ID: {}", message_id(&sent))));
    assert!(eml.contains("Subject: Welcome to Acme Corp"));
    assert!(eml.contains("To: grace@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_emails_over_three_instances_are_each_delivered_exactly_once() {
    const EMAILS: usize = 1000;
    let Some(smtp) = SmtpServer::start(&[]).await else {
        return;
    };
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let database = Arc::new(database);
    let mut instances = Vec::new();
    for _ in 0..3 {
        let common = test_settings(Service::Notification, &database.url);
        instances.push(
            TestServer::start_notification(
                common,
                notification_settings(&smtp.url()),
                database.clone(),
                Vec::new(),
            )
            .await,
        );
    }
    let mut clients = Vec::new();
    for instance in &instances {
        clients.push(client(instance).await);
    }
    let account = Uuid::new_v4();
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..EMAILS)
        .map(|index| {
            let client = clients[index % clients.len()].clone();
            let request = welcome_request(
                &format!("bulk-{index}"),
                account,
                &format!("user{index}@example.com"),
            );
            async move { send(&client, request).await.id }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), EMAILS);
    eprintln!("{EMAILS} SendEmail calls took {:?}", started.elapsed());

    let client = clients[0].clone();
    loop {
        let all = by_id(&client, account).await;
        let sent = all
            .values()
            .filter(|notification| state(notification) == NotificationState::Sent)
            .count();
        if sent == EMAILS {
            assert!(all.values().all(|notification| notification.attempts == 1));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "only {sent} of {EMAILS} sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("all {EMAILS} delivered after {:?}", started.elapsed());

    let deliveries = smtp.deliveries();
    let expected: HashSet<String> = ids.iter().map(|id| format!("<{id}@roster.test>")).collect();
    assert_eq!(deliveries.len(), EMAILS);
    assert_eq!(deliveries.keys().cloned().collect::<HashSet<_>>(), expected);
    let duplicates: Vec<_> = deliveries
        .iter()
        .filter(|(_, count)| **count != 1)
        .collect();
    assert!(
        duplicates.is_empty(),
        "delivered more than once: {duplicates:?}"
    );

    // The instances shared the work: the attempt history names their workers.
    use roster_notification::store::attempt;
    use sea_orm::EntityTrait;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let attempts = attempt::Entity::find().all(&db).await.unwrap();
    assert_eq!(attempts.len(), EMAILS);
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for attempt in &attempts {
        let instance = attempt.worker.split('/').next().unwrap_or_default();
        *per_instance.entry(instance.to_owned()).or_insert(0) += 1;
    }
    eprintln!("deliveries per instance: {per_instance:?}");
    assert!(per_instance.len() >= 2, "{per_instance:?}");
    let _ = db.close().await;
}

async fn cancels_racing_the_workers_never_leave_an_email_both_sent_and_cancelled(backend: Backend) {
    let Some((smtp, _server, client)) = delivering(backend).await else {
        return;
    };
    let account = Uuid::new_v4();
    let mut ids = Vec::new();
    for index in 0..40 {
        ids.push(
            send(
                &client,
                welcome_request(&format!("r-{index}"), account, "grace@example.com"),
            )
            .await
            .id,
        );
    }
    // Each cancel races the workers that are claiming and sending the same emails.
    let answers: Vec<_> = futures::stream::iter(ids.iter().map(|id| {
        let client = client.clone();
        async move {
            (
                id.clone(),
                cancel(&client, id, &format!("cancel-{id}")).await,
            )
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await;

    let mut cancelled = HashSet::new();
    for (id, answer) in &answers {
        match answer {
            Ok(notification) => {
                assert_eq!(state(notification), NotificationState::Cancelled);
                cancelled.insert(id.clone());
            }
            Err(refusal) => assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}"),
        }
    }
    for id in &ids {
        let expected = if cancelled.contains(id) {
            NotificationState::Cancelled
        } else {
            NotificationState::Sent
        };
        wait_for(&client, id, Duration::from_secs(20), is(expected)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = smtp.deliveries();
    for id in &ids {
        let delivered = deliveries.get(&format!("<{id}@roster.test>")).copied();
        if cancelled.contains(id) {
            assert_eq!(delivered, None, "{id} was cancelled and sent");
        } else {
            assert_eq!(delivered, Some(1), "{id}");
        }
    }
}

/// Fifty concurrent calls with one request id: each is answered as the one that applied the
/// action, none is refused, and the action is applied once.
async fn concurrent_twins_of_a_cancel_or_a_retry_all_get_its_answer(backend: Backend) {
    const TWINS: usize = 50;
    let account = Uuid::new_v4();

    // Cancel: no workers, so the email waits.
    let Some((_mail, server, cancels)) = without_workers(backend).await else {
        return;
    };
    let waiting = send(&cancels, welcome_request("r-1", account, "ada@example.com")).await;
    let answers = futures::future::join_all(
        (0..TWINS).map(|_| cancel(&cancels, &waiting.id, "cancel-twins")),
    )
    .await;
    let cancelled = get(&cancels, &waiting.id).await;
    assert_eq!(state(&cancelled), NotificationState::Cancelled);
    for answer in answers {
        assert_eq!(answer.expect("every twin is answered"), cancelled);
    }
    let metrics = server.metrics_addr();
    assert_eq!(
        roster_tests::metric::<u64>(metrics, "roster_notification_cancellations_total").await,
        Some(1)
    );
    drop(server);

    // Retry: a FAILED email, queued again once whatever the number of twins.
    let Some(smtp) = SmtpServer::start(&["--tempfail", "grace@example.com"]).await else {
        return;
    };
    let settings = roster_notification::Settings {
        max_attempts: 1,
        ..notification_settings(&smtp.url())
    };
    let Some(server) = notification_server(backend, settings, Vec::new()).await else {
        return;
    };
    let retries = client(&server).await;
    let failed = failed_welcome(&retries, "r-2", account).await;
    assert_eq!(failed.attempts, 1);
    let answers =
        futures::future::join_all((0..TWINS).map(|_| retry(&retries, &failed.id, "retry-twins")))
            .await;
    for answer in answers {
        assert_eq!(answer.expect("every twin is answered").id, failed.id);
    }
    // The one retry's budget is one attempt, refused again: FAILED after exactly two.
    let failed_again = wait_for(
        &retries,
        &failed.id,
        Duration::from_secs(20),
        |notification| {
            state(notification) == NotificationState::Failed && notification.attempts > 1
        },
    )
    .await;
    assert_eq!(failed_again.attempts, 2);
    let metrics = server.metrics_addr();
    assert_eq!(
        roster_tests::metric::<u64>(metrics, "roster_notification_retries_total").await,
        Some(1)
    );
}

/// PostgreSQL's address in `url` (`host:port`), for a proxy in front of it.
fn database_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

/// The database goes away between an email's sending and the record of its attempt, for
/// longer than a few tries: the worker keeps trying while its lease lasts, so the email ends
/// SENT after its one attempt and goes out once — not again after the lease ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_sent_during_a_database_outage_is_recorded_once_it_ends() {
    let hold = tempfile::tempdir().unwrap();
    let hold_file = hold.path().join("hold");
    std::fs::write(&hold_file, b"").unwrap();
    let held = hold.path().join("hold.held");
    let Some(smtp) = SmtpServer::start(&["--hold-while", hold_file.to_str().unwrap()]).await else {
        return;
    };
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let upstream = database_address(&database.url);
    let proxy = roster_tests::proxy::Proxy::start(upstream.clone()).await;
    let proxied = database.url.replacen(&upstream, &proxy.addr.to_string(), 1);
    let server = TestServer::start_notification(
        test_settings(Service::Notification, &proxied),
        notification_settings(&smtp.url()),
        Arc::new(database),
        Vec::new(),
    )
    .await;
    let notifications = client(&server).await;
    let queued = send(
        &notifications,
        welcome_request("r-1", Uuid::new_v4(), "ada@example.com"),
    )
    .await;

    // The email is claimed and sent; the mail server holds its reply to the data.
    let start = Instant::now();
    while !held.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set(false);
    std::fs::remove_file(&hold_file).unwrap();
    let start = Instant::now();
    while smtp.records().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Longer than the tries of before (about 2 s), far shorter than the lease (120 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set(true);

    let start = Instant::now();
    let sent = loop {
        // The first calls after the outage may meet a connection it broke.
        if let Ok(response) = notifications
            .get_notification(GetNotificationRequest {
                notification_id: queued.id.clone(),
            })
            .await
        {
            let notification = response.notification.expect("a notification");
            if state(&notification) == NotificationState::Sent {
                break notification;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not recorded after the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sent.attempts, 1);
    assert_eq!(smtp.records().len(), 1);
    let metrics = server.metrics_addr();
    assert_eq!(
        roster_tests::metric::<u64>(metrics, "roster_notification_attempts_unrecorded_total").await,
        Some(0)
    );
}
