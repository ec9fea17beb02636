//! Profiles: create, read, list, update, delete. A profile of an account the caller may not
//! act on is NOT_FOUND, exactly like one that does not exist.

use std::collections::HashMap;

use roster_runtime::Caller;
use sea_orm::ConnectionTrait;

use super::creations::Written;
use super::events::origin;
use super::{
    Identity, RequestId, Seen, account_scope, emails, encode_kept, once, once_new, request_scope,
};
use crate::domain::assignment::{ExtensionNumber, Role};
use crate::domain::error::IdentityError;
use crate::domain::event;
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::{OwnedProfile, Profile, ProfileFields, ProfilePatch, ProfileStatus};
use crate::domain::query::{MAX_PAGE_SIZE, ProfileQuery};
use crate::domain::suggestions::Seeds;
use crate::domain::username::Username;
use crate::store::ProfileFilter;
use crate::store::{AtOnce, Keep};

/// What CreateProfile asks for.
#[derive(Clone, Debug)]
pub struct NewProfile {
    pub account_id: AccountId,
    pub fields: OwnedProfile,
    pub send_welcome_email: bool,
    /// Created suspended rather than active (a SCIM client's `active: false`).
    pub suspended: bool,
    /// Roles it holds from the start (a SCIM client's).
    pub roles: Vec<Role>,
}

/// What UndeleteProfile gives back.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Undeleted {
    /// The profile, active again.
    pub profile: Profile,
    /// The extension numbers it held when deleted that another profile holds now.
    pub unrestored_extensions: Vec<String>,
}

/// NOT_FOUND for a profile that does not exist or that the caller may not see: the two are
/// indistinguishable by design.
pub(crate) fn profile_not_found() -> IdentityError {
    IdentityError::NotFound("profile")
}

impl Identity {
    /// The profile if it exists and the caller may see it.
    pub(crate) async fn visible_profile(
        &self,
        conn: &impl ConnectionTrait,
        caller: &Caller,
        id: ProfileId,
    ) -> Result<Profile, IdentityError> {
        self.store
            .visible_profile(conn, id, |account| caller.may_access(account))
            .await?
            .ok_or_else(profile_not_found)
    }

    /// Creates a profile (and queues its welcome email when asked). A refused username comes
    /// back with free suggestions in the account's convention.
    pub async fn create_profile(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        new: NewProfile,
    ) -> Result<Profile, IdentityError> {
        let fields = ProfileFields::parse(new.fields.as_raw())?;
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        let scope = request_scope(caller, "CreateProfile");
        // The usual creation — not suspended, no roles, no welcome email — is one statement on
        // PostgreSQL, shared with concurrent creations of the account (see `creations`). What
        // it finds in the way (an account missing or deleted, the username or the request id
        // held) it leaves to the transaction below, which says why or answers the kept answer;
        // so does SQLite.
        if crate::store::is_postgres(store.connection())
            && !new.suspended
            && new.roles.is_empty()
            && !new.send_welcome_email
        {
            let profile = Profile::new(
                ProfileId::generate(),
                new.account_id,
                &fields,
                crate::store::now(),
            );
            let creation = AtOnce {
                events: vec![event::profile_created(&profile)],
                kept: match request_id.id() {
                    "" => None,
                    id => Some(Keep {
                        scope: scope.clone(),
                        request_id: id.to_owned(),
                        digest: request_id.digest().to_vec(),
                        answer: encode_kept(&profile)?,
                    }),
                },
                profile,
                username: fields.username.clone(),
                origin: origin.clone(),
            };
            match super::creations::write(&self.creations, creation).await {
                Written::Yes(created) => return Ok(created.profile),
                Written::Failed(error) => return Err(IdentityError::Storage(error.into())),
                Written::No | Written::NotWithOthers(_) => {}
            }
        }
        let created = once_new(store, &scope, request_id, Seen::Checked, async |txn| {
            // Also makes sure that the account exists and stays open until the end.
            let created = store.create_profile(txn, new.account_id, &fields).await?;
            let mut events = vec![event::profile_created(&created)];
            let mut profile = if new.suspended {
                let suspended = store
                    .update_profile(txn, &created, &fields, ProfileStatus::Suspended)
                    .await?;
                events.extend(event::profile_changed(&created, &suspended));
                suspended
            } else {
                created
            };
            if !new.roles.is_empty() {
                let assigned = store.add_roles(txn, &profile, &new.roles).await?;
                events.extend(event::assignments_changed(&profile, &assigned));
                profile = assigned;
            }
            store.append_events(txn, &origin, events).await?;
            if new.send_welcome_email {
                let account = store
                    .account_in(txn, new.account_id)
                    .await?
                    .ok_or(IdentityError::NotFound("account"))?;
                store
                    .enqueue_email(txn, &emails::welcome(&account, &profile))
                    .await?;
            }
            Ok(profile)
        })
        .await;
        match created {
            Ok(profile) => Ok(profile),
            Err(error) => {
                let raw = &new.fields;
                let seeds = Seeds {
                    first_name: &raw.first_name,
                    last_name: &raw.last_name,
                    email: &raw.email,
                    refused: Some(&fields.username),
                };
                let error = error.defaulted(raw.username.trim().is_empty());
                Err(self.with_suggestions(error, seeds).await)
            }
        }
    }

