//! Bulk import's typed client: its unary and streaming RPCs from one caller, and the import flow's
//! compound calls (a file created or uploaded, an import waited for, every row, a template's or
//! a report's bytes, an upload the test writes to piece by piece).

use std::time::{Duration, Instant};

use futures::Stream;
use roster_proto::imports::v1 as imports;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_proto::imports::v1::upload_import_request::Content;
use tonic::Status;
use tonic::transport::Channel;

use super::{Caller, caller, server_streaming, unary};
use crate::TestDatabase;

/// The file name every test upload carries.
const FILE_NAME: &str = "people.csv";

/// Bulk import's RPCs from one caller.
#[derive(Clone)]
pub struct Imports {
    caller: Caller,
    imports: ImportServiceClient<Channel>,
}

impl Imports {
    /// A client of bulk import on `channel`, calling with `key`; it reads responses of up to
    /// 64 MiB (the largest reports).
    pub fn new(channel: Channel, key: &str) -> Imports {
        Imports {
            caller: Caller::with_key(key),
            imports: ImportServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        }
    }

    caller!(Imports);

    unary! { imports, imports:
        create_import(CreateImportRequest) -> CreateImportResponse;
        get_import(GetImportRequest) -> GetImportResponse;
        list_imports(ListImportsRequest) -> ListImportsResponse;
        list_import_rows(ListImportRowsRequest) -> ListImportRowsResponse;
        submit_import(SubmitImportRequest) -> SubmitImportResponse;
        cancel_import(CancelImportRequest) -> CancelImportResponse;
    }

    server_streaming! { imports, imports:
        download_template(DownloadTemplateRequest) -> DownloadTemplateResponse;
        watch_import(WatchImportRequest) -> WatchImportResponse;
        download_report(DownloadReportRequest) -> DownloadReportResponse;
    }

    /// Calls `upload_import` from the client's caller, sending `messages` as the request stream.
    pub async fn upload_import(
        &self,
        messages: impl Stream<Item = imports::UploadImportRequest> + Send + 'static,
    ) -> Result<imports::UploadImportResponse, Status> {
        self.upload_import_within(messages, None).await
    }

