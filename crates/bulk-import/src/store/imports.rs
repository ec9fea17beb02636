//! Imports themselves: creating one (idempotent on its request key), reading and listing them,
//! the submit and cancel steps.

use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect};

use super::convert::{import_model, state_of};
use super::entities::import;
use super::{
    Store, StoreError, Tx, change_import, convert, delete_chunks, delete_lease, insert_lease, one,
    skip_pending_rows,
};
use crate::domain::import::{AccountId, Import, ImportId};
use crate::domain::state::ImportState;

impl Store {
    /// Inserts a new import. With a request key already used, returns the import that key
    /// created instead (AIP-155), and `false`.
    pub async fn create_import(&self, new: &Import) -> Result<(Import, bool), StoreError> {
        if let Some(key) = &new.request_key
            && let Some(existing) = self.import_by_request_key(key).await?
        {
            return Ok((existing, false));
        }
        match import::Entity::insert(import_model(new))
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok((new.clone(), true)),
            Err(error) => match &new.request_key {
                // A concurrent twin inserted the same key first.
                Some(key) => match self.import_by_request_key(key).await? {
                    Some(existing) => Ok((existing, false)),
                    None => Err(error.into()),
                },
                None => Err(error.into()),
            },
        }
    }

    async fn import_by_request_key(&self, key: &str) -> Result<Option<Import>, StoreError> {
        let select = import::Entity::find().filter(import::Column::RequestKey.eq(key));
        one(select, &self.db, convert::import).await
    }

    pub async fn import(&self, id: ImportId) -> Result<Option<Import>, StoreError> {
        one(import::Entity::find_by_id(id.0), &self.db, convert::import).await
    }

    /// The state of an import now, `None` when it is gone: one column of one row, read before
    /// every write the apply sends.
    pub async fn import_state(&self, id: ImportId) -> Result<Option<ImportState>, StoreError> {
        let state: Option<i32> = import::Entity::find_by_id(id.0)
            .select_only()
            .column(import::Column::State)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(state.map(state_of))
    }

    /// A page of an account's imports, newest first, after the import `after`.
    pub async fn list_imports(
        &self,
        account_id: AccountId,
        state: Option<ImportState>,
        after: Option<ImportId>,
        limit: u64,
    ) -> Result<Vec<Import>, StoreError> {
        let mut query = import::Entity::find()
            .filter(import::Column::AccountId.eq(account_id.0))
            .order_by_desc(import::Column::Id)
            .limit(limit);
        if let Some(state) = state {
            query = query.filter(import::Column::State.eq(state.code()));
        }
        if let Some(after) = after {
            query = query.filter(import::Column::Id.lt(after.0));
        }
        Ok(query
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::import)
            .collect())
    }

    /// How many imports are in each state now (states without any are absent).
    pub async fn imports_by_state(&self) -> Result<HashMap<ImportState, i64>, StoreError> {
        #[derive(FromQueryResult)]
        struct Counted {
            state: i32,
            imports: i64,
        }
        let counted = import::Entity::find()
            .select_only()
            .column(import::Column::State)
            .column_as(import::Column::Id.count(), "imports")
            .group_by(import::Column::State)
            .into_model::<Counted>()
            .all(&self.db)
            .await?;
        Ok(counted
            .into_iter()
            .filter_map(|Counted { state, imports }| {
                Some((ImportState::from_code(state)?, imports))
            })
            .collect())
    }
}

impl Tx {
    /// The import as this transaction sees it.
    pub async fn import(&self, id: ImportId) -> Result<Option<Import>, StoreError> {
        one(import::Entity::find_by_id(id.0), &self.txn, convert::import).await
    }

    /// The state of the import now, `None` when it is gone: what a step that found the import
    /// moved on reports.
    async fn state_now(&self, id: ImportId) -> Result<Option<ImportState>, StoreError> {
        let state = |model: import::Model| state_of(model.state);
        one(import::Entity::find_by_id(id.0), &self.txn, state).await
    }

    /// Moves an import from `from` to APPLYING and hands it to the workers (a lease to claim):
    /// one conditional UPDATE. It records the submit's request id, whether the apply sends
    /// welcome emails, the rows per batch of its apply (`apply_batch_size`, kept whatever the
    /// replica that resumes it is configured with), and `trace_context` for the apply when
    /// the import has none. Returns
    /// the import as it is after the step, or the state it was found in when it was no longer
    /// in `from` (`None`: gone).
    pub async fn start_apply(
        &self,
        current: &Import,
        from: ImportState,
        request_id: &str,
        welcome_emails: bool,
        trace_context: &str,
        apply_batch_size: Option<i32>,
    ) -> Result<Result<Import, Option<ImportState>>, StoreError> {
        let id = current.id;
        let updated = change_import(id, super::now_millis())
            .col_expr(
                import::Column::State,
                Expr::value(ImportState::Applying.code()),
            )
            .col_expr(
                import::Column::SubmitRequestId,
                Expr::value(Some(request_id.to_owned()).filter(|id| !id.is_empty())),
            )
            .col_expr(import::Column::ExpireAt, Expr::value(Option::<i64>::None))
            .col_expr(import::Column::WelcomeEmails, Expr::value(welcome_emails))
            .col_expr(
                import::Column::ApplyBatchSize,
                Expr::value(apply_batch_size),
            )
            .col_expr(
                import::Column::TraceContext,
                Expr::value(if current.trace_context.is_empty() {
                    trace_context
                } else {
                    current.trace_context.as_str()
                }),
            )
            .filter(import::Column::State.eq(from.code()))
            .exec(&self.txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(Err(self.state_now(id).await?));
        }
        insert_lease(&self.txn, id.0).await?;
        self.import(id).await.map(|import| import.ok_or(None))
    }

    /// Moves an import from `from` to CANCELLED: one conditional UPDATE. Rows not applied yet
    /// are skipped and the file's pieces deleted. Returns the import as it is after the step,
    /// or the state it was found in when it was no longer in `from` (`None`: gone).
    pub async fn cancel(
        &self,
        id: ImportId,
        from: ImportState,
        request_id: &str,
    ) -> Result<Result<Import, Option<ImportState>>, StoreError> {
        let updated = change_import(id, super::now_millis())
            .col_expr(
                import::Column::State,
                Expr::value(ImportState::Cancelled.code()),
            )
            .col_expr(
                import::Column::CancelRequestId,
                Expr::value(Some(request_id.to_owned()).filter(|id| !id.is_empty())),
            )
            .filter(import::Column::State.eq(from.code()))
            .exec(&self.txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(Err(self.state_now(id).await?));
        }
        skip_pending_rows(&self.txn, id.0).await?;
        // A worker applying right now sends nothing more once it sees the cancel, and then
        // drops the lease itself; the outcomes of the batches it had already sent (identity
        // writes them) replace their rows' SKIPPED, so those rows are reported as applied.
        if from != ImportState::Applying {
            delete_lease(&self.txn, id.0).await?;
        }
        delete_chunks(&self.txn, id.0).await?;
        self.import(id).await.map(|import| import.ok_or(None))
    }
}
