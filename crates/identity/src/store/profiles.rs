//! Profiles with their roles and extensions: read, list, create, update, soft-delete. A
//! profile's username is registered through [`super::registry`] in the same transaction (or,
//! for the usual creation on PostgreSQL, the same statement).

use std::collections::HashMap;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, Statement,
};
use uuid::Uuid;

use super::entities::{account, deleted_profile_extension, extension, profile, profile_role};
use super::events::event_row;
use super::query::{Anchor, like_pattern};
use super::registry::registry_row;
use super::{Store, StoreError, insert_from, is_postgres, kept_row, now};
use crate::domain::assignment::{Extension, ExtensionKind, ExtensionNumber, Role};
use crate::domain::error::{IdentityError, Refusal};
use crate::domain::event::{NewEvent, Origin};
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::{Profile, ProfileFields, ProfileStatus};
use crate::domain::username::Username;

/// One creation written by [`Store::create_profiles_at_once`].
#[derive(Clone, Debug)]
pub struct AtOnce {
    pub profile: Profile,
    pub username: Username,
    pub origin: Origin,
    pub events: Vec<NewEvent>,
    /// The request's kept answer, when it has a request id.
    pub kept: Option<Keep>,
}

/// An answer to keep for a request id, with the scope it is kept in and the digest of the
/// request it answers.
#[derive(Clone, Debug)]
pub struct Keep {
    pub scope: String,
    pub request_id: String,
    pub digest: Vec<u8>,
    pub answer: Vec<u8>,
}

/// The profiles that hold `role`, as a condition on `profiles.id`.
pub(super) fn holding(role: Role) -> sea_orm::sea_query::SimpleExpr {
    profile::Column::Id.in_subquery(
        Query::select()
            .column(profile_role::Column::ProfileId)
            .from(profile_role::Entity)
            .and_where(profile_role::Column::Role.eq(role.as_str()))
            .to_owned(),
    )
}

/// How a deleted profile's status is stored.
pub(super) const DELETED: &str = "deleted";

/// Filters of a profile listing.
#[derive(Clone, Debug, Default)]
pub struct ProfileFilter {
    /// `None`: every profile that is not deleted.
    pub status: Option<ProfileStatus>,
    /// Canonical-username prefix (already canonicalised).
    pub username_prefix: Option<String>,
    /// Lower-cased email prefix.
    pub email_prefix: Option<String>,
    pub role: Option<Role>,
}

