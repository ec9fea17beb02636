//! Accounts, their password policies and their extension bounds.

use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::Store;
use super::StoreError;
use super::entities::account;
use crate::domain::account::Account;
use crate::domain::assignment::ExtensionBounds;
use crate::domain::error::IdentityError;
use crate::domain::ids::AccountId;
use crate::domain::policy::PasswordPolicy;

/// Which accounts a listing holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// Those not deleted (ListAccounts' default).
    Open,
    /// Every one, deleted ones included (`show_deleted`).
    All,
    /// Only deleted ones (`show_deleted` with the filter `delete_time:*`).
    Deleted,
}

/// The account a stored row makes.
pub(super) fn account_of(model: account::Model) -> Result<Account, StoreError> {
    let policy = serde_json::from_str(&model.password_policy).map_err(|error| {
        IdentityError::Corrupt(format!("password policy of {}: {error}", model.id))
    })?;
    let extension_bounds = u32::try_from(model.extension_min_length)
        .ok()
        .zip(u32::try_from(model.extension_max_length).ok())
        .and_then(|(min, max)| ExtensionBounds::new(min, max).ok())
        .ok_or_else(|| {
            IdentityError::Corrupt(format!(
                "extension bounds of {}: {} to {}",
                model.id, model.extension_min_length, model.extension_max_length
            ))
        })?;
    Ok(Account {
        id: AccountId(model.id),
        display_name: model.display_name,
        policy,
        extension_bounds,
        created_at: model.created_at,
        updated_at: model.updated_at,
        version: model.version,
        deleted_at: model.deleted_at,
        purged_at: model.purged_at,
    })
}

impl Store {
    /// Inserts a new account.
    pub async fn create_account(
        &self,
        conn: &impl ConnectionTrait,
        display_name: &str,
        policy: &PasswordPolicy,
        extension_bounds: ExtensionBounds,
    ) -> Result<Account, StoreError> {
        let now = crate::store::now();
        let model = account::ActiveModel {
            id: Set(AccountId::generate().0),
            display_name: Set(display_name.to_owned()),
            password_policy: Set(serde_json::to_string(policy)
                .map_err(|error| IdentityError::Corrupt(error.to_string()))?),
            created_at: Set(now),
            updated_at: Set(now),
            version: Set(1),
            extension_min_length: Set(extension_bounds.min() as i32),
            extension_max_length: Set(extension_bounds.max() as i32),
            deleted_at: Set(None),
            purged_at: Set(None),
        }
        .insert(conn)
        .await?;
        account_of(model)
    }

    /// One account, if it exists.
    pub async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.account_in(&self.db, id).await
    }

    /// One account, read through `conn` (a transaction, for read-modify-write).
    pub async fn account_in(
        &self,
        conn: &impl ConnectionTrait,
        id: AccountId,
    ) -> Result<Option<Account>, StoreError> {
        account::Entity::find_by_id(id.0)
            .one(conn)
            .await?
            .map(account_of)
            .transpose()
    }

    /// Accounts in creation order after `after`, limited to `only` when given, as `which`
    /// says.
    pub async fn list_accounts(
        &self,
        after: Option<AccountId>,
        only: Option<Vec<AccountId>>,
        which: Listed,
        limit: u64,
    ) -> Result<Vec<Account>, StoreError> {
        let mut query = account::Entity::find().order_by_asc(account::Column::Id);
        match which {
            Listed::Open => query = query.filter(account::Column::DeletedAt.is_null()),
            Listed::Deleted => query = query.filter(account::Column::DeletedAt.is_not_null()),
            Listed::All => {}
        }
        if let Some(after) = after {
            query = query.filter(account::Column::Id.gt(after.0));
        }
        if let Some(only) = only {
            query = query.filter(account::Column::Id.is_in(only.into_iter().map(|id| id.0)));
        }
        query
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(account_of)
            .collect()
    }
}

impl Store {
    /// Replaces an account's password policy if the account is still at `account.version`.
    pub async fn update_policy(
        &self,
        conn: &impl ConnectionTrait,
        account: &Account,
        policy: &PasswordPolicy,
    ) -> Result<Account, StoreError> {
        self.write_account(
            conn,
            account,
            Account {
                policy: policy.clone(),
                ..account.clone()
            },
        )
        .await
    }

    /// Replaces an account's display name and extension bounds if the account is still at
    /// `account.version`. Nothing is written when both are unchanged.
    pub async fn update_account(
        &self,
        conn: &impl ConnectionTrait,
        account: &Account,
        display_name: &str,
        extension_bounds: ExtensionBounds,
    ) -> Result<Account, StoreError> {
        if account.display_name == display_name && account.extension_bounds == extension_bounds {
            return Ok(account.clone());
        }
        self.write_account(
            conn,
            account,
            Account {
                display_name: display_name.to_owned(),
                extension_bounds,
                ..account.clone()
            },
        )
        .await
    }

    /// Writes `next` over `current` as its next version, if nobody changed it in between
    /// (optimistic concurrency: one conditional UPDATE).
    async fn write_account(
        &self,
        conn: &impl ConnectionTrait,
        current: &Account,
        next: Account,
    ) -> Result<Account, StoreError> {
        use sea_orm::sea_query::Expr;
        let next = Account {
            updated_at: super::now(),
            version: current.version + 1,
            ..next
        };
        let policy = serde_json::to_string(&next.policy)
            .map_err(|error| IdentityError::Corrupt(error.to_string()))?;
        let result = account::Entity::update_many()
            .col_expr(account::Column::DisplayName, Expr::val(&next.display_name))
            .col_expr(account::Column::PasswordPolicy, Expr::val(policy))
            .col_expr(
                account::Column::ExtensionMinLength,
                Expr::val(next.extension_bounds.min() as i32),
            )
            .col_expr(
                account::Column::ExtensionMaxLength,
                Expr::val(next.extension_bounds.max() as i32),
            )
            .col_expr(account::Column::UpdatedAt, Expr::val(next.updated_at))
            .col_expr(account::Column::Version, Expr::val(next.version))
            .filter(account::Column::Id.eq(current.id.0))
            .filter(account::Column::Version.eq(current.version))
            .exec(conn)
            .await?;
        if result.rows_affected == 0 {
            return Err(IdentityError::StaleEtag.into());
        }
        Ok(next)
    }
}
