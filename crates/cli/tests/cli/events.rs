//! `roster events` as an operator runs it, against identity on SQLite and PostgreSQL: the audit
//! log listed as a table and as JSON, narrowed by filters, bad flag values refused by name; a
//! watch keeping its position in a cursor file, killed and started again, that prints every
//! event exactly once across both runs, in order; and a watch that outlives a restart of the
//! server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use roster_proto::identity::v1 as pb;
use roster_runtime::Service;
use roster_tests::clients::Identity;
use roster_tests::{
    ADMIN_KEY, Backend, TestDatabase, TestServer, both_backends, identity_settings, test_settings,
};
use serde_json::Value;

use crate::common::{Following, Run};

/// Identity with heartbeats every second, so that a quiet watch saves its position soon.
struct Audited {
    server: TestServer,
    identity: Identity,
}

impl Audited {
    async fn start(backend: Backend) -> Option<Audited> {
        let database = Arc::new(TestDatabase::create(backend).await?);
        let mut settings = test_settings(Service::Identity, &database.url);
        // An address of its own, so that its port is still free when the server comes back on
        // it (see `restart`).
        settings.listen_addr = SocketAddr::from(([127, 0, 0, 2], 0));
        let server = TestServer::start_with(
            Service::Identity,
            settings,
            heartbeats(),
            database,
            Vec::new(),
        )
        .await;
        let identity = Identity::connect(&server).await;
        Some(Audited { server, identity })
    }

    /// Stops the server and starts it again on the same address and database. The address is
    /// 127.0.0.2: on 127.0.0.1 the freed port could be taken meanwhile by any of the suite's
    /// outgoing connections (to PostgreSQL, say), whose source ports come from the same range.
    async fn restart(&mut self) {
        self.server.stop().await;
        let mut settings = self.server.settings.clone();
        settings.listen_addr = self.server.addr;
        self.server = TestServer::start_with(
            Service::Identity,
            settings,
            heartbeats(),
            self.server.database.clone(),
            Vec::new(),
        )
        .await;
        self.identity = Identity::connect(&self.server).await;
    }

    /// `roster args…` with the admin key, against this identity.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .args(args)
            .env("ROSTER_KEY", ADMIN_KEY)
            .env("ROSTER_IDENTITY_ADDR", self.server.addr.to_string())
            .env_remove("ROSTER_TIMEOUT");
        command
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut command = self.command(args);
        let output = tokio::task::spawn_blocking(move || command.output().expect("roster runs"))
            .await
            .expect("the blocking task completes");
        Run::from(output)
    }

    /// The events of `account` (every account when empty) once the log has numbered `count`
    /// of them: numbering follows the commit by a moment.
    async fn numbered(&self, account: &str, count: usize) -> Vec<pb::Event> {
        for _ in 0..200 {
            let events = self.identity.all_events(account).await;
            if events.len() >= count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fewer than {count} events numbered after 5 s");
    }

    /// Creates a profile and returns its id.
    async fn person(&self, account: &str, name: &str) -> String {
        let email = format!("{}@acme.example", name.to_lowercase());
        self.identity.person(account, name, "Test", &email).await.id
    }
}

fn heartbeats() -> roster_identity::Settings {
    roster_identity::Settings {
        events_heartbeat_seconds: 1,
        ..identity_settings()
    }
}

/// The lines of a table without their column padding.
fn rows(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn sequences(events: &Value) -> Vec<i64> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("an array of events: {events}"))
        .iter()
        .map(|event| event["sequence"].as_i64().expect("a sequence"))
        .collect()
}

