//! `roster --json` for every command, as a script sees it: the real binary against real
//! services (identity, bulk-import and notification, in this process, on SQLite). Each command's
//! stdout parses as JSON, holds every field of its response message by its `.proto` name, and
//! decodes back into that message (prost-reflect, the contract's descriptors, unknown fields
//! refused), equal to what the server answers when asked directly. The commands are read from
//! the binary's own command tree, so a new one that is not covered here fails the test.
//!
//! Beside it: a repeated `import submit` reports the import as it is now, not the first answer
//! replayed; and `import` failures, a stream's included, name the method and the request and
//! trace ids like every other command's.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};
use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as imports;
use roster_proto::notification::v1 as notification;
use roster_runtime::Service;
use roster_tests::clients::{Identity, Notifications};
use roster_tests::imports::people_csv;
use roster_tests::{
    ADMIN_KEY, Backend, ImportSuite, TestDatabase, TestServer, notification_settings, test_settings,
};
use serde_json::Value;

use crate::common::{Following, Run};

/// Commands that print no response message: they run servers, or work offline.
const NOT_CALLS: [&str; 3] = ["dev", "serve", "migrate"];

/// A notification service on a fresh SQLite database whose mail server refuses connections
/// (every attempt fails temporarily, the next one comes a minute later, `max_attempts` of them
/// fail the email), and the id of an email of `account` queued there once it is in `state`.
async fn undeliverable(
    account: &str,
    max_attempts: u32,
    state: notification::NotificationState,
) -> (TestServer, String) {
    let database = Arc::new(
        TestDatabase::create(Backend::Sqlite)
            .await
            .expect("SQLite is always available"),
    );
    let settings = roster_notification::Settings {
        max_attempts,
        retry_base_millis: 60_000,
        retry_max_millis: 60_000,
        ..notification_settings("smtp://127.0.0.1:1")
    };
    let server = TestServer::start_notification(
        test_settings(Service::Notification, &database.url),
        settings,
        database,
        Vec::new(),
    )
    .await;
    let client = Notifications::new(server.channel().await, ADMIN_KEY);
    let id = client
        .send_email(notification::SendEmailRequest {
            request_id: "undeliverable-1".to_owned(),
            account_id: account.to_owned(),
            recipient: "ada@json.example".to_owned(),
            template: "welcome".to_owned(),
            locale: "en".to_owned(),
            variables: [
                ("first_name".to_owned(), "Ada".to_owned()),
                ("username".to_owned(), "ada@json.example".to_owned()),
            ]
            .into(),
            account_display_name: "Json Ltd".to_owned(),
        })
        .await
        .expect("SendEmail")
        .notification
        .expect("a notification")
        .id;
    let start = std::time::Instant::now();
    loop {
        let current = client
            .get_notification(notification::GetNotificationRequest {
                notification_id: id.clone(),
            })
            .await
            .expect("GetNotification")
            .notification
            .expect("a notification");
        if current.state == state as i32 {
            return (server, id);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not {state:?}: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The services a run talks to.
struct Suite {
    imports: ImportSuite,
    notification: TestServer,
}

impl Suite {
    async fn start() -> Suite {
        Suite {
            imports: ImportSuite::start(Backend::Sqlite)
                .await
                .expect("SQLite is always available"),
            notification: TestServer::spawn(Service::Notification, Backend::Sqlite)
                .await
                .expect("SQLite is always available"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .args(args)
            .env("ROSTER_KEY", ADMIN_KEY)
            .env(
                "ROSTER_IDENTITY_ADDR",
                self.imports.identity.addr.to_string(),
            )
            .env(
                "ROSTER_BULK_IMPORT_ADDR",
                self.imports.imports.addr.to_string(),
            )
            .env(
                "ROSTER_NOTIFICATION_ADDR",
                self.notification.addr.to_string(),
            )
            .env_remove("ROSTER_TIMEOUT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `roster args…`, feeding `stdin`.
    async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = self.command(args);
        let stdin = stdin.to_owned();
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("roster starts");
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(stdin.as_bytes())
                .expect("stdin written");
            child.wait_with_output().expect("roster runs")
        })
        .await
        .expect("the blocking task completes");
        Run::from(output)
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "").await
    }
}

/// Every leaf command of the binary, as words (`["accounts", "policy", "get"]`), read from the
/// `Commands:` section of each level's `--help`.
fn leaf_commands(path: &[String]) -> Vec<Vec<String>> {
    let output = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(path)
        .arg("--help")
        .env_remove("ROSTER_KEY")
        .output()
        .expect("roster --help runs");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let children: Vec<String> = help
        .lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    if children.is_empty() {
        return vec![path.to_vec()];
    }
    children
        .into_iter()
        .flat_map(|child| {
            let mut longer = path.to_vec();
            longer.push(child);
            leaf_commands(&longer)
        })
        .collect()
}

fn descriptors() -> DescriptorPool {
    DescriptorPool::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("the contract's descriptors")
}

/// Asserts that `json` names every field of `descriptor` that has no presence (and, within
/// the messages it holds, theirs), by its `.proto` name: nothing is left out for holding its
/// default.
fn assert_every_field(descriptor: &MessageDescriptor, json: &Value, at: &str) {
    if descriptor.full_name().starts_with("google.protobuf.") {
        return;
    }
    let object = json
        .as_object()
        .unwrap_or_else(|| panic!("{at} is an object: {json}"));
    for field in descriptor.fields() {
        let name = field.name();
        let value = object.get(name);
        if !field.supports_presence() {
            assert!(value.is_some(), "{at}.{name} is missing: {json}");
        }
        let (Some(value), Kind::Message(inner)) = (value, field.kind()) else {
            continue;
        };
        if field.is_map() {
            continue;
        }
        let path = format!("{at}.{name}");
        match value.as_array() {
            Some(items) if field.is_list() => {
                for item in items {
                    assert_every_field(&inner, item, &path);
                }
            }
            _ => assert_every_field(&inner, value, &path),
        }
    }
}

/// What a run printed, as the response message `M`: every field is there, nothing else is, and
/// it decodes.
fn decode<M: prost::Message + prost::Name + Default>(run: &Run) -> M {
    let json = run.json();
    let descriptor = descriptors()
        .get_message_by_name(&M::full_name())
        .unwrap_or_else(|| panic!("no descriptor for {}", M::full_name()));
    assert_every_field(&descriptor, &json, &M::full_name());
    let message = DynamicMessage::deserialize(descriptor, &json).unwrap_or_else(|error| {
        panic!(
            "stdout is not a {} ({error}):\n{}",
            M::full_name(),
            run.stdout
        )
    });
    message.transcode_to::<M>().expect("transcodes")
}

/// Covers one command: runs `roster --json args…` and records the command as covered.
struct Coverage {
    covered: BTreeSet<String>,
}

impl Coverage {
    /// Runs `roster --json <command> args…`.
    async fn run(&mut self, suite: &Suite, command: &str, args: &[&str]) -> Run {
        self.run_with_stdin(suite, command, args, "").await
    }

    async fn run_with_stdin(
        &mut self,
        suite: &Suite,
        command: &str,
        args: &[&str],
        stdin: &str,
    ) -> Run {
        self.covered.insert(command.to_owned());
        let mut all = vec!["--json"];
        all.extend(command.split(' '));
        all.extend_from_slice(args);
        suite.run_with_stdin(&all, stdin).await.ok()
    }

    /// Starts `roster --json <command> args…`, which runs until it is killed.
    fn follow(&mut self, suite: &Suite, command: &str, args: &[&str]) -> Following {
        self.covered.insert(command.to_owned());
        let mut all = vec!["--json"];
        all.extend(command.split(' '));
        all.extend_from_slice(args);
        Following::spawn(suite.command(&all))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_prints_its_response_message_as_json() {
    let suite = Suite::start().await;
    let identity = suite.imports.identity.channel().await;
    let mut coverage = Coverage {
        covered: BTreeSet::new(),
    };

    // accounts
    let created: id::CreateAccountResponse = decode(
        &coverage
            .run(&suite, "accounts create", &["--name", "Json Ltd"])
            .await,
    );
    let account = created.account.expect("an account");
    let account_id = account.id.clone();
    let got: id::GetAccountResponse =
        decode(&coverage.run(&suite, "accounts get", &[&account_id]).await);
    let direct = Identity::new(identity.clone(), ADMIN_KEY)
        .get_account(id::GetAccountRequest {
            id: account_id.clone(),
        })
        .await
        .expect("GetAccount");
    assert_eq!(got, direct);
    assert_eq!(
        got.account.as_ref().map(|a| a.extension_min_length),
        Some(2)
    );
    let listed: id::ListAccountsResponse =
        decode(&coverage.run(&suite, "accounts list", &["--all"]).await);
    assert!(listed.accounts.contains(&account));
    let policy: id::GetPasswordPolicyResponse = decode(
        &coverage
            .run(&suite, "accounts policy get", &[&account_id])
            .await,
    );
    let direct = Identity::new(identity.clone(), ADMIN_KEY)
        .get_password_policy(id::GetPasswordPolicyRequest {
            account_id: account_id.clone(),
        })
        .await
        .expect("GetPasswordPolicy");
    assert_eq!(policy, direct);
    let updated: id::UpdatePasswordPolicyResponse = decode(
        &coverage
            .run(
                &suite,
                "accounts policy set",
                &[&account_id, "--min-length", "14"],
            )
            .await,
    );
    assert_eq!(updated.policy.map(|p| p.min_length), Some(14));
    let created: id::CreateScimTokenResponse = decode(
        &coverage
            .run(
                &suite,
                "accounts scim-token create",
                &[&account_id, "--name", "Json IdP"],
            )
            .await,
    );
    assert!(created.secret.starts_with("rscim_"));
    let token = created.token.expect("a token");
    let listed: id::ListScimTokensResponse = decode(
        &coverage
            .run(&suite, "accounts scim-token list", &[&account_id])
            .await,
    );
    assert_eq!(listed.tokens, std::slice::from_ref(&token));
    let revoked: id::RevokeScimTokenResponse = decode(
        &coverage
            .run(
                &suite,
                "accounts scim-token revoke",
                &[&account_id, &token.id],
            )
            .await,
    );
    assert!(revoked.token.is_some_and(|t| t.revoke_time.is_some()));

    // profiles
    let created: id::CreateProfileResponse = decode(
        &coverage
            .run(
                &suite,
                "profiles create",
                &[
                    "--account",
                    &account_id,
                    "--first-name",
                    "Ada",
                    "--last-name",
                    "Lovelace",
                    "--email",
                    "ada@json.example",
                ],
            )
            .await,
    );
    let profile = created.profile.expect("a profile");
    let got: id::GetProfileResponse =
        decode(&coverage.run(&suite, "profiles get", &[&profile.id]).await);
    let direct = Identity::new(identity.clone(), ADMIN_KEY)
        .get_profile(id::GetProfileRequest {
            id: profile.id.clone(),
        })
        .await
        .expect("GetProfile");
    assert_eq!(got, direct);
    let listed: id::ListProfilesResponse = decode(
        &coverage
            .run(&suite, "profiles list", &["--account", &account_id])
            .await,
    );
    assert_eq!(listed.profiles, vec![profile.clone()]);
    let updated: id::UpdateProfileResponse = decode(
        &coverage
            .run(
                &suite,
                "profiles update",
                &[&profile.id, "--set", "job_title=Countess"],
            )
            .await,
    );
    assert_eq!(
        updated.profile.map(|p| p.job_title).as_deref(),
        Some("Countess")
    );

    // events, once the log has numbered the six changes above
    let direct = loop {
        let direct = Identity::new(identity.clone(), ADMIN_KEY)
            .list_events(id::ListEventsRequest {
                account_id: account_id.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("ListEvents");
        if direct.events.len() >= 6 {
            break direct;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let listed: id::ListEventsResponse = decode(
        &coverage
            .run(&suite, "events list", &["--account", &account_id])
            .await,
    );
    assert_eq!(listed, direct);
    let watch = coverage.follow(
        &suite,
        "events watch",
        &["--account", &account_id, "--from", "0"],
    );
    let first = watch.lines(1).await.remove(0);
    watch.kill();
    let first: id::Event = decode(&Run {
        success: true,
        stdout: first,
        stderr: String::new(),
    });
    assert_eq!(Some(&first), direct.events.last());

    // usernames and passwords
    let checked: id::CheckUsernameResponse = decode(
        &coverage
            .run(&suite, "usernames check", &["ADA@json.example"])
            .await,
    );
    assert!(!checked.available);
    assert_eq!(checked.canonical, "ada@json.example");
    let requirements: id::GetPasswordRequirementsResponse = decode(
        &coverage
            .run(&suite, "passwords requirements", &[&account_id])
            .await,
    );
    let direct = Identity::new(identity.clone(), ADMIN_KEY)
        .get_password_requirements(id::GetPasswordRequirementsRequest {
            account_id: account_id.clone(),
        })
        .await
        .expect("GetPasswordRequirements");
    assert_eq!(requirements, direct);
    let checked: id::CheckPasswordResponse = decode(
        &coverage
            .run_with_stdin(
                &suite,
                "passwords check",
                &["--account", &account_id],
                "short\n",
            )
            .await,
    );
    assert!(!checked.acceptable && !checked.violations.is_empty());
    let reset: id::SendPasswordResetResponse = decode(
        &coverage
            .run(
                &suite,
                "passwords reset",
                &[&profile.id, "--yes", "--email", "ada@json.example"],
            )
            .await,
    );
    assert_eq!(reset.profile_id, profile.id);
    let verified: id::VerifyPasswordResponse = decode(
        &coverage
            .run_with_stdin(
                &suite,
                "passwords verify",
                &["--username", "ada@json.example"],
                "not-her-password\n",
            )
            .await,
    );
    assert!(!verified.verified);
    let state: id::GetSignInStateResponse = decode(
        &coverage
            .run(&suite, "passwords signin-state", &[&profile.id])
            .await,
    );
    assert_eq!(state.failures, 1);
    let unlocked: id::ClearSignInThrottleResponse = decode(
        &coverage
            .run(&suite, "passwords unlock", &[&profile.id])
            .await,
    );
    assert!(!unlocked.unlocked);
    assert_eq!(unlocked.failures_cleared, 1);

    // notifications
    let sent: notification::SendEmailResponse = decode(
        &coverage
            .run(
                &suite,
                "notifications send",
                &[
                    "--account",
                    &account_id,
                    "--to",
                    "ada@json.example",
                    "--template",
                    "welcome",
                    "--var",
                    "first_name=Ada",
                    "--var",
                    "username=ada@json.example",
                ],
            )
            .await,
    );
    let notification_id = sent.notification.expect("a notification").id;
    let watched: notification::GetNotificationResponse = decode(
        &coverage
            .run(
                &suite,
                "notifications watch",
                &[&notification_id, "--interval", "100ms"],
            )
            .await,
    );
    assert_eq!(
        watched.notification.as_ref().map(|n| n.state),
        Some(notification::NotificationState::Sent as i32)
    );
    let got: notification::GetNotificationResponse = decode(
        &coverage
            .run(&suite, "notifications get", &[&notification_id])
            .await,
    );
    let direct = Notifications::new(suite.notification.channel().await, ADMIN_KEY)
        .get_notification(notification::GetNotificationRequest {
            notification_id: notification_id.clone(),
        })
        .await
        .expect("GetNotification");
    assert_eq!(got, direct);
    let listed: notification::ListNotificationsResponse = decode(
        &coverage
            .run(&suite, "notifications list", &["--account", &account_id])
            .await,
    );
    assert_eq!(
        listed.notifications,
        vec![direct.notification.expect("one")]
    );

    // Emails whose mail server is unreachable: with one attempt allowed an email fails at once
    // and can be retried; with two it waits a minute for its second and can be cancelled.
    let (failing, failed) =
        undeliverable(&account_id, 1, notification::NotificationState::Failed).await;
    let failing_addr = failing.addr.to_string();
    let retried: notification::RetryNotificationResponse = decode(
        &coverage
            .run(
                &suite,
                "notifications retry",
                &[&failed, "--notification-addr", &failing_addr],
            )
            .await,
    );
    assert_eq!(retried.notification.map(|n| n.id), Some(failed));
    let (stalled, waiting) =
        undeliverable(&account_id, 2, notification::NotificationState::Retrying).await;
    let stalled_addr = stalled.addr.to_string();
    let cancelled: notification::CancelNotificationResponse = decode(
        &coverage
            .run(
                &suite,
                "notifications cancel",
                &[&waiting, "--notification-addr", &stalled_addr],
            )
            .await,
    );
    assert_eq!(
        cancelled.notification.map(|n| n.state),
        Some(notification::NotificationState::Cancelled as i32)
    );

    // imports
    let template: imports::DownloadTemplateResponse = decode(
        &coverage
            .run(&suite, "import template", &["--account", &account_id])
            .await,
    );
    let template = String::from_utf8(template.chunk).expect("a UTF-8 template");
    assert!(template.contains("ada@json.example"), "{template}");
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("people.csv");
    std::fs::write(&file, people_csv("json", 3)).expect("CSV written");
    let file = file.to_str().expect("a UTF-8 path");
    let uploaded: imports::UploadImportResponse = decode(
        &coverage
            .run(&suite, "import upload", &[file, "--account", &account_id])
            .await,
    );
    let import = uploaded.import.expect("an import");
    assert_eq!(import.state, imports::ImportState::Validated as i32);
    assert_eq!(import.create_count, 3);
    let submitted: imports::GetImportResponse = decode(
        &coverage
            .run(&suite, "import submit", &[&import.id, "--watch"])
            .await,
    );
    assert_eq!(
        submitted.import.as_ref().map(|i| i.state),
        Some(imports::ImportState::Completed as i32)
    );
    let shown: imports::GetImportResponse =
        decode(&coverage.run(&suite, "import show", &[&import.id]).await);
    assert_eq!(shown.import.as_ref().map(|i| i.applied_count), Some(3));
    assert_eq!(
        shown.import.as_ref().map(|i| i.encoding.as_str()),
        Some("UTF-8")
    );
    let rows: imports::ListImportRowsResponse = decode(
        &coverage
            .run(&suite, "import rows", &[&import.id, "--all"])
            .await,
    );
    assert_eq!(
        rows.rows
            .iter()
            .map(|row| row.row_number)
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(rows.rows.iter().all(|row| {
        row.action == imports::ImportRowAction::Create as i32
            && row.outcome == imports::ImportRowOutcome::Applied as i32
            && !row.profile_id.is_empty()
    }));
    // The same two in text, as an operator reads them.
    let shown = suite.run(&["import", "show", &import.id]).await.ok().stdout;
    assert!(
        shown.contains("is COMPLETED") && shown.contains("read as UTF-8 (detected), delimiter ','"),
        "{shown}"
    );
    let listed = suite.run(&["import", "rows", &import.id]).await.ok().stdout;
    assert_eq!(listed.matches(" create ").count(), 3, "{listed}");
    assert!(listed.starts_with("row 2 create "), "{listed}");
    assert!(listed.contains("(applied)"), "{listed}");
    let errors = suite
        .run(&["import", "rows", &import.id, "--filter", "errors"])
        .await
        .ok()
        .stdout;
    assert_eq!(errors.trim(), "No rows.");
    let report: imports::DownloadReportResponse =
        decode(&coverage.run(&suite, "import report", &[&import.id]).await);
    assert!(!report.chunk.is_empty());
    let other = dir.path().join("more-people.csv");
    std::fs::write(&other, people_csv("json-more", 2)).expect("CSV written");
    let other = other.to_str().expect("a UTF-8 path");
    let second: imports::UploadImportResponse = decode(
        &suite
            .run(&[
                "--json",
                "import",
                "upload",
                other,
                "--account",
                &account_id,
            ])
            .await
            .ok(),
    );
    let second = second.import.expect("an import");
    let cancelled: imports::CancelImportResponse =
        decode(&coverage.run(&suite, "import cancel", &[&second.id]).await);
    assert_eq!(
        cancelled.import.map(|i| i.state),
        Some(imports::ImportState::Cancelled as i32)
    );
    let listed: imports::ListImportsResponse = decode(
        &coverage
            .run(&suite, "import list", &["--account", &account_id])
            .await,
    );
    assert_eq!(listed.imports.len(), 2);

    // Offline commands print JSON too, though no response message.
    let made = coverage
        .run(
            &suite,
            "keys new",
            &["--name", "json", "--scopes", "admin", "--accounts", "*"],
        )
        .await
        .json();
    let key = made["key"].as_str().expect("a key").to_owned();
    let hashed = coverage
        .run_with_stdin(&suite, "keys hash", &[], &format!("{key}\n"))
        .await
        .json();
    assert_eq!(hashed["sha256"], made["sha256"]);

    // Deleted last: the profile above is used throughout.
    let deleted: id::DeleteProfileResponse = decode(
        &coverage
            .run(&suite, "profiles delete", &[&profile.id])
            .await,
    );
    assert!(deleted.profile.is_some_and(|p| p.delete_time.is_some()));
    let undeleted: id::UndeleteProfileResponse = decode(
        &coverage
            .run(&suite, "profiles undelete", &[&profile.id])
            .await,
    );
    assert!(undeleted.profile.is_some_and(|p| p.delete_time.is_none()));

    // An account of its own to delete and bring back.
    let leaving: id::CreateAccountResponse = decode(
        &coverage
            .run(&suite, "accounts create", &["--name", "Leaving Ltd"])
            .await,
    );
    let leaving = leaving.account.expect("an account").id;
    let deleted: id::DeleteAccountResponse =
        decode(&coverage.run(&suite, "accounts delete", &[&leaving]).await);
    let deleted = deleted.account.expect("the deleted account");
    assert!(deleted.delete_time.is_some() && deleted.purge_time.is_some());
    let undeleted: id::UndeleteAccountResponse =
        decode(&coverage.run(&suite, "accounts undelete", &[&leaving]).await);
    assert!(undeleted.account.is_some_and(|a| a.delete_time.is_none()));

    let every: BTreeSet<String> = leaf_commands(&[])
        .into_iter()
        .map(|words| words.join(" "))
        .filter(|command| !NOT_CALLS.contains(&command.as_str()))
        .collect();
    assert!(every.len() > 20, "the command tree was read: {every:?}");
    assert_eq!(
        every, coverage.covered,
        "every command is run with --json here (or listed in NOT_CALLS)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_submit_reports_the_import_as_it_is_now() {
    let suite = Suite::start().await;
    let account = suite.imports.account("Resubmit Ltd").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("people.csv");
    std::fs::write(&file, people_csv("resubmit", 2)).expect("CSV written");
    let uploaded: imports::UploadImportResponse = decode(
        &suite
            .run(&[
                "--json",
                "import",
                "upload",
                file.to_str().expect("a UTF-8 path"),
                "--account",
                &account,
            ])
            .await
            .ok(),
    );
    let import_id = uploaded.import.expect("an import").id;

    suite.run(&["import", "submit", &import_id]).await.ok();
    suite
        .imports
        .import_client()
        .await
        .wait_for_state(
            &import_id,
            &[imports::ImportState::Completed],
            Duration::from_secs(60),
        )
        .await;

    // The same command again: the same request id, so the server does nothing twice; what is
    // reported is the import now, not the APPLYING of the first answer.
    let again: imports::GetImportResponse = decode(
        &suite
            .run(&["--json", "import", "submit", &import_id])
            .await
            .ok(),
    );
    let import = again.import.expect("an import");
    assert_eq!(import.state, imports::ImportState::Completed as i32);
    assert_eq!(import.applied_count, 2);
    let text = suite.run(&["import", "submit", &import_id]).await.ok();
    assert_eq!(
        text.stdout.trim(),
        format!("import {import_id} is COMPLETED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_failures_name_the_method_and_the_ids_like_every_command() {
    let suite = Suite::start().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (args, method) in [
        (
            vec!["--json", "import", "cancel", "not-an-id"],
            "roster.imports.v1.ImportService/CancelImport",
        ),
        (
            vec!["--json", "import", "report", unknown.as_str()],
            "roster.imports.v1.ImportService/DownloadReport",
        ),
        (
            vec!["--json", "import", "submit", unknown.as_str()],
            "roster.imports.v1.ImportService/SubmitImport",
        ),
        (
            vec!["--json", "accounts", "get", unknown.as_str()],
            "roster.identity.v1.AccountService/GetAccount",
        ),
    ] {
        let run = suite.run(&args).await.failed();
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        let json = run.error_json();
        let error = &json["error"];
        assert_eq!(error["method"], method, "{args:?}: {error}");
        assert!(error["code"].is_string(), "{args:?}: {error}");
        for id in ["request_id", "trace_id"] {
            assert!(
                error[id].as_str().is_some_and(|id| !id.is_empty()),
                "{args:?}: {id} in {error}"
            );
        }
        assert_eq!(
            error["trace_id"].as_str().map(str::len),
            Some(32),
            "{args:?}: a W3C trace id: {error}"
        );
        let details = error["details"].as_array().expect("details");
        assert!(
            details.iter().any(|detail| detail["@type"]
                == "type.googleapis.com/google.rpc.ErrorInfo"
                && detail["reason"] == error["reason"]),
            "{args:?}: the ErrorInfo among the details: {error}"
        );

        let text = suite.run(&args[1..]).await.failed();
        assert!(text.stderr.contains(method), "{args:?}: {}", text.stderr);
        assert!(
            text.stderr.contains("  request id ") && text.stderr.contains(", trace id "),
            "{args:?}: {}",
            text.stderr
        );
    }

    // A table of accounts names their extension bounds.
    let account = suite.imports.account("Bounds Ltd").await;
    let shown = suite.run(&["accounts", "get", &account]).await.ok();
    assert!(
        shown.stdout.contains("extension digits: 2–8"),
        "{}",
        shown.stdout
    );
}
