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
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, TryInsertResult,
};
use uuid::Uuid;

use super::entities::{extension, profile, profile_role};
use super::{ProfileRecord, Store};
use crate::domain::assignment::{Extension, ExtensionNumber, Role};
use crate::domain::error::IdentityError;

/// Rows per multi-row statement, far below both databases' bind-parameter caps.
const CHUNK: usize = 200;

/// A profile's extensions in [`ProfileRecord`] form: `(number, kind)` sorted by number.
pub fn extension_rows<'a>(
    extensions: impl IntoIterator<Item = &'a Extension>,
) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = extensions
        .into_iter()
        .map(|extension| {
            (
                extension.number.as_str().to_owned(),
                extension.kind.as_str().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A profile's roles in [`ProfileRecord`] form: names, sorted.
pub fn role_names<'a>(roles: impl IntoIterator<Item = &'a Role>) -> Vec<String> {
    let mut names: Vec<String> = roles
        .into_iter()
        .map(|role| role.as_str().to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Store {
    /// One profile, if it belongs to `accounts` (`None`: to any account), locked for change
    /// until the transaction ends (PostgreSQL; a SQLite write transaction holds the whole
    /// database already). A profile of another account is neither returned nor locked.
    pub async fn lock_profile(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        accounts: Option<&HashSet<Uuid>>,
    ) -> Result<Option<ProfileRecord>, IdentityError> {
        Ok(self.lock_profiles(txn, &[id], accounts).await?.pop())
    }

    /// Gives `current` every role of `roles` it lacks. Unchanged (same version) when it holds
    /// them all already.
    pub async fn add_roles(
        &self,
        txn: &DatabaseTransaction,
        current: &ProfileRecord,
        roles: &[Role],
    ) -> Result<ProfileRecord, IdentityError> {
        let missing: Vec<Role> = roles
            .iter()
            .copied()
            .filter(|role| !current.roles.iter().any(|held| held == role.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(current.clone());
        }
        let id = current.profile.id;
        profile_role::Entity::insert_many(missing.iter().map(|role| profile_role::ActiveModel {
            profile_id: Set(id),
            role: Set(role.as_str().to_owned()),
        }))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(txn)
        .await?;
        let mut names = current.roles.clone();
        names.extend(missing.iter().map(|role| role.as_str().to_owned()));
        names.sort();
        Ok(ProfileRecord {
            profile: self.new_version(txn, &current.profile).await?,
            roles: names,
            ..current.clone()
        })
    }

    /// Takes the roles of `roles` from `current`. Unchanged (same version) when it holds none
    /// of them.
    pub async fn remove_roles(
        &self,
        txn: &DatabaseTransaction,
        current: &ProfileRecord,
        roles: &[Role],
    ) -> Result<ProfileRecord, IdentityError> {
        let removed: Vec<&str> = roles
            .iter()
            .map(|role| role.as_str())
            .filter(|name| current.roles.iter().any(|held| held == name))
            .collect();
        if removed.is_empty() {
            return Ok(current.clone());
        }
        profile_role::Entity::delete_many()
            .filter(profile_role::Column::ProfileId.eq(current.profile.id))
            .filter(profile_role::Column::Role.is_in(removed.iter().copied()))
            .exec(txn)
            .await?;
        Ok(ProfileRecord {
            profile: self.new_version(txn, &current.profile).await?,
            roles: current
                .roles
                .iter()
                .filter(|name| !removed.contains(&name.as_str()))
                .cloned()
                .collect(),
            ..current.clone()
        })
    }

    /// Gives `current` an extension. Holding the number already with the same kind changes
    /// nothing; with the other kind, the kind changes. A number that another profile of the
    /// account holds is [`IdentityError::ExtensionTaken`].
    pub async fn assign_extension(
        &self,
        txn: &DatabaseTransaction,
        current: &ProfileRecord,
        wanted: &Extension,
    ) -> Result<ProfileRecord, IdentityError> {
        let old = &current.profile;
        let number = wanted.number.as_str();
        let kind = wanted.kind.as_str();
        match current.extensions.iter().find(|(held, _)| held == number) {
            Some((_, held_kind)) if held_kind == kind => return Ok(current.clone()),
            Some(_) => {
                extension::Entity::update_many()
                    .col_expr(extension::Column::Kind, Expr::val(kind))
                    .filter(extension::Column::AccountId.eq(old.account_id))
                    .filter(extension::Column::Number.eq(number))
                    .filter(extension::Column::ProfileId.eq(old.id))
                    .exec(txn)
                    .await?;
            }
            None => {
                let inserted = extension::Entity::insert(extension_row(old, wanted))
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
                    });
                }
            }
        }
        let mut extensions: Vec<(String, String)> = current
            .extensions
            .iter()
            .filter(|(held, _)| held != number)
            .cloned()
            .collect();
        extensions.push((number.to_owned(), kind.to_owned()));
        extensions.sort();
        Ok(ProfileRecord {
            profile: self.new_version(txn, old).await?,
            extensions,
            ..current.clone()
        })
    }

    /// Frees an extension number of `current`; NOT_FOUND when the profile does not hold it.
    pub async fn unassign_extension(
        &self,
        txn: &DatabaseTransaction,
        current: &ProfileRecord,
        number: &ExtensionNumber,
    ) -> Result<ProfileRecord, IdentityError> {
        let old = &current.profile;
        if !current
            .extensions
            .iter()
            .any(|(held, _)| held == number.as_str())
        {
            return Err(IdentityError::NotFound("extension"));
        }
        extension::Entity::delete_many()
            .filter(extension::Column::AccountId.eq(old.account_id))
            .filter(extension::Column::Number.eq(number.as_str()))
            .filter(extension::Column::ProfileId.eq(old.id))
            .exec(txn)
            .await?;
        Ok(ProfileRecord {
            profile: self.new_version(txn, old).await?,
            extensions: current
                .extensions
                .iter()
                .filter(|(held, _)| held != number.as_str())
                .cloned()
                .collect(),
            ..current.clone()
        })
    }

    /// Who holds each of `numbers` in the account now (as this transaction sees it).
    pub async fn extension_holders(
        &self,
        txn: &DatabaseTransaction,
        account_id: Uuid,
        numbers: &[String],
    ) -> Result<HashMap<String, Uuid>, IdentityError> {
        let mut holders = HashMap::new();
        for chunk in numbers.chunks(CHUNK) {
            let rows: Vec<(String, Uuid)> = extension::Entity::find()
                .select_only()
                .column(extension::Column::Number)
                .column(extension::Column::ProfileId)
                .filter(extension::Column::AccountId.eq(account_id))
                .filter(extension::Column::Number.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(txn)
                .await?;
            holders.extend(rows);
        }
        Ok(holders)
    }

    /// Frees `(profile, number)` pairs of the account.
    pub async fn release_extensions(
        &self,
        txn: &DatabaseTransaction,
        account_id: Uuid,
        released: &[(Uuid, String)],
    ) -> Result<(), IdentityError> {
        for chunk in released.chunks(CHUNK) {
            let profiles: HashSet<Uuid> = chunk.iter().map(|(profile, _)| *profile).collect();
            extension::Entity::delete_many()
                .filter(extension::Column::AccountId.eq(account_id))
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
        account_id: Uuid,
        claims: &[(Uuid, &Extension)],
    ) -> Result<HashSet<String>, IdentityError> {
        let mut claimed = HashSet::new();
        let now = crate::store::now();
        for chunk in claims.chunks(CHUNK) {
            let rows = chunk
                .iter()
                .map(|(profile_id, wanted)| extension::ActiveModel {
                    account_id: Set(account_id),
                    number: Set(wanted.number.as_str().to_owned()),
                    profile_id: Set(*profile_id),
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
        roles: &[(Uuid, Vec<Role>)],
    ) -> Result<(), IdentityError> {
        for chunk in roles.chunks(CHUNK) {
            profile_role::Entity::delete_many()
                .filter(profile_role::Column::ProfileId.is_in(chunk.iter().map(|(id, _)| *id)))
                .exec(txn)
                .await?;
        }
        let rows: Vec<profile_role::ActiveModel> = roles
            .iter()
            .flat_map(|(id, roles)| {
                roles.iter().map(|role| profile_role::ActiveModel {
                    profile_id: Set(*id),
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

    /// Writes the next version of a profile whose assignments changed: a new etag and update
    /// time.
    async fn new_version(
        &self,
        txn: &DatabaseTransaction,
        old: &profile::Model,
    ) -> Result<profile::Model, IdentityError> {
        let mut model = old.clone();
        model.updated_at = crate::store::now();
        model.version = old.version + 1;
        self.write_version(txn, old, &model).await?;
        Ok(model)
    }
}

fn extension_row(profile: &profile::Model, wanted: &Extension) -> extension::ActiveModel {
    extension::ActiveModel {
        account_id: Set(profile.account_id),
        number: Set(wanted.number.as_str().to_owned()),
        profile_id: Set(profile.id),
        kind: Set(wanted.kind.as_str().to_owned()),
        created_at: Set(crate::store::now()),
    }
}
