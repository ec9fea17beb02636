//! Welcome emails, end to end on SQLite and PostgreSQL: identity writes them to its outbox in
//! the transaction that creates the profile, the relay hands them to the notification service,
//! and the mail drop receives each one once. CreateProfile, BatchUpsertProfiles and a bulk
//! import each send one to every profile they create and none to a profile they update, and a
//! repeated request sends nothing more.

use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_proto::imports::v1 as im;
use roster_runtime::Service;
use roster_tests::clients::Identity;
use roster_tests::imports::ImportSuite;
use roster_tests::{
    ADMIN_KEY, Backend, MailDrop, TestDatabase, TestServer, both_backends, test_settings,
};
use sea_orm::{ConnectionTrait, Database, Statement};
use std::sync::Arc;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);

/// Identity whose outbox relay delivers to `mail`.
async fn identity(backend: Backend, mail: &MailDrop) -> Option<TestServer> {
    let database = Arc::new(TestDatabase::create(backend).await?);
    Some(
        TestServer::start_with(
            Service::Identity,
            test_settings(Service::Identity, &database.url),
            mail.identity_settings(),
            database,
            Vec::new(),
        )
        .await,
    )
}

fn person(
    account_id: &str,
    request_id: &str,
    email: &str,
    welcome: bool,
) -> pb::CreateProfileRequest {
    pb::CreateProfileRequest {
        request_id: request_id.to_owned(),
        account_id: account_id.to_owned(),
        first_name: "Grace".to_owned(),
        last_name: "Hopper".to_owned(),
        email: email.to_owned(),
        send_welcome_email: welcome,
        ..Default::default()
    }
}

fn upsert(key: &str, id: &str, email: &str) -> pb::ProfileUpsert {
    pb::ProfileUpsert {
        idempotency_key: key.to_owned(),
        id: id.to_owned(),
        first_name: "Batch".to_owned(),
        last_name: "Person".to_owned(),
        email: email.to_owned(),
        ..Default::default()
    }
}

/// The recipients of `messages`, sorted.
fn recipients(messages: &[String]) -> Vec<String> {
    let mut to: Vec<String> = messages
        .iter()
        .map(|message| {
            message
                .lines()
                .find_map(|line| line.strip_prefix("To: "))
                .unwrap_or_else(|| panic!("no To header in {message}"))
                .to_owned()
        })
        .collect();
    to.sort();
    to
}

