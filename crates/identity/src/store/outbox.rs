//! The outbox: emails written in the transaction of the change that causes them, leased to a
//! relay, marked delivered or due again.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::outbox;
use super::{Store, now};
use crate::domain::error::IdentityError;
use crate::domain::outbox::{LeasedEmail, OutboxEmail};

impl Store {
    /// Writes an email to the outbox, in the caller's transaction.
    pub async fn enqueue_email(
        &self,
        txn: &DatabaseTransaction,
        email: &OutboxEmail,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        outbox::Entity::insert(outbox_row(id, email)?)
            .exec_without_returning(txn)
            .await?;
        Ok(id)
    }

    /// Writes many emails to the outbox, in the caller's transaction, a few statements for all.
    pub async fn enqueue_emails(
        &self,
        txn: &DatabaseTransaction,
        emails: &[OutboxEmail],
    ) -> Result<(), StoreError> {
        // Nine columns a row: far below SQLite's and PostgreSQL's bind-parameter caps.
        for chunk in emails.chunks(200) {
            let rows = chunk
                .iter()
                .map(|email| outbox_row(Uuid::now_v7(), email))
                .collect::<Result<Vec<_>, _>>()?;
            outbox::Entity::insert_many(rows)
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
    }

    /// Leases up to `limit` due outbox rows to `owner` until `lease_until`. A row whose lease
    /// ran out (its relay died) is due again. Safe with any number of relays: the conditions are
    /// re-checked on each row as it is updated.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<LeasedEmail>, StoreError> {
        let at = now();
        let due = || {
            Expr::col(outbox::Column::DeliveredAt)
                .is_null()
                .and(Expr::col(outbox::Column::NextAttemptAt).lte(at))
                .and(
                    Expr::col(outbox::Column::LeaseUntil)
                        .is_null()
                        .or(Expr::col(outbox::Column::LeaseUntil).lt(at)),
                )
        };
        let candidates = Query::select()
            .column(outbox::Column::Id)
            .from(outbox::Entity)
            .and_where(due())
            .order_by(outbox::Column::NextAttemptAt, sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        Ok(outbox::Entity::update_many()
            .col_expr(
                outbox::Column::LeaseOwner,
                Expr::val(Some(owner.to_owned())),
            )
            .col_expr(outbox::Column::LeaseUntil, Expr::val(Some(lease_until)))
            .filter(outbox::Column::Id.in_subquery(candidates))
            .filter(due())
            .exec_with_returning(&self.db)
            .await?
            .into_iter()
            .map(|row| LeasedEmail {
                id: row.id,
                payload: row.payload,
                attempts: row.attempts,
                written_at: row.created_at,
            })
            .collect())
    }

    /// Marks an outbox row delivered and drops its payload (which may hold a reset link).
    pub async fn outbox_delivered(&self, id: Uuid) -> Result<(), StoreError> {
        release_outbox(id)
            .col_expr(outbox::Column::DeliveredAt, Expr::val(Some(now())))
            .col_expr(outbox::Column::Payload, Expr::val("{}"))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records that an email is not sent — its account was deleted, or it was given up: the
    /// row is done (and its payload, with the address and any link, dropped), as a delivered
    /// one is, with `error`.
    pub async fn outbox_dropped(&self, id: Uuid, error: &str) -> Result<(), StoreError> {
        release_outbox(id)
            .col_expr(outbox::Column::DeliveredAt, Expr::val(Some(now())))
            .col_expr(outbox::Column::Payload, Expr::val("{}"))
            .col_expr(outbox::Column::LastError, Expr::val(Some(error.to_owned())))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records a failed hand-over; the row is due again at `retry_at`.
    pub async fn outbox_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_retry(id, error, retry_at, 1).await
    }

    /// Records a hand-over that NotificationService refused for identity's key: a
    /// configuration error, so it is not counted as an attempt (the backoff does not grow while
    /// the key is being fixed). The row is due again at `retry_at`.
    pub async fn outbox_refused(
        &self,
        id: Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_retry(id, error, retry_at, 0).await
    }

    async fn outbox_retry(
        &self,
        id: Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
        attempts: i32,
    ) -> Result<(), StoreError> {
        release_outbox(id)
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(attempts),
            )
            .col_expr(outbox::Column::LastError, Expr::val(Some(error.to_owned())))
            .col_expr(outbox::Column::NextAttemptAt, Expr::val(retry_at))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// How many outbox emails were not handed over yet, and when the oldest of them was
    /// written: the outbox's depth and age, for the metrics.
    pub async fn outbox_stats(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        use sea_orm::PaginatorTrait;
        let waiting = || outbox::Entity::find().filter(outbox::Column::DeliveredAt.is_null());
        let depth = waiting().count(&self.db).await?;
        let oldest = waiting()
            .select_only()
            .column(outbox::Column::CreatedAt)
            .order_by_asc(outbox::Column::CreatedAt)
            .into_tuple::<DateTime<Utc>>()
            .one(&self.db)
            .await?;
        Ok((depth, oldest))
    }
}

/// The update that ends a relay's lease on one outbox row; callers add what became of it.
fn release_outbox(id: Uuid) -> sea_orm::UpdateMany<outbox::Entity> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::LeaseOwner, Expr::val(None::<String>))
        .col_expr(outbox::Column::LeaseUntil, Expr::val(None::<DateTime<Utc>>))
        .filter(outbox::Column::Id.eq(id))
}

/// A new outbox row `id` holding `email`, due now.
fn outbox_row(id: Uuid, email: &OutboxEmail) -> Result<outbox::ActiveModel, StoreError> {
    let at = now();
    Ok(outbox::ActiveModel {
        id: Set(id),
        payload: Set(serde_json::to_string(email)
            .map_err(|error| IdentityError::Corrupt(error.to_string()))?),
        attempts: Set(0),
        next_attempt_at: Set(at),
        lease_owner: Set(None),
        lease_until: Set(None),
        last_error: Set(None),
        delivered_at: Set(None),
        created_at: Set(at),
    })
}
