//! Offboarding: an account deleted with every profile it has, brought back as it was, and the
//! personal data of deleted accounts and profiles purged once they can no longer come back.
//!
//! The statements that touch every profile of an account are single set-based statements, so
//! an account of a million profiles is deleted or restored in one transaction of a few
//! statements. Their race with a profile created at the same moment is settled by the account
//! row's lock (see [`Store::lock_account`] and [`Store::ensure_account_open`]).

use chrono::{DateTime, Utc};
use roster_runtime::db::statement;
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use super::entities::{
    account, credential, deleted_profile_extension, extension, password_history, profile_role,
    reset_token,
};
use super::{Store, StoreError, is_postgres};
use crate::domain::account::{Account, account_deleted};
use crate::domain::error::IdentityError;
use crate::domain::ids::{AccountId, ProfileId};

impl Store {
    /// The account, locked until the transaction ends. On PostgreSQL the lock (`FOR UPDATE`)
    /// conflicts with the key-share lock that inserting a profile takes on its account: a
    /// deletion waits for profiles being created to commit (and then deletes them too), and a
    /// profile created after the lock waits for the deletion and is then refused by
    /// [`Store::ensure_account_open`]. SQLite has one writer at a time.
    pub async fn lock_account(
        &self,
        txn: &DatabaseTransaction,
        id: AccountId,
    ) -> Result<Option<Account>, StoreError> {
        let mut query = account::Entity::find_by_id(id.0);
        if is_postgres(txn) {
            query = query.lock(LockType::Update);
        }
        query
            .one(txn)
            .await?
            .map(super::accounts::account_of)
            .transpose()
    }

    /// FAILED_PRECONDITION when `id` is deleted (NOT_FOUND when it does not exist), for the
    /// changes that bring a profile into being or back in the account. On PostgreSQL the
    /// account row is key-share locked until the transaction ends, which waits for a deletion
    /// holding [`Store::lock_account`] (and then reads it deleted) and holds a deletion back
    /// until this transaction has committed (which then deletes its profile too). On SQLite,
    /// call it after the transaction's first write: it then holds the one write lock and
    /// reads the committed state.
    pub async fn ensure_account_open(
        &self,
        conn: &impl ConnectionTrait,
        id: AccountId,
    ) -> Result<(), StoreError> {
        let mut query = account::Entity::find_by_id(id.0)
            .select_only()
            .column(account::Column::DeletedAt);
        if is_postgres(conn) {
            query = query.lock(LockType::KeyShare);
        }
        let deleted: Option<Option<DateTime<Utc>>> = query.into_tuple().one(conn).await?;
        match deleted {
            None => Err(IdentityError::NotFound("account").into()),
            Some(Some(_)) => Err(account_deleted().into()),
            Some(None) => Ok(()),
        }
    }

    /// Deletes `current` (locked) and every profile of it not deleted already: each keeps its
    /// id, username (retired, as every deleted profile's), roles and extensions, and
    /// remembers its status for [`Store::undelete_account`]. Returns the account after the
    /// change and how many profiles the deletion took.
    pub async fn delete_account(
        &self,
        txn: &DatabaseTransaction,
        current: &Account,
    ) -> Result<(Account, u64), StoreError> {
        let now = super::now();
        let next = Account {
            deleted_at: Some(now),
            updated_at: now,
            version: current.version + 1,
            ..current.clone()
        };
        self.write_deletion(txn, current, &next).await?;
        let profiles = txn
            .execute_raw(statement(
                txn,
                "UPDATE profiles SET account_deleted_status = status, status = 'deleted', \
                 deleted_at = $2, updated_at = $2, version = version + 1 \
                 WHERE account_id = $1 AND status <> 'deleted'",
                vec![current.id.0.into(), now.into()],
            ))
            .await?
            .rows_affected();
        // Links sent to the account's users before the deletion set no password, not even
        // after an undelete.
        self.revoke_reset_tokens_of_account(txn, current.id).await?;
        Ok((next, profiles))
    }

    /// Brings `current` (locked, deleted, not purged) back with exactly the profiles its
    /// deletion took, each with the status it had. Returns the account after the change and
    /// how many profiles came back.
    pub async fn undelete_account(
        &self,
        txn: &DatabaseTransaction,
        current: &Account,
    ) -> Result<(Account, u64), StoreError> {
        let now = super::now();
        let next = Account {
            deleted_at: None,
            updated_at: now,
            version: current.version + 1,
            ..current.clone()
        };
        self.write_deletion(txn, current, &next).await?;
        let profiles = txn
            .execute_raw(statement(
                txn,
                "UPDATE profiles SET status = account_deleted_status, \
                 account_deleted_status = NULL, deleted_at = NULL, updated_at = $2, \
                 version = version + 1 \
                 WHERE account_id = $1 AND account_deleted_status IS NOT NULL",
                vec![current.id.0.into(), now.into()],
            ))
            .await?
            .rows_affected();
        Ok((next, profiles))
    }

