//! gRPC handlers of ImportService: decode the request, check the caller, call the store (or
//! identity, for the template), map the result. The work itself runs in [`crate::jobs`].
//!
//! A caller sees only imports of accounts its key may touch: naming another account is
//! PERMISSION_DENIED, reaching another account's import by id is NOT_FOUND, exactly like an
//! import that does not exist.

mod convert;
mod streams;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_server::ImportService;
use roster_runtime::auth::caller;
use roster_runtime::telemetry::TraceContext;
use roster_runtime::{ApiError, Caller, Shutdown};
use tokio::sync::Notify;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::domain::encoding::Sniffer;
use crate::domain::state::{ImportState, RowAction};
use crate::identity::Identity;
use crate::store::entities::import;
use crate::store::{Refused, Store, now_millis, state_of};

/// A server stream as the generated ImportService trait takes it.
type BoxStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Limits the handlers enforce.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest accepted file.
    pub max_file_bytes: u64,
    /// How long an unsubmitted import lives.
    pub import_ttl: Duration,
    /// How often WatchImport looks at the import.
    pub watch_interval: Duration,
    /// How long an upload may receive nothing before it is aborted.
    pub upload_idle_timeout: Duration,
}

/// ImportService over the bulk-import store.
pub struct ImportApi {
    store: Store,
    identity: Identity,
    config: ApiConfig,
    /// Wakes this replica's worker when there is new work.
    wake: Arc<Notify>,
    shutdown: Shutdown,
}

impl ImportApi {
    pub fn new(
        store: Store,
        identity: Identity,
        config: ApiConfig,
        wake: Arc<Notify>,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            store,
            identity,
            config,
            wake,
            shutdown,
        }
    }

    /// The import if it exists and the caller may see it.
    async fn visible(&self, caller: &Caller, id: Uuid) -> Result<import::Model, ApiError> {
        self.store
            .import(id)
            .await?
            .filter(|model| caller.may_access(model.account_id))
            .ok_or_else(convert::not_found)
    }

    fn new_import(
        &self,
        caller: &Caller,
        account_id: Uuid,
        file_name: &str,
        request_id: &str,
    ) -> import::Model {
        let now = now_millis();
        import::Model {
            id: Uuid::now_v7(),
            account_id,
            file_name: file_name.to_owned(),
            state: ImportState::Uploading.code(),
            encoding: None,
            columns: None,
            file_bytes: 0,
            total_row_count: 0,
            create_count: 0,
            update_count: 0,
            unchanged_count: 0,
            error_count: 0,
            applied_count: 0,
            failed_count: 0,
            error_message: String::new(),
            request_key: (!request_id.is_empty())
                .then(|| format!("{}:{account_id}:{request_id}", caller.name)),
            submit_request_id: None,
            cancel_request_id: None,
            created_by: caller.name.clone(),
            created_at: now,
            updated_at: now,
            expire_at: Some(now + self.config.import_ttl.as_millis() as i64),
            version: 1,
            trace_context: current_traceparent(),
            welcome_emails: false,
            encoding_given: false,
            delimiter: None,
            line_ending: None,
        }
    }

    fn upload_limits(&self) -> upload::Limits {
        upload::Limits {
            max_file_bytes: self.config.max_file_bytes,
            idle_timeout: self.config.upload_idle_timeout,
        }
    }

    /// Ends a complete upload and hands the file to the workers; a failure to record that
    /// fails the import.
    async fn finish_upload(
        &self,
        mut upload: upload::Upload,
        import_id: Uuid,
        sniffer: Sniffer,
    ) -> Result<import::Model, ApiError> {
        let bytes = sniffer.len() as i64;
        let given = sniffer.given();
        let finished = match sniffer.finish() {
            Ok(detected) => {
                self.store
                    .finish_upload(
                        import_id,
                        bytes,
                        Ok(detected.encoding.name()),
                        detected.given,
                    )
                    .await
            }
            Err(message) => {
                self.store
                    .finish_upload(import_id, bytes, Err(&message), given)
                    .await
            }
        };
        if let Err(error) = finished {
            upload
                .fail("the upload failed: the complete file could not be recorded; upload it again")
                .await;
            return Err(error.into());
        }
        upload.finished();
        self.wake.notify_one();
        self.store
            .import(import_id)
            .await?
            .ok_or_else(convert::not_found)
    }
}