/// How many emails identity ever wrote to its outbox (delivered ones included).
async fn outbox_rows(identity: &TestServer) -> i64 {
    let db = Database::connect(&identity.database.url).await.unwrap();
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM outbox",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

/// Waits for `count` messages, then a little longer to see that no more arrive.
async fn exactly(mail: &MailDrop, count: usize) -> Vec<String> {
    let messages = mail.wait_for(count, WAIT).await;
    assert_eq!(messages.len(), count, "{messages:#?}");
    // The relay polls every 500 ms: a second email would be there by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let messages = mail.messages();
    assert_eq!(messages.len(), count, "{messages:#?}");
    messages
}

async fn create_profile_sends_one_welcome_email_when_asked(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let Some(identity) = identity(backend, &mail).await else {
        return;
    };
    let channel: Channel = identity.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Welcome Ltd")
        .await
        .id;
    let profiles = Identity::new(channel, ADMIN_KEY);
    let request = person(&account, "welcome-1", "grace@example.com", true);
    let first = profiles.create_profile(request.clone()).await.unwrap();
    // The same request again answers the first result and writes no second email.
    let again = profiles.create_profile(request).await.unwrap();
    assert_eq!(first, again);
    // Without the flag, no email.
    profiles
        .create_profile(person(&account, "quiet-1", "quiet@example.com", false))
        .await
        .unwrap();

    assert_eq!(outbox_rows(&identity).await, 1);
    let messages = exactly(&mail, 1).await;
    assert_eq!(recipients(&messages), ["grace@example.com"]);
    assert!(
        messages[0].contains("Subject: Welcome to Welcome Ltd"),
        "{}",
        messages[0]
    );
}

async fn batch_upsert_welcomes_the_profiles_it_creates_and_not_those_it_updates(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let Some(identity) = identity(backend, &mail).await else {
        return;
    };
    let channel = identity.channel().await;
    let account = Identity::new(channel.clone(), ADMIN_KEY)
        .account("Batch Ltd")
        .await
        .id;
    let profiles = Identity::new(channel, ADMIN_KEY);
    let existing = profiles
        .create_profile(person(&account, "", "existing@example.com", false))
        .await
        .unwrap()
        .profile
        .unwrap();
    let request = pb::BatchUpsertProfilesRequest {
        account_id: account.clone(),
        items: vec![
            upsert("new-1", "", "new1@example.com"),
            upsert("new-2", "", "new2@example.com"),
            upsert("update", &existing.id, "existing@example.com"),
            // Fails alone (invalid email): no profile, no email.
            upsert("bad", "", "not an email"),
        ],
        send_welcome_emails: true,
        ..Default::default()
    };
    let results = profiles.upserted(request.clone()).await;
    let outcomes: Vec<i32> = results.iter().map(|result| result.outcome).collect();
    assert_eq!(
        outcomes,
        [
            pb::UpsertOutcome::Created as i32,
            pb::UpsertOutcome::Created as i32,
            pb::UpsertOutcome::Updated as i32,
            pb::UpsertOutcome::Failed as i32,
        ]
    );
    // Replayed from the idempotency keys: nothing is written or sent again.
    let replayed = profiles.upserted(request).await;
    assert_eq!(replayed[..3], results[..3]);

    assert_eq!(outbox_rows(&identity).await, 2);
    let messages = exactly(&mail, 2).await;
    assert_eq!(
        recipients(&messages),
        ["new1@example.com", "new2@example.com"]
    );
}

async fn an_import_submitted_with_welcome_emails_welcomes_each_user_it_creates(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let Some(suite) =
        ImportSuite::start_with_identity(backend, mail.identity_settings(), |_| {}, Vec::new())
            .await
    else {
        return;
    };
    let account = suite.account("Imported Ltd").await;
    let existing = suite
        .identity_client()
        .await
        .create_profile(person(&account, "", "kept@example.com", false))
        .await
        .unwrap()
        .profile
        .unwrap();
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address\r\n\
             ,Ada,Lovelace,ada@example.com\r\n\
             ,Alan,Turing,alan@example.com\r\n\
             {},Kept,Renamed,kept@example.com\r\n",
        existing.id
    );
    let imports = suite.import_client().await;
    let validated = imports
        .validated_csv(&account, file.into_bytes(), WAIT)
        .await;
    let submitted = imports.submit(&validated.id, true).await;
    assert!(submitted.send_welcome_emails);
    let done = imports
        .wait_for_state(&validated.id, &[im::ImportState::Completed], WAIT)
        .await;
    assert_eq!((done.applied_count, done.failed_count), (3, 0), "{done:?}");

    assert_eq!(outbox_rows(&suite.identity).await, 2);
    let messages = exactly(&mail, 2).await;
    assert_eq!(
        recipients(&messages),
        ["ada@example.com", "alan@example.com"]
    );
}

async fn an_import_submitted_without_welcome_emails_sends_none(backend: Backend) {
    let Some(mail) = MailDrop::start(backend).await else {
        return;
    };
    let Some(suite) =
        ImportSuite::start_with_identity(backend, mail.identity_settings(), |_| {}, Vec::new())
            .await
    else {
        return;
    };
    let account = suite.account("Quiet Ltd").await;
    let imports = suite.import_client().await;
    let file = b"First Name,Last Name,Email Address\r\nAda,Lovelace,ada@example.com\r\n".to_vec();
    let validated = imports.validated_csv(&account, file, WAIT).await;
    imports.submit(&validated.id, false).await;
    let done = imports
        .wait_for_state(&validated.id, &[im::ImportState::Completed], WAIT)
        .await;
    assert!(!done.send_welcome_emails);
    assert_eq!(done.applied_count, 1);
    assert_eq!(outbox_rows(&suite.identity).await, 0);
    exactly(&mail, 0).await;
}

both_backends!(
    create_profile_sends_one_welcome_email_when_asked,
    batch_upsert_welcomes_the_profiles_it_creates_and_not_those_it_updates,
    an_import_submitted_with_welcome_emails_welcomes_each_user_it_creates,
    an_import_submitted_without_welcome_emails_sends_none
);