    /// Writes `next`'s deletion time over `current` if nobody changed it in between.
    async fn write_deletion(
        &self,
        txn: &DatabaseTransaction,
        current: &Account,
        next: &Account,
    ) -> Result<(), StoreError> {
        let result = account::Entity::update_many()
            .col_expr(account::Column::DeletedAt, Expr::val(next.deleted_at))
            .col_expr(account::Column::UpdatedAt, Expr::val(next.updated_at))
            .col_expr(account::Column::Version, Expr::val(next.version))
            .filter(account::Column::Id.eq(current.id.0))
            .filter(account::Column::Version.eq(current.version))
            .filter(account::Column::PurgedAt.is_null())
            .exec(txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(IdentityError::StaleEtag.into());
        }
        Ok(())
    }

    /// The ids of every deleted account, purged or not: their limited keys act on nothing.
    pub async fn deleted_accounts(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .filter(account::Column::DeletedAt.is_not_null())
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Begins the purge of up to `limit` accounts deleted before `before`: from then on they
    /// cannot be undeleted, and [`Store::purge_profiles`] takes all their profiles. One
    /// conditional statement: replicas running it together begin each purge once.
    pub async fn begin_account_purges(
        &self,
        txn: &DatabaseTransaction,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<AccountId>, StoreError> {
        let rows = txn
            .query_all_raw(statement(
                txn,
                "UPDATE accounts SET purged_at = $1 WHERE id IN (\
                 SELECT id FROM accounts WHERE deleted_at < $2 AND purged_at IS NULL \
                 ORDER BY deleted_at LIMIT $3) AND purged_at IS NULL AND deleted_at < $2 \
                 RETURNING id",
                vec![
                    super::now().into(),
                    before.into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| row.try_get_by_index::<Uuid>(0).map(AccountId))
            .collect::<Result<_, _>>()?)
    }

    /// Removes the personal data of up to `limit` profiles: those deleted on their own
    /// before `before`, and those of accounts whose purge began. A purged profile keeps its
    /// id, account, username (the registry never releases it) and status; its names, email,
    /// directory attributes, credentials, password history, reset links, roles and
    /// extensions go. The UPDATE is conditional, so replicas running it together purge each
    /// profile once, and a profile undeleted meanwhile is left alone. Returns the profiles
    /// purged, with their accounts.
    pub async fn purge_profiles(
        &self,
        txn: &DatabaseTransaction,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<(AccountId, ProfileId)>, StoreError> {
        let due = "SELECT id FROM profiles WHERE purged_at IS NULL AND status = 'deleted' AND (\
             (account_deleted_status IS NULL AND deleted_at < $2) OR account_id IN (\
             SELECT id FROM accounts WHERE purged_at IS NOT NULL))";
        let rows = txn
            .query_all_raw(statement(
                txn,
                &format!(
                    "UPDATE profiles SET first_name = '', last_name = '', email = '', \
                     email_search = '', job_title = NULL, department = NULL, locale = NULL, \
                     time_zone = NULL, external_id = NULL, purged_at = $1, \
                     version = version + 1 \
                     WHERE id IN ({due} ORDER BY deleted_at LIMIT $3) \
                     AND purged_at IS NULL AND status = 'deleted' \
                     RETURNING account_id, id"
                ),
                vec![
                    super::now().into(),
                    before.into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await?;
        let purged = rows
            .into_iter()
            .map(|row| {
                Ok((
                    AccountId(row.try_get_by_index::<Uuid>(0)?),
                    ProfileId(row.try_get_by_index::<Uuid>(1)?),
                ))
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        let ids: Vec<Uuid> = purged.iter().map(|(_, id)| id.0).collect();
        if ids.is_empty() {
            return Ok(purged);
        }
        credential::Entity::delete_many()
            .filter(credential::Column::ProfileId.is_in(ids.clone()))
            .exec(txn)
            .await?;
        password_history::Entity::delete_many()
            .filter(password_history::Column::ProfileId.is_in(ids.clone()))
            .exec(txn)
            .await?;
        reset_token::Entity::delete_many()
            .filter(reset_token::Column::ProfileId.is_in(ids.clone()))
            .exec(txn)
            .await?;
        profile_role::Entity::delete_many()
            .filter(profile_role::Column::ProfileId.is_in(ids.clone()))
            .exec(txn)
            .await?;
        extension::Entity::delete_many()
            .filter(extension::Column::ProfileId.is_in(ids.clone()))
            .exec(txn)
            .await?;
        deleted_profile_extension::Entity::delete_many()
            .filter(deleted_profile_extension::Column::ProfileId.is_in(ids))
            .exec(txn)
            .await?;
        Ok(purged)
    }
}