    /// One profile the caller may see.
    pub async fn profile(&self, caller: &Caller, id: ProfileId) -> Result<Profile, IdentityError> {
        self.visible_profile(self.store.connection(), caller, id)
            .await
    }

    /// A page of an account's profiles in creation order after `after`; one more than `limit`
    /// tells that another page follows.
    pub async fn list_profiles(
        &self,
        account_id: AccountId,
        filter: &ProfileFilter,
        after: Option<ProfileId>,
        limit: u64,
    ) -> Result<Vec<Profile>, IdentityError> {
        Ok(self
            .store
            .list_profiles(account_id, filter, after, limit)
            .await?)
    }

    /// The profiles of `account_id` that `query` matches (never a deleted one), in creation
    /// order, at most `limit` (and never more than [`MAX_PAGE_SIZE`]) after the first
    /// `offset`; and how many it matches in all. An account the caller may not act on reads
    /// as an account without profiles: empty, with a total of 0.
    pub async fn find_profiles(
        &self,
        caller: &Caller,
        account_id: AccountId,
        query: &ProfileQuery,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Profile>, u64), IdentityError> {
        query.check().map_err(IdentityError::InvalidFilter)?;
        if !caller.may_access(account_id.0) {
            return Ok((Vec::new(), 0));
        }
        Ok(self
            .store
            .query_profiles(account_id, query, offset, limit.min(MAX_PAGE_SIZE))
            .await?)
    }

    /// The profiles of `account_id` among `ids`, by id; the others are missing, whether they
    /// do not exist or belong to another account.
    pub async fn profiles_of(
        &self,
        account_id: AccountId,
        ids: &[ProfileId],
    ) -> Result<HashMap<ProfileId, Profile>, IdentityError> {
        Ok(self
            .store
            .profiles_by_ids(self.store.connection(), ids)
            .await?
            .into_iter()
            .filter(|profile| profile.account_id == account_id)
            .map(|profile| (profile.id, profile))
            .collect())
    }

    /// Which profile of `account_id` holds each of `numbers` now, with its username, in the
    /// order of `numbers`; a number nobody holds is left out. For a caller that may act on the
    /// account (the API checks it).
    pub async fn extension_holders(
        &self,
        account_id: AccountId,
        numbers: &[ExtensionNumber],
    ) -> Result<Vec<(ExtensionNumber, ProfileId, String)>, IdentityError> {
        let store = &self.store;
        let wanted: Vec<String> = numbers.iter().map(|n| n.as_str().to_owned()).collect();
        let holders = store
            .extension_holders(store.connection(), account_id, &wanted)
            .await?;
        let mut ids: Vec<ProfileId> = holders.values().copied().collect();
        ids.sort_by_key(|id| id.0);
        ids.dedup();
        let usernames = store.usernames_of(store.connection(), &ids).await?;
        Ok(numbers
            .iter()
            .filter_map(|number| {
                let holder = *holders.get(number.as_str())?;
                let username = usernames.get(&holder).cloned().unwrap_or_default();
                Some((number.clone(), holder, username))
            })
            .collect())
    }

