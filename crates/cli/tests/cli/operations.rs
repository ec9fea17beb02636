//! What an operator meets running Roster, with the real `roster` binary: a server whose schema
//! `roster migrate` has not made yet is NOT_SERVING until it has; a misspelt configuration key
//! stops the service at start, naming it and the key meant; `roster … | head -1` ends quietly;
//! an error says each of its causes once.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_runtime::Service;
use roster_tests::clients::{Health, Identity};
use roster_tests::{ADMIN_KEY, Backend, TestDatabase, TestServer, both_backends, test_settings};
use sea_orm::{ConnectionTrait, Database};
use tonic_health::pb::health_check_response::ServingStatus;

/// `roster args…` with `env` (and no `RUST_LOG`, so the default filter applies), run to its end.
async fn roster(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("roster runs"))
        .await
        .expect("the blocking task completes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ROSTER_<SERVICE>__DATABASE_URL=url`.
fn database_env(service: Service, url: &str) -> Vec<(String, String)> {
    vec![(
        format!("{}DATABASE_URL", service.env_prefix()),
        url.to_owned(),
    )]
}

/// The health of `service` ("" for the server as a whole) on `server`.
async fn health(server: &TestServer, service: &str) -> ServingStatus {
    Health::connect(server)
        .await
        .check(service)
        .await
        .expect("health answers")
}

/// Waits until the server as a whole reports `wanted`, failing after 20 s.
async fn wait_for_health(server: &TestServer, wanted: ServingStatus) {
    let started = Instant::now();
    while health(server, "").await != wanted {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?} never became {wanted:?}",
            server.service
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The gRPC services `service` hosts.
fn hosted(service: Service) -> &'static [&'static str] {
    match service {
        Service::Identity => &[
            "roster.identity.v1.AccountService",
            "roster.identity.v1.ProfileService",
            "roster.identity.v1.CredentialService",
        ],
        Service::BulkImport => &["roster.imports.v1.ImportService"],
        Service::Notification => &["roster.notification.v1.NotificationService"],
    }
}

async fn a_server_on_an_unmigrated_database_is_not_serving_until_roster_migrate(backend: Backend) {
    for service in Service::ALL {
        let Some(database) = TestDatabase::create(backend).await else {
            return;
        };
        let database = Arc::new(database);
        let mut settings = test_settings(service, &database.url);
        settings.migrate_on_start = false;
        let server = TestServer::start(service, settings, database.clone(), Vec::new()).await;
        assert_eq!(
            health(&server, "").await,
            ServingStatus::NotServing,
            "{service:?}"
        );
        for name in hosted(service) {
            assert_eq!(
                health(&server, name).await,
                ServingStatus::NotServing,
                "{name}"
            );
        }

        let env = database_env(service, &database.url);
        let migrate = roster(&["migrate", service.name()], &env).await;
        let log = text(&migrate.stdout) + &text(&migrate.stderr);
        assert!(migrate.status.success(), "{log}");
        assert!(log.contains("migrations applied"), "{log}");
        wait_for_health(&server, ServingStatus::Serving).await;
        for name in hosted(service) {
            assert_eq!(
                health(&server, name).await,
                ServingStatus::Serving,
                "{name}"
            );
        }

        // Again: nothing to apply, and none of PostgreSQL's notices about what exists.
        let again = roster(&["migrate", service.name()], &env).await;
        let log = text(&again.stdout) + &text(&again.stderr);
        assert!(again.status.success(), "{log}");
        assert!(log.contains("schema is current"), "{log}");
        assert!(!log.contains("already exists"), "{log}");

        // A newer version migrated the database during a rolling upgrade: this one keeps
        // serving, and its `roster migrate` leaves the schema alone.
        let db = Database::connect(&database.url).await.unwrap();
        db.execute_unprepared(
            "INSERT INTO seaql_migrations (version, applied_at) \
                 VALUES ('m29990101_000000_from_a_newer_version', 0)",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            health(&server, "").await,
            ServingStatus::Serving,
            "{service:?}"
        );
        let ahead = roster(&["migrate", service.name()], &env).await;
        let log = text(&ahead.stdout) + &text(&ahead.stderr);
        assert!(ahead.status.success(), "{log}");
        assert!(log.contains("schema is ahead of this binary"), "{log}");
    }
}

async fn roster_accounts_list_piped_into_head_ends_quietly(backend: Backend) {
    let Some(identity) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let channel = identity.channel().await;
    // More than a pipe holds (64 KiB), so the writer is still writing when `head` leaves.
    let name = "A company whose name fills the column ".repeat(4);
    for batch in 0..20 {
        let mut creates = tokio::task::JoinSet::new();
        for n in 0..20 {
            let (channel, name) = (channel.clone(), format!("{name}{batch}-{n}"));
            creates.spawn(async move {
                Identity::new(channel.clone(), ADMIN_KEY)
                    .account(&name)
                    .await
                    .id
            });
        }
        creates.join_all().await;
    }
    let env = [
        ("ROSTER_KEY".to_owned(), ADMIN_KEY.to_owned()),
        ("ROSTER_IDENTITY_ADDR".to_owned(), identity.addr.to_string()),
    ];

    for list in ["accounts list", "accounts list --all --page-size 1000"] {
        let script =
            format!("\"$0\" {list} | head -1; echo \"roster exited ${{PIPESTATUS[0]}}\" >&2");
        let run = roster_in_shell(&script, &env).await;
        let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(
            stdout.starts_with("ID ") && stdout.contains("DISPLAY NAME"),
            "{stdout}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{stderr}"
        );
        let status = stderr
            .lines()
            .find_map(|line| line.strip_prefix("roster exited "))
            .expect("the exit status");
        assert!(["0", "141"].contains(&status), "{list}: {stderr}");
    }

    // The reader gone before the first line: the exit status of a process killed by SIGPIPE,
    // and not a word.
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .args(["accounts", "list"])
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("roster starts");
        drop(child.stdout.take());
        child.wait_with_output().expect("roster runs")
    })
    .await
    .unwrap();
    assert_eq!(run.status.code(), Some(141), "{}", text(&run.stderr));
    assert_eq!(text(&run.stderr), "");
}

