//! The username registry: one row per canonical username ever taken, with its UTS #39
//! skeleton; rows are never deleted, and a row changes only when its holder writes the same
//! username another way (case, width) that looks different: the skeleton follows the written
//! form ([`Store::follow_written_form`]). Whether a registered username is *taken* or
//! *retired* is derived (the domain's [`Standing::decide`]): taken while the registering
//! profile still holds it and is not deleted, retired otherwise. Both columns have unique
//! indexes, so the database — not a check in the application — decides the race between two
//! replicas creating the same username.

use std::collections::{HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect,
};
use uuid::Uuid;

use super::entities::{profile, username_registry};
use super::{Store, StoreError};
use crate::domain::error::{IdentityError, Refusal};
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::Profile;
use crate::domain::username::{Registration, Standing, Username};

/// How a deleted profile's status is stored.
const DELETED: &str = "deleted";

impl Store {
    /// The standing of each username: `None` when it is free.
    pub async fn standings(
        &self,
        conn: &impl ConnectionTrait,
        usernames: &[&Username],
    ) -> Result<Vec<Option<Standing>>, StoreError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let canonicals: Vec<String> = usernames.iter().map(|u| u.canonical().to_owned()).collect();
        let skeletons: Vec<String> = usernames.iter().map(|u| u.skeleton().to_owned()).collect();
        let wanted: HashSet<&str> = canonicals.iter().map(String::as_str).collect();
        // One statement for both questions (each column has its unique index): the rows
        // registered under any of the canonical forms, and those sharing any of the skeletons.
        let rows = username_registry::Entity::find()
            .filter(
                Condition::any()
                    .add(username_registry::Column::Canonical.is_in(canonicals.iter().cloned()))
                    .add(username_registry::Column::Skeleton.is_in(skeletons)),
            )
            .all(conn)
            .await?;
        let confusable: HashSet<String> = rows.iter().map(|row| row.skeleton.clone()).collect();
        let by_canonical: HashMap<String, username_registry::Model> = rows
            .into_iter()
            .filter(|row| wanted.contains(row.canonical.as_str()))
            .map(|row| (row.canonical.clone(), row))
            .collect();
        let holders: Vec<Uuid> = by_canonical.values().map(|row| row.profile_id).collect();
        let holding: HashSet<(Uuid, String)> = if holders.is_empty() {
            HashSet::new()
        } else {
            profile::Entity::find()
                .select_only()
                .column(profile::Column::Id)
                .column(profile::Column::CanonicalUsername)
                .filter(profile::Column::Id.is_in(holders))
                .filter(profile::Column::Status.ne(DELETED))
                .into_tuple::<(Uuid, String)>()
                .all(conn)
                .await?
                .into_iter()
                .collect()
        };
        Ok(usernames
            .iter()
            .map(|username| {
                let registration = by_canonical
                    .get(username.canonical())
                    .map(|row| Registration {
                        profile: (ProfileId(row.profile_id), AccountId(row.account_id)),
                        still_held: holding.contains(&(row.profile_id, row.canonical.clone())),
                    });
                Standing::decide(registration, confusable.contains(username.skeleton()))
            })
            .collect())
    }

    /// Registers `username` for `profile_id`, for good. Refused when the canonical form or the
    /// skeleton is registered already, by a committed or a concurrent transaction.
    pub async fn reserve_username(
        &self,
        txn: &DatabaseTransaction,
        username: &Username,
        profile_id: ProfileId,
        account_id: AccountId,
    ) -> Result<(), StoreError> {
        let inserted =
            username_registry::Entity::insert(registry_row(username, profile_id, account_id))
                .on_conflict(OnConflict::new().do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
        if inserted == 1 {
            return Ok(());
        }
        let refusal = self
            .standings(txn, &[username])
            .await?
            .pop()
            .flatten()
            .map_or(Refusal::Taken, |standing| standing.refusal);
        Err(IdentityError::username_refused(refusal).into())
    }
}

impl Store {
    /// Whether `current`'s username, written as `username`, keeps a look of its own: true
    /// when its canonical form changes (the new one is registered as any new username is),
    /// when it is written as before, or when the registry's skeleton now follows the new
    /// writing ([`Store::follow_written_form`]); false when that writing looks like another
    /// username. UpdateProfile, the SCIM writes and restore, and BatchUpsertProfiles ask it.
    pub async fn look_kept(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
        username: &Username,
    ) -> Result<bool, StoreError> {
        if username.canonical() != current.canonical_username
            || username.as_str() == current.username
        {
            return Ok(true);
        }
        self.follow_written_form(txn, username, current.id).await
    }

    /// Makes the skeleton registered for `username`'s canonical form — which `holder`
    /// registered — that of `username` as now written. A change of case or width keeps the
    /// canonical form but can change what a username looks like: `paypai` written `paypaI`
    /// looks like `paypal`, and must be refused as confusable as a new `paypaI` would be, and
    /// once written so must keep a later `paypal` out. False (nothing changed) when another
    /// registered username, committed or being registered concurrently, has that skeleton;
    /// true when the skeleton is now registered (or already was).
    async fn follow_written_form(
        &self,
        txn: &DatabaseTransaction,
        username: &Username,
        holder: ProfileId,
    ) -> Result<bool, StoreError> {
        use sea_orm::TransactionTrait;
        use sea_orm::sea_query::Expr;
        // The skeleton's unique index decides, in a savepoint: another username registered
        // with it (committed, or committing first) fails this update, which must not end the
        // transaction.
        let savepoint = txn.begin().await?;
        let moved = username_registry::Entity::update_many()
            .col_expr(
                username_registry::Column::Skeleton,
                Expr::val(username.skeleton()),
            )
            .col_expr(
                username_registry::Column::Username,
                Expr::val(username.as_str()),
            )
            .filter(username_registry::Column::Canonical.eq(username.canonical()))
            .filter(username_registry::Column::ProfileId.eq(holder.0))
            .filter(username_registry::Column::Skeleton.ne(username.skeleton()))
            .exec(&savepoint)
            .await;
        match moved {
            Ok(_) => {
                savepoint.commit().await?;
                Ok(true)
            }
            Err(error) => {
                savepoint.rollback().await?;
                match error.sql_err() {
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Ok(false),
                    _ => Err(error.into()),
                }
            }
        }
    }
}

pub(super) fn registry_row(
    username: &Username,
    profile_id: ProfileId,
    account_id: AccountId,
) -> username_registry::ActiveModel {
    username_registry::ActiveModel {
        canonical: Set(username.canonical().to_owned()),
        skeleton: Set(username.skeleton().to_owned()),
        username: Set(username.as_str().to_owned()),
        profile_id: Set(profile_id.0),
        account_id: Set(account_id.0),
        created_at: Set(crate::store::now()),
    }
}
