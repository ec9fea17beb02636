//! Fault injection: the suite as separate processes — two replicas of each service — on a
//! PostgreSQL of the test's own and a real SMTP server, under a mixed workload while processes
//! are killed with SIGKILL and restarted, PostgreSQL is restarted once and the SMTP server is
//! stopped for a while. Afterwards the invariants are checked by queries:
//!
//! - no two profiles hold one canonical username; no retired username was taken again;
//! - every acknowledged create exists;
//! - every import row was applied exactly once;
//! - every accepted email was delivered; one delivered twice (always under its one Message-ID,
//!   for the receiving side to drop) only when its first delivery came just before a fault
//!   that can cut off the SMTP reply or its record: a notification replica killed, the SMTP
//!   server stopped, or PostgreSQL down — the at-least-once window no SMTP sender can close;
//! - health went NOT_SERVING while the database was down and SERVING after, with no restart.
//!
//! `ROSTER_FAULT_SECONDS` sets the workload's duration (default 30; longer by hand).

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster_proto::identity::v1 as id;
use roster_proto::imports::v1 as imports;
use roster_tests::ADMIN_KEY;
use roster_tests::clients::{Health, Identity, Imports};
use roster_tests::smtp::SmtpServer;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Now, in seconds since the Unix epoch (the SMTP server's records use the same clock).
fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

/// A PostgreSQL server of this test's own, so restarting it disturbs no other test.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let dir = tempfile::Builder::new()
            .prefix("roster-faults-pg")
            .tempdir()
            .expect("temporary directory");
        let port = common::free_port();
        run(
            "chown",
            &["-R", "postgres:postgres", &dir.path().display().to_string()],
        );
        as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            &dir.path().join("data").display().to_string(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        let postgres = PrivatePostgres { dir, port };
        postgres.up();
        postgres
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            &self.dir.path().join("data").display().to_string(),
            "-o",
            &options,
            "-l",
            &self.dir.path().join("log").display().to_string(),
            "-w",
            "start",
        ]);
    }

    fn down(&self) {
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            &self.dir.path().join("data").display().to_string(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn create_database(&self, name: &str) {
        run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .expect("command runs");
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn as_postgres(args: &[&str]) {
    let mut all = vec!["-u", "postgres", "--"];
    all.extend_from_slice(args);
    run("runuser", &all);
}

/// One `roster serve <service>` process that the test can kill and start again.
struct Replica {
    service: &'static str,
    port: u16,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    child: Child,
}

impl Replica {
    fn start(
        service: &'static str,
        port: u16,
        env: Vec<(&'static str, String)>,
        logs: &Path,
    ) -> Replica {
        let log = logs.join(format!("{service}-{port}.log"));
        let child = spawn(service, &env, &log);
        Replica {
            service,
            port,
            env,
            log,
            child,
        }
    }

    fn kill_and_restart(&mut self) {
        common::signal(&self.child, "KILL");
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(300));
        self.child = spawn(self.service, &self.env, &self.log);
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The name this replica's health is asked under: its own gRPC service's, so that another
    /// server holding the port cannot answer for it.
    fn health_name(&self) -> &'static str {
        match self.service {
            "identity" => id::profile_service_server::SERVICE_NAME,
            "bulk-import" => imports::import_service_server::SERVICE_NAME,
            "notification" => {
                roster_proto::notification::v1::notification_service_server::SERVICE_NAME
            }
            other => panic!("no health name for {other}"),
        }
    }

    /// Waits until the replica is SERVING; a process that exits meanwhile (its port taken, say)
    /// fails the test at once, with its log.
    async fn wait_serving(&mut self, within: Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} on {} exited ({status}) before serving; log: {}",
                    self.service,
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if health(&self.url(), self.health_name()).await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "{} on {} did not become healthy within {within:?}; log: {}",
            self.service,
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(service: &str, env: &[(&'static str, String)], log: &Path) -> Child {
    let prefix = format!("ROSTER_{}__", service.replace('-', "_").to_uppercase());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command
        .args(["serve", service])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in env {
        command.env(format!("{prefix}{key}"), value);
    }
    command.spawn().expect("roster starts")
}

fn lazy_channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

async fn health(url: &str, name: &str) -> Option<ServingStatus> {
    let health = Health::new(lazy_channel(url));
    tokio::time::timeout(Duration::from_secs(2), health.check(name))
        .await
        .ok()?
        .ok()
}

async fn wait_health(url: &str, name: &str, wanted: ServingStatus, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if health(url, name).await == Some(wanted) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Repeats a call while the suite is unavailable (a replica being restarted).
async fn retry<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(value) => return value,
            Err(_) if started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(status) => panic!("gave up after a minute: {status:?}"),
        }
    }
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("a count")
}

/// A small deterministic pseudo-random sequence (the test needs no cryptographic quality).
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

#[derive(Default)]
struct Acknowledged {
    created: Vec<(String, String)>,
    deleted: HashSet<String>,
    resets: usize,
}

/// The suite as processes: two replicas of each service on the private PostgreSQL. Fields drop
/// in order: the replicas stop before their keys file and their database go.
struct Suite {
    replicas: Vec<Replica>,
    identity_urls: Vec<String>,
    import_urls: Vec<String>,
    _work: tempfile::TempDir,
    postgres: PrivatePostgres,
}

/// What the faults did, and what health said while PostgreSQL was down and after.
struct Faults {
    kills: usize,
    saw_not_serving: bool,
    saw_serving_again: bool,
    /// When a fault that can interrupt a delivery began and ended (seconds since the epoch).
    delivery_faults: Vec<(f64, f64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_keeps_its_invariants_under_faults() {
    let seconds: u64 = std::env::var("ROSTER_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let Some(mut smtp) = SmtpServer::start(&[]).await else {
        return;
    };
    let mut suite = start_the_suite_migrated_and_healthy(&smtp).await;
    let accounts = create_accounts(&suite).await;
    let import_rows = 400;
    let (import_id, importer) =
        submit_an_import_that_applies_while_processes_die(&suite, &accounts[0], import_rows).await;

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers = run_the_workload(&suite, &accounts, acknowledged.clone(), deadline);
    let faults = inject_faults(&mut suite, &mut smtp, seconds, deadline).await;
    for worker in workers {
        worker.await.expect("workload task");
    }
    health_followed_the_database_without_a_restart(&faults);

    let finished = settle(&suite, &importer, &import_id).await;
    let identity_db = Database::connect(suite.postgres.url("identity"))
        .await
        .unwrap();
    let notification_db = Database::connect(suite.postgres.url("notification"))
        .await
        .unwrap();
    the_outbox_and_the_email_queue_drain(&identity_db, &notification_db).await;
    one_profile_holds_each_canonical_username_and_none_is_reused(&identity_db).await;
    let (created, deleted, resets) = {
        let acknowledged = acknowledged.lock().unwrap();
        (
            acknowledged.created.clone(),
            acknowledged.deleted.len(),
            acknowledged.resets,
        )
    };
    every_acknowledged_create_exists(&identity_db, &created).await;
    every_import_row_is_applied_exactly_once(&identity_db, &finished, import_rows).await;
    let (sent, again) = every_accepted_email_is_delivered_and_twice_only_beside_a_fault(
        &smtp,
        &notification_db,
        &faults.delivery_faults,
        resets,
    )
    .await;
    eprintln!(
        "faults: {seconds} s, {} processes killed, PostgreSQL and SMTP restarted; \
         {} creates, {} deletes and {} resets acknowledged, {import_rows} rows imported, \
         {sent} emails delivered, {again} of them twice beside a fault",
        faults.kills,
        created.len(),
        deleted,
        resets
    );
}

/// A private PostgreSQL with a database per service, migrated by `roster migrate`, and two
/// replicas of each service on it, every one of them SERVING.
async fn start_the_suite_migrated_and_healthy(smtp: &SmtpServer) -> Suite {
    let postgres = PrivatePostgres::start();
    for name in ["identity", "imports", "notification"] {
        postgres.create_database(name);
    }
    let work = tempfile::tempdir().expect("work directory");
    let keys_file = work.path().join("keys.toml");
    common::write_admin_keys_file(&keys_file, ADMIN_KEY);
    let keys = keys_file.display().to_string();

    for (service, database) in [
        ("identity", "identity"),
        ("bulk-import", "imports"),
        ("notification", "notification"),
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["migrate", service])
            .env(
                format!(
                    "ROSTER_{}__DATABASE_URL",
                    service.replace('-', "_").to_uppercase()
                ),
                postgres.url(database),
            )
            .stdout(Stdio::null())
            .status()
            .expect("migrate runs");
        assert!(status.success(), "{service} migrations");
    }

    let common_env = |database: &str, port: u16| {
        vec![
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", postgres.url(database)),
            ("MIGRATE_ON_START", "false".to_owned()),
            ("KEYS_FILE", keys.clone()),
            ("DB_HEALTH_INTERVAL_SECONDS", "1".to_owned()),
            ("DB_MAX_CONNECTIONS", "8".to_owned()),
            ("SHUTDOWN_GRACE_SECONDS", "2".to_owned()),
        ]
    };
    let notification_ports = [common::free_port(), common::free_port()];
    let identity_ports = [common::free_port(), common::free_port()];
    let import_ports = [common::free_port(), common::free_port()];
    let mut replicas = Vec::new();
    for (n, port) in notification_ports.iter().enumerate() {
        let mut env = common_env("notification", *port);
        env.extend([
            ("MAIL_URL", smtp.url()),
            ("POLL_INTERVAL_MILLIS", "100".to_owned()),
            ("LEASE_SECONDS", "10".to_owned()),
            ("SMTP_TIMEOUT_SECONDS", "3".to_owned()),
            ("MAX_ATTEMPTS", "1000".to_owned()),
            ("RETRY_BASE_MILLIS", "200".to_owned()),
            ("RETRY_MAX_MILLIS", "1000".to_owned()),
            ("MESSAGE_ID_DOMAIN", format!("faults{n}.test")),
        ]);
        replicas.push(Replica::start("notification", *port, env, work.path()));
    }
    for (n, port) in identity_ports.iter().enumerate() {
        let mut env = common_env("identity", *port);
        env.extend([
            (
                "RESET_HTTP_ADDR",
                format!("127.0.0.1:{}", common::free_port()),
            ),
            ("SCIM_ADDR", "off".to_owned()),
            (
                "NOTIFICATION_URL",
                format!("http://127.0.0.1:{}", notification_ports[n]),
            ),
            ("NOTIFICATION_KEY", ADMIN_KEY.to_owned()),
            ("HASHING__MEMORY_KIB", "8192".to_owned()),
            ("HASHING__ITERATIONS", "1".to_owned()),
        ]);
        replicas.push(Replica::start("identity", *port, env, work.path()));
    }
    for (n, port) in import_ports.iter().enumerate() {
        let mut env = common_env("imports", *port);
        env.extend([
            (
                "IDENTITY_URL",
                format!("http://127.0.0.1:{}", identity_ports[n]),
            ),
            ("IDENTITY_KEY", ADMIN_KEY.to_owned()),
            ("LEASE_SECONDS", "3".to_owned()),
            ("POLL_INTERVAL_MILLIS", "200".to_owned()),
        ]);
        replicas.push(Replica::start("bulk-import", *port, env, work.path()));
    }
    for replica in &mut replicas {
        replica.wait_serving(Duration::from_secs(60)).await;
    }
    let urls = |ports: [u16; 2]| -> Vec<String> {
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    };
    Suite {
        identity_urls: urls(identity_ports),
        import_urls: urls(import_ports),
        postgres,
        replicas,
        _work: work,
    }
}

/// The two accounts the workload writes to.
async fn create_accounts(suite: &Suite) -> Vec<String> {
    let mut ids = Vec::new();
    for name in ["North", "South"] {
        let url = suite.identity_urls[0].clone();
        let account = retry(|| {
            let url = url.clone();
            async move {
                Identity::new(lazy_channel(&url), ADMIN_KEY)
                    .create_account(id::CreateAccountRequest {
                        request_id: format!("account-{name}"),
                        display_name: name.into(),
                        ..Default::default()
                    })
                    .await
            }
        })
        .await;
        ids.push(account.account.unwrap().id);
    }
    ids
}

/// The bulk import of `rows` people, validated and submitted up front so that it applies while
/// processes die; answers its id and a client of the other bulk-import replica.
async fn submit_an_import_that_applies_while_processes_die(
    suite: &Suite,
    account: &str,
    rows: usize,
) -> (String, Imports) {
    let url = suite.import_urls[0].clone();
    let import = retry(|| {
        let (url, account) = (url.clone(), account.to_owned());
        async move {
            Imports::new(lazy_channel(&url), ADMIN_KEY)
                .create_import(imports::CreateImportRequest {
                    request_id: "fault-import".into(),
                    account_id: account,
                    file_name: "people.csv".into(),
                    content: roster_tests::imports::people_csv("imported", rows),
                    encoding: String::new(),
                })
                .await
        }
    })
    .await
    .import
    .unwrap();
    let importer = Imports::new(lazy_channel(&suite.import_urls[1]), ADMIN_KEY);
    importer
        .wait_for_state(
            &import.id,
            &[imports::ImportState::Validated],
            Duration::from_secs(90),
        )
        .await;
    retry(|| {
        let importer = importer.clone();
        let id = import.id.clone();
        async move {
            importer
                .submit_import(imports::SubmitImportRequest {
                    import_id: id,
                    request_id: "fault-submit".into(),
                    send_welcome_emails: false,
                })
                .await
        }
    })
    .await;
    (import.id, importer)
}

/// The workload until `deadline`: creates with colliding usernames, renames, deletes and
/// resets, against either identity replica, each acknowledged call noted in `acknowledged`.
fn run_the_workload(
    suite: &Suite,
    accounts: &[String],
    acknowledged: Arc<Mutex<Acknowledged>>,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let acknowledged = acknowledged.clone();
        let identity_urls = suite.identity_urls.clone();
        let accounts = accounts.to_vec();
        workers.push(tokio::spawn(async move {
            let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (worker + 1));
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let identity = Identity::new(lazy_channel(&identity_urls[dice.next(2)]), ADMIN_KEY);
                let known: Vec<(String, String)> = acknowledged.lock().unwrap().created.clone();
                match dice.next(10) {
                    0..=5 => {
                        let username = format!("shared{}@faults.example", dice.next(300));
                        let result = identity
                            .create_profile(id::CreateProfileRequest {
                                request_id: format!("w{worker}-c{n}"),
                                account_id: accounts[dice.next(2)].clone(),
                                first_name: "Fay".into(),
                                last_name: "Ult".into(),
                                email: format!("w{worker}n{n}@faults.example"),
                                username,
                                ..Default::default()
                            })
                            .await;
                        if let Ok(response) = result {
                            let profile = response.profile.unwrap();
                            acknowledged
                                .lock()
                                .unwrap()
                                .created
                                .push((profile.id, profile.canonical_username));
                        }
                    }
                    6 | 7 if !known.is_empty() => {
                        let (profile_id, _) = known[dice.next(known.len())].clone();
                        let _ = identity
                            .update_profile(id::UpdateProfileRequest {
                                profile: Some(id::Profile {
                                    id: profile_id,
                                    username: format!("renamed{}@faults.example", dice.next(60)),
                                    ..Default::default()
                                }),
                                update_mask: Some(prost_types::FieldMask {
                                    paths: vec!["username".into()],
                                }),
                                request_id: format!("w{worker}-u{n}"),
                            })
                            .await;
                    }
                    8 if !known.is_empty() => {
                        let (profile_id, _) = known[dice.next(known.len())].clone();
                        if identity
                            .delete_profile(id::DeleteProfileRequest {
                                id: profile_id.clone(),
                                request_id: format!("w{worker}-d{n}"),
                                ..Default::default()
                            })
                            .await
                            .is_ok()
                        {
                            acknowledged.lock().unwrap().deleted.insert(profile_id);
                        }
                    }
                    _ if !known.is_empty() => {
                        let (profile_id, _) = known[dice.next(known.len())].clone();
                        // As an admin does: look the profile up, confirm its address, send.
                        let shown = identity
                            .get_profile(id::GetProfileRequest {
                                id: profile_id.clone(),
                            })
                            .await
                            .ok()
                            .and_then(|response| response.profile);
                        if let Some(shown) = shown
                            && identity
                                .send_password_reset(id::SendPasswordResetRequest {
                                    request_id: format!("w{worker}-r{n}"),
                                    profile_id,
                                    email: shown.email,
                                    etag: shown.etag,
                                })
                                .await
                                .is_ok()
                        {
                            acknowledged.lock().unwrap().resets += 1;
                        }
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    workers
}

/// The chaos until `deadline`: SIGKILL and restart random replicas; restart PostgreSQL once,
/// watching health on processes that are not restarted meanwhile; stop the SMTP server for a
/// while.
async fn inject_faults(
    suite: &mut Suite,
    smtp: &mut SmtpServer,
    seconds: u64,
    deadline: Instant,
) -> Faults {
    let mut dice = Dice(0x2545_F491_4F6C_DD1D);
    let mut faults = Faults {
        kills: 0,
        saw_not_serving: false,
        saw_serving_again: false,
        delivery_faults: Vec::new(),
    };
    let mut postgres_restarted = false;
    let mut smtp_stopped = false;
    let replicas = &mut suite.replicas;
    let started = Instant::now();
    while Instant::now() < deadline {
        let elapsed = started.elapsed().as_secs();
        if !postgres_restarted && elapsed >= seconds / 3 {
            postgres_restarted = true;
            let watched: Vec<(String, &str, u32)> = replicas
                .iter()
                .map(|r| (r.url(), r.health_name(), r.pid()))
                .collect();
            let down_at = epoch_seconds();
            suite.postgres.down();
            let mut all_down = true;
            for (url, name, _) in &watched {
                all_down &= wait_health(
                    url,
                    name,
                    ServingStatus::NotServing,
                    Duration::from_secs(15),
                )
                .await;
            }
            faults.saw_not_serving = all_down;
            tokio::time::sleep(Duration::from_secs(2)).await;
            suite.postgres.up();
            let mut all_up = true;
            for (url, name, _) in &watched {
                all_up &=
                    wait_health(url, name, ServingStatus::Serving, Duration::from_secs(30)).await;
            }
            let same_processes = watched
                .iter()
                .zip(replicas.iter())
                .all(|((_, _, pid), replica)| *pid == replica.pid());
            faults.saw_serving_again = all_up && same_processes;
            faults.delivery_faults.push((down_at, epoch_seconds()));
            continue;
        }
        if !smtp_stopped && elapsed >= seconds / 2 {
            smtp_stopped = true;
            let stopped_at = epoch_seconds();
            smtp.stop();
            tokio::time::sleep(Duration::from_secs(3)).await;
            smtp.restart().await;
            faults.delivery_faults.push((stopped_at, epoch_seconds()));
            continue;
        }
        let victim = dice.next(replicas.len());
        let killed_at = epoch_seconds();
        replicas[victim].kill_and_restart();
        if replicas[victim].service == "notification" {
            faults.delivery_faults.push((killed_at, epoch_seconds()));
        }
        faults.kills += 1;
        tokio::time::sleep(Duration::from_millis(1500 + dice.next(1500) as u64)).await;
    }
    faults
}

/// Health went NOT_SERVING on every replica while PostgreSQL was down, and SERVING again after
/// it came back, in the same processes.
fn health_followed_the_database_without_a_restart(faults: &Faults) {
    assert!(
        faults.saw_not_serving,
        "health went NOT_SERVING while PostgreSQL was down"
    );
    assert!(
        faults.saw_serving_again,
        "health came back to SERVING without a process restart"
    );
}

/// Every replica SERVING again and the import finished; answers the import as it ended.
async fn settle(suite: &Suite, importer: &Imports, import_id: &str) -> imports::Import {
    for replica in &suite.replicas {
        assert!(
            wait_health(
                &replica.url(),
                replica.health_name(),
                ServingStatus::Serving,
                Duration::from_secs(60)
            )
            .await
        );
    }
    importer
        .wait_for_state(
            import_id,
            &[
                imports::ImportState::Completed,
                imports::ImportState::CompletedWithErrors,
            ],
            Duration::from_secs(120),
        )
        .await
}

/// Identity's outbox and notification's queue empty within two minutes.
async fn the_outbox_and_the_email_queue_drain(
    identity_db: &DatabaseConnection,
    notification_db: &DatabaseConnection,
) {
    let settled = Instant::now();
    loop {
        let outbox = count(
            identity_db,
            "SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL",
        )
        .await;
        let queued = count(
            notification_db,
            "SELECT COUNT(*) AS n FROM notifications WHERE state <> 'SENT'",
        )
        .await;
        if outbox == 0 && queued == 0 {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(120),
            "emails stuck: outbox {outbox}, queue {queued}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One holder per canonical username; every holder registered it itself.
async fn one_profile_holds_each_canonical_username_and_none_is_reused(
    identity_db: &DatabaseConnection,
) {
    assert_eq!(
        count(
            identity_db,
            "SELECT COUNT(*) AS n FROM (SELECT canonical_username FROM profiles \
            WHERE status <> 'deleted' GROUP BY canonical_username HAVING COUNT(*) > 1) AS d"
        )
        .await,
        0,
        "two profiles hold one canonical username"
    );
    assert_eq!(
        count(
            identity_db,
            "SELECT COUNT(*) AS n FROM profiles p LEFT JOIN username_registry r \
            ON r.canonical = p.canonical_username WHERE r.profile_id IS DISTINCT FROM p.id"
        )
        .await,
        0,
        "a profile holds a username registered to another (a retired name was reused)"
    );
}

/// Every create the workload saw acknowledged is in identity's database.
async fn every_acknowledged_create_exists(
    identity_db: &DatabaseConnection,
    created: &[(String, String)],
) {
    assert!(!created.is_empty(), "the workload created profiles");
    let existing: HashSet<String> = identity_db
        .query_all_raw(Statement::from_string(
            identity_db.get_database_backend(),
            "SELECT CAST(id AS TEXT) AS id FROM profiles",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<String>("", "id").unwrap())
        .collect();
    for (profile_id, _) in created {
        assert!(
            existing.contains(profile_id),
            "acknowledged profile {profile_id} is missing"
        );
    }
}

/// The import completed, and each of its `rows` made exactly one profile.
async fn every_import_row_is_applied_exactly_once(
    identity_db: &DatabaseConnection,
    finished: &imports::Import,
    rows: usize,
) {
    assert_eq!(
        finished.state,
        imports::ImportState::Completed as i32,
        "{finished:?}"
    );
    assert_eq!(
        count(
            identity_db,
            "SELECT COUNT(*) AS n FROM profiles WHERE email LIKE 'imported%@example.com'"
        )
        .await,
        rows as i64,
        "every import row applied once"
    );
    assert_eq!(
        count(
            identity_db,
            "SELECT COUNT(*) AS n FROM (SELECT email FROM profiles WHERE email LIKE 'imported%' \
            GROUP BY email HAVING COUNT(*) > 1) AS d"
        )
        .await,
        0
    );
}

/// Every accepted email delivered; a second delivery only after a first one that a fault could
/// have cut off from its reply or its record. Answers how many were sent and how many of them
/// arrived twice.
async fn every_accepted_email_is_delivered_and_twice_only_beside_a_fault(
    smtp: &SmtpServer,
    notification_db: &DatabaseConnection,
    delivery_faults: &[(f64, f64)],
    resets: usize,
) -> (i64, usize) {
    let deliveries: HashMap<String, usize> = smtp.deliveries();
    let mut first_received: HashMap<String, f64> = HashMap::new();
    for record in smtp.records() {
        let id = record["message_id"].as_str().unwrap_or_default().to_owned();
        let at = record["received_at"].as_f64().expect("received_at");
        first_received
            .entry(id)
            .and_modify(|first| *first = first.min(at))
            .or_insert(at);
    }
    for (id, times) in deliveries.iter().filter(|(_, n)| **n > 1) {
        let first = first_received[id];
        // The SMTP timeout (3 s) bounds how long before a fault a cut-off delivery began.
        let explained = delivery_faults
            .iter()
            .any(|(start, end)| first >= start - 5.0 && first <= end + 1.0);
        assert!(
            explained,
            "{id} delivered {times} times, the first at {first:.1} with no fault near it: \
             {delivery_faults:?}"
        );
    }
    let sent = count(
        notification_db,
        "SELECT COUNT(*) AS n FROM notifications WHERE state = 'SENT'",
    )
    .await;
    assert!(sent as usize >= resets, "{sent} sent < {resets} accepted");
    assert_eq!(
        deliveries.len(),
        sent as usize,
        "every sent notification reached the SMTP server"
    );
    let again = deliveries.values().filter(|n| **n > 1).count();
    (sent, again)
}
