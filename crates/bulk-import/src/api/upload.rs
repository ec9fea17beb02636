//! Receiving a file into an import: the pieces of an UploadImport stream (or of CreateImport's
//! inline content) stored one by one, and what becomes of an upload that does not complete.
//!
//! An upload is bounded by its size limit and an idle timeout (no chunk for that long and it
//! is aborted), not by the server's deadline for one call: a large file over a slow link takes
//! as long as it takes while it keeps arriving. Every way an upload can end early marks the
//! import FAILED with the reason and deletes the pieces stored so far, at once: a refused
//! message, the size limit, the idle timeout, a broken stream, the server shutting down, and
//! the call being dropped (the client went away, or a deadline it sent passed). What a dying
//! replica cannot clean up, the workers' sweep does ([`crate::jobs::sweep_uploads`]).

use std::time::Duration;

use roster_proto::imports::v1 as pb;
use roster_runtime::{ApiError, Shutdown};
use tonic::Streaming;
use uuid::Uuid;

use crate::domain::encoding::{Sniffer, TextEncoding};
use crate::store::Store;

/// The largest piece of a file kept as one database row.
pub(super) const STORED_CHUNK_BYTES: usize = 1024 * 1024;

/// What GetImport reports for an upload whose call was dropped before the file was complete.
const CUT_OFF: &str = "the upload was cut off: the client went away (or a deadline it set \
                       passed) before the file was complete; upload the file again";

/// What an upload may take.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub max_file_bytes: u64,
    pub idle_timeout: Duration,
}

