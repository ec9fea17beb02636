//! Profiles and the username registry.
//!
//! The registry holds one row per canonical username ever taken, with its UTS #39 skeleton;
//! rows are never updated or deleted. Whether a registered username is *taken* or *retired* is
//! derived: taken while the registering profile still holds it and is not deleted, retired
//! otherwise. Both columns have unique indexes, so the database — not a check in the
//! application — decides the race between two replicas creating the same username.

use std::collections::{HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::Store;
use super::entities::{account, extension, profile, profile_role, username_registry};
use crate::domain::error::{IdentityError, Refusal};
use crate::domain::profile::ProfileFields;
use crate::domain::username::Username;

/// Profile states as stored.
pub const ACTIVE: &str = "active";
pub const SUSPENDED: &str = "suspended";
pub const DELETED: &str = "deleted";

/// A profile with its assignments.
#[derive(Clone, Debug)]
pub struct ProfileRecord {
    pub profile: profile::Model,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// `(number, kind)`, sorted by number.
    pub extensions: Vec<(String, String)>,
}

/// Filters of a profile listing.
#[derive(Clone, Debug, Default)]
pub struct ProfileFilter {
    /// `None`: every profile that is not deleted.
    pub status: Option<&'static str>,
    /// Canonical-username prefix (already canonicalised).
    pub username_prefix: Option<String>,
    /// Lower-cased email prefix.
    pub email_prefix: Option<String>,
    pub role: Option<String>,
}

/// A username's standing in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub refusal: Refusal,
    /// The profile holding a taken username.
    pub holder: Option<(Uuid, Uuid)>,
}

