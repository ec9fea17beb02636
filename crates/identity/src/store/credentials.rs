//! Password credentials and history, reset tokens, the outbox and the sign-in throttle.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::entities::{credential, outbox, password_history, reset_token, signin_throttle};
use super::{Store, now};
use crate::domain::error::IdentityError;
use crate::domain::outbox::OutboxEmail;

impl Store {
    /// The profile's current password hash.
    pub async fn credential(
        &self,
        conn: &impl ConnectionTrait,
        profile_id: Uuid,
    ) -> Result<Option<String>, IdentityError> {
        Ok(credential::Entity::find_by_id(profile_id)
            .one(conn)
            .await?
            .map(|row| row.hash))
    }

    /// The profile's last `count` password hashes, newest first.
    pub async fn password_history(
        &self,
        conn: &impl ConnectionTrait,
        profile_id: Uuid,
        count: u32,
    ) -> Result<Vec<String>, IdentityError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        Ok(password_history::Entity::find()
            .filter(password_history::Column::ProfileId.eq(profile_id))
            .order_by_desc(password_history::Column::CreatedAt)
            .limit(u64::from(count))
            .all(conn)
            .await?
            .into_iter()
            .map(|row| row.hash)
            .collect())
    }

    /// Sets the profile's password, records it in the history and revokes every reset token.
    pub async fn set_password(
        &self,
        txn: &DatabaseTransaction,
        profile_id: Uuid,
        hash: &str,
    ) -> Result<(), IdentityError> {
        let at = now();
        credential::Entity::insert(credential::ActiveModel {
            profile_id: Set(profile_id),
            hash: Set(hash.to_owned()),
            updated_at: Set(at),
        })
        .on_conflict(
            OnConflict::column(credential::Column::ProfileId)
                .update_columns([credential::Column::Hash, credential::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        password_history::Entity::insert(password_history::ActiveModel {
            id: Set(Uuid::now_v7()),
            profile_id: Set(profile_id),
            hash: Set(hash.to_owned()),
            created_at: Set(at),
        })
        .exec_without_returning(txn)
        .await?;
        self.revoke_reset_tokens(txn, profile_id).await
    }

    /// Replaces a hash made with older parameters, if the password did not change meanwhile.
    pub async fn upgrade_hash(
        &self,
        profile_id: Uuid,
        old: &str,
        new: &str,
    ) -> Result<(), IdentityError> {
        credential::Entity::update_many()
            .col_expr(credential::Column::Hash, Expr::val(new.to_owned()))
            .filter(credential::Column::ProfileId.eq(profile_id))
            .filter(credential::Column::Hash.eq(old))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn revoke_reset_tokens(
        &self,
        txn: &DatabaseTransaction,
        profile_id: Uuid,
    ) -> Result<(), IdentityError> {
        reset_token::Entity::update_many()
            .col_expr(reset_token::Column::RevokedAt, Expr::val(Some(now())))
            .filter(reset_token::Column::ProfileId.eq(profile_id))
            .filter(reset_token::Column::UsedAt.is_null())
            .filter(reset_token::Column::RevokedAt.is_null())
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Stores a new reset token (by hash), revoking the profile's earlier ones.
    pub async fn issue_reset_token(
        &self,
        txn: &DatabaseTransaction,
        profile_id: Uuid,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), IdentityError> {
        self.revoke_reset_tokens(txn, profile_id).await?;
        reset_token::Entity::insert(reset_token::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            profile_id: Set(profile_id),
            expires_at: Set(expires_at),
            used_at: Set(None),
            revoked_at: Set(None),
            created_at: Set(now()),
        })
        .exec_without_returning(txn)
        .await?;
        Ok(())
    }

    /// The profile a usable token belongs to: not used, not revoked, not expired.
    pub async fn usable_reset_token(
        &self,
        conn: &impl ConnectionTrait,
        token_hash: &str,
    ) -> Result<Option<Uuid>, IdentityError> {
        Ok(reset_token::Entity::find_by_id(token_hash.to_owned())
            .filter(reset_token::Column::UsedAt.is_null())
            .filter(reset_token::Column::RevokedAt.is_null())
            .filter(reset_token::Column::ExpiresAt.gt(now()))
            .one(conn)
            .await?
            .map(|row| row.profile_id))
    }

    /// Marks a token used; false when it was no longer usable (a concurrent completion won).
    pub async fn use_reset_token(
        &self,
        txn: &DatabaseTransaction,
        token_hash: &str,
    ) -> Result<bool, IdentityError> {
        let result = reset_token::Entity::update_many()
            .col_expr(reset_token::Column::UsedAt, Expr::val(Some(now())))
            .filter(reset_token::Column::TokenHash.eq(token_hash))
            .filter(reset_token::Column::UsedAt.is_null())
            .filter(reset_token::Column::RevokedAt.is_null())
            .filter(reset_token::Column::ExpiresAt.gt(now()))
            .exec(txn)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Writes an email to the outbox, in the caller's transaction.
    pub async fn enqueue_email(
        &self,
        txn: &DatabaseTransaction,
        email: &OutboxEmail,
    ) -> Result<Uuid, IdentityError> {
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
    ) -> Result<(), IdentityError> {
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
    ) -> Result<Vec<outbox::Model>, IdentityError> {
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
            .await?)
    }

    /// Marks an outbox row delivered and drops its payload (which may hold a reset link).
    pub async fn outbox_delivered(&self, id: Uuid) -> Result<(), IdentityError> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::DeliveredAt, Expr::val(Some(now())))
            .col_expr(outbox::Column::Payload, Expr::val("{}"))
            .col_expr(outbox::Column::LeaseOwner, Expr::val(None::<String>))
            .col_expr(outbox::Column::LeaseUntil, Expr::val(None::<DateTime<Utc>>))
            .filter(outbox::Column::Id.eq(id))
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
    ) -> Result<(), IdentityError> {
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
    ) -> Result<(), IdentityError> {
        self.outbox_retry(id, error, retry_at, 0).await
    }

    async fn outbox_retry(
        &self,
        id: Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
        attempts: i32,
    ) -> Result<(), IdentityError> {
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(attempts),
            )
            .col_expr(outbox::Column::LastError, Expr::val(Some(error.to_owned())))
            .col_expr(outbox::Column::NextAttemptAt, Expr::val(retry_at))
            .col_expr(outbox::Column::LeaseOwner, Expr::val(None::<String>))
            .col_expr(outbox::Column::LeaseUntil, Expr::val(None::<DateTime<Utc>>))
            .filter(outbox::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The throttle state of a canonical username.
    pub async fn signin_throttle(
        &self,
        canonical: &str,
    ) -> Result<Option<signin_throttle::Model>, IdentityError> {
        Ok(signin_throttle::Entity::find_by_id(canonical.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Stores the throttle state after a failed sign-in.
    pub async fn record_signin_failure(
        &self,
        canonical: &str,
        failures: i32,
        locked_until: Option<DateTime<Utc>>,
    ) -> Result<(), IdentityError> {
        signin_throttle::Entity::insert(signin_throttle::ActiveModel {
            canonical: Set(canonical.to_owned()),
            failures: Set(failures),
            last_failure_at: Set(now()),
            locked_until: Set(locked_until),
        })
        .on_conflict(
            OnConflict::column(signin_throttle::Column::Canonical)
                .update_columns([
                    signin_throttle::Column::Failures,
                    signin_throttle::Column::LastFailureAt,
                    signin_throttle::Column::LockedUntil,
                ])
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Forgets failed sign-ins after a successful one.
    pub async fn clear_signin_failures(&self, canonical: &str) -> Result<(), IdentityError> {
        signin_throttle::Entity::delete_by_id(canonical.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// A new outbox row `id` holding `email`, due now.
fn outbox_row(id: Uuid, email: &OutboxEmail) -> Result<outbox::ActiveModel, IdentityError> {
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