/// RESOURCE_EXHAUSTED for a file over the size limit.
pub(super) fn too_large(max_file_bytes: u64) -> ApiError {
    ApiError::ResourceExhausted {
        reason: "FILE_TOO_LARGE",
        message: format!("the file is larger than the {max_file_bytes} bytes this server accepts"),
        retry_after: None,
    }
}

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
    limits: Limits,
    shutdown: &Shutdown,
) -> Result<pb::UploadImportHeader, ApiError> {
    use pb::upload_import_request::Content;
    match next_message(stream, limits.idle_timeout, shutdown).await {
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

/// How an upload ended early.
enum Ended {
    /// The upload is broken: the import is failed with `reason`, the caller told `error`.
    Broken { error: ApiError, reason: String },
    /// The import stopped being UPLOADING meanwhile (cancelled, or failed by a sweep): there is
    /// nothing left to fail.
    Elsewhere,
}

impl Ended {
    fn broken(error: ApiError, reason: impl Into<String>) -> Self {
        Ended::Broken {
            error,
            reason: reason.into(),
        }
    }
}

/// An import receiving its file. Until [`Upload::finished`] or [`Upload::fail`], dropping it —
/// the call was dropped mid-upload — fails the import and deletes its pieces.
pub(super) struct Upload {
    store: Store,
    import_id: Uuid,
    limits: Limits,
    sniffer: Sniffer,
    next_seq: i32,
    pending: bool,
}

impl Upload {
    /// Starts receiving a file in `encoding` (or of an encoding to detect).
    pub fn start(
        store: Store,
        import_id: Uuid,
        limits: Limits,
        encoding: Option<TextEncoding>,
    ) -> Self {
        Self {
            store,
            import_id,
            limits,
            sniffer: Sniffer::new(encoding),
            next_seq: 0,
            pending: true,
        }
    }

    /// What the file's bytes looked like, once it is complete.
    fn take_sniffer(&mut self) -> Sniffer {
        std::mem::replace(&mut self.sniffer, Sniffer::new(None))
    }

    /// Receives the rest of an UploadImport stream (the header already read) and returns what
    /// the file's bytes look like. On an early end the import is failed (when it still was
    /// UPLOADING) and the caller's error returned.
    pub async fn receive(
        &mut self,
        stream: &mut Streaming<pb::UploadImportRequest>,
        shutdown: &Shutdown,
    ) -> Result<Sniffer, ApiError> {
        use pb::upload_import_request::Content;
        loop {
            let message = match next_message(stream, self.limits.idle_timeout, shutdown).await {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(self.take_sniffer()),
                Err(interrupted) => {
                    let ended = Ended::broken(interrupted.error("chunk"), interrupted.reason());
                    return Err(self.end(ended).await);
                }
            };
            let chunk = match message.content {
                Some(Content::Chunk(chunk)) => chunk,
                _ => {
                    let ended = Ended::broken(
                        ApiError::invalid(
                            "header",
                            "only the first message may carry the header; later ones carry \
                             chunks",
                        ),
                        "the upload was refused: a message after the first carried a header",
                    );
                    return Err(self.end(ended).await);
                }
            };
            if let Err(ended) = self.store_piece(&chunk).await {
                return Err(self.end(ended).await);
            }
        }
    }

    /// Stores a file given whole (CreateImport), in pieces of at most [`STORED_CHUNK_BYTES`].
    pub async fn store_all(&mut self, content: &[u8]) -> Result<Sniffer, ApiError> {
        if let Err(ended) = self.store_piece(content).await {
            return Err(self.end(ended).await);
        }
        Ok(self.take_sniffer())
    }

    /// Checks the size limit and stores `bytes`, split into database-sized pieces.
    async fn store_piece(&mut self, bytes: &[u8]) -> Result<(), Ended> {
        if self.sniffer.len() + bytes.len() as u64 > self.limits.max_file_bytes {
            let error = too_large(self.limits.max_file_bytes);
            let reason = format!("the upload was refused: {error}");
            return Err(Ended::broken(error, reason));
        }
        for piece in bytes.chunks(STORED_CHUNK_BYTES) {
            self.sniffer.feed(piece);
            let stored = self
                .store
                .append_chunk(self.import_id, self.next_seq, piece.to_vec())
                .await;
            match stored {
                Ok(true) => self.next_seq += 1,
                Ok(false) => return Err(Ended::Elsewhere),
                Err(error) => {
                    return Err(Ended::broken(
                        ApiError::from(error),
                        "the upload failed: a piece of the file could not be stored; upload \
                         the file again",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Fails the import for `ended` (unless it ended elsewhere) and returns the caller's error.
    async fn end(&mut self, ended: Ended) -> ApiError {
        match ended {
            Ended::Broken { error, reason } => {
                self.fail(&reason).await;
                error
            }
            Ended::Elsewhere => {
                self.pending = false;
                ApiError::Aborted {
                    reason: "UPLOAD_ENDED",
                    message: "the import stopped receiving its file during the upload (it was \
                              cancelled, or failed after a pause: GetImport says why)"
                        .into(),
                }
            }
        }
    }

    /// Fails the import with `reason` and deletes its pieces, now. The work runs as a task of
    /// its own: a broken connection drops the call right after its stream fails, and the
    /// clean-up must outlive it.
    pub async fn fail(&mut self, reason: &str) {
        self.pending = false;
        let (store, import_id, reason) = (self.store.clone(), self.import_id, reason.to_owned());
        let _ = tokio::spawn(async move { abort(&store, import_id, &reason).await }).await;
    }

    /// The file is complete and handed on: nothing to undo any more.
    pub fn finished(mut self) {
        self.pending = false;
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.pending {
            return;
        }
        // The call's future is being dropped, so the clean-up runs as a task of its own. When
        // no runtime is left (the process is ending), the sweep cleans up after the restart.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, import_id) = (self.store.clone(), self.import_id);
            runtime.spawn(async move { abort(&store, import_id, CUT_OFF).await });
        }
    }
}

async fn abort(store: &Store, import_id: Uuid, reason: &str) {
    match store.abort_upload(import_id, reason, None).await {
        Ok(true) => tracing::info!(%import_id, %reason, "upload failed; its data removed"),
        Ok(false) => {}
        Err(error) => tracing::error!(
            %import_id,
            %error,
            "failing a broken upload failed; the sweep of abandoned uploads will"
        ),
    }
}
