//! Accounts and their password policies: create, read, list, update.

use roster_runtime::Caller;
use sea_orm::DatabaseTransaction;

use super::events::origin;
use super::{Identity, RequestId, Seen, account_scope, every_account, once, request_scope};
use crate::domain::account::{Account, AccountPatch, PolicyPatch, display_name, extension_bounds};
use crate::domain::assignment::ExtensionBounds;
use crate::domain::error::IdentityError;
use crate::domain::event::{self, NewEvent};
use crate::domain::ids::AccountId;
use crate::domain::policy::{PasswordPolicy, Preset};
use crate::store::Store;

/// The account, read in `txn`, at the version `expected` names (when it names one).
async fn account_at(
    store: &Store,
    txn: &DatabaseTransaction,
    id: AccountId,
    expected: Option<i64>,
) -> Result<Account, IdentityError> {
    // Locked: a change without an etag applies to the version the one before it left,
    // instead of failing as stale when another commits between this read and the write.
    let account = store
        .lock_account(txn, id)
        .await?
        .ok_or(IdentityError::NotFound("account"))?;
    if expected.is_some_and(|version| version != account.version) {
        return Err(IdentityError::StaleEtag);
    }
    Ok(account)
}

pub use crate::store::Listed;

/// What CreateAccount asks for.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub display_name: String,
    pub preset: Preset,
    /// 0: the default.
    pub extension_min_length: u32,
    /// 0: the default.
    pub extension_max_length: u32,
}

impl Identity {
    /// Creates an account. Only a key that may act on every account may create one.
    pub async fn create_account(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        new: NewAccount,
    ) -> Result<Account, IdentityError> {
        every_account(caller, "create")?;
        let name = display_name("display_name", &new.display_name)?;
        let policy = PasswordPolicy::from_preset(new.preset);
        let bounds = extension_bounds(
            "",
            match new.extension_min_length {
                0 => ExtensionBounds::DEFAULT_MIN,
                given => given,
            },
            match new.extension_max_length {
                0 => ExtensionBounds::DEFAULT_MAX,
                given => given,
            },
        )?;
        let store = &self.store;
        let origin = origin(caller, request_id.id());
        once(
            store,
            &request_scope(caller, "CreateAccount"),
            request_id,
            Seen::Checked,
            async |txn| {
                let account = store.create_account(txn, &name, &policy, bounds).await?;
                store
                    .append_events(txn, &origin, vec![event::account_created(&account)])
                    .await?;
                Ok(account)
            },
        )
        .await
    }

    /// One account the caller may see; another account is NOT_FOUND, like one that does not
    /// exist.
    pub async fn account(&self, caller: &Caller, id: AccountId) -> Result<Account, IdentityError> {
        if !caller.may_access(id.0) {
            return Err(IdentityError::NotFound("account"));
        }
        self.store
            .account(id)
            .await?
            .ok_or(IdentityError::NotFound("account"))
    }

    /// A page of the accounts the caller may see, in creation order after `after`; one more
    /// than `limit` tells that another page follows.
    pub async fn list_accounts(
        &self,
        caller: &Caller,
        after: Option<AccountId>,
        which: Listed,
        limit: u64,
    ) -> Result<Vec<Account>, IdentityError> {
        let only = account_scope(caller).map(|accounts| accounts.into_iter().collect());
        Ok(self.store.list_accounts(after, only, which, limit).await?)
    }

    /// Changes an account's display name and extension bounds, at the version `expected`
    /// names (when it names one).
    pub async fn update_account(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: AccountId,
        expected: Option<i64>,
        patch: AccountPatch,
    ) -> Result<Account, IdentityError> {
        let call = AccountChange {
            caller,
            request_id,
            id,
            expected,
        };
        let store = &self.store;
        self.change_account(call, "UpdateAccount", async |txn, account| {
            let (name, bounds) = patch.apply(account)?;
            let updated = store.update_account(txn, account, &name, bounds).await?;
            let event = event::account_updated(account, &updated);
            Ok((updated, event))
        })
        .await
    }

    /// Changes an account's password policy, at the version `expected` names (when it names
    /// one).
    pub async fn update_password_policy(
        &self,
        caller: &Caller,
        request_id: RequestId<'_>,
        id: AccountId,
        expected: Option<i64>,
        patch: PolicyPatch,
    ) -> Result<Account, IdentityError> {
        let call = AccountChange {
            caller,
            request_id,
            id,
            expected,
        };
        let store = &self.store;
        self.change_account(call, "UpdatePasswordPolicy", async |txn, account| {
            let policy = patch.apply(&account.policy);
            policy.validate().map_err(IdentityError::Invalid)?;
            let updated = store.update_policy(txn, account, &policy).await?;
            let event = event::policy_changed(account, &updated);
            Ok((updated, event))
        })
        .await
    }

    /// Runs an [`AccountChange`]: an account the caller may not act on is NOT_FOUND; a
    /// repeated request id answers the first answer; otherwise `change` makes the account's
    /// new version from the one at the expected version, and its event (when anything
    /// changed) is recorded in the same transaction.
    async fn change_account(
        &self,
        call: AccountChange<'_>,
        operation: &str,
        change: impl AsyncFnOnce(
            &DatabaseTransaction,
            &Account,
        ) -> Result<(Account, Option<NewEvent>), IdentityError>,
    ) -> Result<Account, IdentityError> {
        if !call.caller.may_access(call.id.0) {
            return Err(IdentityError::NotFound("account"));
        }
        let store = &self.store;
        let origin = origin(call.caller, call.request_id.id());
        once(
            store,
            &request_scope(call.caller, operation),
            call.request_id,
            Seen::Checked,
            async |txn| {
                let account = account_at(store, txn, call.id, call.expected).await?;
                account.ensure_open()?;
                let (updated, event) = change(txn, &account).await?;
                store
                    .append_events(txn, &origin, event.into_iter().collect())
                    .await?;
                Ok(updated)
            },
        )
        .await
    }
}

/// One call that changes an account: who, under which request id, which account at which
/// version.
#[derive(Clone, Copy, Debug)]
struct AccountChange<'a> {
    caller: &'a Caller,
    request_id: RequestId<'a>,
    id: AccountId,
    /// The etag's version, when the caller sent one.
    expected: Option<i64>,
}
