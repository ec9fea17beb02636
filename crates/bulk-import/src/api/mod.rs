//! gRPC handlers of ImportService: decode the request, call one use case of [`crate::app`],
//! encode the result. The work itself runs in [`crate::jobs`].
//!
//! A call naming an account is refused (PERMISSION_DENIED) here when the caller's key may not
//! touch it; reaching another account's import by id is NOT_FOUND, decided in [`crate::app`].

mod convert;
mod error;
mod streams;
mod upload;

use std::time::Duration;

use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_server::ImportService;
use roster_runtime::auth::caller;
use roster_runtime::error::FieldViolation;
use roster_runtime::{ApiError, Caller, Shutdown, request};
use tonic::{Request, Response, Status, Streaming};

use crate::app::ImportApp;
use crate::app::imports::{Begun, ImportFile};
use crate::domain::import::{AccountId, Import, ImportId};
use crate::domain::state::{ImportState, RowAction};
use crate::identity::Identity;

/// A server stream as the generated ImportService trait takes it.
type BoxStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The prefix of ListImports page tokens (kept, so tokens issued before still parse).
const IMPORT_TOKEN: char = 'i';
/// The prefix of ListImportRows page tokens.
const ROW_TOKEN: char = 'r';

/// Timings of the streams.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// How often WatchImport looks at the import.
    pub watch_interval: Duration,
    /// How long an upload may receive nothing before it is aborted.
    pub upload_idle_timeout: Duration,
    /// WatchImport streams one key may have open at once.
    pub watches_per_key: usize,
}

/// ImportService over bulk-import's use cases.
pub struct ImportApi {
    app: ImportApp,
    identity: Identity,
    config: ApiConfig,
    watches: roster_runtime::streams::OpenStreams,
    shutdown: Shutdown,
}

impl ImportApi {
    pub fn new(app: ImportApp, identity: Identity, config: ApiConfig, shutdown: Shutdown) -> Self {
        Self {
            app,
            identity,
            watches: roster_runtime::streams::OpenStreams::new(
                config.watches_per_key,
                "WatchImport streams",
            ),
            config,
            shutdown,
        }
    }
}

fn import_id(field: &str, value: &str) -> Result<ImportId, ApiError> {
    request::parse_id(field, value).map(ImportId)
}

/// The account `field` names, refused (PERMISSION_DENIED) when the caller's key may not touch
/// it.
fn permitted_account(caller: &Caller, field: &str, value: &str) -> Result<AccountId, ApiError> {
    let account_id = request::parse_id(field, value).map(AccountId)?;
    caller.require_account(account_id.0)?;
    Ok(account_id)
}

fn import_response<T>(import: &Import, wrap: impl FnOnce(Option<pb::Import>) -> T) -> Response<T> {
    Response::new(wrap(Some(convert::import(import))))
}

#[tonic::async_trait]
impl ImportService for ImportApi {
    async fn download_template(
        &self,
        request: Request<pb::DownloadTemplateRequest>,
    ) -> Result<Response<BoxStream<pb::DownloadTemplateResponse>>, Status> {
        let caller = caller(&request)?;
        let account_id = permitted_account(&caller, "account_id", &request.get_ref().account_id)?;
        Ok(Response::new(Box::pin(streams::template(
            self.identity.clone(),
            account_id,
        ))))
    }