/// The profile a stored row and its assignment rows make.
pub(super) fn profile_of(
    model: profile::Model,
    role_names: Vec<String>,
    extension_rows: Vec<(String, String)>,
) -> Result<Profile, StoreError> {
    let corrupt = |what: String| IdentityError::Corrupt(format!("profile {}: {what}", model.id));
    let mut roles = role_names
        .iter()
        .map(|name| Role::from_name(name).ok_or_else(|| corrupt(format!("role {name:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    let mut extensions = extension_rows
        .iter()
        .map(|(number, kind)| {
            Ok(Extension {
                number: ExtensionNumber::parse(number)
                    .map_err(|_| corrupt(format!("extension {number:?}")))?,
                kind: ExtensionKind::from_name(kind)
                    .ok_or_else(|| corrupt(format!("extension kind {kind:?}")))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    extensions.sort();
    let status = ProfileStatus::from_name(&model.status)
        .ok_or_else(|| corrupt(format!("status {:?}", model.status)))?;
    Ok(Profile {
        id: ProfileId(model.id),
        account_id: AccountId(model.account_id),
        first_name: model.first_name,
        last_name: model.last_name,
        email: model.email,
        username: model.username,
        canonical_username: model.canonical_username,
        job_title: model.job_title,
        department: model.department,
        locale: model.locale,
        time_zone: model.time_zone,
        external_id: model.external_id,
        status,
        roles,
        extensions,
        created_at: model.created_at,
        updated_at: model.updated_at,
        deleted_at: model.deleted_at,
        version: model.version,
    })
}

/// The row of a profile.
pub(super) fn model_of(profile: &Profile) -> profile::Model {
    profile::Model {
        id: profile.id.0,
        account_id: profile.account_id.0,
        first_name: profile.first_name.clone(),
        last_name: profile.last_name.clone(),
        email: profile.email.clone(),
        email_search: profile.email.to_lowercase(),
        username: profile.username.clone(),
        canonical_username: profile.canonical_username.clone(),
        job_title: profile.job_title.clone(),
        department: profile.department.clone(),
        locale: profile.locale.clone(),
        time_zone: profile.time_zone.clone(),
        external_id: profile.external_id.clone(),
        status: profile.status.as_str().to_owned(),
        created_at: profile.created_at,
        updated_at: profile.updated_at,
        deleted_at: profile.deleted_at,
        version: profile.version,
    }
}

impl Store {
    /// True when the account exists.
    pub async fn account_exists(
        &self,
        conn: &impl ConnectionTrait,
        id: AccountId,
    ) -> Result<bool, StoreError> {
        Ok(account::Entity::find_by_id(id.0)
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
        id: ProfileId,
    ) -> Result<Option<Profile>, StoreError> {
        Ok(self.profiles_by_ids(conn, &[id]).await?.pop())
    }

    /// Profile `id` if it exists and its account is `visible`. A profile of an account the
    /// caller may not see is left before its roles and extensions are read, so that it costs
    /// what an id nobody holds costs.
    pub async fn visible_profile(
        &self,
        conn: &impl ConnectionTrait,
        id: ProfileId,
        visible: impl Fn(Uuid) -> bool,
    ) -> Result<Option<Profile>, StoreError> {
        let model = profile::Entity::find_by_id(id.0)
            .one(conn)
            .await?
            .filter(|model| visible(model.account_id));
        Ok(self
            .with_assignments(conn, model.into_iter().collect())
            .await?
            .pop())
    }

    /// The profiles among `ids` that exist, in no particular order.
    pub async fn profiles_by_ids(
        &self,
        conn: &impl ConnectionTrait,
        ids: &[ProfileId],
    ) -> Result<Vec<Profile>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let models = profile::Entity::find()
            .filter(profile::Column::Id.is_in(ids.iter().map(|id| id.0)))
            .all(conn)
            .await?;
        self.with_assignments(conn, models).await
    }

    /// The usernames of the profiles among `ids` that exist, by id: one statement, without
    /// the fields and assignments [`Store::profiles_by_ids`] reads.
    pub async fn usernames_of(
        &self,
        conn: &impl ConnectionTrait,
        ids: &[ProfileId],
    ) -> Result<HashMap<ProfileId, String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, String)> = profile::Entity::find()
            .select_only()
            .column(profile::Column::Id)
            .column(profile::Column::Username)
            .filter(profile::Column::Id.is_in(ids.iter().map(|id| id.0)))
            .into_tuple()
            .all(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, username)| (ProfileId(id), username))
            .collect())
    }

    /// A page of an account's profiles in creation order, after the profile `after`.
    pub async fn list_profiles(
        &self,
        account_id: AccountId,
        filter: &ProfileFilter,
        after: Option<ProfileId>,
        limit: u64,
    ) -> Result<Vec<Profile>, StoreError> {
        let mut query = profile::Entity::find()
            .filter(profile::Column::AccountId.eq(account_id.0))
            .order_by_asc(profile::Column::Id)
            .limit(limit);
        query = match filter.status {
            Some(status) => query.filter(profile::Column::Status.eq(status.as_str())),
            None => query.filter(profile::Column::Status.ne(DELETED)),
        };
        if let Some(after) = after {
            query = query.filter(profile::Column::Id.gt(after.0));
        }
        if let Some(prefix) = &filter.username_prefix {
            query = query.filter(
                Expr::col(profile::Column::CanonicalUsername)
                    .like(like_pattern(prefix, Anchor::StartsWith)),
            );
        }
        if let Some(prefix) = &filter.email_prefix {
            query = query.filter(
                Expr::col(profile::Column::EmailSearch)
                    .like(like_pattern(prefix, Anchor::StartsWith)),
            );
        }
        if let Some(role) = filter.role {
            query = query.filter(holding(role));
        }
        let models = query.all(&self.db).await?;
        self.with_assignments(&self.db, models).await
    }

    pub(super) async fn with_assignments(
        &self,
        conn: &impl ConnectionTrait,
        models: Vec<profile::Model>,
    ) -> Result<Vec<Profile>, StoreError> {
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
        models
            .into_iter()
            .map(|model| {
                let roles = roles.remove(&model.id).unwrap_or_default();
                let extensions = extensions.remove(&model.id).unwrap_or_default();
                profile_of(model, roles, extensions)
            })
            .collect()
    }

    /// Creates a profile and registers its username.
    pub async fn create_profile(
        &self,
        txn: &DatabaseTransaction,
        account_id: AccountId,
        fields: &ProfileFields,
    ) -> Result<Profile, StoreError> {
        // The account must exist and stay open until the transaction ends. PostgreSQL: its row
        // locked FOR KEY SHARE first, which a deletion (FOR UPDATE) waits for or makes this wait
        // and then see. SQLite: read again after the first write, which takes the one writer's
        // lock (a read before it could be overtaken by a deletion).
        let postgres = crate::store::is_postgres(txn);
        if postgres {
            self.ensure_account_open(txn, account_id).await?;
        } else if !self.account_exists(txn, account_id).await? {
            return Err(IdentityError::NotFound("account").into());
        }
        let profile = Profile::new(
            ProfileId::generate(),
            account_id,
            fields,
            crate::store::now(),
        );
        self.reserve_username(txn, &fields.username, profile.id, account_id)
            .await?;
        profile::Entity::insert(profile::ActiveModel::from(model_of(&profile)))
            .exec_without_returning(txn)
            .await?;
        if !postgres {
            self.ensure_account_open(txn, account_id).await?;
        }
        Ok(profile)
    }

    /// CreateProfile's writes on PostgreSQL as one statement — one round trip, committed whole
    /// or not at all — for one creation or several of one account (the first one's): the
    /// account's row locked `FOR KEY SHARE` where it is open (as [`Store::ensure_account_open`]
    /// locks it), and from that row only each creation's username registration, profile, events
    /// with their places in the numbering queue, and kept answer. False when nothing was
    /// written: the account is missing or deleted, or a row was held already (a username by
    /// another profile, a request's key by a twin, two of the creations claiming one) and the
    /// statement failed whole. The caller then takes another way that says why. Always false
    /// on SQLite.
    pub async fn create_profiles_at_once(&self, creations: &[AtOnce]) -> Result<bool, StoreError> {
        let Some(first) = creations.first() else {
            return Ok(false);
        };
        if !is_postgres(&self.db) || creations.iter().all(|new| new.events.is_empty()) {
            return Ok(false);
        }
        let account_id = first.profile.account_id;
        debug_assert!(
            creations
                .iter()
                .all(|new| new.profile.account_id == account_id)
        );
        let mut values = vec![sea_orm::Value::from(account_id.0)];
        let registered: Vec<_> = creations
            .iter()
            .map(|new| registry_row(&new.username, new.profile.id, account_id))
            .collect();
        let profiles: Vec<_> = creations
            .iter()
            .map(|new| profile::ActiveModel::from(model_of(&new.profile)))
            .collect();
        let mut parts = vec![
            "account AS (SELECT id FROM accounts WHERE id = $1 AND deleted_at IS NULL \
             FOR KEY SHARE)"
                .to_owned(),
            format!(
                "registered AS ({})",
                insert_from(registered, "account", &mut values)?
            ),
            format!(
                "created AS ({})",
                insert_from(profiles, "account", &mut values)?
            ),
        ];
        let kept: Vec<_> = creations
            .iter()
            .filter_map(|new| new.kept.as_ref())
            .map(|keep| {
                kept_row(
                    &keep.scope,
                    &keep.request_id,
                    Some(&keep.digest),
                    keep.answer.clone(),
                )
            })
            .collect();
        if !kept.is_empty() {
            parts.push(format!(
                "kept AS ({})",
                insert_from(kept, "account", &mut values)?
            ));
        }
        let occurred_at = now();
        let rows = creations
            .iter()
            .flat_map(|new| {
                new.events
                    .iter()
                    .map(|event| event_row(&new.origin, event, occurred_at))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let events = rows.len() as u64;
        parts.push(format!(
            "written AS ({} RETURNING insert_id, account_id, subject_id)",
            insert_from(rows, "account", &mut values)?
        ));
        let sql = format!(
            "WITH {} INSERT INTO event_pending (insert_id, account_id, subject_id) \
             SELECT insert_id, account_id, subject_id FROM written",
            parts.join(", ")
        );
        let written = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await;
        match written {
            Ok(result) => Ok(result.rows_affected() == events),
            Err(error)
                if matches!(
                    error.sql_err(),
                    Some(
                        SqlErr::UniqueConstraintViolation(_)
                            | SqlErr::ForeignKeyConstraintViolation(_)
                    )
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Replaces a profile's fields and status. A new canonical username is registered first;
    /// the old one stays registered, so it is retired. Fails with a stale etag when the profile
    /// changed since `current` was read.
    pub async fn update_profile(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
        fields: &ProfileFields,
        status: ProfileStatus,
    ) -> Result<Profile, StoreError> {
        if fields.username.canonical() != current.canonical_username {
            self.reserve_username(txn, &fields.username, current.id, current.account_id)
                .await?;
        } else if !self.look_kept(txn, current, &fields.username).await? {
            return Err(IdentityError::username_refused(Refusal::Confusable).into());
        }
        let mut next = current.clone().with_fields(fields);
        next.status = status;
        if next == *current {
            return Ok(next);
        }
        next.updated_at = crate::store::now();
        next.version = current.version + 1;
        self.write_version(txn, current.version, &next).await?;
        if next.email != current.email || next.status != ProfileStatus::Active {
            // A link mailed to the old address, or to a profile now suspended, sets no
            // password: an admin changes the address or suspends the profile when the mailbox
            // may be someone else's.
            self.revoke_reset_tokens(txn, current.id).await?;
        }
        Ok(next)
    }

    /// Soft-deletes a profile: its username stays registered (retired) and its extensions are
    /// freed, remembered in `deleted_profile_extensions` for [`Store::undelete_profile`].
    pub async fn delete_profile(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
    ) -> Result<Profile, StoreError> {
        let now = crate::store::now();
        let mut next = current.clone();
        next.status = ProfileStatus::Deleted;
        next.deleted_at = Some(now);
        next.updated_at = now;
        next.version = current.version + 1;
        next.extensions = Vec::new();
        self.write_version(txn, current.version, &next).await?;
        // A link sent before the deletion sets no password, not even after an undelete or a
        // SCIM restore (which may come back with another address).
        self.revoke_reset_tokens(txn, current.id).await?;
        self.forget_kept_extensions(txn, current.id).await?;
        if !current.extensions.is_empty() {
            deleted_profile_extension::Entity::insert_many(current.extensions.iter().map(|held| {
                deleted_profile_extension::ActiveModel {
                    profile_id: Set(current.id.0),
                    number: Set(held.number.as_str().to_owned()),
                    kind: Set(held.kind.as_str().to_owned()),
                }
            }))
            .exec_without_returning(txn)
            .await?;
        }
        extension::Entity::delete_many()
            .filter(extension::Column::ProfileId.eq(current.id.0))
            .exec(txn)
            .await?;
        Ok(next)
    }

    /// Brings a deleted profile back as it was, active: same id, same username (never
    /// released), its roles (never taken from it), and each extension it held when it was
    /// deleted that is still free. Each number is claimed in the database
    /// ([`Store::claim_extensions`]), so one that another profile took meanwhile stays with
    /// that profile. Returns the profile and the numbers it did not get back.
    pub async fn undelete_profile(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
    ) -> Result<(Profile, Vec<String>), StoreError> {
        let kept = self.kept_extensions(txn, current.id).await?;
        let claims: Vec<(ProfileId, &Extension)> =
            kept.iter().map(|held| (current.id, held)).collect();
        let claimed = self
            .claim_extensions(txn, current.account_id, &claims)
            .await?;
        self.forget_kept_extensions(txn, current.id).await?;
        let (mut given_back, taken): (Vec<Extension>, Vec<Extension>) = kept
            .into_iter()
            .partition(|held| claimed.contains(held.number.as_str()));
        given_back.sort();
        let now = crate::store::now();
        let mut next = current.clone();
        next.status = ProfileStatus::Active;
        next.deleted_at = None;
        next.updated_at = now;
        next.version = current.version + 1;
        next.extensions = given_back;
        self.write_version(txn, current.version, &next).await?;
        let mut unrestored: Vec<String> = taken
            .into_iter()
            .map(|held| held.number.as_str().to_owned())
            .collect();
        unrestored.sort();
        Ok((next, unrestored))
    }

    /// The extensions `id` held when it was deleted.
    async fn kept_extensions(
        &self,
        txn: &DatabaseTransaction,
        id: ProfileId,
    ) -> Result<Vec<Extension>, StoreError> {
        let rows = deleted_profile_extension::Entity::find()
            .filter(deleted_profile_extension::Column::ProfileId.eq(id.0))
            .all(txn)
            .await?;
        let corrupt = |what: String| IdentityError::Corrupt(format!("profile {}: kept {what}", id));
        rows.into_iter()
            .map(|row| {
                Ok(Extension {
                    number: ExtensionNumber::parse(&row.number)
                        .map_err(|_| corrupt(format!("extension {:?}", row.number)))?,
                    kind: ExtensionKind::from_name(&row.kind)
                        .ok_or_else(|| corrupt(format!("extension kind {:?}", row.kind)))?,
                })
            })
            .collect()
    }

    /// Forgets the extensions `id` held when it was deleted.
    async fn forget_kept_extensions(
        &self,
        txn: &DatabaseTransaction,
        id: ProfileId,
    ) -> Result<(), StoreError> {
        deleted_profile_extension::Entity::delete_many()
            .filter(deleted_profile_extension::Column::ProfileId.eq(id.0))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// The deleted profile of `account_id` that held the username `canonical` and carries
    /// `external_id`, deleted at or after `since`, locked until the transaction ends.
    pub async fn lock_deleted_profile(
        &self,
        txn: &DatabaseTransaction,
        account_id: AccountId,
        canonical: &str,
        external_id: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Profile>, StoreError> {
        let found = profile::Entity::find()
            .select_only()
            .column(profile::Column::Id)
            .filter(profile::Column::AccountId.eq(account_id.0))
            .filter(profile::Column::CanonicalUsername.eq(canonical))
            .filter(profile::Column::Status.eq(DELETED))
            .filter(profile::Column::ExternalId.eq(external_id))
            .filter(profile::Column::DeletedAt.gte(since))
            .into_tuple::<Uuid>()
            .one(txn)
            .await?;
        let Some(id) = found else {
            return Ok(None);
        };
        let accounts = std::collections::HashSet::from([account_id]);
        Ok(self
            .lock_profiles(txn, &[ProfileId(id)], Some(&accounts))
            .await?
            .pop()
            .filter(|profile| {
                profile.status == ProfileStatus::Deleted
                    && profile.deleted_at.is_some_and(|at| at >= since)
            }))
    }

    /// Brings a deleted profile back with `fields` and `status`: same id, same username
    /// (never released), its roles as they were; its extensions were freed when it was deleted
    /// and stay freed (the directory that brings it back assigns none).
    pub async fn restore_profile(
        &self,
        txn: &DatabaseTransaction,
        current: &Profile,
        fields: &ProfileFields,
        status: ProfileStatus,
    ) -> Result<Profile, StoreError> {
        if !self.look_kept(txn, current, &fields.username).await? {
            return Err(IdentityError::username_refused(Refusal::Confusable).into());
        }
        self.forget_kept_extensions(txn, current.id).await?;
        let now = crate::store::now();
        let mut next = current.clone().with_fields(fields);
        next.status = status;
        next.deleted_at = None;
        next.updated_at = now;
        next.version = current.version + 1;
        self.write_version(txn, current.version, &next).await?;
        Ok(next)
    }

    /// Writes `new` over `old` if nobody changed it in between (optimistic concurrency).
    pub(super) async fn write_version(
        &self,
        txn: &DatabaseTransaction,
        old_version: i64,
        new: &Profile,
    ) -> Result<(), StoreError> {
        let result = profile::Entity::update_many()
            .set(profile::ActiveModel::from(model_of(new)).reset_all())
            .filter(profile::Column::Id.eq(new.id.0))
            .filter(profile::Column::Version.eq(old_version))
            .exec(txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(IdentityError::StaleEtag.into());
        }
        Ok(())
    }
}

impl Store {
    /// The profile holding `canonical` now, if any (deleted profiles hold nothing) and if its
    /// account is `visible`. A holder the caller may not see is left before its roles and
    /// extensions are read, so that it costs what no holder costs: the answer's time tells
    /// nothing of other accounts' usernames.
    pub async fn active_holder(
        &self,
        canonical: &str,
        visible: impl Fn(Uuid) -> bool,
    ) -> Result<Option<Profile>, StoreError> {
        let model = profile::Entity::find()
            .filter(profile::Column::CanonicalUsername.eq(canonical))
            .filter(profile::Column::Status.ne(DELETED))
            .one(&self.db)
            .await?
            .filter(|model| visible(model.account_id));
        Ok(self
            .with_assignments(&self.db, model.into_iter().collect())
            .await?
            .pop())
    }
}
