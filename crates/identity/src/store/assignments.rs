//! Roles and extensions of profiles.
//!
//! Who holds an extension number is decided by the primary key of `extensions`,
//! `(account_id, number)`: a number is claimed by inserting its row with `ON CONFLICT DO
//! NOTHING`, and a claim that inserts nothing lost to a holder — committed, or concurrent (on
//! PostgreSQL the insert waits for the concurrent transaction and sees its outcome). No claim
//! rests on an earlier read alone. Freeing a number deletes its row, so it can be given again.
//!
//! Every change of a profile's roles or extensions is a new version of the profile: its etag and
//! update time change. Callers lock the profile first ([`Store::lock_profile`]) so that
//! concurrent changes of one profile queue instead of failing on the version check.

use std::collections::{HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Statement, TryInsertResult,
};
use uuid::Uuid;

use super::Store;
use super::StoreError;
use super::entities::{extension, profile, profile_role};
use crate::domain::assignment::{Extension, ExtensionNumber, Role};
use crate::domain::error::IdentityError;
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::Profile;

/// Rows per multi-row statement, far below both databases' bind-parameter caps.
const CHUNK: usize = 200;

impl Store {
    /// One profile, if it belongs to `accounts` (`None`: to any account), locked for change
    /// until the transaction ends (PostgreSQL; a SQLite write transaction holds the whole
    /// database already). A profile of another account is neither returned nor locked.
    pub async fn lock_profile(
        &self,
        txn: &DatabaseTransaction,
        id: ProfileId,
        accounts: Option<&HashSet<AccountId>>,
    ) -> Result<Option<Profile>, StoreError> {
        Ok(self.lock_profiles(txn, &[id], accounts).await?.pop())
    }

