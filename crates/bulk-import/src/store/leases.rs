//! Leases: which replica works on an import. One owner at a time until the lease expires,
//! renewed by heartbeats and by every transaction that records progress (fencing out a
//! replica whose lease was taken over).

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::entities::lease;
use super::{Store, StoreError, delete_lease, now_millis};
use crate::domain::import::ImportId;

impl Store {
    /// Drops the lease of an import that needs no worker any more.
    pub async fn drop_lease(&self, import_id: ImportId) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        delete_lease(&txn, import_id.0).await?;
        Ok(txn.commit().await?)
    }

    /// Imports a worker may claim now: their lease is free or expired.
    pub async fn claimable(&self, now: i64, limit: u64) -> Result<Vec<ImportId>, StoreError> {
        let ids: Vec<uuid::Uuid> = lease::Entity::find()
            .select_only()
            .column(lease::Column::ImportId)
            .filter(
                Condition::any()
                    .add(lease::Column::Owner.is_null())
                    .add(lease::Column::ExpiresAt.lt(now)),
            )
            .order_by_asc(lease::Column::HeartbeatAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(ImportId).collect())
    }

    /// Takes the lease of an import if it is free or expired; true when this owner got it.
    /// One conditional UPDATE, so two replicas racing for it cannot both win.
    pub async fn try_claim(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let now = now_millis();
        let result = lease::Entity::update_many()
            .col_expr(lease::Column::Owner, Expr::value(owner))
            .col_expr(lease::Column::ExpiresAt, Expr::value(now + ttl_ms))
            .col_expr(lease::Column::HeartbeatAt, Expr::value(now))
            .col_expr(
                lease::Column::Claims,
                Expr::col(lease::Column::Claims).add(1),
            )
            .filter(lease::Column::ImportId.eq(import_id.0))
            .filter(
                Condition::any()
                    .add(lease::Column::Owner.is_null())
                    .add(lease::Column::ExpiresAt.lt(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Extends the lease while `owner` holds it (the heartbeat); false when it was lost.
    pub async fn renew(
        &self,
        import_id: ImportId,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(renew(&self.db, import_id, owner, ttl_ms).await?)
    }

    /// Gives the lease up, for another replica to claim at once.
    pub async fn release(&self, import_id: ImportId, owner: &str) -> Result<(), StoreError> {
        lease::Entity::update_many()
            .col_expr(lease::Column::Owner, Expr::value(Option::<String>::None))
            .col_expr(lease::Column::ExpiresAt, Expr::value(0i64))
            .filter(lease::Column::ImportId.eq(import_id.0))
            .filter(lease::Column::Owner.eq(owner))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Extends the lease while `owner` holds it; false when it was lost. Run inside every
/// transaction that records progress, it fences out a replica whose lease was taken over.
pub(super) async fn renew(
    conn: &impl ConnectionTrait,
    import_id: ImportId,
    owner: &str,
    ttl_ms: i64,
) -> Result<bool, DbErr> {
    let now = now_millis();
    let result = lease::Entity::update_many()
        .col_expr(lease::Column::ExpiresAt, Expr::value(now + ttl_ms))
        .col_expr(lease::Column::HeartbeatAt, Expr::value(now))
        .filter(lease::Column::ImportId.eq(import_id.0))
        .filter(lease::Column::Owner.eq(owner))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}