async fn events_are_listed_as_a_table_and_as_json(backend: Backend) {
    let Some(audited) = Audited::start(backend).await else {
        return;
    };
    let acme = audited.identity.account("Acme").await.id;
    let other = audited.identity.account("Other").await.id;
    let ada = audited.person(&acme, "Ada").await;
    audited.person(&other, "Bob").await;
    audited
        .identity
        .update_profile(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                id: ada.clone(),
                job_title: "Countess".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["job_title".into()],
            }),
            ..Default::default()
        })
        .await
        .expect("profile updated");
    audited.numbered("", 5).await;

    // A table, newest first, each change as `field: old → new`.
    let table = audited
        .run(&["events", "list", "--account", &acme])
        .await
        .ok();
    let lines = rows(&table.stdout);
    assert_eq!(
        lines[0], "SEQUENCE TIME TYPE SUBJECT ACTOR SOURCE CHANGES",
        "{}",
        table.stdout
    );
    assert_eq!(lines.len(), 4, "{}", table.stdout);
    assert!(
        lines[1].contains(&format!(
            "roster.profile.updated {ada} test-admin grpc job_title: — → \"Countess\""
        )),
        "{}",
        table.stdout
    );
    assert!(
        lines[2].contains("roster.profile.created") && lines[2].contains("first_name: — → \"Ada\""),
        "{}",
        table.stdout
    );
    assert!(
        lines[3].contains(&format!("roster.account.created {acme} test-admin grpc")),
        "{}",
        table.stdout
    );

    // JSON: the events as ListEvents answers them, the same through the CLI as asked directly.
    let listed = audited
        .run(&["--json", "events", "list", "--account", &acme])
        .await
        .ok()
        .json();
    let direct = audited
        .identity
        .list_events(pb::ListEventsRequest {
            account_id: acme.clone(),
            ..Default::default()
        })
        .await
        .expect("ListEvents");
    assert_eq!(
        sequences(&listed["events"]),
        direct
            .events
            .iter()
            .map(|event| event.sequence)
            .collect::<Vec<_>>()
    );
    assert_eq!(listed["events"][0]["type"], "roster.profile.updated");
    assert_eq!(listed["events"][0]["subject_type"], "profile");
    assert_eq!(listed["events"][0]["changes"][0]["field"], "job_title");
    assert_eq!(listed["events"][0]["changes"][0]["new_value"], "Countess");
    assert_eq!(listed["next_page_token"], "");

    // Filters: a type, a profile, an actor, a time range; no account means every account.
    let created = audited
        .run(&[
            "--json",
            "events",
            "list",
            "--type",
            "roster.profile.created",
        ])
        .await
        .ok()
        .json();
    let accounts: Vec<&str> = created["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["account_id"].as_str().expect("an account"))
        .collect();
    assert_eq!(accounts, [other.as_str(), acme.as_str()]);
    let about_ada = audited
        .run(&["--json", "events", "list", "--profile", &ada])
        .await
        .ok()
        .json();
    assert_eq!(sequences(&about_ada["events"]).len(), 2, "{about_ada}");
    for (args, expected) in [
        (vec!["--actor", "test-admin", "--since", "1h"], 5),
        (vec!["--actor", "someone-else"], 0),
        (vec!["--until", "1h"], 0),
        (vec!["--since", "2000-01-01T00:00:00Z"], 5),
    ] {
        let mut all = vec!["--json", "events", "list"];
        all.extend(args.iter().copied());
        let listed = audited.run(&all).await.ok().json();
        assert_eq!(
            sequences(&listed["events"]).len(),
            expected,
            "{args:?}: {listed}"
        );
    }
    let nothing = audited
        .run(&["events", "list", "--actor", "someone-else"])
        .await
        .ok();
    assert_eq!(nothing.stdout.trim(), "No events.");

    // --limit stops there, with the token to go on from; the two listings make the whole log.
    let first = audited
        .run(&["--json", "events", "list", "--limit", "4"])
        .await
        .ok()
        .json();
    let token = first["next_page_token"].as_str().expect("a token");
    assert!(!token.is_empty(), "{first}");
    let rest = audited
        .run(&["--json", "events", "list", "--page-token", token])
        .await
        .ok()
        .json();
    let mut both = sequences(&first["events"]);
    both.extend(sequences(&rest["events"]));
    assert_eq!(both, [5, 4, 3, 2, 1]);
    let hinted = audited.run(&["events", "list", "--limit", "4"]).await.ok();
    assert!(
        hinted.stderr.contains(&format!("--page-token {token}")),
        "{}",
        hinted.stderr
    );

    // A bad value is refused before any call, naming its flag.
    for (args, flag) in [
        (vec!["events", "list", "--since", "3x"], "--since"),
        (vec!["events", "list", "--until", "last week"], "--until"),
        (
            vec!["events", "list", "--type", "roster.profile.renamed"],
            "--type",
        ),
        (vec!["events", "watch", "--from", "yesterday"], "--from"),
        (
            vec!["events", "watch", "--type", "profile.created"],
            "--type",
        ),
    ] {
        let refused = audited.run(&args).await.failed();
        assert!(
            refused.stderr.contains(&format!("for '{flag} ")),
            "{args:?}: {}",
            refused.stderr
        );
    }
}

/// The sequence a cursor file holds, once it holds `at_least` (a watch saves it just after
/// printing the event).
async fn saved_cursor(path: &Path, at_least: i64) -> i64 {
    for _ in 0..200 {
        let saved = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok());
        if let Some(sequence) = saved.filter(|sequence| *sequence >= at_least) {
            return sequence;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} holds no sequence of {at_least} or more", path.display());
}