both_backends!(
    a_server_on_an_unmigrated_database_is_not_serving_until_roster_migrate,
    roster_accounts_list_piped_into_head_ends_quietly
);

/// Runs `script` in bash, with the `roster` binary as `$0` and `env`.
async fn roster_in_shell(script: &str, env: &[(String, String)]) -> Output {
    let mut command = Command::new("bash");
    command
        .args(["-c", script, env!("CARGO_BIN_EXE_roster")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("bash runs"))
        .await
        .expect("the blocking task completes")
}

/// Waits for `child` to exit within 30 s, then returns what it printed.
fn exited(mut child: std::process::Child) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("child status").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("roster is still running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_configuration_key_stops_the_service_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/identity.db?mode=rwc", dir.path().display());
    let quiet = [
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("METRICS_ADDR", "off"),
        ("RESET_HTTP_ADDR", "off"),
        ("SCIM_ADDR", "off"),
    ];
    let serve = |extra: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .args(args)
            .current_dir(dir.path())
            .env("ROSTER_IDENTITY__DATABASE_URL", &database_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in quiet.iter().chain(extra) {
            command.env(format!("ROSTER_IDENTITY__{key}"), value);
        }
        exited(command.spawn().expect("roster starts"))
    };

    // In the environment, beside valid keys.
    let run = serve(
        &[("NOTIFICATON_URL", "http://127.0.0.1:9")],
        &["serve", "identity"],
    );
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "unknown configuration key ROSTER_IDENTITY__NOTIFICATON_URL: did you mean \
             ROSTER_IDENTITY__NOTIFICATION_URL?"
        ),
        "{stderr}"
    );

    // A nested key, and a service that does not exist.
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .args(["serve", "identity"])
        .current_dir(dir.path())
        .env("ROSTER_IDENTITY__HASHING__MEMRY_KIB", "65536")
        .env("ROSTER_IDENTIY__DATABASE_URL", &database_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = exited(command.spawn().expect("roster starts"));
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did you mean ROSTER_IDENTITY__HASHING__MEMORY_KIB?")
            && stderr.contains("did you mean ROSTER_IDENTITY__DATABASE_URL?"),
        "{stderr}"
    );

    // In the file: a key of a table, and a table.
    let file = dir.path().join("roster.toml");
    std::fs::write(
        &file,
        "[identity]\nlisten_adr = \"127.0.0.1:0\"\n\n[notifcation]\nworkers = 1\n",
    )
    .unwrap();
    let run = serve(
        &[],
        &["serve", "identity", "--config", file.to_str().unwrap()],
    );
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "unknown configuration key listen_adr in [identity] of {}: did you mean listen_addr?",
            file.display()
        )) && stderr.contains("did you mean [notification]?"),
        "{stderr}"
    );

    // `roster migrate` refuses too, instead of migrating the default database.
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .args(["migrate", "identity"])
        .current_dir(dir.path())
        .env("ROSTER_IDENTITY__DATABSE_URL", &database_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = exited(command.spawn().expect("roster starts"));
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did you mean ROSTER_IDENTITY__DATABASE_URL?"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("var").exists(),
        "the default database was made"
    );

    // A port where an address belongs says what an address looks like.
    let run = serve(&[("METRICS_ADDR", "9090")], &["serve", "identity"]);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ROSTER_IDENTITY__METRICS_ADDR")
            && stderr
                .contains("\"9090\" is a port, not an address: write IP:port, like 0.0.0.0:9090"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_says_its_cause_once() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let missing = format!("roster_missing_{}", uuid::Uuid::new_v4().simple());
    let (server, _) = database.url.rsplit_once('/').expect("a database URL");
    let url = format!("{server}/{missing}");
    let run = roster(
        &["migrate", "identity"],
        &database_env(Service::Identity, &url),
    )
    .await;
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    let cause = format!("database \"{missing}\" does not exist");
    assert_eq!(stderr.matches(&cause).count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("roster: cannot open the database: "),
        "{stderr}"
    );
}
