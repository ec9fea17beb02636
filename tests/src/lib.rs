//! Roster's test harness: starts any service in-process on an ephemeral port against a fresh
//! database — a SQLite file in a temporary directory, or a PostgreSQL database created for the
//! test on `ROSTER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and dropped afterwards. Tests talk to it with real gRPC clients over real sockets.
//!
//! A test whose outside requirement is missing (PostgreSQL unreachable, no aiosmtpd, no
//! chromedriver) cannot test anything; it says so through [`not_run`], which fails it under
//! `CI=true` and otherwise records its name and the reason for `scripts/test` to list in the
//! run's summary.

pub mod clients;
pub mod imports;
pub mod nats;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod scim;
pub mod smtp;

pub use imports::{ImportSuite, import_settings};
pub use raw::{RawCodec, raw_unary};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_runtime::auth::AccountAccess;
use roster_runtime::server::RunningServer;
use roster_runtime::settings::LogFormat;
use roster_runtime::{CommonSettings, KeyRing, Service, SharedKeyRing, Shutdown};
use sea_orm::{ConnectionTrait, Database};
use tonic::transport::Channel;

/// A port for a server that a test starts later — a separate process, or one that must not
/// listen yet: free now, never answered twice in one process, and taken below the kernel's
/// ephemeral range (`ip_local_port_range`, 32768–60999 by default). Inside that range any
/// outgoing connection or `bind(…:0)` of a test running beside this one can take the port
/// before the server binds it; the server then fails to start while the test talks to
/// whatever holds the port (a server of another service answers UNIMPLEMENTED).
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    const FIRST: u32 = 10_000;
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ephemeral_from > FIRST + 1_000 {
        let span = ephemeral_from - FIRST;
        // A start of this process's own, so that tests running beside it look elsewhere.
        let start = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        for step in 0..span {
            let port = (FIRST + ((start % u64::from(span)) as u32 + step) % span) as u16;
            if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    // No room below the ephemeral range: the kernel's choice is all there is.
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// The key with every scope on every account that each test server accepts.
pub const ADMIN_KEY: &str = "test-admin-key";

/// The name [`ADMIN_KEY`] is configured under: what the audit log records as its changes'
/// actor and caller.
pub const ADMIN_KEY_NAME: &str = "test-admin";

/// The database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database that disappears with this value.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_admin_url() -> String {
    std::env::var("ROSTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Says that the running test cannot test anything here, because of `reason` (what is missing
/// and how to provide it); the caller then returns at once.
///
/// Under `CI=true` this fails the test: CI provides everything. Otherwise the test passes
/// without testing, so this writes its name and the reason to the directory named by
/// `ROSTER_TEST_NOT_RUN` (set by `scripts/test`, which lists them after the run by name) and
/// prints the reason to standard error.
pub fn not_run(reason: &str) {
    assert!(!in_ci(), "{reason}");
    let test = current_test_name();
    eprintln!("NOT RUN: {test}: {reason}");
    if let Some(dir) = std::env::var_os("ROSTER_TEST_NOT_RUN") {
        let file = PathBuf::from(dir).join(test.replace(['/', ' '], "_"));
        std::fs::write(&file, format!("{test}\t{reason}\n"))
            .unwrap_or_else(|error| panic!("write {}: {error}", file.display()));
    }
}

/// The running test as nextest names it: `<binary> <path::in::binary>`. libtest runs each test
/// on a thread named after it, and tokio's test runtime drives the test body on that thread.
fn current_test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .map(|stem| match stem.rsplit_once('-') {
            // Cargo names test executables `<target>-<16 hex digits>`.
            Some((name, hash))
                if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                name.to_owned()
            }
            _ => stem,
        })
        .unwrap_or_else(|| "?".to_owned());
    let thread = std::thread::current();
    format!("{binary} {}", thread.name().unwrap_or("?"))
}

impl TestDatabase {
    /// Creates a fresh database, or `None` when PostgreSQL is wanted but unreachable outside CI.
    pub async fn create(backend: Backend) -> Option<TestDatabase> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}/roster.db?mode=rwc", dir.path().display());
                Some(TestDatabase {
                    url,
                    backend,
                    postgres: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                // A server that is not there is known in seconds, not after the pool's 30 s.
                let mut options = sea_orm::ConnectOptions::new(admin_url.clone());
                options
                    .acquire_timeout(Duration::from_secs(5))
                    .sqlx_logging(false);
                let admin = match Database::connect(options).await {
                    Ok(admin) => admin,
                    Err(error) => {
                        not_run(&format!(
                            "PostgreSQL at {admin_url} is unreachable ({error}); start it or set \
                             ROSTER_TEST_POSTGRES_URL"
                        ));
                        return None;
                    }
                };
                let name = format!("roster_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("CREATE DATABASE");
                let _ = admin.close().await;
                let mut url =
                    url::Url::parse(&admin_url).expect("ROSTER_TEST_POSTGRES_URL is a URL");
                url.set_path(&name);
                Some(TestDatabase {
                    url: url.to_string(),
                    backend,
                    postgres: Some((admin_url, name)),
                    _dir: None,
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee, so the cleanup gets a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A caller key for a test server.
#[derive(Clone, Debug)]
pub struct TestKey {
    pub key: String,
    pub scopes: Vec<&'static str>,
    pub accounts: AccountAccess,
}

impl TestKey {
    /// A key with `scopes` limited to `accounts`.
    pub fn limited(key: &str, scopes: &[&'static str], accounts: &[uuid::Uuid]) -> Self {
        Self {
            key: key.to_owned(),
            scopes: scopes.to_vec(),
            accounts: AccountAccess::Only(accounts.iter().copied().collect()),
        }
    }
}

/// Settings the harness starts services with; tests change fields before `start`.
pub fn test_settings(service: Service, database_url: &str) -> CommonSettings {
    CommonSettings {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: database_url.to_owned(),
        migrate_on_start: true,
        log_format: LogFormat::Pretty,
        shutdown_grace_seconds: 5,
        drain_seconds: 0,
        request_timeout_seconds: 30,
        concurrency_limit: 256,
        max_message_bytes: 4 * 1024 * 1024,
        max_header_list_bytes: 16 * 1024,
        keys_file: None,
        keys_reload_seconds: 1,
        db_health_interval_seconds: 1,
        db_max_connections: match service {
            // Many connections let concurrency tests reach PostgreSQL at once.
            _ if database_url.starts_with("postgres") => 60,
            _ => 8,
        },
        // Load tests push thousands of calls through one key; the limit has a test of its own.
        rate_limit_per_second: 0,
        rate_limit_burst: 0,
        // Every test server serves its metrics on a port of its own.
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        health_addr: None,
        tls_cert_file: None,
        tls_key_file: None,
        tls_client_ca_file: None,
    }
}

/// The settings of its own a service starts with besides the common ones; identity's are
/// [`TestServer::identity`].
// Made once per start and consumed by it: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum OwnSettings {
    Identity,
    BulkImport(roster_bulk_import::Settings),
    Notification(roster_notification::Settings),
}

impl OwnSettings {
    fn service(&self) -> Service {
        match self {
            OwnSettings::Identity => Service::Identity,
            OwnSettings::BulkImport(_) => Service::BulkImport,
            OwnSettings::Notification(_) => Service::Notification,
        }
    }
}

/// The keys a test server accepts: [`ADMIN_KEY`] and `keys`.
fn key_ring(keys: &[TestKey]) -> KeyRing {
    let mut ring = KeyRing::default();
    ring.insert_plaintext(ADMIN_KEY, ADMIN_KEY_NAME, &["admin"], AccountAccess::All);
    for key in keys {
        ring.insert_plaintext(&key.key, &key.key, &key.scopes, key.accounts.clone());
    }
    ring
}

/// A service running in this process.
pub struct TestServer {
    pub service: Service,
    pub addr: SocketAddr,
    pub settings: CommonSettings,
    pub database: Arc<TestDatabase>,
    /// Where identity's reset page listens (identity only).
    pub reset_addr: Option<SocketAddr>,
    /// Where identity's SCIM endpoint listens (identity only).
    pub scim_addr: Option<SocketAddr>,
    /// The settings identity was started with (identity only).
    pub identity: roster_identity::Settings,
    keys: Vec<TestKey>,
    shutdown: Shutdown,
    server: Option<RunningServer>,
}

impl TestServer {
    /// Starts `service` on a fresh database of `backend`; `None` when the backend is skipped.
    pub async fn spawn(service: Service, backend: Backend) -> Option<TestServer> {
        let database = Arc::new(TestDatabase::create(backend).await?);
        let settings = test_settings(service, &database.url);
        Some(Self::start(service, settings, database, Vec::new()).await)
    }

    /// Starts `service` with these settings on `database`, accepting [`ADMIN_KEY`] and `keys`.
    pub async fn start(
        service: Service,
        settings: CommonSettings,
        database: Arc<TestDatabase>,
        keys: Vec<TestKey>,
    ) -> TestServer {
        Self::start_with(service, settings, identity_settings(), database, keys).await
    }

    /// [`TestServer::start`] with identity's own settings (used when `service` is identity).
    pub async fn start_with(
        service: Service,
        settings: CommonSettings,
        identity: roster_identity::Settings,
        database: Arc<TestDatabase>,
        keys: Vec<TestKey>,
    ) -> TestServer {
        let own = match service {
            Service::Identity => OwnSettings::Identity,
            Service::BulkImport => OwnSettings::BulkImport(import_settings(None)),
            Service::Notification => {
                let mail_dir = std::env::temp_dir().join("roster-test-mail");
                let mail_url = format!("file://{}", mail_dir.display());
                OwnSettings::Notification(notification_settings(&mail_url))
            }
        };
        Self::launch(settings, own, identity, database, keys).await
    }

    /// Starts the service `own` names with its settings and `settings` on `database`,
    /// accepting [`ADMIN_KEY`] and `keys`. `identity` is what identity starts with, kept (for
    /// every service) so that a restart starts the same.
    async fn launch(
        settings: CommonSettings,
        own: OwnSettings,
        identity: roster_identity::Settings,
        database: Arc<TestDatabase>,
        keys: Vec<TestKey>,
    ) -> TestServer {
        let service = own.service();
        let ring = SharedKeyRing::new(key_ring(&keys));
        let shutdown = Shutdown::new();
        let started = match own {
            OwnSettings::Identity => {
                roster_identity::start_all(&settings, identity.clone(), ring, shutdown.clone())
                    .await
                    .map(|started| (started.server, started.reset_addr, started.scim_addr))
            }
            OwnSettings::BulkImport(import) => {
                roster_bulk_import::start(&settings, import, ring, shutdown.clone())
                    .await
                    .map(|server| (server, None, None))
            }
            OwnSettings::Notification(notification) => {
                roster_notification::start(&settings, notification, ring, shutdown.clone())
                    .await
                    .map(|server| (server, None, None))
            }
        };
        let (server, reset_addr, scim_addr) = started
            .unwrap_or_else(|error| panic!("{} test server starts: {error:?}", service.name()));
        TestServer {
            service,
            addr: server.local_addr,
            settings,
            database,
            reset_addr,
            scim_addr,
            identity,
            keys,
            shutdown,
            server: Some(server),
        }
    }

    /// Stops this server and starts the service again on the same database, with `keys`.
    pub async fn restart_with_keys(mut self, keys: Vec<TestKey>) -> TestServer {
        self.stop().await;
        let mut settings = self.settings.clone();
        settings.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let identity = self.identity.clone();
        Self::start_with(
            self.service,
            settings,
            identity,
            self.database.clone(),
            keys,
        )
        .await
    }

    /// Stops this server and starts it again on the same database with the same keys.
    pub async fn restart(self) -> TestServer {
        let keys = self.keys.clone();
        self.restart_with_keys(keys).await
    }

    /// Triggers shutdown and waits for the server to stop.
    pub async fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(server) = self.server.take() {
            server.stopped().await.expect("server stops cleanly");
        }
    }

    /// The backend this server runs on.
    pub fn backend(&self) -> Backend {
        self.database.backend
    }

    /// A channel to this server.
    pub async fn channel(&self) -> Channel {
        connect(self.addr).await
    }

    /// Where this server's `GET /metrics` answers.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(|server| server.metrics_addr)
            .expect("the test server serves metrics")
    }
}

/// The response of `GET /metrics` on `addr`: its `Content-Type` and the Prometheus text.
pub async fn scrape_metrics(addr: SocketAddr) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics endpoint accepts");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("request sent");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("response read");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (content_type, body.to_owned())
}

/// The value of `series` (a metric's name with its labels, as the text writes them) in what
/// `GET /metrics` on `addr` answers now; `None` when the text has no such line.
pub async fn metric<T: std::str::FromStr>(addr: SocketAddr, series: &str) -> Option<T>
where
    T::Err: std::fmt::Debug,
{
    let (_, text) = scrape_metrics(addr).await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a metric's value"))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The notification settings tests use: mail to `mail_url`, workers that poll often, short
/// leases and retries measured in milliseconds, so delivery tests finish quickly.
pub fn notification_settings(mail_url: &str) -> roster_notification::Settings {
    roster_notification::Settings {
        mail_url: roster_notification::MailUrl::new(mail_url),
        from_address: "Roster Tests <no-reply@roster.test>".to_owned(),
        message_id_domain: "roster.test".to_owned(),
        poll_interval_millis: 50,
        // Timeouts are not what these tests are about: the SMTP timeout includes the wait for
        // one of the pool's connections, and on a loaded machine a timed-out dialogue the
        // server had taken would be retried (at least once, as designed) and counted twice.
        lease_seconds: 120,
        smtp_timeout_seconds: 60,
        max_attempts: 5,
        retry_base_millis: 100,
        retry_max_millis: 500,
        ..roster_notification::Settings::default()
    }
}

impl TestServer {
    /// Starts the notification service with `notification` settings (its mail server, retry
    /// timings) on `database`, accepting [`ADMIN_KEY`] and `keys`.
    pub async fn start_notification(
        settings: CommonSettings,
        notification: roster_notification::Settings,
        database: Arc<TestDatabase>,
        keys: Vec<TestKey>,
    ) -> TestServer {
        let own = OwnSettings::Notification(notification);
        Self::launch(settings, own, identity_settings(), database, keys).await
    }
}

/// A notification service on `backend` delivering into a file mail drop of its own (one
/// `.eml` per message), for tests that follow an email from identity's outbox to the mail.
pub struct MailDrop {
    pub notification: TestServer,
    pub dir: tempfile::TempDir,
}

impl MailDrop {
    /// Starts notification; `None` when the backend is skipped.
    pub async fn start(backend: Backend) -> Option<MailDrop> {
        let dir = tempfile::tempdir().expect("mail directory");
        let database = Arc::new(TestDatabase::create(backend).await?);
        let notification = TestServer::start_notification(
            test_settings(Service::Notification, &database.url),
            notification_settings(&format!("file://{}", dir.path().display())),
            database,
            Vec::new(),
        )
        .await;
        Some(MailDrop { notification, dir })
    }

    /// Identity settings whose outbox relay hands emails to this notification service.
    pub fn identity_settings(&self) -> roster_identity::Settings {
        roster_identity::Settings {
            notification_url: Some(format!("http://{}", self.notification.addr)),
            notification_key: Some(ADMIN_KEY.to_owned()),
            ..identity_settings()
        }
    }

    /// The messages delivered so far, as written (headers and body).
    pub fn messages(&self) -> Vec<String> {
        let mut messages: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                    .filter_map(|path| std::fs::read_to_string(path).ok())
                    .collect()
            })
            .unwrap_or_default();
        messages.sort();
        messages
    }

    /// Waits up to `timeout` until `count` messages were delivered, then returns them.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<String> {
        let start = std::time::Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= count || start.elapsed() > timeout {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The identity settings tests use.
pub fn identity_settings() -> roster_identity::Settings {
    roster_identity::Settings {
        reset_http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        scim_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..roster_identity::Settings::default()
    }
}

/// The number `sql` (written with `$1` placeholders; one row, column `n`) counts in `db`.
pub async fn count(
    db: &sea_orm::DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> i64 {
    use sea_orm::ConnectionTrait;
    db.query_one_raw(roster_runtime::db::statement(db, sql, values))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .expect("a row")
        .try_get("", "n")
        .expect("a count")
}

/// Connects to a server, retrying briefly while it starts.
pub async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .timeout(Duration::from_secs(60));
    for _ in 0..50 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {addr}");
}

/// A request carrying `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    request
}

/// Every email in identity's outbox, newest first, as written there (JSON: `account_id`,
/// `recipient`, `template`, `variables`, …) and as the notification service would receive it.
pub async fn outbox_emails(identity: &TestServer) -> Vec<serde_json::Value> {
    use sea_orm::Statement;
    let db = Database::connect(&identity.database.url)
        .await
        .expect("identity's database");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox ORDER BY created_at DESC, id DESC",
        ))
        .await
        .expect("outbox rows");
    let _ = db.close().await;
    rows.into_iter()
        .map(|row| {
            let payload: String = row.try_get("", "payload").expect("outbox payload");
            serde_json::from_str(&payload).expect("outbox payload is JSON")
        })
        .collect()
}

/// The token of the newest reset email in identity's outbox.
pub async fn newest_reset_token(identity: &TestServer) -> String {
    outbox_emails(identity)
        .await
        .into_iter()
        .find(|email| email["template"] == "password_reset")
        .and_then(|email| {
            let url = email["variables"]["reset_url"].as_str()?.to_owned();
            Some(url.split_once("#token=")?.1.to_owned())
        })
        .expect("a reset email with a token in the outbox")
}

/// The `ErrorInfo.reason` of a status, if any.
pub fn reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

/// The fields a status's `BadRequest` names, in its order; fails when it has none.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

/// The directory holding the workspace's built binaries (for tests that run processes).
pub fn binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test executable path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Runs a test once per backend: `both_backends!(name, other)` over ordinary
/// `async fn name(backend: Backend)` functions, which rustfmt formats, expands to the tests
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    // One test module per function, named like it, with a test per backend.
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await
            }
        }
    )+};
}

