//! Retention's SQL: imports leave in two steps, so that none is ever seen half deleted.
//!
//! 1. [`Store::retire_imports`] deletes import rows (with their leases) in one transaction and
//!    records each in `import_purges`: from that commit on, the import is gone for every call
//!    (GetImport, ListImportRows and DownloadReport answer NOT_FOUND).
//! 2. [`Store::purge_import_data`] then deletes a retired import's staged rows and file pieces a
//!    batch at a time, over as many runs as they take (a million-row import is a thousand
//!    statements, not one), and [`Store::forget_purged`] drops its record once nothing is left.

use sea_orm::sea_query::{DeleteStatement, Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use super::entities::{chunk, claim, import, lease, outcome, purged, row};
use super::{Store, StoreError, now_millis};
use crate::domain::import::ImportId;
use crate::domain::state::ImportState;

/// Which imports retention deletes.
#[derive(Clone, Copy, Debug)]
pub enum Expired {
    /// Not submitted, and their expiry (`import_ttl_seconds` after creation) has passed
    /// before `now`; none a worker is validating.
    Unsubmitted { now: i64 },
    /// Submitted, and in a final state since before `before` (`import_retention_days`).
    Finished { before: i64 },
    /// Of an account identity purged; none a worker is validating or applying.
    OfPurgedAccount { account: Uuid },
}

impl Expired {
    fn condition(self) -> Condition {
        use import::Column;
        match self {
            Expired::Unsubmitted { now } => Condition::all().add(Column::ExpireAt.lt(now)).add(
                Column::State
                    .is_not_in([ImportState::Validating.code(), ImportState::Applying.code()]),
            ),
            Expired::Finished { before } => Condition::all()
                .add(Column::ExpireAt.is_null())
                .add(
                    Column::State.is_in(
                        ImportState::ALL
                            .into_iter()
                            .filter(|state| state.is_final())
                            .map(ImportState::code),
                    ),
                )
                .add(Column::UpdatedAt.lt(before)),
            Expired::OfPurgedAccount { account } => {
                Condition::all().add(Column::AccountId.eq(account)).add(
                    Column::State
                        .is_not_in([ImportState::Validating.code(), ImportState::Applying.code()]),
                )
            }
        }
    }
}

/// What one [`Store::purge_import_data`] deleted of a retired import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub chunks: u64,
    pub rows: u64,
    pub outcomes: u64,
    pub claims: u64,
}

impl Store {
    /// Retires up to `limit` imports that `expired` names: deletes them and their leases and
    /// records them in `import_purges`, in one transaction. Returns how many it retired.
    ///
    /// The imports are picked and locked in the transaction (`FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL, so two replicas take different ones and a concurrent submit or cancel
    /// either comes first or finds the import gone; SQLite's write lock, taken at `BEGIN`).
    pub async fn retire_imports(&self, expired: Expired, limit: u64) -> Result<u64, StoreError> {
        // Most runs find nothing: they read, and take no write lock.
        let any = import::Entity::find()
            .select_only()
            .column(import::Column::Id)
            .filter(expired.condition())
            .into_tuple::<Uuid>()
            .one(&self.db)
            .await?;
        if any.is_none() {
            return Ok(0);
        }
        let txn = self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?;
        let mut pick = import::Entity::find()
            .select_only()
            .column(import::Column::Id)
            .filter(expired.condition())
            .order_by_asc(import::Column::UpdatedAt)
            .limit(limit);
        if roster_runtime::db::is_postgres(&self.db) {
            pick = pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let ids: Vec<Uuid> = pick.into_tuple().all(&txn).await?;
        if ids.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }
        let deleted = import::Entity::delete_many()
            .filter(import::Column::Id.is_in(ids.iter().copied()))
            .filter(expired.condition())
            .exec(&txn)
            .await?
            .rows_affected;
        if deleted != ids.len() as u64 {
            // Locked rows cannot change; should one have, nothing is retired this time.
            txn.rollback().await?;
            return Ok(0);
        }
        lease::Entity::delete_many()
            .filter(lease::Column::ImportId.is_in(ids.iter().copied()))
            .exec(&txn)
            .await?;
        let at = now_millis();
        purged::Entity::insert_many(ids.iter().map(|id| purged::ActiveModel {
            import_id: Set(*id),
            purged_at: Set(at),
        }))
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(deleted)
    }

