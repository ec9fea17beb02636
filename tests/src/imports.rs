//! Bulk import in the harness: identity and bulk-import started together (bulk-import's
//! settings carry identity's address and the key it calls identity with), typed clients of both
//! ([`ImportSuite::import_client`], [`ImportSuite::identity_client`]), what a test reads from
//! bulk-import's database, and generators of test spreadsheets (made in the test, never
//! committed).

use std::net::SocketAddr;
use std::sync::Arc;

use roster_runtime::auth::AccountAccess;
use roster_runtime::{CommonSettings, Service};

use crate::clients::{Identity, Imports};
use crate::{
    ADMIN_KEY, Backend, OwnSettings, TestDatabase, TestKey, TestServer, identity_settings,
    test_settings,
};

/// The key bulk-import calls identity with in tests (identity accepts it with the `profiles`
/// scope on every account).
pub const IMPORT_IDENTITY_KEY: &str = "test-bulk-import-to-identity";

/// The bulk-import settings tests use: identity at `identity` (none: nothing to call), short
/// leases and polling so the background work is quick to observe.
pub fn import_settings(identity: Option<SocketAddr>) -> roster_bulk_import::Settings {
    roster_bulk_import::Settings {
        identity_url: match identity {
            Some(addr) => format!("http://{addr}"),
            None => "http://127.0.0.1:9".to_owned(),
        },
        identity_key: IMPORT_IDENTITY_KEY.to_owned(),
        lease_seconds: 3,
        poll_interval_millis: 100,
        retention_interval_seconds: 1,
        apply_batch_size: 200,
        identity_attempts: 3,
        ..roster_bulk_import::Settings::default()
    }
}

/// The key identity must accept for bulk-import's calls.
pub fn identity_key_for_imports() -> TestKey {
    TestKey {
        key: IMPORT_IDENTITY_KEY.to_owned(),
        scopes: vec!["profiles", "accounts.read"],
        accounts: AccountAccess::All,
    }
}

impl TestServer {
    /// Starts bulk-import with `import` settings on `database`, accepting [`ADMIN_KEY`] and
    /// `keys`.
    pub async fn start_bulk_import(
        settings: CommonSettings,
        import: roster_bulk_import::Settings,
        database: Arc<TestDatabase>,
        keys: Vec<TestKey>,
    ) -> TestServer {
        let own = OwnSettings::BulkImport(import);
        Self::launch(settings, own, identity_settings(), database, keys).await
    }
}

/// Identity and bulk-import, each on its own fresh database of one backend.
pub struct ImportSuite {
    pub identity: TestServer,
    pub imports: TestServer,
    /// The settings bulk-import was started with (for more replicas).
    pub import_settings: roster_bulk_import::Settings,
}

impl ImportSuite {
    /// Starts both services; `None` when the backend is skipped.
    pub async fn start(backend: Backend) -> Option<ImportSuite> {
        Self::start_with(backend, |_| {}, Vec::new()).await
    }

    /// Starts both services, with `adjust` applied to bulk-import's settings and `keys`
    /// accepted by bulk-import besides [`ADMIN_KEY`].
    pub async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut roster_bulk_import::Settings),
        keys: Vec<TestKey>,
    ) -> Option<ImportSuite> {
        Self::start_with_identity(backend, crate::identity_settings(), adjust, keys).await
    }

    /// [`ImportSuite::start_with`], identity started with `identity_settings` (e.g. a
    /// notification address for its outbox relay).
    pub async fn start_with_identity(
        backend: Backend,
        identity_settings: roster_identity::Settings,
        adjust: impl FnOnce(&mut roster_bulk_import::Settings),
        keys: Vec<TestKey>,
    ) -> Option<ImportSuite> {
        Self::start_configured(backend, identity_settings, |_| {}, adjust, keys).await
    }

    /// [`ImportSuite::start_with_identity`], with `server` applied to bulk-import's server
    /// settings (e.g. a short `request_timeout_seconds`).
    pub async fn start_configured(
        backend: Backend,
        identity_settings: roster_identity::Settings,
        server: impl FnOnce(&mut CommonSettings),
        adjust: impl FnOnce(&mut roster_bulk_import::Settings),
        keys: Vec<TestKey>,
    ) -> Option<ImportSuite> {
        let identity_db = Arc::new(TestDatabase::create(backend).await?);
        let identity = TestServer::start_with(
            Service::Identity,
            test_settings(Service::Identity, &identity_db.url),
            identity_settings,
            identity_db,
            vec![identity_key_for_imports()],
        )
        .await;
        let import_db = Arc::new(TestDatabase::create(backend).await?);
        let mut settings = import_settings(Some(identity.addr));
        adjust(&mut settings);
        let mut common = test_settings(Service::BulkImport, &import_db.url);
        server(&mut common);
        let imports =
            TestServer::start_bulk_import(common, settings.clone(), import_db, keys).await;
        Some(ImportSuite {
            identity,
            imports,
            import_settings: settings,
        })
    }

    /// Another bulk-import replica on the same database.
    pub async fn replica(&self) -> TestServer {
        self.import_replica(self.imports.keys.clone()).await
    }

    /// Another bulk-import replica on the same database, calling the same identity, accepting
    /// [`ADMIN_KEY`] and `keys`.
    pub async fn import_replica(&self, keys: Vec<TestKey>) -> TestServer {
        let mut settings = self.imports.settings.clone();
        settings.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        TestServer::start_bulk_import(
            settings,
            self.import_settings.clone(),
            self.imports.database.clone(),
            keys,
        )
        .await
    }

    /// Another identity replica on identity's database, with the same settings, accepting
    /// [`ADMIN_KEY`], bulk-import's key and `keys` (for keys made once the accounts they are
    /// limited to exist; bulk-import keeps calling the first replica).
    pub async fn identity_replica(&self, keys: Vec<TestKey>) -> TestServer {
        let mut settings = self.identity.settings.clone();
        settings.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut accepted = vec![identity_key_for_imports()];
        accepted.extend(keys);
        TestServer::start_with(
            Service::Identity,
            settings,
            self.identity.identity.clone(),
            self.identity.database.clone(),
            accepted,
        )
        .await
    }

    /// A client of bulk-import, calling with [`ADMIN_KEY`].
    pub async fn import_client(&self) -> Imports {
        Imports::new(self.imports.channel().await, ADMIN_KEY)
    }

    /// A client of identity, calling with [`ADMIN_KEY`].
    pub async fn identity_client(&self) -> Identity {
        Identity::new(self.identity.channel().await, ADMIN_KEY)
    }

    /// Creates an account in identity and returns its id.
    pub async fn account(&self, name: &str) -> String {
        self.identity_client().await.account(name).await.id
    }
}