    /// Changes the fields an update mask names, at the version `expected` names (when it
    /// names one). A refused username comes back with free suggestions made of the names and
    /// email the profile would have had.
    pub async fn update_profile(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: ProfileId,
        expected: Option<i64>,
        patch: ProfilePatch,
    ) -> Result<Profile, IdentityError> {
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        let updated = once(
            store,
            &request_scope(caller, "UpdateProfile"),
            request_id,
            Seen::Profile(caller, id),
            async |txn| {
                // Locked: concurrent changes of one profile apply one after another, each to
                // the version the one before left; only an etag that names an older version
                // is refused.
                let current = store
                    .lock_profile(txn, id, account_scope(caller).as_ref())
                    .await?
                    .ok_or_else(profile_not_found)?;
                current.ensure_changeable(expected)?;
                let (fields, status) = patch.apply(&current)?;
                let updated = store.update_profile(txn, &current, &fields, status).await?;
                let events = event::profile_changed(&current, &updated);
                store.append_events(txn, &origin, events).await?;
                Ok(updated)
            },
        )
        .await;
        match updated {
            Err(error @ IdentityError::UsernameRefused { .. }) => {
                let current = self.visible_profile(store.connection(), caller, id).await?;
                let after = patch.raw_after(&current);
                let refused = patch
                    .fields
                    .iter()
                    .find(|(path, _)| path == "username")
                    .and_then(|(_, username)| Username::parse(username).ok());
                let seeds = Seeds {
                    first_name: &after.first_name,
                    last_name: &after.last_name,
                    email: &after.email,
                    refused: refused.as_ref(),
                };
                Err(self.with_suggestions(error, seeds).await)
            }
            other => other,
        }
    }

