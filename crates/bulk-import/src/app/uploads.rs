//! An import receiving its file: the pieces stored one by one within the size limit, the end of
//! a complete upload (handed to validation), and what becomes of an upload that does not
//! complete.
//!
//! Every way an upload can end early marks the import FAILED with the reason and deletes the
//! pieces stored so far, at once: a refused message, the size limit, the idle timeout, a broken
//! stream, the server shutting down, and the call being dropped (the client went away, or a
//! deadline it sent passed). What a dying replica cannot clean up, the workers' sweep does
//! ([`crate::jobs::sweep_uploads`]).

use crate::app::{ImportApp, ImportError};
use crate::domain::encoding::{Sniffer, TextEncoding};
use crate::domain::import::{Import, ImportId};
use crate::store::Store;

/// The largest piece of a file kept as one database row.
const STORED_CHUNK_BYTES: usize = 1024 * 1024;

/// The least a piece holds, but the file's last: smaller messages are gathered until they
/// come to this much, so that a client sending a byte a message costs a row and a
/// transaction per 64 KiB, not per byte (and validation a read per 64 KiB)...
const MIN_STORED_PIECE_BYTES: usize = 64 * 1024;

/// ... or until this long has passed since the last piece was stored: a client sending
/// slowly keeps its upload's last activity (which the sweep of abandoned uploads reads) fresh
/// well within the shortest idle timeout, at a row and a transaction per half second at most.
const MAX_GATHER_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// What GetImport reports for an upload whose call was dropped before the file was complete.
const CUT_OFF: &str = "the upload was cut off: the client went away (or a deadline it set \
                       passed) before the file was complete; upload the file again";

/// How an upload ended early.
enum Ended {
    /// The upload is broken: the import is failed with `reason`, the caller told `error`.
    Broken { error: ImportError, reason: String },
    /// The import stopped being UPLOADING meanwhile (cancelled, or failed by a sweep): there is
    /// nothing left to fail.
    Elsewhere,
}

impl Ended {
    fn broken(error: ImportError, reason: impl Into<String>) -> Self {
        Ended::Broken {
            error,
            reason: reason.into(),
        }
    }
}

/// An import receiving its file. Until it is finished ([`ImportApp::finish_upload`]) or
/// [`Upload::fail`]ed, dropping it — the call was dropped mid-upload — fails the import and
/// deletes its pieces.
pub struct Upload {
    store: Store,
    import_id: ImportId,
    max_file_bytes: u64,
    sniffer: Sniffer,
    /// Bytes received but not stored yet: fewer than [`MIN_STORED_PIECE_BYTES`].
    gathered: Vec<u8>,
    /// When a piece was last stored (or the upload began).
    last_stored: tokio::time::Instant,
    next_seq: i32,
    pending: bool,
}

impl Upload {
    /// Starts receiving a file in `encoding` (or of an encoding to detect).
    pub(super) fn start(
        store: Store,
        import_id: ImportId,
        max_file_bytes: u64,
        encoding: Option<TextEncoding>,
    ) -> Self {
        Self {
            store,
            import_id,
            max_file_bytes,
            sniffer: Sniffer::new(encoding),
            gathered: Vec::new(),
            last_stored: tokio::time::Instant::now(),
            next_seq: 0,
            pending: true,
        }
    }

    /// Checks the size limit and stores `bytes`, split into database-sized pieces (or gathered
    /// until they make a piece of [`MIN_STORED_PIECE_BYTES`]). On an early end the import is
    /// failed (when it still was UPLOADING) and the caller's error returned.
    pub async fn store(&mut self, bytes: &[u8]) -> Result<(), ImportError> {
        match self.store_pieces(bytes).await {
            Ok(()) => Ok(()),
            Err(ended) => Err(self.end(ended).await),
        }
    }

    async fn store_pieces(&mut self, bytes: &[u8]) -> Result<(), Ended> {
        if self.sniffer.len() + bytes.len() as u64 > self.max_file_bytes {
            let error = ImportError::FileTooLarge {
                max_file_bytes: self.max_file_bytes,
            };
            let reason = format!("the upload was refused: {error}");
            return Err(Ended::broken(error, reason));
        }
        self.sniffer.feed(bytes);
        if self.gathered.is_empty() && bytes.len() >= MIN_STORED_PIECE_BYTES {
            return self.append_pieces(bytes).await;
        }
        self.gathered.extend_from_slice(bytes);
        if self.gathered.len() >= MIN_STORED_PIECE_BYTES
            || self.last_stored.elapsed() >= MAX_GATHER_TIME
        {
            return self.flush().await;
        }
        Ok(())
    }

    /// Stores what was gathered and not stored yet.
    async fn flush(&mut self) -> Result<(), Ended> {
        let gathered = std::mem::take(&mut self.gathered);
        self.append_pieces(&gathered).await
    }

    async fn append_pieces(&mut self, bytes: &[u8]) -> Result<(), Ended> {
        for piece in bytes.chunks(STORED_CHUNK_BYTES) {
            let stored = self
                .store
                .append_chunk(self.import_id, self.next_seq, piece.to_vec())
                .await;
            match stored {
                Ok(true) => {
                    self.next_seq += 1;
                    self.last_stored = tokio::time::Instant::now();
                }
                Ok(false) => return Err(Ended::Elsewhere),
                Err(error) => {
                    return Err(Ended::broken(
                        error.into(),
                        "the upload failed: a piece of the file could not be stored; upload \
                         the file again",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the client's word that the file is complete: `declared` bytes must be what
    /// arrived. Otherwise the import is failed, its pieces deleted, and the caller told both
    /// sizes.
    pub async fn check_size(&mut self, declared: u64) -> Result<(), ImportError> {
        let received = self.sniffer.len();
        if declared == received {
            return Ok(());
        }
        let error = ImportError::SizeMismatch { declared, received };
        let reason = format!("the upload was refused: {error}");
        Err(self.end(Ended::broken(error, reason)).await)
    }

    /// Fails the import for `ended` (unless it ended elsewhere) and returns the caller's error.
    async fn end(&mut self, ended: Ended) -> ImportError {
        match ended {
            Ended::Broken { error, reason } => {
                self.fail(&reason).await;
                error
            }
            Ended::Elsewhere => {
                self.pending = false;
                ImportError::UploadEnded
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

async fn abort(store: &Store, import_id: ImportId, reason: &str) {
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

impl ImportApp {
    /// Ends a complete upload: VALIDATING and handed to the workers, or INVALID when the bytes
    /// are no text the import can read. A failure to record that fails the import.
    pub async fn finish_upload(&self, mut upload: Upload) -> Result<Import, ImportError> {
        let import_id = upload.import_id;
        // The file's last piece, however small.
        if let Err(ended) = upload.flush().await {
            return Err(upload.end(ended).await);
        }
        let sniffer = std::mem::replace(&mut upload.sniffer, Sniffer::new(None));
        let bytes = sniffer.len() as i64;
        let given = sniffer.given();
        let finished = match sniffer.finish() {
            Ok(detected) => {
                self.store
                    .finish_upload(import_id, bytes, Ok(detected.encoding), detected.given)
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
        // The file is complete and handed on: nothing to undo any more.
        upload.pending = false;
        self.wake.notify_one();
        self.store
            .import(import_id)
            .await?
            .ok_or(ImportError::NotFound)
    }
}
