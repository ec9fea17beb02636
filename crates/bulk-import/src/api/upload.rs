//! Reading an UploadImport stream: its header, then its chunks handed to the
//! [`Upload`](crate::app::uploads::Upload) one by one.
//!
//! An upload is bounded by its size limit and an idle timeout (no chunk for that long and it
//! is aborted), not by the server's deadline for one call: a large file over a slow link takes
//! as long as it takes while it keeps arriving. A stream that breaks off, stops sending or
//! outlives the server fails the import with the reason (see [`crate::app::uploads`]).

use std::time::Duration;

use roster_proto::imports::v1 as pb;
use roster_runtime::{ApiError, Shutdown};
use tonic::Streaming;

use crate::app::uploads::Upload;

/// Why no next message came.
enum Interrupted {
    Idle(Duration),
    ShuttingDown,
    Broke(tonic::Status),
}

impl Interrupted {
    /// The caller's error; `field` names the message that did not come.
    fn error(&self, field: &str) -> ApiError {
        match self {
            Interrupted::Idle(idle) => ApiError::Aborted {
                reason: "UPLOAD_IDLE_TIMEOUT",
                message: format!(
                    "no chunk arrived for {} s, so the upload was aborted and what it sent \
                     removed; upload the file again",
                    idle.as_secs()
                ),
            },
            Interrupted::ShuttingDown => ApiError::Unavailable {
                message: "the server is shutting down; upload the file again".into(),
            },
            Interrupted::Broke(status) => {
                ApiError::invalid(field, format!("the upload broke off: {}", status.message()))
            }
        }
    }

    fn reason(&self) -> String {
        match self {
            Interrupted::Idle(idle) => format!(
                "the upload was aborted: no chunk arrived for {} s; upload the file again",
                idle.as_secs()
            ),
            Interrupted::ShuttingDown => "the upload was cut off: the server shut down before \
                                          the file was complete; upload the file again"
                .into(),
            Interrupted::Broke(status) => format!("the upload broke off: {}", status.message()),
        }
    }
}

/// The next message of the stream, `None` at its end: waiting at most `idle`, and no longer
/// than until the server starts shutting down.
async fn next_message(
    stream: &mut Streaming<pb::UploadImportRequest>,
    idle: Duration,
    shutdown: &Shutdown,
) -> Result<Option<pb::UploadImportRequest>, Interrupted> {
    tokio::select! {
        () = shutdown.wait() => Err(Interrupted::ShuttingDown),
        next = tokio::time::timeout(idle, stream.message()) => match next {
            Err(_) => Err(Interrupted::Idle(idle)),
            Ok(Err(status)) => Err(Interrupted::Broke(status)),
            Ok(Ok(message)) => Ok(message),
        },
    }
}

/// The stream's first message, which must carry the header. Nothing is stored yet, so an
/// early end only answers the caller.
pub(super) async fn header(
    stream: &mut Streaming<pb::UploadImportRequest>,
    idle_timeout: Duration,
    shutdown: &Shutdown,
) -> Result<pb::UploadImportHeader, ApiError> {
    use pb::upload_import_request::Content;
    match next_message(stream, idle_timeout, shutdown).await {
        Ok(Some(pb::UploadImportRequest {
            content: Some(Content::Header(header)),
        })) => Ok(header),
        Ok(_) => Err(ApiError::invalid(
            "header",
            "the first message must carry the header (account_id, request_id, file_name)",
        )),
        Err(interrupted) => Err(interrupted.error("header")),
    }
}

/// Receives the rest of an UploadImport stream (the header already read) into `upload`. On an
/// early end the import is failed (when it still was UPLOADING) and the caller's error returned.
pub(super) async fn receive(
    upload: &mut Upload,
    stream: &mut Streaming<pb::UploadImportRequest>,
    idle_timeout: Duration,
    shutdown: &Shutdown,
) -> Result<(), ApiError> {
    use pb::upload_import_request::Content;
    loop {
        let message = match next_message(stream, idle_timeout, shutdown).await {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            Err(interrupted) => {
                upload.fail(&interrupted.reason()).await;
                return Err(interrupted.error("chunk"));
            }
        };
        let Some(Content::Chunk(chunk)) = message.content else {
            upload
                .fail("the upload was refused: a message after the first carried a header")
                .await;
            return Err(ApiError::invalid(
                "header",
                "only the first message may carry the header; later ones carry chunks",
            ));
        };
        upload.store(&chunk).await?;
    }
}