/// The current request's W3C `traceparent`, stored on an import for its background work to
/// continue the trace; empty when no trace is recorded.
fn current_traceparent() -> String {
    TraceContext::current()
        .traceparent()
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl ImportService for ImportApi {
    async fn download_template(
        &self,
        request: Request<pb::DownloadTemplateRequest>,
    ) -> Result<Response<BoxStream<pb::DownloadTemplateResponse>>, Status> {
        let caller = caller(&request)?;
        let account_id = convert::parse_id("account_id", &request.get_ref().account_id)?;
        caller.require_account(account_id)?;
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
        let account_id = convert::parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        let mut violations = Vec::new();
        for check in [
            convert::check_request_id("request_id", &request.request_id),
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
            violations.push(roster_runtime::error::FieldViolation::new(
                "content",
                "is empty; send the CSV file's bytes",
            ));
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations).into());
        }
        if request.content.len() as u64 > self.config.max_file_bytes {
            return Err(upload::too_large(self.config.max_file_bytes).into());
        }
        let model = self.new_import(&caller, account_id, &request.file_name, &request.request_id);
        let (model, created) = self
            .store
            .create_import(model)
            .await
            .map_err(ApiError::from)?;
        if !created {
            return Ok(Response::new(pb::CreateImportResponse {
                import: Some(convert::import(&model)),
            }));
        }
        let mut upload =
            upload::Upload::start(self.store.clone(), model.id, self.upload_limits(), encoding);
        let sniffer = upload.store_all(&request.content).await?;
        let model = self.finish_upload(upload, model.id, sniffer).await?;
        Ok(Response::new(pb::CreateImportResponse {
            import: Some(convert::import(&model)),
        }))
    }

    async fn upload_import(
        &self,
        request: Request<Streaming<pb::UploadImportRequest>>,
    ) -> Result<Response<pb::UploadImportResponse>, Status> {
        let caller = caller(&request)?;
        let mut stream = request.into_inner();
        let header = upload::header(&mut stream, self.upload_limits(), &self.shutdown).await?;
        let account_id = convert::parse_id("header.account_id", &header.account_id)?;
        caller.require_account(account_id)?;
        convert::check_request_id("header.request_id", &header.request_id)?;
        convert::check_file_name("header.file_name", &header.file_name)?;
        let encoding = convert::parse_encoding("header.encoding", &header.encoding)?;
        let model = self.new_import(&caller, account_id, &header.file_name, &header.request_id);
        let (model, created) = self
            .store
            .create_import(model)
            .await
            .map_err(ApiError::from)?;
        if !created {
            return Ok(Response::new(pb::UploadImportResponse {
                import: Some(convert::import(&model)),
            }));
        }
        let mut upload =
            upload::Upload::start(self.store.clone(), model.id, self.upload_limits(), encoding);
        let sniffer = upload.receive(&mut stream, &self.shutdown).await?;
        let model = self.finish_upload(upload, model.id, sniffer).await?;
        Ok(Response::new(pb::UploadImportResponse {
            import: Some(convert::import(&model)),
        }))
    }

    async fn get_import(
        &self,
        request: Request<pb::GetImportRequest>,
    ) -> Result<Response<pb::GetImportResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id("import_id", &request.get_ref().import_id)?;
        let model = self.visible(&caller, id).await?;
        Ok(Response::new(pb::GetImportResponse {
            import: Some(convert::import(&model)),
        }))
    }

    async fn list_imports(
        &self,
        request: Request<pb::ListImportsRequest>,
    ) -> Result<Response<pb::ListImportsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = convert::parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        let limit = convert::page_size(request.page_size)?;
        let after = convert::parse_import_token(&request.page_token)?;
        let state = match request.state {
            0 => None,
            code => Some(
                ImportState::from_code(code)
                    .ok_or_else(|| ApiError::invalid("state", "is not an ImportState"))?,
            ),
        };
        let mut models = self
            .store
            .list_imports(account_id, state, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let more = models.len() as u64 > limit;
        models.truncate(limit as usize);
        Ok(Response::new(pb::ListImportsResponse {
            imports: models.iter().map(convert::import).collect(),
            next_page_token: match models.last() {
                Some(last) if more => convert::import_token(last.id),
                _ => String::new(),
            },
        }))
    }

    async fn list_import_rows(
        &self,
        request: Request<pb::ListImportRowsRequest>,
    ) -> Result<Response<pb::ListImportRowsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = convert::parse_id("import_id", &request.import_id)?;
        let limit = convert::page_size(request.page_size)?;
        let after = convert::parse_row_token(&request.page_token)?;
        let action = match pb::ImportRowFilter::try_from(request.filter) {
            Ok(pb::ImportRowFilter::Unspecified | pb::ImportRowFilter::All) => None,
            Ok(pb::ImportRowFilter::Errors) => Some(RowAction::Error),
            Ok(pb::ImportRowFilter::Creates) => Some(RowAction::Create),
            Ok(pb::ImportRowFilter::Updates) => Some(RowAction::Update),
            Ok(pb::ImportRowFilter::Unchanged) => Some(RowAction::Unchanged),
            Err(_) => return Err(ApiError::invalid("filter", "is not an ImportRowFilter").into()),
        };
        let model = self.visible(&caller, id).await?;
        let state = state_of(&model);
        if matches!(state, ImportState::Uploading | ImportState::Validating) {
            return Err(convert::wrong_state(
                state,
                "its rows can be listed once it is VALIDATED (follow it with WatchImport)",
            )
            .into());
        }
        let mut rows = self
            .store
            .rows(id, action, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        Ok(Response::new(pb::ListImportRowsResponse {
            rows: rows.iter().map(convert::row).collect(),
            next_page_token: match rows.last() {
                Some(last) if more => convert::row_token(last.row_number),
                _ => String::new(),
            },
        }))
    }

    async fn submit_import(
        &self,
        request: Request<pb::SubmitImportRequest>,
    ) -> Result<Response<pb::SubmitImportResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = convert::parse_id("import_id", &request.import_id)?;
        convert::check_request_id("request_id", &request.request_id)?;
        self.visible(&caller, id).await?;
        let model = match self
            .store
            .submit(
                id,
                &request.request_id,
                request.send_welcome_emails,
                &current_traceparent(),
            )
            .await
            .map_err(ApiError::from)?
        {
            Ok(model) => model,
            Err(Refused::NotFound) => return Err(convert::not_found().into()),
            Err(Refused::WrongState(state)) => {
                return Err(convert::wrong_state(
                    state,
                    "only a VALIDATED import can be submitted",
                )
                .into());
            }
            Err(Refused::Expired) => {
                return Err(ApiError::FailedPrecondition {
                    reason: "IMPORT_EXPIRED",
                    message: "the import expired before it was submitted; upload the file again"
                        .into(),
                    subject: "import".into(),
                }
                .into());
            }
        };
        self.wake.notify_one();
        Ok(Response::new(pb::SubmitImportResponse {
            import: Some(convert::import(&model)),
        }))
    }

    async fn cancel_import(
        &self,
        request: Request<pb::CancelImportRequest>,
    ) -> Result<Response<pb::CancelImportResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = convert::parse_id("import_id", &request.import_id)?;
        convert::check_request_id("request_id", &request.request_id)?;
        self.visible(&caller, id).await?;
        let model = match self
            .store
            .cancel(id, &request.request_id)
            .await
            .map_err(ApiError::from)?
        {
            Ok(model) => model,
            Err(Refused::WrongState(state)) => {
                return Err(
                    convert::wrong_state(state, "a finished import cannot be cancelled").into(),
                );
            }
            Err(Refused::NotFound | Refused::Expired) => {
                return Err(convert::not_found().into());
            }
        };
        Ok(Response::new(pb::CancelImportResponse {
            import: Some(convert::import(&model)),
        }))
    }

    async fn watch_import(
        &self,
        request: Request<pb::WatchImportRequest>,
    ) -> Result<Response<BoxStream<pb::WatchImportResponse>>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id("import_id", &request.get_ref().import_id)?;
        let model = self.visible(&caller, id).await?;
        Ok(Response::new(Box::pin(streams::watch(
            self.store.clone(),
            model,
            self.config.watch_interval,
            self.shutdown.clone(),
        ))))
    }

    async fn download_report(
        &self,
        request: Request<pb::DownloadReportRequest>,
    ) -> Result<Response<BoxStream<pb::DownloadReportResponse>>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id("import_id", &request.get_ref().import_id)?;
        let model = self.visible(&caller, id).await?;
        let state = state_of(&model);
        if matches!(
            state,
            ImportState::Uploading | ImportState::Validating | ImportState::Invalid
        ) || model.columns.is_none()
        {
            return Err(convert::wrong_state(
                state,
                "the report is available once the import is VALIDATED",
            )
            .into());
        }
        Ok(Response::new(Box::pin(streams::report(
            self.store.clone(),
            model,
        ))))
    }
}