    /// [`Imports::upload_import`] with `deadline`, when given, sent as the call's
    /// `grpc-timeout`.
    pub async fn upload_import_within(
        &self,
        messages: impl Stream<Item = imports::UploadImportRequest> + Send + 'static,
        deadline: Option<Duration>,
    ) -> Result<imports::UploadImportResponse, Status> {
        let mut request = self.caller.request(messages);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        self.imports
            .clone()
            .upload_import(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Uploads `content` inline (CreateImport) into `account_id`, its encoding detected.
    pub async fn import_csv(
        &self,
        account_id: &str,
        content: Vec<u8>,
    ) -> Result<imports::Import, Status> {
        self.import_csv_in(account_id, content, "").await
    }

    /// Uploads `content` inline (CreateImport) into `account_id` and waits up to `timeout` for
    /// its validation to end VALIDATED.
    pub async fn validated_csv(
        &self,
        account_id: &str,
        content: Vec<u8>,
        timeout: Duration,
    ) -> imports::Import {
        let created = self
            .import_csv(account_id, content)
            .await
            .expect("CreateImport");
        self.wait_for_state(&created.id, &[imports::ImportState::Validated], timeout)
            .await
    }

    /// Uploads `content` inline (CreateImport), naming its `encoding` (empty: detect it).
    pub async fn import_csv_in(
        &self,
        account_id: &str,
        content: Vec<u8>,
        encoding: &str,
    ) -> Result<imports::Import, Status> {
        self.create_import(imports::CreateImportRequest {
            request_id: String::new(),
            account_id: account_id.to_owned(),
            file_name: FILE_NAME.to_owned(),
            content,
            encoding: encoding.to_owned(),
        })
        .await
        .map(|response| response.import.expect("import"))
    }

    /// Uploads `content` into `account_id` as a client stream of `chunk_bytes` pieces
    /// (UploadImport), its encoding detected.
    pub async fn upload_csv(
        &self,
        account_id: &str,
        content: &[u8],
        chunk_bytes: usize,
    ) -> Result<imports::Import, Status> {
        self.upload_csv_in(account_id, content, chunk_bytes, "")
            .await
    }

    /// [`Imports::upload_csv`], naming the file's `encoding` (empty: detect it).
    pub async fn upload_csv_in(
        &self,
        account_id: &str,
        content: &[u8],
        chunk_bytes: usize,
        encoding: &str,
    ) -> Result<imports::Import, Status> {
        let mut messages = vec![upload_header(account_id, encoding)];
        messages.extend(
            content
                .chunks(chunk_bytes)
                .map(|chunk| imports::UploadImportRequest {
                    content: Some(Content::Chunk(chunk.to_vec())),
                }),
        );
        messages.push(upload_end(content.len() as u64));
        self.upload_import(futures::stream::iter(messages))
            .await
            .map(|response| response.import.expect("import"))
    }

    /// Opens an upload into `account_id` that the test writes to piece by piece; with
    /// `deadline`, the call carries it as `grpc-timeout`.
    pub async fn open_upload(&self, account_id: &str, deadline: Option<Duration>) -> OpenUpload {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender
            .send(upload_header(account_id, ""))
            .await
            .expect("the header is queued");
        let client = self.clone();
        let call = tokio::spawn(async move {
            client
                .upload_import_within(
                    tokio_stream::wrappers::ReceiverStream::new(receiver),
                    deadline,
                )
                .await
                .map(|response| response.import.expect("import"))
        });
        OpenUpload {
            sender: Some(sender),
            call,
            sent: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Submits a VALIDATED import, with or without welcome emails; it must be accepted.
    pub async fn submit(&self, import_id: &str, send_welcome_emails: bool) -> imports::Import {
        self.submit_import(imports::SubmitImportRequest {
            import_id: import_id.to_owned(),
            request_id: String::new(),
            send_welcome_emails,
        })
        .await
        .expect("SubmitImport")
        .import
        .expect("import")
    }

    /// The import `import_id` as it is now.
    pub async fn import(&self, import_id: &str) -> imports::Import {
        self.get_import(imports::GetImportRequest {
            import_id: import_id.to_owned(),
        })
        .await
        .expect("GetImport")
        .import
        .expect("import")
    }

    /// Polls GetImport until the import is in one of `states`, failing after `timeout`.
    pub async fn wait_for_state(
        &self,
        import_id: &str,
        states: &[imports::ImportState],
        timeout: Duration,
    ) -> imports::Import {
        let started = Instant::now();
        loop {
            let import = self.import(import_id).await;
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
        &self,
        import_id: &str,
        filter: imports::ImportRowFilter,
    ) -> Vec<imports::ImportRow> {
        let mut rows = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_import_rows(imports::ListImportRowsRequest {
                    import_id: import_id.to_owned(),
                    page_size: 1000,
                    page_token,
                    filter: filter as i32,
                })
                .await
                .expect("ListImportRows");
            rows.extend(page.rows);
            if page.next_page_token.is_empty() {
                return rows;
            }
            page_token = page.next_page_token;
        }
    }

    /// The template's bytes for `account_id`.
    pub async fn template(&self, account_id: &str) -> Vec<u8> {
        let stream = self
            .download_template(imports::DownloadTemplateRequest {
                account_id: account_id.to_owned(),
            })
            .await
            .expect("DownloadTemplate");
        collect(stream, |piece| piece.chunk).await
    }

    /// The report's bytes of `import_id`.
    pub async fn report(&self, import_id: &str) -> Result<Vec<u8>, Status> {
        let stream = self
            .download_report(imports::DownloadReportRequest {
                import_id: import_id.to_owned(),
            })
            .await?;
        Ok(collect(stream, |piece| piece.chunk).await)
    }

    /// The id of the account's one import in state UPLOADING that has stored at least `chunks`
    /// pieces in `database`, waiting up to `timeout` for it.
    pub async fn uploading_import(
        &self,
        database: &TestDatabase,
        account_id: &str,
        chunks: u64,
        timeout: Duration,
    ) -> String {
        let started = Instant::now();
        loop {
            let imports = self
                .list_imports(imports::ListImportsRequest {
                    account_id: account_id.to_owned(),
                    state: imports::ImportState::Uploading as i32,
                    ..Default::default()
                })
                .await
                .expect("ListImports")
                .imports;
            if let [import] = imports.as_slice()
                && crate::imports::stored_chunks(database, &import.id).await >= chunks
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
}

/// The last message of an upload of `size_bytes` bytes.
pub fn upload_end(size_bytes: u64) -> imports::UploadImportRequest {
    imports::UploadImportRequest {
        content: Some(Content::End(imports::UploadImportEnd { size_bytes })),
    }
}

/// The first message of an upload into `account_id`, of a file in `encoding` (empty: detect it).
pub fn upload_header(account_id: &str, encoding: &str) -> imports::UploadImportRequest {
    imports::UploadImportRequest {
        content: Some(Content::Header(imports::UploadImportHeader {
            account_id: account_id.to_owned(),
            request_id: String::new(),
            file_name: FILE_NAME.to_owned(),
            encoding: encoding.to_owned(),
        })),
    }
}

async fn collect<T>(mut stream: tonic::Streaming<T>, chunk: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(piece) = stream.message().await.expect("stream piece") {
        bytes.extend(chunk(piece));
    }
    bytes
}

/// An UploadImport stream the test writes to piece by piece ([`Imports::open_upload`]): the
/// header is sent at once, then whatever chunks the test sends; the server's answer comes when
/// the test ends the stream, or earlier when the server ends the upload.
pub struct OpenUpload {
    sender: Option<tokio::sync::mpsc::Sender<imports::UploadImportRequest>>,
    call: tokio::task::JoinHandle<Result<imports::Import, Status>>,
    /// The bytes of the chunks sent so far.
    sent: std::sync::atomic::AtomicU64,
}

impl OpenUpload {
    /// Sends the next chunk; false when the call is over (the server ended it).
    pub async fn send(&self, chunk: &[u8]) -> bool {
        let Some(sender) = &self.sender else {
            return false;
        };
        let sent = sender
            .send(imports::UploadImportRequest {
                content: Some(Content::Chunk(chunk.to_vec())),
            })
            .await
            .is_ok();
        self.sent
            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        sent
    }

    /// Sends the end message with the size of the chunks sent, ends the stream and returns the
    /// server's answer.
    pub async fn finish(self) -> Result<imports::Import, Status> {
        let size_bytes = self.sent.load(std::sync::atomic::Ordering::Relaxed);
        self.finish_saying(size_bytes).await
    }

    /// Sends the end message saying the file has `size_bytes` bytes, ends the stream and
    /// returns the server's answer.
    pub async fn finish_saying(mut self, size_bytes: u64) -> Result<imports::Import, Status> {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(upload_end(size_bytes)).await;
        }
        self.call.await.expect("the upload call completes")
    }

    /// Ends the stream cleanly without the end message (as a client that stops half-way
    /// does) and returns the server's answer.
    pub async fn close_without_end(mut self) -> Result<imports::Import, Status> {
        self.sender = None;
        self.call.await.expect("the upload call completes")
    }

    /// Waits for the server's answer while the stream stays open (the client still there but
    /// sending nothing), failing after `timeout`.
    pub async fn answer_while_open(
        &mut self,
        timeout: Duration,
    ) -> Result<imports::Import, Status> {
        tokio::time::timeout(timeout, &mut self.call)
            .await
            .expect("the server answers while the stream is open")
            .expect("the upload call completes")
    }
}
