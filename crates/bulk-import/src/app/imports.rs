//! The use cases on imports themselves: creating one (its file given whole, or to arrive in
//! pieces), listing an account's imports, submitting and cancelling.
//!
//! Creating, submitting and cancelling are idempotent on the request id (AIP-155): the same
//! request again answers the import as the first one left it.

use roster_runtime::Caller;

use super::uploads::Upload;
use super::{ImportApp, ImportError, current_traceparent};
use crate::domain::encoding::TextEncoding;
use crate::domain::import::{AccountId, Import, ImportId, NewImport};
use crate::domain::state::{self, ImportState, Step};
use crate::store::now_millis;

/// What creating an import came to.
pub enum Begun {
    /// The request id was used before: the import it created.
    Existing(Import),
    /// A new import, receiving its file.
    Receiving(Upload),
}

/// The file an import is created for, as its caller describes it: the account it goes to, its
/// name and encoding (detected when `None`), and the request id that makes creating it
/// idempotent.
pub struct ImportFile<'a> {
    pub account_id: AccountId,
    pub file_name: &'a str,
    pub request_id: &'a str,
    pub encoding: Option<TextEncoding>,
}

/// A page of an account's imports.
pub struct ImportPage {
    pub imports: Vec<Import>,
    /// The last import of the page when more follow.
    pub next_after: Option<ImportId>,
}

impl ImportApp {
    /// Creates an import to receive `file`; with a request id used before, answers the import
    /// it created.
    pub async fn begin_upload(
        &self,
        caller: &Caller,
        file: ImportFile<'_>,
    ) -> Result<Begun, ImportError> {
        if self.is_deleted(file.account_id.0) {
            return Err(ImportError::AccountDeleted);
        }
        let new = Import::new_upload(NewImport {
            account_id: file.account_id,
            file_name: file.file_name.to_owned(),
            created_by: caller.name.clone(),
            request_id: file.request_id.to_owned(),
            trace_context: current_traceparent(),
            now: now_millis(),
            ttl_ms: self.config.import_ttl.as_millis() as i64,
        });
        let (import, created) = self.store.create_import(&new).await?;
        if !created {
            // The key joins the caller's name, the account and the request id with ':', which
            // names and ids may hold: the import found must be this caller's, in this account,
            // and of the same file name (another file under the id is another request).
            if import.account_id != file.account_id
                || import.created_by != caller.name
                || import.file_name != file.file_name
            {
                return Err(ImportError::RequestIdReused);
            }
            return Ok(Begun::Existing(import));
        }
        Ok(Begun::Receiving(Upload::start(
            self.store.clone(),
            import.id,
            self.config.max_file_bytes,
            file.encoding,
        )))
    }

    /// Creates an import of `file` with its whole content and hands it to validation.
    pub async fn create(
        &self,
        caller: &Caller,
        file: ImportFile<'_>,
        content: &[u8],
    ) -> Result<Import, ImportError> {
        if content.len() as u64 > self.config.max_file_bytes {
            return Err(ImportError::FileTooLarge {
                max_file_bytes: self.config.max_file_bytes,
            });
        }
        let mut upload = match self.begin_upload(caller, file).await? {
            Begun::Existing(import) => return Ok(import),
            Begun::Receiving(upload) => upload,
        };
        upload.store(content).await?;
        self.finish_upload(upload).await
    }

    /// A page of an account's imports, newest first, after the import `after`, only those in
    /// `state` when given.
    pub async fn list(
        &self,
        account_id: AccountId,
        state: Option<ImportState>,
        after: Option<ImportId>,
        limit: u64,
    ) -> Result<ImportPage, ImportError> {
        let mut imports = self
            .store
            .list_imports(account_id, state, after, limit + 1)
            .await?;
        let more = imports.len() as u64 > limit;
        imports.truncate(limit as usize);
        let next_after = imports.last().filter(|_| more).map(|import| import.id);
        Ok(ImportPage {
            imports,
            next_after,
        })
    }

    /// Starts the apply of a VALIDATED import that has not expired, sending welcome emails to
    /// the profiles it creates when `welcome_emails`. An import created while no trace was
    /// recorded takes the submit's for its apply.
    pub async fn submit(
        &self,
        caller: &Caller,
        id: ImportId,
        request_id: &str,
        welcome_emails: bool,
    ) -> Result<Import, ImportError> {
        self.get(caller, id).await?;
        let trace_context = current_traceparent();
        loop {
            let tx = self.store.begin().await?;
            let current = tx.import(id).await?.ok_or(ImportError::NotFound)?;
            // The request id answers only the submit it was sent with: the same id asking the
            // other way about welcome emails is another request.
            if !request_id.is_empty()
                && current.submit_request_id.as_deref() == Some(request_id)
                && current.welcome_emails != welcome_emails
            {
                return Err(ImportError::RequestIdReused);
            }
            let from = match state::submit(&current, request_id, now_millis()) {
                Step::Done => return Ok(current),
                Step::Refused(refusal) => return Err(refusal.into()),
                Step::Go(from) => from,
            };
            if let Ok(import) = tx
                .start_apply(
                    &current,
                    from,
                    request_id,
                    welcome_emails,
                    &trace_context,
                    Some(self.config.apply_batch_size as i32),
                )
                .await?
            {
                tx.commit().await?;
                self.wake.notify_one();
                return Ok(import);
            }
            // The import moved on between the read and the update (the same request, sent
            // again, started the apply first; or a cancel): decide again from the state it is
            // in now, so that the same request gets the same answer.
        }
    }

    /// Cancels an import that has not finished. Rows not applied yet are skipped; an import
    /// cancelled before submit keeps its expiry, so it is purged like any unsubmitted one.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: ImportId,
        request_id: &str,
    ) -> Result<Import, ImportError> {
        self.get(caller, id).await?;
        loop {
            let tx = self.store.begin().await?;
            let current = tx.import(id).await?.ok_or(ImportError::NotFound)?;
            let from = match state::cancel(&current, request_id) {
                Step::Done => return Ok(current),
                Step::Refused(refusal) => return Err(refusal.into()),
                Step::Go(from) => from,
            };
            if let Ok(import) = tx.cancel(id, from, request_id).await? {
                tx.commit().await?;
                return Ok(import);
            }
            // The import moved on between the read and the update (a worker finished a
            // phase): decide again from the state it is in now.
        }
    }

    /// The import as it is now, for following its progress once the caller was let see it.
    pub async fn reload(&self, id: ImportId) -> Result<Import, ImportError> {
        self.store.import(id).await?.ok_or(ImportError::NotFound)
    }
}