/// The events a `--json` watch printed.
fn watched<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    lines
        .into_iter()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("a JSON event per line ({error}): {line}"))
        })
        .collect()
}

/// Waits until a `--json` watch has printed `count` events and saved the last one's sequence
/// in `cursor`.
async fn printed_and_saved(watch: &Following, count: usize, cursor: &Path) {
    let printed = watched(watch.lines(count).await.iter().map(String::as_str));
    let last = printed[count - 1]["sequence"].as_i64().expect("a sequence");
    saved_cursor(cursor, last).await;
}

async fn a_watch_restarted_with_its_cursor_file_prints_every_event_once(backend: Backend) {
    let Some(audited) = Audited::start(backend).await else {
        return;
    };
    let acme = audited.identity.account("Acme").await.id;
    audited.numbered(&acme, 1).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let cursor = dir.path().join("events.cursor");
    let cursor_arg = cursor.to_str().expect("a UTF-8 path");
    let watch = [
        "--json",
        "events",
        "watch",
        "--account",
        &acme,
        "--cursor-file",
        cursor_arg,
    ];

    // From now: the first heartbeat saves where the log ends.
    let first = Following::spawn(audited.command(&watch));
    assert_eq!(saved_cursor(&cursor, 1).await, 1);
    let mut made = Vec::new();
    for name in ["Ada", "Bea", "Cy"] {
        made.push(audited.person(&acme, name).await);
    }
    printed_and_saved(&first, 3, &cursor).await;
    let first = first.kill();

    // Changes while no watch runs, then the same command again.
    audited
        .identity
        .delete_profile(pb::DeleteProfileRequest {
            id: made[0].clone(),
            ..Default::default()
        })
        .await
        .expect("profile deleted");
    for name in ["Dee", "Eve"] {
        made.push(audited.person(&acme, name).await);
    }
    let second = Following::spawn(audited.command(&watch));
    second.lines(3).await;
    audited.person(&acme, "Fay").await;
    printed_and_saved(&second, 4, &cursor).await;
    let second = second.kill();

    let seen = watched(first.stdout.lines().chain(second.stdout.lines()));
    let log = audited.identity.all_events(&acme).await;
    assert_eq!(
        seen.iter()
            .map(|event| event["sequence"].as_i64().expect("a sequence"))
            .collect::<Vec<_>>(),
        log[1..]
            .iter()
            .map(|event| event.sequence)
            .collect::<Vec<_>>(),
        "every event after the account's creation, once, in order"
    );
    let types: Vec<&str> = seen
        .iter()
        .map(|event| event["type"].as_str().expect("a type"))
        .collect();
    assert_eq!(
        types,
        [
            "roster.profile.created",
            "roster.profile.created",
            "roster.profile.created",
            "roster.profile.deleted",
            "roster.profile.created",
            "roster.profile.created",
            "roster.profile.created",
        ]
    );
    assert_eq!(seen[3]["subject_id"], made[0].as_str());
    assert_eq!(
        std::fs::read_to_string(&cursor).expect("the cursor file"),
        format!("{}\n", log.last().expect("events").sequence)
    );
}

async fn a_watch_outlives_a_restart_of_the_server(backend: Backend) {
    let Some(mut audited) = Audited::start(backend).await else {
        return;
    };
    let acme = audited.identity.account("Acme").await.id;
    let watch =
        Following::spawn(audited.command(&["events", "watch", "--account", &acme, "--from", "0"]));
    let lines = rows(&watch.lines(2).await.join("\n"));
    assert_eq!(lines[0], "SEQUENCE TIME TYPE SUBJECT ACTOR SOURCE CHANGES");
    assert!(lines[1].starts_with("1 "), "{lines:?}");

    // The server stops (the watch is told UNAVAILABLE) and comes back on the same address.
    audited.restart().await;
    let ada = audited.person(&acme, "Ada").await;
    watch.lines(3).await;
    let watch = watch.kill();
    let lines = rows(&watch.stdout);
    assert_eq!(lines.len(), 3, "nothing twice: {lines:?}");
    assert!(
        lines[2].starts_with("2 ") && lines[2].contains(&format!("roster.profile.created {ada}")),
        "{lines:?}"
    );
    assert!(
        watch.stderr.contains("UNAVAILABLE")
            && watch.stderr.contains("watching again from cursor 1"),
        "{}",
        watch.stderr
    );
}

both_backends!(
    events_are_listed_as_a_table_and_as_json,
    a_watch_restarted_with_its_cursor_file_prints_every_event_once,
    a_watch_outlives_a_restart_of_the_server,
);