    /// A returning user: brings back the deleted profile of `new`'s account that held `new`'s
    /// username and carries the same external id, when it was deleted at or after `since`,
    /// with `new`'s fields, status and (when it names any) roles. Same id, same username.
    /// `None` when there is no such profile: the username stays refused.
    pub async fn restore_returning_profile(
        &self,
        caller: &Caller,
        new: &NewProfile,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Profile>, IdentityError> {
        let fields = ProfileFields::parse(new.fields.as_raw())?;
        let Some(external_id) = fields.external_id.clone() else {
            return Ok(None);
        };
        if !caller.may_access(new.account_id.0) {
            return Ok(None);
        }
        let store = &self.store;
        let origin = origin(caller, "");
        once(store, "", RequestId::NONE, Seen::Checked, async |txn| {
            let Some(current) = store
                .lock_deleted_profile(
                    txn,
                    new.account_id,
                    fields.username.canonical(),
                    &external_id,
                    since,
                )
                .await?
            else {
                return Ok(None);
            };
            store.ensure_account_open(txn, new.account_id).await?;
            let status = if new.suspended {
                ProfileStatus::Suspended
            } else {
                ProfileStatus::Active
            };
            let restored = store
                .restore_profile(txn, &current, &fields, status)
                .await?;
            let mut events = event::profile_changed(&current, &restored);
            let mut profile = restored.clone();
            if !new.roles.is_empty() {
                profile = store.add_roles(txn, &profile, &new.roles).await?;
                events.extend(event::assignments_changed(&restored, &profile));
            }
            store.append_events(txn, &origin, events).await?;
            Ok(Some(profile))
        })
        .await
    }

    /// Changes the fields a patch names and, when `roles` is given, makes the profile's roles
    /// exactly those — in one transaction, at the version `expected` names (when it names
    /// one). SCIM's PUT and PATCH write a user's attributes and its roles together.
    pub async fn update_profile_and_roles(
        &self,
        caller: &Caller,
        id: ProfileId,
        expected: Option<i64>,
        patch: ProfilePatch,
        roles: Option<Vec<Role>>,
    ) -> Result<Profile, IdentityError> {
        let store = &self.store;
        let origin = origin(caller, "");
        once(store, "", RequestId::NONE, Seen::Checked, async |txn| {
            let current = self.changeable_profile(txn, caller, id, expected).await?;
            let (fields, status) = patch.apply(&current)?;
            let updated = store.update_profile(txn, &current, &fields, status).await?;
            let mut events = event::profile_changed(&current, &updated);
            let mut changed = updated.clone();
            if let Some(roles) = roles {
                let gone: Vec<Role> = changed
                    .roles
                    .iter()
                    .copied()
                    .filter(|role| !roles.contains(role))
                    .collect();
                changed = store.remove_roles(txn, &changed, &gone).await?;
                changed = store.add_roles(txn, &changed, &roles).await?;
                events.extend(event::assignments_changed(&updated, &changed));
            }
            store.append_events(txn, &origin, events).await?;
            Ok(changed)
        })
        .await
    }

    /// Soft-deletes a profile: it is kept, its username retired for good, its extensions
    /// freed. Deleting a deleted profile answers it as it is.
    pub async fn delete_profile(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: ProfileId,
        expected: Option<i64>,
    ) -> Result<Profile, IdentityError> {
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        once(
            store,
            &request_scope(caller, "DeleteProfile"),
            request_id,
            Seen::Profile(caller, id),
            async |txn| {
                // Locked, as for an update: concurrent deletes apply once and answer alike.
                let current = store
                    .lock_profile(txn, id, account_scope(caller).as_ref())
                    .await?
                    .ok_or_else(profile_not_found)?;
                if expected.is_some_and(|version| version != current.version) {
                    return Err(IdentityError::StaleEtag);
                }
                if current.status == ProfileStatus::Deleted {
                    return Ok(current);
                }
                let deleted = store.delete_profile(txn, &current).await?;
                let events = event::profile_changed(&current, &deleted);
                store.append_events(txn, &origin, events).await?;
                Ok(deleted)
            },
        )
        .await
    }

    /// UndeleteProfile: brings a deleted profile back within the restore window, active, with
    /// the same id and username, its roles, and each extension it held that is still free
    /// (see [`crate::store::Store::undelete_profile`]); the numbers another profile took
    /// meanwhile are listed, not taken back. Idempotent on `request_id`.
    pub async fn undelete_profile(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: ProfileId,
        expected: Option<i64>,
    ) -> Result<Undeleted, IdentityError> {
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        once(
            store,
            &request_scope(caller, "UndeleteProfile"),
            request_id,
            Seen::Profile(caller, id),
            async |txn| {
                let current = store
                    .lock_profile(txn, id, account_scope(caller).as_ref())
                    .await?
                    .ok_or_else(profile_not_found)?;
                if expected.is_some_and(|version| version != current.version) {
                    return Err(IdentityError::StaleEtag);
                }
                if current.status != ProfileStatus::Deleted {
                    return Err(IdentityError::Precondition(
                        "the profile is not deleted; only a deleted profile can be undeleted"
                            .into(),
                    ));
                }
                store.ensure_account_open(txn, current.account_id).await?;
                let deleted_at = current.deleted_at.unwrap_or(current.updated_at);
                if deleted_at + self.restore_window < crate::store::now() {
                    return Err(IdentityError::Precondition(format!(
                        "the restore window has passed: a profile can be undeleted for {} days \
                         after its deletion, and this one was deleted at {}",
                        self.restore_window.num_days(),
                        deleted_at.to_rfc3339(),
                    )));
                }
                let (profile, unrestored_extensions) =
                    store.undelete_profile(txn, &current).await?;
                let events = event::profile_changed(&current, &profile);
                store.append_events(txn, &origin, events).await?;
                Ok(Undeleted {
                    profile,
                    unrestored_extensions,
                })
            },
        )
        .await
    }

    /// The profile a change of roles or extensions changes: locked until the transaction
    /// ends, one the caller may act on, and changeable at the version `expected` names.
    pub(crate) async fn changeable_profile(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        caller: &Caller,
        id: ProfileId,
        expected: Option<i64>,
    ) -> Result<Profile, IdentityError> {
        let current = self
            .store
            .lock_profile(txn, id, account_scope(caller).as_ref())
            .await?
            .ok_or_else(profile_not_found)?;
        current.ensure_changeable(expected)?;
        Ok(current)
    }
}