impl Store {
    /// True when the account exists.
    pub async fn account_exists(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> Result<bool, IdentityError> {
        Ok(account::Entity::find_by_id(id)
            .select_only()
            .column(account::Column::Id)
            .into_tuple::<Uuid>()
            .one(conn)
            .await?
            .is_some())
    }

    /// One profile, deleted or not.
    pub async fn profile(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> Result<Option<ProfileRecord>, IdentityError> {
        Ok(self.profiles_by_ids(conn, &[id]).await?.pop())
    }

    /// The profiles among `ids` that exist, in no particular order.
    pub async fn profiles_by_ids(
        &self,
        conn: &impl ConnectionTrait,
        ids: &[Uuid],
    ) -> Result<Vec<ProfileRecord>, IdentityError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let models = profile::Entity::find()
            .filter(profile::Column::Id.is_in(ids.iter().copied()))
            .all(conn)
            .await?;
        self.with_assignments(conn, models).await
    }

    /// A page of an account's profiles in creation order, after the profile `after`.
    pub async fn list_profiles(
        &self,
        account_id: Uuid,
        filter: &ProfileFilter,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<ProfileRecord>, IdentityError> {
        let mut query = profile::Entity::find()
            .filter(profile::Column::AccountId.eq(account_id))
            .order_by_asc(profile::Column::Id)
            .limit(limit);
        query = match filter.status {
            Some(status) => query.filter(profile::Column::Status.eq(status)),
            None => query.filter(profile::Column::Status.ne(DELETED)),
        };
        if let Some(after) = after {
            query = query.filter(profile::Column::Id.gt(after));
        }
        if let Some(prefix) = &filter.username_prefix {
            query = query
                .filter(Expr::col(profile::Column::CanonicalUsername).like(prefix_pattern(prefix)));
        }
        if let Some(prefix) = &filter.email_prefix {
            query =
                query.filter(Expr::col(profile::Column::EmailSearch).like(prefix_pattern(prefix)));
        }
        if let Some(role) = &filter.role {
            query = query.filter(
                profile::Column::Id.in_subquery(
                    Query::select()
                        .column(profile_role::Column::ProfileId)
                        .from(profile_role::Entity)
                        .and_where(profile_role::Column::Role.eq(role.as_str()))
                        .to_owned(),
                ),
            );
        }
        let models = query.all(&self.db).await?;
        self.with_assignments(&self.db, models).await
    }

    pub(super) async fn with_assignments(
        &self,
        conn: &impl ConnectionTrait,
        models: Vec<profile::Model>,
    ) -> Result<Vec<ProfileRecord>, IdentityError> {
        if models.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = models.iter().map(|model| model.id).collect();
        let mut roles: HashMap<Uuid, Vec<String>> = HashMap::new();
        for row in profile_role::Entity::find()
            .filter(profile_role::Column::ProfileId.is_in(ids.clone()))
            .all(conn)
            .await?
        {
            roles.entry(row.profile_id).or_default().push(row.role);
        }
        let mut extensions: HashMap<Uuid, Vec<(String, String)>> = HashMap::new();
        for row in extension::Entity::find()
            .filter(extension::Column::ProfileId.is_in(ids))
            .all(conn)
            .await?
        {
            extensions
                .entry(row.profile_id)
                .or_default()
                .push((row.number, row.kind));
        }
        Ok(models
            .into_iter()
            .map(|model| {
                let mut roles = roles.remove(&model.id).unwrap_or_default();
                roles.sort();
                let mut extensions = extensions.remove(&model.id).unwrap_or_default();
                extensions.sort();
                ProfileRecord {
                    profile: model,
                    roles,
                    extensions,
                }
            })
            .collect())
    }

    /// The standing of each username: `None` when it is free.
    pub async fn standings(
        &self,
        conn: &impl ConnectionTrait,
        usernames: &[&Username],
    ) -> Result<Vec<Option<Standing>>, IdentityError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let canonicals: Vec<String> = usernames.iter().map(|u| u.canonical().to_owned()).collect();
        let skeletons: Vec<String> = usernames.iter().map(|u| u.skeleton().to_owned()).collect();
        let by_canonical: HashMap<String, username_registry::Model> =
            username_registry::Entity::find()
                .filter(username_registry::Column::Canonical.is_in(canonicals))
                .all(conn)
                .await?
                .into_iter()
                .map(|row| (row.canonical.clone(), row))
                .collect();
        let confusable: HashSet<String> = username_registry::Entity::find()
            .select_only()
            .column(username_registry::Column::Skeleton)
            .filter(username_registry::Column::Skeleton.is_in(skeletons))
            .into_tuple::<String>()
            .all(conn)
            .await?
            .into_iter()
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
                if let Some(row) = by_canonical.get(username.canonical()) {
                    let held = holding.contains(&(row.profile_id, row.canonical.clone()));
                    Some(Standing {
                        refusal: if held {
                            Refusal::Taken
                        } else {
                            Refusal::Retired
                        },
                        holder: held.then_some((row.profile_id, row.account_id)),
                    })
                } else if confusable.contains(username.skeleton()) {
                    Some(Standing {
                        refusal: Refusal::Confusable,
                        holder: None,
                    })
                } else {
                    None
                }
            })
            .collect())
    }

    /// Registers `username` for `profile_id`, for good. Refused when the canonical form or the
    /// skeleton is registered already, by a committed or a concurrent transaction.
    pub async fn reserve_username(
        &self,
        txn: &DatabaseTransaction,
        username: &Username,
        profile_id: Uuid,
        account_id: Uuid,
    ) -> Result<(), IdentityError> {
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
        Err(IdentityError::username_refused(refusal))
    }

    /// Creates a profile and registers its username.
    pub async fn create_profile(
        &self,
        txn: &DatabaseTransaction,
        account_id: Uuid,
        fields: &ProfileFields,
    ) -> Result<ProfileRecord, IdentityError> {
        if !self.account_exists(txn, account_id).await? {
            return Err(IdentityError::NotFound("account"));
        }
        let id = Uuid::now_v7();
        self.reserve_username(txn, &fields.username, id, account_id)
            .await?;
        let now = crate::store::now();
        let model = profile::Model {
            id,
            account_id,
            first_name: fields.first_name.clone(),
            last_name: fields.last_name.clone(),
            email: fields.email.as_str().to_owned(),
            email_search: fields.email.as_str().to_lowercase(),
            username: fields.username.as_str().to_owned(),
            canonical_username: fields.username.canonical().to_owned(),
            job_title: fields.job_title.clone(),
            department: fields.department.clone(),
            locale: fields.locale.clone(),
            time_zone: fields.time_zone.clone(),
            status: ACTIVE.to_owned(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        profile::Entity::insert(profile::ActiveModel::from(model.clone()))
            .exec_without_returning(txn)
            .await?;
        Ok(ProfileRecord {
            profile: model,
            roles: Vec::new(),
            extensions: Vec::new(),
        })
    }

    /// Replaces a profile's fields and status. A new canonical username is registered first;
    /// the old one stays registered, so it is retired. Fails with a stale etag when the profile
    /// changed since `current` was read.
    pub async fn update_profile(
        &self,
        txn: &DatabaseTransaction,
        current: &ProfileRecord,
        fields: &ProfileFields,
        status: &str,
    ) -> Result<ProfileRecord, IdentityError> {
        let old = &current.profile;
        if fields.username.canonical() != old.canonical_username {
            self.reserve_username(txn, &fields.username, old.id, old.account_id)
                .await?;
        }
        let mut model = old.clone();
        model.first_name = fields.first_name.clone();
        model.last_name = fields.last_name.clone();
        model.email = fields.email.as_str().to_owned();
        model.email_search = fields.email.as_str().to_lowercase();
        model.username = fields.username.as_str().to_owned();
        model.canonical_username = fields.username.canonical().to_owned();
        model.job_title = fields.job_title.clone();
        model.department = fields.department.clone();
        model.locale = fields.locale.clone();
        model.time_zone = fields.time_zone.clone();
        model.status = status.to_owned();
        if model == *old {
            return Ok(current.clone());
        }
        model.updated_at = crate::store::now();
        model.version = old.version + 1;
        self.write_version(txn, old, &model).await?;
        Ok(ProfileRecord {
            profile: model,
            ..current.clone()
        })
    }

    /// Soft-deletes a profile: its username stays registered (retired) and its extensions are
    /// freed.
    pub async fn delete_profile(
        &self,
        txn: &DatabaseTransaction,
        current: &ProfileRecord,
    ) -> Result<ProfileRecord, IdentityError> {
        let old = &current.profile;
        let now = crate::store::now();
        let mut model = old.clone();
        model.status = DELETED.to_owned();
        model.deleted_at = Some(now);
        model.updated_at = now;
        model.version = old.version + 1;
        self.write_version(txn, old, &model).await?;
        extension::Entity::delete_many()
            .filter(extension::Column::ProfileId.eq(old.id))
            .exec(txn)
            .await?;
        Ok(ProfileRecord {
            profile: model,
            roles: current.roles.clone(),
            extensions: Vec::new(),
        })
    }

    /// Writes `new` over `old` if nobody changed it in between (optimistic concurrency).
    pub(super) async fn write_version(
        &self,
        txn: &DatabaseTransaction,
        old: &profile::Model,
        new: &profile::Model,
    ) -> Result<(), IdentityError> {
        let result = profile::Entity::update_many()
            .set(profile::ActiveModel::from(new.clone()).reset_all())
            .filter(profile::Column::Id.eq(old.id))
            .filter(profile::Column::Version.eq(old.version))
            .exec(txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(IdentityError::StaleEtag);
        }
        Ok(())
    }
}

pub(super) fn registry_row(
    username: &Username,
    profile_id: Uuid,
    account_id: Uuid,
) -> username_registry::ActiveModel {
    username_registry::ActiveModel {
        canonical: Set(username.canonical().to_owned()),
        skeleton: Set(username.skeleton().to_owned()),
        username: Set(username.as_str().to_owned()),
        profile_id: Set(profile_id),
        account_id: Set(account_id),
        created_at: Set(crate::store::now()),
    }
}

/// A LIKE pattern matching strings that start with `prefix`, with `\` escaping the wildcards.
fn prefix_pattern(prefix: &str) -> LikeExpr {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    LikeExpr::new(pattern).escape('\\')
}

impl Store {
    /// The profile holding `canonical` now, if any (deleted profiles hold nothing).
    pub async fn active_holder(
        &self,
        canonical: &str,
    ) -> Result<Option<ProfileRecord>, IdentityError> {
        let model = profile::Entity::find()
            .filter(profile::Column::CanonicalUsername.eq(canonical))
            .filter(profile::Column::Status.ne(DELETED))
            .one(&self.db)
            .await?;
        Ok(self
            .with_assignments(&self.db, model.into_iter().collect())
            .await?
            .pop())
    }
}