/// Parses CSV bytes (BOM and CRLF allowed) into rows of cells, for assertions.
pub fn parse_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 CSV");
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

/// `text` saved in a legacy code page, as a spreadsheet on a Windows of that locale saves CSV:
/// converted by `iconv` (`to` is an iconv name such as `WINDOWS-1250`).
pub fn iconv(text: &str, to: &str) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("iconv")
        .args(["-f", "UTF-8", "-t", to])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("iconv runs");
    child
        .stdin
        .take()
        .expect("iconv's stdin")
        .write_all(text.as_bytes())
        .expect("the text goes to iconv");
    let output = child.wait_with_output().expect("iconv ends");
    assert!(output.status.success(), "iconv -t {to} failed");
    output.stdout
}

/// A CSV file (template header, CRLF) of `count` new people whose emails and usernames start
/// with `prefix`: `First{n},Last{n},{prefix}{n}@example.com`.
pub fn people_csv(prefix: &str, count: usize) -> Vec<u8> {
    let mut file = String::with_capacity(count * 80);
    file.push_str(
        "Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone\r\n",
    );
    for n in 0..count {
        file.push_str(&format!(
            ",First{n},Last{n},{prefix}{n}@example.com,,Engineer,R&D,en-GB,Europe/London\r\n"
        ));
    }
    file.into_bytes()
}

/// A TCP relay in front of a server, so that a test can cut a client's connection the way a
/// dying client or a broken network does: both sockets close, mid-call.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays every connection made to [`Relay::addr`] to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay port");
        let addr = listener.local_addr().expect("relay address");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Relay { addr, task }
    }

    /// Closes every relayed connection at once, and accepts no more.
    pub async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// How many pieces of an import's file bulk-import's database holds (`import_chunks` rows).
pub async fn stored_chunks(database: &TestDatabase, import_id: &str) -> u64 {
    use roster_bulk_import::store::entities::chunk;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let import_id = uuid::Uuid::parse_str(import_id).expect("an import id");
    let connection = sea_orm::Database::connect(&database.url)
        .await
        .expect("the import database opens");
    let count = chunk::Entity::find()
        .filter(chunk::Column::ImportId.eq(import_id))
        .count(&connection)
        .await
        .expect("chunks counted");
    let _ = connection.close().await;
    count
}

/// A new import of `account_id` as UploadImport creates it (state UPLOADING, nothing stored),
/// for tests that write the state a crashed replica leaves behind through the store.
pub fn new_upload(account_id: uuid::Uuid) -> roster_bulk_import::domain::import::Import {
    use roster_bulk_import::domain::import::{AccountId, Import, NewImport};
    Import::new_upload(NewImport {
        account_id: AccountId(account_id),
        file_name: "people.csv".to_owned(),
        created_by: "test".to_owned(),
        request_id: String::new(),
        trace_context: String::new(),
        now: roster_bulk_import::store::now_millis(),
        ttl_ms: 7 * 24 * 3600 * 1000,
    })
}