/// An in-process OpenTelemetry collector for trace tests: the OTLP/gRPC trace service, keeping
/// every span it is sent. A test points `OTEL_EXPORTER_OTLP_ENDPOINT` at it before
/// `telemetry::init`, in a test binary of its own (the subscriber is process-global).
pub mod otlp {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

    /// One exported span, as the collector received it.
    #[derive(Clone, Debug)]
    pub struct ReceivedSpan {
        pub name: String,
        pub kind: SpanKind,
        pub trace_id: Vec<u8>,
        pub span_id: Vec<u8>,
        pub parent_span_id: Vec<u8>,
        /// String and integer attributes, as text.
        pub attributes: HashMap<String, String>,
    }

    impl ReceivedSpan {
        pub fn attribute(&self, key: &str) -> Option<&str> {
            self.attributes.get(key).map(String::as_str)
        }
    }

    /// Runs `test` on a new runtime with trace export on: OTLP goes to a [`Collector`] served
    /// in-process, batches leave every 100 ms, and the process-global subscriber is installed.
    /// Call it once, from a `#[test]` alone in its test binary, before any other thread exists.
    pub fn traced<F, Fut>(test: F)
    where
        F: FnOnce(Collector) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("collector port");
        let collector_addr = listener.local_addr().expect("collector address");
        // SAFETY: the caller promises a single-threaded process; the runtime and the exporter
        // start after this.
        unsafe {
            std::env::set_var(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{collector_addr}"),
            );
            std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let collector = Collector::serve(listener);
            let _telemetry = roster_runtime::telemetry::init(
                "roster-telemetry-test",
                roster_runtime::settings::LogFormat::Pretty,
            );
            test(collector).await;
        });
    }

    /// The spans received so far.
    #[derive(Clone, Default)]
    pub struct Collector {
        spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    }

    impl Collector {
        /// Serves the trace service on `listener` (bound before the runtime started, so the
        /// endpoint could be set while the process had one thread).
        pub fn serve(listener: std::net::TcpListener) -> Collector {
            let collector = Collector::default();
            listener
                .set_nonblocking(true)
                .expect("non-blocking listener");
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("listener in the runtime");
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(collector.clone()))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
            );
            collector
        }

        /// Every span received so far.
        pub fn spans(&self) -> Vec<ReceivedSpan> {
            self.spans.lock().expect("spans lock").clone()
        }

        /// The spans named `name` of `kind`.
        pub fn named(&self, name: &str, kind: SpanKind) -> Vec<ReceivedSpan> {
            self.spans()
                .into_iter()
                .filter(|span| span.name == name && span.kind == kind)
                .collect()
        }

        /// Waits until `done` holds for the spans received, failing after `timeout`.
        pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&Collector) -> bool) {
            let started = Instant::now();
            while !done(self) {
                let names: Vec<String> = self.spans().into_iter().map(|span| span.name).collect();
                assert!(
                    started.elapsed() < timeout,
                    "the expected spans did not arrive; received: {names:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut spans = self.spans.lock().expect("spans lock");
            for resource in request.into_inner().resource_spans {
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        let attributes = span
                            .attributes
                            .iter()
                            .filter_map(|attribute| {
                                let value = match attribute.value.as_ref()?.value.as_ref()? {
                                    Value::StringValue(text) => text.clone(),
                                    Value::IntValue(number) => number.to_string(),
                                    other => format!("{other:?}"),
                                };
                                Some((attribute.key.clone(), value))
                            })
                            .collect();
                        spans.push(ReceivedSpan {
                            name: span.name,
                            kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                            trace_id: span.trace_id,
                            span_id: span.span_id,
                            parent_span_id: span.parent_span_id,
                            attributes,
                        });
                    }
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }
}
