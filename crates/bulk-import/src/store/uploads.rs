//! The uploaded file: its pieces as they arrive, the end of an upload (handed to validation,
//! or INVALID), and uploads that will not complete (aborted, or abandoned and swept).

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use uuid::Uuid;

use super::entities::{chunk, import};
use super::{
    MAX_MESSAGE_CHARS, Store, StoreError, change_import, delete_chunks, insert_lease, now_millis,
    one, touch_import,
};
use crate::domain::encoding::TextEncoding;
use crate::domain::import::ImportId;
use crate::domain::state::ImportState;

impl Store {
    /// Stores the next piece of an import's file and records that the upload is alive (its
    /// `updated_at`, which the sweep of abandoned uploads reads). False, storing nothing, when
    /// the import is no longer UPLOADING: cancelled, or failed by a sweep meanwhile. The check
    /// and the insert are one transaction behind the import row's update, so no piece can land
    /// after [`Store::abort_upload`] removed the others.
    pub async fn append_chunk(
        &self,
        import_id: ImportId,
        seq: i32,
        data: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let alive = touch_import(import_id, now_millis())
            .filter(import::Column::State.eq(ImportState::Uploading.code()))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !alive {
            txn.rollback().await?;
            return Ok(false);
        }
        chunk::Entity::insert(chunk::ActiveModel {
            import_id: Set(import_id.0),
            seq: Set(seq),
            data: Set(data),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Ends an upload that will not complete: FAILED with `reason`, and every piece of its file
    /// deleted, in one transaction. Only an import still UPLOADING changes — and, with
    /// `idle_before`, only one that received nothing since then — through one conditional
    /// UPDATE, so of several replicas (or a replica and the uploading call) racing, exactly one
    /// ends it. True when this call did.
    pub async fn abort_upload(
        &self,
        import_id: ImportId,
        reason: &str,
        idle_before: Option<i64>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let reason: String = reason.chars().take(MAX_MESSAGE_CHARS).collect();
        let mut update = change_import(import_id, now_millis())
            .col_expr(
                import::Column::State,
                Expr::value(ImportState::Failed.code()),
            )
            .col_expr(import::Column::ErrorMessage, Expr::value(reason))
            .filter(import::Column::State.eq(ImportState::Uploading.code()));
        if let Some(before) = idle_before {
            update = update.filter(import::Column::UpdatedAt.lt(before));
        }
        if update.exec(&txn).await?.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        delete_chunks(&txn, import_id.0).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// UPLOADING imports that received nothing since `before` (milliseconds): abandoned by a
    /// client, or by a replica that died while receiving them.
    pub async fn stale_uploads(
        &self,
        before: i64,
        limit: u64,
    ) -> Result<Vec<ImportId>, StoreError> {
        let ids: Vec<Uuid> = import::Entity::find()
            .select_only()
            .column(import::Column::Id)
            .filter(import::Column::State.eq(ImportState::Uploading.code()))
            .filter(import::Column::UpdatedAt.lt(before))
            .order_by_asc(import::Column::UpdatedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(ImportId).collect())
    }

    /// The `seq`th piece of an import's file.
    pub async fn chunk(
        &self,
        import_id: ImportId,
        seq: i32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let select = chunk::Entity::find_by_id((import_id.0, seq));
        one(select, &self.db, |chunk| chunk.data).await
    }

    /// Ends the upload: VALIDATING with the encoding found (and a lease for the workers to
    /// claim), or INVALID with what was wrong. `given` says the request named the encoding.
    /// False, changing nothing, when the import is no longer UPLOADING (cancelled meanwhile).
    pub async fn finish_upload(
        &self,
        import_id: ImportId,
        file_bytes: i64,
        result: Result<TextEncoding, &str>,
        given: bool,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let now = now_millis();
        let (state, encoding, message) = match result {
            Ok(encoding) => (ImportState::Validating, Some(encoding.name()), ""),
            Err(message) => (ImportState::Invalid, None, message),
        };
        let updated = change_import(import_id, now)
            .col_expr(import::Column::State, Expr::value(state.code()))
            .col_expr(import::Column::Encoding, Expr::value(encoding))
            .col_expr(import::Column::EncodingGiven, Expr::value(given))
            .col_expr(import::Column::FileBytes, Expr::value(file_bytes))
            .col_expr(import::Column::ErrorMessage, Expr::value(message))
            .filter(import::Column::State.eq(ImportState::Uploading.code()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        if state == ImportState::Validating {
            insert_lease(&txn, import_id.0).await?;
        } else {
            delete_chunks(&txn, import_id.0).await?;
        }
        txn.commit().await?;
        Ok(true)
    }
}