    /// Makes the transaction the only one replacing `role`'s members in `account_id` until it
    /// ends, so that two replacements at once end as one of them, never as their union.
    /// PostgreSQL: a transaction-scoped advisory lock keyed by the pair (a key shared by
    /// another pair only makes the two wait on each other); a SQLite write transaction holds
    /// the whole database already.
    pub async fn lock_role_members(
        &self,
        txn: &DatabaseTransaction,
        account_id: AccountId,
        role: Role,
    ) -> Result<(), StoreError> {
        use sha2::Digest as _;
        if !super::is_postgres(txn) {
            return Ok(());
        }
        let pair = sha2::Sha256::digest(format!("role members {} {}", account_id.0, role.as_str()));
        let mut key = [0; 8];
        key.copy_from_slice(&pair[..8]);
        txn.query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [i64::from_be_bytes(key).into()],
        ))
        .await?;
        Ok(())
    }

    /// The profiles of `account_id` (not deleted) holding `role`, in one statement; `None`
    /// when there are more than `max`.
    pub async fn role_member_ids(
        &self,
        conn: &impl ConnectionTrait,
        account_id: AccountId,
        role: Role,
        max: usize,
    ) -> Result<Option<Vec<ProfileId>>, StoreError> {
        let ids: Vec<Uuid> = profile::Entity::find()
            .select_only()
            .column(profile::Column::Id)
            .filter(profile::Column::AccountId.eq(account_id.0))
            .filter(profile::Column::Status.ne(super::profiles::DELETED))
            .filter(super::profiles::holding(role))
            .limit(max as u64 + 1)
            .into_tuple()
            .all(conn)
            .await?;
        Ok((ids.len() <= max).then(|| ids.into_iter().map(ProfileId).collect()))
    }

    /// Gives `current` every role of `roles` it lacks. Unchanged (same version) when it holds
    /// them all already.
    pub async fn add_roles(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
        roles: &[Role],
    ) -> Result<Profile, StoreError> {
        let missing: Vec<Role> = roles
            .iter()
            .copied()
            .filter(|role| !current.roles.contains(role))
            .collect();
        if missing.is_empty() {
            return Ok(current.clone());
        }
        let id = current.id.0;
        profile_role::Entity::insert_many(missing.iter().map(|role| profile_role::ActiveModel {
            profile_id: Set(id),
            role: Set(role.as_str().to_owned()),
        }))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(txn)
        .await?;
        let mut next = current.clone();
        next.roles.extend(missing);
        next.roles.sort();
        self.new_version(txn, next, current.version).await
    }

    /// Takes the roles of `roles` from `current`. Unchanged (same version) when it holds none
    /// of them.
    pub async fn remove_roles(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
        roles: &[Role],
    ) -> Result<Profile, StoreError> {
        let removed: Vec<&str> = roles
            .iter()
            .filter(|role| current.roles.contains(role))
            .map(|role| role.as_str())
            .collect();
        if removed.is_empty() {
            return Ok(current.clone());
        }
        profile_role::Entity::delete_many()
            .filter(profile_role::Column::ProfileId.eq(current.id.0))
            .filter(profile_role::Column::Role.is_in(removed.iter().copied()))
            .exec(txn)
            .await?;
        let mut next = current.clone();
        next.roles.retain(|role| !removed.contains(&role.as_str()));
        self.new_version(txn, next, current.version).await
    }

    /// Gives `current` an extension. Holding the number already with the same kind changes
    /// nothing; with the other kind, the kind changes. A number that another profile of the
    /// account holds is [`IdentityError::ExtensionTaken`].
    pub async fn assign_extension(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
        wanted: &Extension,
    ) -> Result<Profile, StoreError> {
        let number = wanted.number.as_str();
        let kind = wanted.kind.as_str();
        match current
            .extensions
            .iter()
            .find(|held| held.number == wanted.number)
        {
            Some(held) if held.kind == wanted.kind => return Ok(current.clone()),
            Some(_) => {
                extension::Entity::update_many()
                    .col_expr(extension::Column::Kind, Expr::val(kind))
                    .filter(extension::Column::AccountId.eq(current.account_id.0))
                    .filter(extension::Column::Number.eq(number))
                    .filter(extension::Column::ProfileId.eq(current.id.0))
                    .exec(txn)
                    .await?;
            }
            None => {
                let inserted = extension::Entity::insert(extension_row(current, wanted))
                    .on_conflict(
                        OnConflict::columns([
                            extension::Column::AccountId,
                            extension::Column::Number,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(txn)
                    .await?;
                if inserted == 0 {
                    return Err(IdentityError::ExtensionTaken {
                        number: number.to_owned(),
                    }
                    .into());
                }
            }
        }
        let mut next = current.clone();
        next.extensions.retain(|held| held.number != wanted.number);
        next.extensions.push(wanted.clone());
        next.extensions.sort();
        self.new_version(txn, next, current.version).await
    }

    /// Frees an extension number of `current`; NOT_FOUND when the profile does not hold it.
    pub async fn unassign_extension(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
        number: &ExtensionNumber,
    ) -> Result<Profile, StoreError> {
        if !current.extensions.iter().any(|held| held.number == *number) {
            return Err(IdentityError::NotFound("extension").into());
        }
        extension::Entity::delete_many()
            .filter(extension::Column::AccountId.eq(current.account_id.0))
            .filter(extension::Column::Number.eq(number.as_str()))
            .filter(extension::Column::ProfileId.eq(current.id.0))
            .exec(txn)
            .await?;
        let mut next = current.clone();
        next.extensions.retain(|held| held.number != *number);
        self.new_version(txn, next, current.version).await
    }

    /// Who holds each of `numbers` in the account now (as this transaction sees it).
    pub async fn extension_holders(
        &self,
        txn: &impl ConnectionTrait,
        account_id: AccountId,
        numbers: &[String],
    ) -> Result<HashMap<String, ProfileId>, StoreError> {
        let mut holders = HashMap::new();
        for chunk in numbers.chunks(CHUNK) {
            let rows: Vec<(String, Uuid)> = extension::Entity::find()
                .select_only()
                .column(extension::Column::Number)
                .column(extension::Column::ProfileId)
                .filter(extension::Column::AccountId.eq(account_id.0))
                .filter(extension::Column::Number.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(txn)
                .await?;
            holders.extend(rows.into_iter().map(|(number, id)| (number, ProfileId(id))));
        }
        Ok(holders)
    }

    /// Frees `(profile, number)` pairs of the account.
    pub async fn release_extensions(
        &self,
        txn: &DatabaseTransaction,
        account_id: AccountId,
        released: &[(ProfileId, String)],
    ) -> Result<(), StoreError> {
        for chunk in released.chunks(CHUNK) {
            let profiles: HashSet<Uuid> = chunk.iter().map(|(profile, _)| profile.0).collect();
            extension::Entity::delete_many()
                .filter(extension::Column::AccountId.eq(account_id.0))
                .filter(extension::Column::ProfileId.is_in(profiles))
                .filter(extension::Column::Number.is_in(chunk.iter().map(|(_, n)| n.clone())))
                .exec(txn)
                .await?;
        }
        Ok(())
    }

    /// Claims extensions for profiles of the account; returns the numbers that were claimed.
    /// The others are held by someone else (possibly a concurrent transaction).
    pub async fn claim_extensions(
        &self,
        txn: &DatabaseTransaction,
        account_id: AccountId,
        claims: &[(ProfileId, &Extension)],
    ) -> Result<HashSet<String>, StoreError> {
        let mut claimed = HashSet::new();
        let now = crate::store::now();
        for chunk in claims.chunks(CHUNK) {
            let rows = chunk
                .iter()
                .map(|(profile_id, wanted)| extension::ActiveModel {
                    account_id: Set(account_id.0),
                    number: Set(wanted.number.as_str().to_owned()),
                    profile_id: Set(profile_id.0),
                    kind: Set(wanted.kind.as_str().to_owned()),
                    created_at: Set(now),
                });
            let result = extension::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([extension::Column::AccountId, extension::Column::Number])
                        .do_nothing()
                        .to_owned(),
                )
                .try_insert()
                .exec_with_returning_many(txn)
                .await?;
            if let TryInsertResult::Inserted(models) = result {
                claimed.extend(models.into_iter().map(|model| model.number));
            }
        }
        Ok(claimed)
    }

    /// Replaces the roles of each listed profile with exactly the roles given for it.
    pub async fn replace_roles(
        &self,
        txn: &DatabaseTransaction,
        roles: &[(ProfileId, Vec<Role>)],
    ) -> Result<(), StoreError> {
        for chunk in roles.chunks(CHUNK) {
            profile_role::Entity::delete_many()
                .filter(profile_role::Column::ProfileId.is_in(chunk.iter().map(|(id, _)| id.0)))
                .exec(txn)
                .await?;
        }
        let rows: Vec<profile_role::ActiveModel> = roles
            .iter()
            .flat_map(|(id, roles)| {
                roles.iter().map(|role| profile_role::ActiveModel {
                    profile_id: Set(id.0),
                    role: Set(role.as_str().to_owned()),
                })
            })
            .collect();
        for chunk in rows.chunks(CHUNK) {
            profile_role::Entity::insert_many(chunk.iter().cloned())
                .on_conflict(OnConflict::new().do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
    }

    /// Writes `next`, a profile whose assignments changed, as the version after `old_version`:
    /// a new etag and update time.
    async fn new_version(
        &self,
        txn: &DatabaseTransaction,
        mut next: Profile,
        old_version: i64,
    ) -> Result<Profile, StoreError> {
        next.updated_at = crate::store::now();
        next.version = old_version + 1;
        self.write_version(txn, old_version, &next).await?;
        Ok(next)
    }
}

fn extension_row(profile: &Profile, wanted: &Extension) -> extension::ActiveModel {
    extension::ActiveModel {
        account_id: Set(profile.account_id.0),
        number: Set(wanted.number.as_str().to_owned()),
        profile_id: Set(profile.id.0),
        kind: Set(wanted.kind.as_str().to_owned()),
        created_at: Set(crate::store::now()),
    }
}