    async fn create_import(
        &self,
        request: Request<pb::CreateImportRequest>,
    ) -> Result<Response<pb::CreateImportResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = permitted_account(&caller, "account_id", &request.account_id)?;
        let mut violations = Vec::new();
        for check in [
            request::check_request_id("request_id", &request.request_id),
            convert::check_file_name("file_name", &request.file_name),
        ] {
            if let Err(ApiError::InvalidArgument { violations: v, .. }) = check {
                violations.extend(v);
            }
        }
        let encoding = match convert::parse_encoding("encoding", &request.encoding) {
            Ok(encoding) => encoding,
            Err(ApiError::InvalidArgument { violations: v, .. }) => {
                violations.extend(v);
                None
            }
            Err(other) => return Err(other.into()),
        };
        if request.content.is_empty() {
            violations.push(FieldViolation::new(
                "content",
                "is empty; send the CSV file's bytes",
            ));
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations).into());
        }
        let file = ImportFile {
            account_id,
            file_name: &request.file_name,
            request_id: &request.request_id,
            encoding,
        };
        let import = self.app.create(&caller, file, &request.content).await?;
        Ok(import_response(&import, |import| {
            pb::CreateImportResponse { import }
        }))
    }

    async fn upload_import(
        &self,
        request: Request<Streaming<pb::UploadImportRequest>>,
    ) -> Result<Response<pb::UploadImportResponse>, Status> {
        let caller = caller(&request)?;
        let mut stream = request.into_inner();
        let idle = self.config.upload_idle_timeout;
        let header = upload::header(&mut stream, idle, &self.shutdown).await?;
        let account_id = permitted_account(&caller, "header.account_id", &header.account_id)?;
        request::check_request_id("header.request_id", &header.request_id)?;
        convert::check_file_name("header.file_name", &header.file_name)?;
        let encoding = convert::parse_encoding("header.encoding", &header.encoding)?;
        let file = ImportFile {
            account_id,
            file_name: &header.file_name,
            request_id: &header.request_id,
            encoding,
        };
        let begun = self.app.begin_upload(&caller, file).await?;
        let import = match begun {
            Begun::Existing(import) => import,
            Begun::Receiving(mut receiving) => {
                upload::receive(&mut receiving, &mut stream, idle, &self.shutdown).await?;
                self.app.finish_upload(receiving).await?
            }
        };
        Ok(import_response(&import, |import| {
            pb::UploadImportResponse { import }
        }))
    }

    async fn get_import(
        &self,
        request: Request<pb::GetImportRequest>,
    ) -> Result<Response<pb::GetImportResponse>, Status> {
        let caller = caller(&request)?;
        let id = import_id("import_id", &request.get_ref().import_id)?;
        let import = self.app.get(&caller, id).await?;
        Ok(import_response(&import, |import| pb::GetImportResponse {
            import,
        }))
    }

    async fn list_imports(
        &self,
        request: Request<pb::ListImportsRequest>,
    ) -> Result<Response<pb::ListImportsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = permitted_account(&caller, "account_id", &request.account_id)?;
        let limit = request::page_size(request.page_size)?;
        let after = request::parse_id_token(IMPORT_TOKEN, &request.page_token)?.map(ImportId);
        let state = match request.state {
            0 => None,
            code => Some(
                ImportState::from_code(code)
                    .ok_or_else(|| ApiError::invalid("state", "is not an ImportState"))?,
            ),
        };
        let page = self.app.list(account_id, state, after, limit).await?;
        Ok(Response::new(pb::ListImportsResponse {
            imports: page.imports.iter().map(convert::import).collect(),
            next_page_token: page
                .next_after
                .map(|last| request::id_token(IMPORT_TOKEN, last.0))
                .unwrap_or_default(),
        }))
    }

    async fn list_import_rows(
        &self,
        request: Request<pb::ListImportRowsRequest>,
    ) -> Result<Response<pb::ListImportRowsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = import_id("import_id", &request.import_id)?;
        let limit = request::page_size(request.page_size)?;
        let after = request::parse_number_token(ROW_TOKEN, &request.page_token)?;
        let action = match pb::ImportRowFilter::try_from(request.filter) {
            Ok(pb::ImportRowFilter::Unspecified | pb::ImportRowFilter::All) => None,
            Ok(pb::ImportRowFilter::Errors) => Some(RowAction::Error),
            Ok(pb::ImportRowFilter::Creates) => Some(RowAction::Create),
            Ok(pb::ImportRowFilter::Updates) => Some(RowAction::Update),
            Ok(pb::ImportRowFilter::Unchanged) => Some(RowAction::Unchanged),
            Err(_) => return Err(ApiError::invalid("filter", "is not an ImportRowFilter").into()),
        };
        let page = self
            .app
            .list_rows(&caller, id, action, after, limit)
            .await?;
        Ok(Response::new(pb::ListImportRowsResponse {
            rows: page.rows.iter().map(convert::row).collect(),
            next_page_token: page
                .next_after
                .map(|last| request::number_token(ROW_TOKEN, last))
                .unwrap_or_default(),
        }))
    }

    async fn submit_import(
        &self,
        request: Request<pb::SubmitImportRequest>,
    ) -> Result<Response<pb::SubmitImportResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = import_id("import_id", &request.import_id)?;
        request::check_request_id("request_id", &request.request_id)?;
        let import = self
            .app
            .submit(
                &caller,
                id,
                &request.request_id,
                request.send_welcome_emails,
            )
            .await?;
        Ok(import_response(&import, |import| {
            pb::SubmitImportResponse { import }
        }))
    }

    async fn cancel_import(
        &self,
        request: Request<pb::CancelImportRequest>,
    ) -> Result<Response<pb::CancelImportResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = import_id("import_id", &request.import_id)?;
        request::check_request_id("request_id", &request.request_id)?;
        let import = self.app.cancel(&caller, id, &request.request_id).await?;
        Ok(import_response(&import, |import| {
            pb::CancelImportResponse { import }
        }))
    }

    async fn watch_import(
        &self,
        request: Request<pb::WatchImportRequest>,
    ) -> Result<Response<BoxStream<pb::WatchImportResponse>>, Status> {
        let caller = caller(&request)?;
        let id = import_id("import_id", &request.get_ref().import_id)?;
        let import = self.app.get(&caller, id).await?;
        let place = self.watches.take(&caller.name)?;
        Ok(Response::new(Box::pin(streams::watch(
            place,
            self.app.clone(),
            import,
            self.config.watch_interval,
            self.shutdown.clone(),
        ))))
    }

    async fn download_report(
        &self,
        request: Request<pb::DownloadReportRequest>,
    ) -> Result<Response<BoxStream<pb::DownloadReportResponse>>, Status> {
        let caller = caller(&request)?;
        let id = import_id("import_id", &request.get_ref().import_id)?;
        let import = self.app.report(&caller, id).await?;
        Ok(Response::new(Box::pin(streams::report(
            self.app.clone(),
            import,
        ))))
    }
}
