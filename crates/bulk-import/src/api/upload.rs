//! Reading an UploadImport stream: its header, then its chunks handed to the
//! [`Upload`](crate::app::uploads::Upload) one by one, then the end message that says the file
//! is complete.
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

/// What GetImport reports for a stream that ended without its end message.
const NO_END: &str = "the upload was cut off: the stream ended without its end message, so the \
                      file may be incomplete (a client that failed or was stopped half-way); \
                      upload the file again";

/// Receives the rest of an UploadImport stream (the header already read) into `upload`: the
/// chunks, then the end message with the file's size, then the stream's end. Only that is a
/// complete file: a stream that ends without the end message is a client that stopped
/// half-way (its side closed cleanly all the same), and its file is not taken. On an early
/// end the import is failed (when it still was UPLOADING) and the caller's error returned.
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
            Ok(None) => {
                upload.fail(NO_END).await;
                return Err(ApiError::invalid(
                    "end",
                    "the stream ended without the end message that says the file is complete \
                     (UploadImportRequest.end with the file's size), so the file was not taken; \
                     upload it again",
                ));
            }
            Err(interrupted) => {
                upload.fail(&interrupted.reason()).await;
                return Err(interrupted.error("chunk"));
            }
        };
        match message.content {
            Some(Content::Chunk(chunk)) => upload.store(&chunk).await?,
            Some(Content::End(end)) => {
                upload.check_size(end.size_bytes).await?;
                return closed(upload, stream, idle_timeout, shutdown).await;
            }
            Some(Content::Header(_)) => {
                upload
                    .fail("the upload was refused: a message after the first carried a header")
                    .await;
                return Err(ApiError::invalid(
                    "header",
                    "only the first message may carry the header; later ones carry chunks \
                     and, last, the end",
                ));
            }
            None => {
                upload
                    .fail("the upload was refused: a message carried neither a chunk nor the end")
                    .await;
                return Err(ApiError::invalid(
                    "content",
                    "every message after the header carries a chunk or, last, the end",
                ));
            }
        }
    }
}

/// After the end message: the stream must end, with nothing more in it.
async fn closed(
    upload: &mut Upload,
    stream: &mut Streaming<pb::UploadImportRequest>,
    idle_timeout: Duration,
    shutdown: &Shutdown,
) -> Result<(), ApiError> {
    match next_message(stream, idle_timeout, shutdown).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => {
            upload
                .fail("the upload was refused: a message followed the end message")
                .await;
            Err(ApiError::invalid(
                "end",
                "the end message must be the last one; close the stream after it",
            ))
        }
        Err(interrupted) => {
            upload.fail(&interrupted.reason()).await;
            Err(interrupted.error("end"))
        }
    }
}
