//! Roles and extensions of a profile: assign and unassign. Each call locks the profile, which
//! must be one the caller may act on, not deleted, and at the version the caller's etag names.

use std::collections::HashSet;

use roster_runtime::Caller;
use sea_orm::DatabaseTransaction;

use super::events::origin;
use super::{Identity, RequestId, Seen, account_scope, once, request_scope};
use crate::domain::assignment::{
    ExtensionKind, ExtensionNumber, MAX_EXTENSIONS, RequestedExtension, Role,
};
use crate::domain::error::{IdentityError, Violation};
use crate::domain::event;
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::{Profile, ProfileStatus};
use crate::store::{ProfileFilter, StoreError};

/// One call that changes a profile's roles or extensions: who, under which request id, which
/// profile at which version.
#[derive(Clone, Copy, Debug)]
pub struct ProfileChange<'a> {
    pub caller: &'a Caller,
    pub request_id: RequestId<'a>,
    pub id: ProfileId,
    /// The etag's version, when the caller sent one.
    pub expected: Option<i64>,
}

/// The roles an AssignRoles or UnassignRoles call names: at least one, each a role.
pub fn roles_named(values: &[Result<Role, i32>]) -> Result<Vec<Role>, IdentityError> {
    if values.is_empty() {
        return Err(IdentityError::RoleInvalid(vec![Violation::new(
            "roles",
            "must name at least one role",
        )]));
    }
    crate::domain::assignment::requested_roles("roles", values).map_err(IdentityError::RoleInvalid)
}

impl Identity {
    /// Gives the profile every role of `roles` it lacks.
    pub async fn assign_roles(
        &self,
        change: ProfileChange<'_>,
        roles: &[Role],
    ) -> Result<Profile, IdentityError> {
        let store = &self.store;
        self.change_profile(change, "AssignRoles", async |txn, current| {
            Ok(store.add_roles(txn, current, roles).await?)
        })
        .await
    }

    /// Takes the roles of `roles` from the profile.
    pub async fn unassign_roles(
        &self,
        change: ProfileChange<'_>,
        roles: &[Role],
    ) -> Result<Profile, IdentityError> {
        let store = &self.store;
        self.change_profile(change, "UnassignRoles", async |txn, current| {
            Ok(store.remove_roles(txn, current, roles).await?)
        })
        .await
    }

    /// Gives the profile an extension: a new number must be within the account's bounds; a
    /// number it holds already may change kind.
    pub async fn assign_extension(
        &self,
        change: ProfileChange<'_>,
        number: &str,
        kind: Option<ExtensionKind>,
    ) -> Result<Profile, IdentityError> {
        let store = &self.store;
        self.change_profile(change, "AssignExtension", async |txn, current| {
            let account = store
                .account_in(txn, current.account_id)
                .await?
                .ok_or(IdentityError::NotFound("account"))?;
            let held = |number: &ExtensionNumber| {
                current.extensions.iter().any(|held| held.number == *number)
            };
            let wanted = RequestedExtension { number, kind }
                .check("extension", account.extension_bounds, held)
                .map_err(IdentityError::ExtensionInvalid)?;
            if !held(&wanted.number) && current.extensions.len() >= MAX_EXTENSIONS {
                return Err(IdentityError::ExtensionInvalid(vec![Violation::new(
                    "extension",
                    format!(
                        "the profile holds {} extensions, the most a profile may hold; \
                         unassign one first",
                        current.extensions.len()
                    ),
                )]));
            }
            Ok(store.assign_extension(txn, current, &wanted).await?)
        })
        .await
    }

    /// Frees an extension number the profile holds.
    pub async fn unassign_extension(
        &self,
        change: ProfileChange<'_>,
        number: &str,
    ) -> Result<Profile, IdentityError> {
        let number = ExtensionNumber::parse(number).map_err(|error| {
            IdentityError::ExtensionInvalid(vec![Violation::new("number", error)])
        })?;
        let store = &self.store;
        self.change_profile(change, "UnassignExtension", async |txn, current| {
            Ok(store.unassign_extension(txn, current, &number).await?)
        })
        .await
    }

    /// Runs a [`ProfileChange`]: a repeated request id answers the first answer; otherwise
    /// the profile is locked and checked, and `change` makes its new version in the same
    /// transaction.
    async fn change_profile(
        &self,
        call: ProfileChange<'_>,
        operation: &str,
        change: impl AsyncFnOnce(&DatabaseTransaction, &Profile) -> Result<Profile, IdentityError>,
    ) -> Result<Profile, IdentityError> {
        let origin = origin(call.caller, call.request_id.id());
        once(
            &self.store,
            &request_scope(call.caller, operation),
            call.request_id,
            Seen::Profile(call.caller, call.id),
            async |txn| {
                let current = self
                    .changeable_profile(txn, call.caller, call.id, call.expected)
                    .await?;
                let changed = change(txn, &current).await?;
                let events = event::assignments_changed(&current, &changed);
                self.store.append_events(txn, &origin, events).await?;
                Ok(changed)
            },
        )
        .await
    }
}

/// Most members [`Identity::role_members`] reads in one page.
const MEMBER_PAGE: u64 = 1000;