    /// Up to `limit` retired imports whose data may remain, the longest retired first.
    pub async fn purged_imports(&self, limit: u64) -> Result<Vec<ImportId>, StoreError> {
        let ids: Vec<Uuid> = purged::Entity::find()
            .select_only()
            .column(purged::Column::ImportId)
            .order_by_asc(purged::Column::PurgedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(ImportId).collect())
    }

    /// Deletes up to `limit` file pieces, up to `limit` staged rows, up to `limit` row
    /// outcomes and up to `limit` claims (a validation cut off by a cancel leaves them) of the
    /// retired import `import_id` (four statements); returns how many of each it deleted.
    pub async fn purge_import_data(
        &self,
        import_id: ImportId,
        limit: u64,
    ) -> Result<Purged, StoreError> {
        let id = import_id.0;
        let mut deleted = [0; 4];
        for (count, statement) in deleted.iter_mut().zip([
            first_of_import(
                chunk::Entity,
                chunk::Column::ImportId,
                chunk::Column::Seq,
                id,
                limit,
            ),
            first_of_import(
                row::Entity,
                row::Column::ImportId,
                row::Column::RowNumber,
                id,
                limit,
            ),
            first_of_import(
                outcome::Entity,
                outcome::Column::ImportId,
                outcome::Column::RowNumber,
                id,
                limit,
            ),
            first_claims_of_import(id, limit),
        ]) {
            *count = self.db.execute(&statement).await?.rows_affected();
        }
        let [chunks, rows, outcomes, claims] = deleted;
        Ok(Purged {
            chunks,
            rows,
            outcomes,
            claims,
        })
    }

    /// Drops the record of a retired import once none of its rows and pieces is left.
    pub async fn forget_purged(&self, import_id: ImportId) -> Result<(), StoreError> {
        let id = import_id.0;
        let forget = Query::delete()
            .from_table(purged::Entity)
            .and_where(Expr::col(purged::Column::ImportId).eq(id))
            .and_where(none_of_import(row::Entity, row::Column::ImportId, id))
            .and_where(none_of_import(
                outcome::Entity,
                outcome::Column::ImportId,
                id,
            ))
            .and_where(none_of_import(chunk::Entity, chunk::Column::ImportId, id))
            .and_where(none_of_import(claim::Entity, claim::Column::ImportId, id))
            .to_owned();
        self.db.execute(&forget).await?;
        Ok(())
    }
}

/// True when `table` holds no row of import `id` (its `import` column).
fn none_of_import<E: EntityTrait>(table: E, import: E::Column, id: Uuid) -> Expr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(table)
            .and_where(Expr::col((table, import)).eq(id))
            .to_owned(),
    )
    .not()
}

/// The DELETE of the first `limit` rows of `table` (by `key`, the second column of its primary
/// key) that belong to import `id`.
fn first_of_import<E: EntityTrait>(
    table: E,
    import: E::Column,
    key: E::Column,
    id: Uuid,
    limit: u64,
) -> DeleteStatement {
    Query::delete()
        .from_table(table)
        .and_where(Expr::col(import).eq(id))
        .and_where(
            Expr::col(key).in_subquery(
                Query::select()
                    .column(key)
                    .from(table)
                    .and_where(Expr::col(import).eq(id))
                    .order_by(key, sea_orm::Order::Asc)
                    .limit(limit)
                    .to_owned(),
            ),
        )
        .to_owned()
}

/// The DELETE of the first `limit` claims of import `id` in the order of their primary key, so
/// that each statement reads only what it deletes (their row numbers come last in the key).
fn first_claims_of_import(id: Uuid, limit: u64) -> DeleteStatement {
    let key = [
        claim::Column::Kind,
        claim::Column::Value,
        claim::Column::RowNumber,
    ];
    Query::delete()
        .from_table(claim::Entity)
        .and_where(Expr::col(claim::Column::ImportId).eq(id))
        .and_where(
            Expr::tuple(key.map(Expr::col)).in_subquery(
                Query::select()
                    .columns(key)
                    .from(claim::Entity)
                    .and_where(Expr::col(claim::Column::ImportId).eq(id))
                    .order_by_columns(key.map(|column| (column, sea_orm::Order::Asc)))
                    .limit(limit)
                    .to_owned(),
            ),
        )
        .to_owned()
}
