//! SCIM tokens: created under the limit of active tokens an account may have, listed newest
//! first, revoked, and found by their secret's hash.

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entities::{account, scim_token};
use super::{Store, StoreError, is_postgres, now};
use crate::domain::error::IdentityError;
use crate::domain::ids::{AccountId, ScimTokenId};
use crate::domain::scim_token::{MAX_ACTIVE_SCIM_TOKENS, ScimToken, ScimTokenName};

fn token_of(model: scim_token::Model) -> ScimToken {
    ScimToken {
        id: ScimTokenId(model.id),
        account_id: AccountId(model.account_id),
        display_name: model.display_name,
        send_welcome_emails: model.send_welcome_emails,
        secret_prefix: model.secret_prefix,
        created_at: model.created_at,
        revoked_at: model.revoked_at,
    }
}

/// What a new token is made of: its name and setting, and its secret as kept.
#[derive(Clone, Copy, Debug)]
pub struct NewScimTokenRow<'a> {
    pub account_id: AccountId,
    pub display_name: &'a ScimTokenName,
    pub send_welcome_emails: bool,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: &'a str,
    pub secret_prefix: &'a str,
}

impl Store {
    /// Inserts a token, unless its account has [`MAX_ACTIVE_SCIM_TOKENS`] active ones already
    /// (`ScimTokenLimit`) or does not exist (`NotFound`).
    ///
    /// The count and the insert run under the account row's lock on PostgreSQL (`FOR NO KEY
    /// UPDATE`: it serialises the account's token creations without holding up the foreign-key
    /// checks of rows that only refer to the account), and under SQLite's single writer there,
    /// so concurrent creations on any number of replicas never pass the limit together.
    pub async fn create_scim_token(
        &self,
        txn: &DatabaseTransaction,
        new: NewScimTokenRow<'_>,
    ) -> Result<ScimToken, StoreError> {
        let mut account = account::Entity::find_by_id(new.account_id.0)
            .select_only()
            .column(account::Column::Id);
        if is_postgres(txn) {
            account = account.lock(LockType::NoKeyUpdate);
        }
        if account.into_tuple::<Uuid>().one(txn).await?.is_none() {
            return Err(IdentityError::NotFound("account").into());
        }
        let active = scim_token::Entity::find()
            .filter(scim_token::Column::AccountId.eq(new.account_id.0))
            .filter(scim_token::Column::RevokedAt.is_null())
            .count(txn)
            .await?;
        if active >= MAX_ACTIVE_SCIM_TOKENS {
            return Err(IdentityError::ScimTokenLimit.into());
        }
        let model = scim_token::ActiveModel {
            id: Set(ScimTokenId::generate().0),
            account_id: Set(new.account_id.0),
            display_name: Set(new.display_name.as_str().to_owned()),
            secret_sha256: Set(new.secret_sha256.to_owned()),
            secret_prefix: Set(new.secret_prefix.to_owned()),
            send_welcome_emails: Set(new.send_welcome_emails),
            created_at: Set(now()),
            revoked_at: Set(None),
        }
        .insert(txn)
        .await?;
        Ok(token_of(model))
    }

    /// Up to `limit` tokens of an account, revoked ones included, newest first, created before
    /// the token `before` when given.
    pub async fn scim_tokens(
        &self,
        account_id: AccountId,
        before: Option<ScimTokenId>,
        limit: u64,
    ) -> Result<Vec<ScimToken>, StoreError> {
        let mut query = scim_token::Entity::find()
            .filter(scim_token::Column::AccountId.eq(account_id.0))
            .order_by_desc(scim_token::Column::Id);
        if let Some(before) = before {
            query = query.filter(scim_token::Column::Id.lt(before.0));
        }
        Ok(query
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(token_of)
            .collect())
    }

    /// Revokes the token `id` of `account_id` if it is active. Answers the token as it is
    /// then, and whether this call revoked it; `None` when the account has no such token.
    pub async fn revoke_scim_token(
        &self,
        conn: &impl ConnectionTrait,
        account_id: AccountId,
        id: ScimTokenId,
    ) -> Result<Option<(ScimToken, bool)>, StoreError> {
        let revoked = scim_token::Entity::update_many()
            .col_expr(scim_token::Column::RevokedAt, Expr::val(Some(now())))
            .filter(scim_token::Column::Id.eq(id.0))
            .filter(scim_token::Column::AccountId.eq(account_id.0))
            .filter(scim_token::Column::RevokedAt.is_null())
            .exec(conn)
            .await?
            .rows_affected
            == 1;
        Ok(scim_token::Entity::find_by_id(id.0)
            .filter(scim_token::Column::AccountId.eq(account_id.0))
            .one(conn)
            .await?
            .map(|model| (token_of(model), revoked)))
    }

    /// The active token whose secret has this SHA-256 (hex), if any: not revoked, and of an
    /// account that is not deleted.
    pub async fn active_scim_token(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<ScimToken>, StoreError> {
        use sea_orm::sea_query::Query;
        let open_accounts = Query::select()
            .column(account::Column::Id)
            .from(account::Entity)
            .and_where(account::Column::DeletedAt.is_null())
            .to_owned();
        Ok(scim_token::Entity::find()
            .filter(scim_token::Column::SecretSha256.eq(secret_sha256))
            .filter(scim_token::Column::RevokedAt.is_null())
            .filter(scim_token::Column::AccountId.in_subquery(open_accounts))
            .one(&self.db)
            .await?
            .map(token_of))
    }
}