impl Identity {
    /// The profiles of `account_id` (not deleted) holding `role`, as id and username, in
    /// creation order; `None` when there are more than `max`, read no further. Empty for an
    /// account the caller may not act on.
    pub async fn role_members(
        &self,
        caller: &Caller,
        account_id: AccountId,
        role: Role,
        max: usize,
    ) -> Result<Option<Vec<(ProfileId, String)>>, IdentityError> {
        if !caller.may_access(account_id.0) {
            return Ok(Some(Vec::new()));
        }
        let filter = ProfileFilter {
            role: Some(role),
            ..ProfileFilter::default()
        };
        let mut members = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_profiles(account_id, &filter, after, MEMBER_PAGE)
                .await?;
            let full = page.len() as u64 == MEMBER_PAGE;
            after = page.last().map(|profile| profile.id);
            members.extend(
                page.into_iter()
                    .map(|profile| (profile.id, profile.username)),
            );
            if members.len() > max {
                return Ok(None);
            }
            if !full {
                return Ok(Some(members));
            }
        }
    }

    /// Gives `role` to the profiles of `add` and takes it from those of `remove`, in one
    /// transaction: each of `add` must be a profile the caller may act on and not deleted, or
    /// nothing changes. A profile of `remove` that is deleted, unknown or out of the caller's
    /// reach holds no role anyone can take: it is left as it is, alike in all three cases (a
    /// group's members never list it, so a client cannot know to leave it out). Each profile
    /// that changes writes its event.
    pub async fn change_role_members(
        &self,
        caller: &Caller,
        role: Role,
        add: &[ProfileId],
        remove: &[ProfileId],
    ) -> Result<(), IdentityError> {
        once(
            &self.store,
            "",
            RequestId::NONE,
            Seen::Checked,
            async |txn| self.change_members_in(txn, caller, role, add, remove).await,
        )
        .await
    }

    /// Makes `wanted` exactly the profiles of `account_id` holding `role`, as
    /// [`Identity::change_role_members`] changes them, reading the members in the same
    /// transaction and under a lock of the (account, role) pair: two replacements at once end
    /// as one of them, never their union. Changes nothing and answers what was too large when
    /// the role has more than `max_members` members, or when more than `max_change` would be
    /// added and removed.
    pub async fn replace_role_members(
        &self,
        caller: &Caller,
        account_id: AccountId,
        role: Role,
        wanted: &[ProfileId],
        max_members: usize,
        max_change: usize,
    ) -> Result<Replaced, IdentityError> {
        if !caller.may_access(account_id.0) {
            return Err(super::profiles::profile_not_found());
        }
        // Replacements of the same group on this replica wait here, without a connection:
        // sixteen of them at once waiting inside their transactions on the database's lock
        // would hold every connection of the pool, and every other account's calls would wait
        // for one. The database's lock still orders them across replicas.
        let _turn = self.role_turn(account_id, role).lock().await;
        let store = &self.store;
        let txn = store.begin().await?;
        let outcome = async {
            store.lock_role_members(&txn, account_id, role).await?;
            let Some(current) = store
                .role_member_ids(&txn, account_id, role, max_members)
                .await?
            else {
                return Ok(Replaced::TooManyMembers);
            };
            let wanted_set: HashSet<ProfileId> = wanted.iter().copied().collect();
            let mut held: HashSet<ProfileId> = current.iter().copied().collect();
            let remove: Vec<ProfileId> = current
                .into_iter()
                .filter(|id| !wanted_set.contains(id))
                .collect();
            // In the order wanted, each once.
            let add: Vec<ProfileId> = wanted
                .iter()
                .copied()
                .filter(|id| held.insert(*id))
                .collect();
            if add.len() + remove.len() > max_change {
                return Ok(Replaced::TooLargeChange);
            }
            if !add.is_empty() || !remove.is_empty() {
                self.change_members_in(&txn, caller, role, &add, &remove)
                    .await?;
            }
            Ok(Replaced::Done)
        }
        .await;
        // What answers anything but Done changed nothing.
        match outcome {
            Ok(Replaced::Done) => txn.commit().await.map_err(StoreError::from)?,
            _ => txn.rollback().await.map_err(StoreError::from)?,
        }
        outcome
    }

    /// [`Identity::change_role_members`]'s change, in `txn`.
    async fn change_members_in(
        &self,
        txn: &DatabaseTransaction,
        caller: &Caller,
        role: Role,
        add: &[ProfileId],
        remove: &[ProfileId],
    ) -> Result<(), IdentityError> {
        let store = &self.store;
        let origin = origin(caller, "");
        let mut ids: Vec<ProfileId> = add.iter().chain(remove).copied().collect();
        // One lock order for every caller, so two changes never wait on each other.
        ids.sort_by_key(|id| id.0);
        ids.dedup();
        let locked = store
            .lock_profiles(txn, &ids, account_scope(caller).as_ref())
            .await?;
        if add
            .iter()
            .any(|id| !locked.iter().any(|profile| profile.id == *id))
        {
            return Err(super::profiles::profile_not_found());
        }
        for current in locked {
            let removing = remove.contains(&current.id);
            if removing && current.status == ProfileStatus::Deleted {
                continue;
            }
            current.ensure_changeable(None)?;
            let changed = if removing {
                store.remove_roles(txn, &current, &[role]).await?
            } else {
                store.add_roles(txn, &current, &[role]).await?
            };
            let events = event::assignments_changed(&current, &changed);
            store.append_events(txn, &origin, events).await?;
        }
        Ok(())
    }
}

/// How a replacement of a role's members ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replaced {
    /// The role's members are the ones wanted.
    Done,
    /// The role has more members than the replacement reads; nothing changed.
    TooManyMembers,
    /// More members would be added and removed than one request may; nothing changed.
    TooLargeChange,
}

impl Identity {
    /// The turn of the (account, role) pair's group replacements on this replica.
    fn role_turn(&self, account_id: AccountId, role: Role) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one((account_id.0, role));
        &self.role_turns[stripe as usize % self.role_turns.len()]
    }
}
