//! Password credentials and history, and reset tokens.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::{credential, password_history, profile, reset_token};
use super::{Store, now};
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::policy::MAX_HISTORY_COUNT;

impl Store {
    /// The profile's current password hash.
    pub async fn credential(
        &self,
        conn: &impl ConnectionTrait,
        profile_id: ProfileId,
    ) -> Result<Option<String>, StoreError> {
        Ok(credential::Entity::find_by_id(profile_id.0)
            .one(conn)
            .await?
            .map(|row| row.hash))
    }

    /// The profile's last `count` password hashes, newest first.
    pub async fn password_history(
        &self,
        conn: &impl ConnectionTrait,
        profile_id: ProfileId,
        count: u32,
    ) -> Result<Vec<String>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        Ok(password_history::Entity::find()
            .filter(password_history::Column::ProfileId.eq(profile_id.0))
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
        profile_id: ProfileId,
        hash: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        credential::Entity::insert(credential::ActiveModel {
            profile_id: Set(profile_id.0),
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
            profile_id: Set(profile_id.0),
            hash: Set(hash.to_owned()),
            created_at: Set(at),
        })
        .exec_without_returning(txn)
        .await?;
        // The history keeps what the strictest policy can ask about, and no more: it would
        // otherwise grow with every password change.
        let kept = Query::select()
            .column(password_history::Column::Id)
            .from(password_history::Entity)
            .and_where(Expr::col(password_history::Column::ProfileId).eq(profile_id.0))
            .order_by(password_history::Column::CreatedAt, sea_orm::Order::Desc)
            .order_by(password_history::Column::Id, sea_orm::Order::Desc)
            .limit(u64::from(MAX_HISTORY_COUNT))
            .to_owned();
        password_history::Entity::delete_many()
            .filter(password_history::Column::ProfileId.eq(profile_id.0))
            .filter(password_history::Column::Id.not_in_subquery(kept))
            .exec(txn)
            .await?;
        self.revoke_reset_tokens(txn, profile_id).await
    }

    /// Replaces a hash made with older parameters, if the password did not change meanwhile.
    pub async fn upgrade_hash(
        &self,
        profile_id: ProfileId,
        old: &str,
        new: &str,
    ) -> Result<(), StoreError> {
        credential::Entity::update_many()
            .col_expr(credential::Column::Hash, Expr::val(new.to_owned()))
            .filter(credential::Column::ProfileId.eq(profile_id.0))
            .filter(credential::Column::Hash.eq(old))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Revokes the unused reset tokens of `profiles` (none: no statement).
    pub async fn revoke_reset_tokens_of(
        &self,
        txn: &DatabaseTransaction,
        profiles: &[ProfileId],
    ) -> Result<(), StoreError> {
        if profiles.is_empty() {
            return Ok(());
        }
        revoke_unused()
            .filter(reset_token::Column::ProfileId.is_in(profiles.iter().map(|id| id.0)))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Revokes the unused reset tokens of every profile of `account`, in one statement.
    pub async fn revoke_reset_tokens_of_account(
        &self,
        txn: &DatabaseTransaction,
        account: AccountId,
    ) -> Result<(), StoreError> {
        let profiles = Query::select()
            .column(profile::Column::Id)
            .from(profile::Entity)
            .and_where(profile::Column::AccountId.eq(account.0))
            .to_owned();
        revoke_unused()
            .filter(reset_token::Column::ProfileId.in_subquery(profiles))
            .exec(txn)
            .await?;
        Ok(())
    }

    pub(super) async fn revoke_reset_tokens(
        &self,
        txn: &DatabaseTransaction,
        profile_id: ProfileId,
    ) -> Result<(), StoreError> {
        self.revoke_reset_tokens_of(txn, &[profile_id]).await
    }

    /// Stores a new reset token (by hash), revoking the profile's earlier ones.
    pub async fn issue_reset_token(
        &self,
        txn: &DatabaseTransaction,
        profile_id: ProfileId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.revoke_reset_tokens(txn, profile_id).await?;
        reset_token::Entity::insert(reset_token::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            profile_id: Set(profile_id.0),
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
    ) -> Result<Option<ProfileId>, StoreError> {
        Ok(reset_token::Entity::find_by_id(token_hash.to_owned())
            .filter(reset_token::Column::UsedAt.is_null())
            .filter(reset_token::Column::RevokedAt.is_null())
            .filter(reset_token::Column::ExpiresAt.gt(now()))
            .one(conn)
            .await?
            .map(|row| ProfileId(row.profile_id)))
    }

    /// Marks a token used; false when it was no longer usable (a concurrent completion won).
    pub async fn use_reset_token(
        &self,
        txn: &DatabaseTransaction,
        token_hash: &str,
    ) -> Result<bool, StoreError> {
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
}

/// The update that revokes the reset tokens not used or revoked yet; callers say whose.
fn revoke_unused() -> sea_orm::UpdateMany<reset_token::Entity> {
    reset_token::Entity::update_many()
        .col_expr(reset_token::Column::RevokedAt, Expr::val(Some(now())))
        .filter(reset_token::Column::UsedAt.is_null())
        .filter(reset_token::Column::RevokedAt.is_null())
}
