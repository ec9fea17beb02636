//! Bulk import in the harness: identity and bulk-import started together (bulk-import's
//! settings carry identity's address and the key it calls identity with), client helpers for
//! the import flow, and generators of test spreadsheets (made in the test, never committed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_proto::identity::v1 as id;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_runtime::auth::AccountAccess;
use roster_runtime::{CommonSettings, KeyRing, Service, Shutdown};
use tonic::transport::Channel;

use crate::{ADMIN_KEY, Backend, TestDatabase, TestKey, TestServer, authed, test_settings};

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
        purge_interval_seconds: 1,
        apply_batch_size: 200,
        identity_attempts: 3,
        ..roster_bulk_import::Settings::default()
    }
}

/// The key identity must accept for bulk-import's calls.
pub fn identity_key_for_imports() -> TestKey {
    TestKey {
        key: IMPORT_IDENTITY_KEY.to_owned(),
        scopes: vec!["profiles"],
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
        let mut ring = KeyRing::default();
        ring.insert_plaintext(ADMIN_KEY, "test-admin", &["admin"], AccountAccess::All);
        for key in &keys {
            ring.insert_plaintext(&key.key, &key.key, &key.scopes, key.accounts.clone());
        }
        let shutdown = Shutdown::new();
        let server = roster_bulk_import::start(&settings, import, Arc::new(ring), shutdown.clone())
            .await
            .expect("bulk-import test server starts");
        TestServer {
            service: Service::BulkImport,
            addr: server.local_addr,
            settings,
            database,
            reset_addr: None,
            identity: crate::identity_settings(),
            keys,
            shutdown,
            server: Some(server),
        }
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

    pub async fn import_client(&self) -> ImportServiceClient<Channel> {
        ImportServiceClient::new(self.imports.channel().await)
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    pub async fn profile_client(&self) -> ProfileServiceClient<Channel> {
        ProfileServiceClient::new(self.identity.channel().await)
    }

    /// Creates an account in identity and returns its id.
    pub async fn account(&self, name: &str) -> String {
        create_account(&self.identity.channel().await, name).await
    }
}

/// Creates an account through AccountService and returns its id.
pub async fn create_account(identity: &Channel, name: &str) -> String {
    crate::clients::Identity::new(identity.clone(), ADMIN_KEY)
        .account(name)
        .await
        .id
}

/// Creates a profile named `first_name last_name` with `email` (the username) in `account_id`
/// through ProfileService.
pub async fn create_profile(
    identity: &Channel,
    account_id: &str,
    first_name: &str,
    last_name: &str,
    email: &str,
) -> id::Profile {
    crate::clients::Identity::new(identity.clone(), ADMIN_KEY)
        .create_profile(id::CreateProfileRequest {
            account_id: account_id.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            email: email.to_owned(),
            ..Default::default()
        })
        .await
        .expect("profile created")
        .profile
        .expect("profile")
}

/// Every current profile of an account, through ListProfiles paging.
pub async fn all_profiles(identity: &Channel, account_id: &str) -> Vec<id::Profile> {
    let mut client = ProfileServiceClient::new(identity.clone());
    let mut profiles = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_profiles(authed(
                ADMIN_KEY,
                id::ListProfilesRequest {
                    account_id: account_id.to_owned(),
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                },
            ))
            .await
            .expect("ListProfiles")
            .into_inner();
        profiles.extend(page.profiles);
        if page.next_page_token.is_empty() {
            return profiles;
        }
        page_token = page.next_page_token;
    }
}

/// Uploads `content` inline (CreateImport), its encoding detected.
pub async fn create_import(
    client: &mut ImportServiceClient<Channel>,
    key: &str,
    account_id: &str,
    content: Vec<u8>,
) -> Result<pb::Import, tonic::Status> {
    create_import_in(client, key, account_id, content, "").await
}

/// Uploads `content` inline (CreateImport), naming its `encoding` (empty: detect it).
pub async fn create_import_in(
    client: &mut ImportServiceClient<Channel>,
    key: &str,
    account_id: &str,
    content: Vec<u8>,
    encoding: &str,
) -> Result<pb::Import, tonic::Status> {
    client
        .create_import(authed(
            key,
            pb::CreateImportRequest {
                request_id: String::new(),
                account_id: account_id.to_owned(),
                file_name: "people.csv".to_owned(),
                content,
                encoding: encoding.to_owned(),
            },
        ))
        .await
        .map(|response| response.into_inner().import.expect("import"))
}

/// Submits a VALIDATED import as [`ADMIN_KEY`], with or without welcome emails.
pub async fn submit_import(
    client: &mut ImportServiceClient<Channel>,
    import_id: &str,
    send_welcome_emails: bool,
) -> pb::Import {
    client
        .submit_import(authed(
            ADMIN_KEY,
            pb::SubmitImportRequest {
                import_id: import_id.to_owned(),
                request_id: String::new(),
                send_welcome_emails,
            },
        ))
        .await
        .expect("SubmitImport")
        .into_inner()
        .import
        .expect("import")
}

/// Uploads `content` as a client stream of `chunk_bytes` pieces (UploadImport), its encoding
/// detected.
pub async fn upload_import(
    client: &mut ImportServiceClient<Channel>,
    key: &str,
    account_id: &str,
    content: &[u8],
    chunk_bytes: usize,
) -> Result<pb::Import, tonic::Status> {
    upload_import_in(client, key, account_id, content, chunk_bytes, "").await
}

/// Uploads `content` as a client stream of `chunk_bytes` pieces (UploadImport), naming its
/// `encoding` (empty: detect it).
pub async fn upload_import_in(
    client: &mut ImportServiceClient<Channel>,
    key: &str,
    account_id: &str,
    content: &[u8],
    chunk_bytes: usize,
    encoding: &str,
) -> Result<pb::Import, tonic::Status> {
    use pb::upload_import_request::Content;
    let mut messages = vec![pb::UploadImportRequest {
        content: Some(Content::Header(pb::UploadImportHeader {
            account_id: account_id.to_owned(),
            request_id: String::new(),
            file_name: "people.csv".to_owned(),
            encoding: encoding.to_owned(),
        })),
    }];
    messages.extend(
        content
            .chunks(chunk_bytes)
            .map(|chunk| pb::UploadImportRequest {
                content: Some(Content::Chunk(chunk.to_vec())),
            }),
    );
    client
        .upload_import(authed(key, tonic::codegen::tokio_stream::iter(messages)))
        .await
        .map(|response| response.into_inner().import.expect("import"))
}

/// Polls GetImport until the import is in one of `states`, failing after `timeout`.
pub async fn wait_for_state(
    client: &mut ImportServiceClient<Channel>,
    import_id: &str,
    states: &[pb::ImportState],
    timeout: Duration,
) -> pb::Import {
    let started = Instant::now();
    loop {
        let import = client
            .get_import(authed(
                ADMIN_KEY,
                pb::GetImportRequest {
                    import_id: import_id.to_owned(),
                },
            ))
            .await
            .expect("GetImport")
            .into_inner()
            .import
            .expect("import");
        if states.iter().any(|state| *state as i32 == import.state) {
            return import;
        }
        assert!(
            started.elapsed() < timeout,
            "import {import_id} did not reach {states:?} within {timeout:?}: {import:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every row of an import with `filter`, through ListImportRows paging.
pub async fn all_rows(
    client: &mut ImportServiceClient<Channel>,
    import_id: &str,
    filter: pb::ImportRowFilter,
) -> Vec<pb::ImportRow> {
    let mut rows = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_import_rows(authed(
                ADMIN_KEY,
                pb::ListImportRowsRequest {
                    import_id: import_id.to_owned(),
                    page_size: 1000,
                    page_token,
                    filter: filter as i32,
                },
            ))
            .await
            .expect("ListImportRows")
            .into_inner();
        rows.extend(page.rows);
        if page.next_page_token.is_empty() {
            return rows;
        }
        page_token = page.next_page_token;
    }
}

/// The template's bytes.
pub async fn download_template(
    client: &mut ImportServiceClient<Channel>,
    account_id: &str,
) -> Vec<u8> {
    let stream = client
        .download_template(authed(
            ADMIN_KEY,
            pb::DownloadTemplateRequest {
                account_id: account_id.to_owned(),
            },
        ))
        .await
        .expect("DownloadTemplate")
        .into_inner();
    collect(stream, |piece: pb::DownloadTemplateResponse| piece.chunk).await
}

/// The report's bytes.
pub async fn download_report(
    client: &mut ImportServiceClient<Channel>,
    import_id: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let stream = client
        .download_report(authed(
            ADMIN_KEY,
            pb::DownloadReportRequest {
                import_id: import_id.to_owned(),
            },
        ))
        .await?
        .into_inner();
    Ok(collect(stream, |piece: pb::DownloadReportResponse| piece.chunk).await)
}

async fn collect<T>(mut stream: tonic::Streaming<T>, chunk: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(piece) = stream.message().await.expect("stream piece") {
        bytes.extend(chunk(piece));
    }
    bytes
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

/// An UploadImport stream the test writes to piece by piece: the header is sent at once, then
/// whatever chunks the test sends; the server's answer comes when the test ends the stream, or
/// earlier when the server ends the upload.
pub struct OpenUpload {
    sender: Option<tokio::sync::mpsc::Sender<pb::UploadImportRequest>>,
    call: tokio::task::JoinHandle<Result<pb::Import, tonic::Status>>,
}

impl OpenUpload {
    /// Opens an upload into `account_id` as `key`; with `deadline`, the call carries it as
    /// `grpc-timeout`.
    pub async fn start(
        channel: Channel,
        key: &str,
        account_id: &str,
        deadline: Option<Duration>,
    ) -> OpenUpload {
        use pb::upload_import_request::Content;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender
            .send(pb::UploadImportRequest {
                content: Some(Content::Header(pb::UploadImportHeader {
                    account_id: account_id.to_owned(),
                    request_id: String::new(),
                    file_name: "people.csv".to_owned(),
                    encoding: String::new(),
                })),
            })
            .await
            .expect("the header is queued");
        let mut request = authed(
            key,
            tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(receiver),
        );
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        let call = tokio::spawn(async move {
            ImportServiceClient::new(channel)
                .upload_import(request)
                .await
                .map(|response| response.into_inner().import.expect("import"))
        });
        OpenUpload {
            sender: Some(sender),
            call,
        }
    }

    /// Sends the next chunk; false when the call is over (the server ended it).
    pub async fn send(&self, chunk: &[u8]) -> bool {
        use pb::upload_import_request::Content;
        let Some(sender) = &self.sender else {
            return false;
        };
        sender
            .send(pb::UploadImportRequest {
                content: Some(Content::Chunk(chunk.to_vec())),
            })
            .await
            .is_ok()
    }

    /// Ends the stream and returns the server's answer.
    pub async fn finish(mut self) -> Result<pb::Import, tonic::Status> {
        self.sender = None;
        self.call.await.expect("the upload call completes")
    }

    /// Waits for the server's answer while the stream stays open (the client still there but
    /// sending nothing), failing after `timeout`.
    pub async fn answer_while_open(
        &mut self,
        timeout: Duration,
    ) -> Result<pb::Import, tonic::Status> {
        tokio::time::timeout(timeout, &mut self.call)
            .await
            .expect("the server answers while the stream is open")
            .expect("the upload call completes")
    }
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

/// The id of the account's one import in state UPLOADING that has stored at least `chunks`
/// pieces, waiting up to `timeout` for it.
pub async fn uploading_import(
    client: &mut ImportServiceClient<Channel>,
    database: &TestDatabase,
    account_id: &str,
    chunks: u64,
    timeout: Duration,
) -> String {
    let started = Instant::now();
    loop {
        let imports = client
            .list_imports(authed(
                ADMIN_KEY,
                pb::ListImportsRequest {
                    account_id: account_id.to_owned(),
                    state: pb::ImportState::Uploading as i32,
                    ..Default::default()
                },
            ))
            .await
            .expect("ListImports")
            .into_inner()
            .imports;
        if let [import] = imports.as_slice()
            && stored_chunks(database, &import.id).await >= chunks
        {
            return import.id.clone();
        }
        assert!(
            started.elapsed() < timeout,
            "no UPLOADING import with {chunks} stored pieces within {timeout:?}: {imports:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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
