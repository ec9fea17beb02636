//! Identity's use cases: one public function per operation, shared by every interface — the
//! gRPC handlers, the bulk import's batch calls, the reset page, and SCIM and the audit log
//! after them. Each function checks what the caller may see, runs the domain's rules, owns its
//! transaction and, for calls that carry a request id, its idempotency (AIP-155).
//!
//! Nothing here knows gRPC: inputs and outputs are domain types, failures are
//! [`IdentityError`]s, and `api` maps both.

pub mod accounts;
pub mod assignments;
pub mod batch;
mod creations;
pub mod credentials;
pub mod emails;
pub mod events;
mod lookups;
pub mod offboarding;
pub mod profiles;
pub mod scim_tokens;
pub mod signin;
pub mod usernames;

use std::collections::HashSet;

use roster_runtime::Caller;
use sea_orm::DatabaseTransaction;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::error::IdentityError;
use crate::domain::ids::{AccountId, ProfileId};
use crate::store::{Store, StoreError};

/// The use cases of accounts, profiles, usernames and assignments over one store. Cheap to
/// clone.
#[derive(Clone)]
pub struct Identity {
    store: Store,
    /// CheckUsername's registry lookups, answered together under load.
    lookups: lookups::Lookups,
    /// The usual CreateProfile's statements, shared by concurrent creations under load.
    creations: creations::Creations,
    /// How long after its deletion a profile can be undeleted.
    restore_window: chrono::Duration,
    /// How long after its deletion an account can be undeleted.
    account_retention: chrono::Duration,
    /// Group replacements of one (account, role) take turns here before they open their
    /// transaction, so that the ones waiting hold no database connection (see
    /// [`Identity::replace_role_members`]).
    role_turns: std::sync::Arc<[tokio::sync::Mutex<()>]>,
}

/// How many (account, role) pairs' group replacements can wait apart: pairs that share a
/// stripe only wait for each other a little longer.
const ROLE_TURN_STRIPES: usize = 64;

impl Identity {
    /// The use cases over `store`, with the default restore window
    /// ([`crate::DEFAULT_PROFILE_RESTORE_DAYS`]).
    pub fn new(store: Store) -> Self {
        Self {
            lookups: lookups::lookups(store.clone()),
            creations: creations::creations(store.clone()),
            store,
            restore_window: restore_window(crate::DEFAULT_PROFILE_RESTORE_DAYS),
            account_retention: restore_window(crate::DEFAULT_ACCOUNT_RETENTION_DAYS),
            role_turns: (0..ROLE_TURN_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// The same use cases, a deleted profile undeletable for `days` after its deletion.
    pub fn with_restore_days(self, days: u64) -> Self {
        Self {
            restore_window: restore_window(days),
            ..self
        }
    }

    /// The same use cases, a deleted account undeletable for `days` after its deletion.
    pub fn with_account_retention_days(self, days: u64) -> Self {
        Self {
            account_retention: restore_window(days),
            ..self
        }
    }

    /// The store, for the workers beside the use cases (the outbox relay).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// `days` as a duration, at most a century.
fn restore_window(days: u64) -> chrono::Duration {
    chrono::Duration::days(i64::try_from(days.min(36_500)).unwrap_or(36_500))
}

/// The accounts a caller may act on (`None`: any), as the store takes them.
pub(crate) fn account_scope(caller: &Caller) -> Option<HashSet<AccountId>> {
    caller
        .account_limit()
        .map(|accounts| accounts.iter().copied().map(AccountId).collect())
}

/// NOT_PERMITTED for a key limited to some accounts: only a key of every account may `what`
/// accounts (create, delete, undelete).
pub fn every_account(caller: &Caller, what: &str) -> Result<(), IdentityError> {
    match caller.account_limit() {
        None => Ok(()),
        Some(_) => Err(IdentityError::NotPermitted(format!(
            "a key limited to some accounts cannot {what} accounts"
        ))),
    }
}

/// A request's id (AIP-155) and a digest of the whole request it came with. A repeat is
/// answered the first answer only when it is the same request: the same id sent with another
/// request — another profile, another account, other fields — is refused, naming `request_id`,
/// and does nothing. Without that, a key whose accounts were narrowed since could name one of
/// its remaining profiles with an id it had used on another account's, and be answered the
/// other account's answer.
#[derive(Clone, Copy, Debug)]
pub struct RequestId<'a> {
    id: &'a str,
    digest: [u8; 16],
}

impl<'a> RequestId<'a> {
    /// No request id: the call is done every time and nothing is kept.
    pub const NONE: RequestId<'static> = RequestId {
        id: "",
        digest: [0; 16],
    };

    /// `id`, sent with the request whose canonical bytes (its wire encoding) are `request`.
    pub fn new(id: &'a str, request: &[u8]) -> Self {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(request);
        let mut digest = [0; 16];
        digest.copy_from_slice(&hash[..16]);
        Self { id, digest }
    }

    /// The id as the caller sent it (empty: none).
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The request's digest, kept with its answer.
    pub(crate) fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// Whether a kept answer's request is this one. Answers kept before requests had digests
    /// are taken as answering it.
    fn answers(&self, kept: Option<&[u8]>) -> bool {
        kept.is_none_or(|kept| kept == self.digest)
    }
}

/// The refusal of a request id sent before with another request.
pub(crate) fn request_id_reused() -> IdentityError {
    IdentityError::Invalid(vec![crate::domain::error::Violation::new(
        "request_id",
        "was sent before with a different request; a repeat must be the same request (send a \
         new request_id for a new request)",
    )])
}

/// Where a caller's request ids live: one caller's `CreateProfile` ids never meet another's,
/// nor its ids of another operation.
pub(crate) fn request_scope(caller: &Caller, operation: &str) -> String {
    format!("{}:{operation}", caller.name)
}

/// What a repeated request must still be allowed to see to be answered its first answer. A
/// key's accounts can be narrowed in the keys file while its name, and so its request ids'
/// scope, stays: the first answers it kept must not show it what it may no longer see.
#[derive(Clone, Copy)]
pub(crate) enum Seen<'a> {
    /// The caller's access to what the request names was checked before the call (the
    /// account it names, or every account), or the call keeps no answer.
    Checked,
    /// The profile the request names, which the caller must still see: otherwise the repeat
    /// is answered as a new request would be, NOT_FOUND.
    Profile(&'a Caller, ProfileId),
}

impl Seen<'_> {
    /// `kept` when the caller may still see what it tells of.
    async fn replay<R>(self, store: &Store, kept: R) -> Result<R, IdentityError> {
        let Seen::Profile(caller, id) = self else {
            return Ok(kept);
        };
        if caller.account_limit().is_none() {
            return Ok(kept);
        }
        let visible = store
            .profile(store.connection(), id)
            .await?
            .is_some_and(|profile| caller.may_access(profile.account_id.0));
        if visible {
            Ok(kept)
        } else {
            Err(profiles::profile_not_found())
        }
    }
}

/// Runs `work` in a transaction, once per `(scope, request_id)` (AIP-155): a repeated request
/// answers the first answer, kept when it was produced, and writes nothing — to a caller that
/// may still see what it tells of (`seen`). An empty
/// `request_id` runs `work` without that guarantee. Two concurrent twins both run `work`; the
/// one whose key lands first commits, and the other is rolled back and answers with the
/// winner's answer, also when the winner's change made its own `work` fail.
pub(crate) async fn once<R, F>(
    store: &Store,
    scope: &str,
    request_id: RequestId<'_>,
    seen: Seen<'_>,
    work: F,
) -> Result<R, IdentityError>
where
    R: Serialize + DeserializeOwned,
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<R, IdentityError>,
{
    if let Some(kept) = kept_answer(store, scope, request_id, seen).await? {
        return Ok(kept);
    }
    once_new(store, scope, request_id, seen, work).await
}

/// [`once`] for work whose repetition always fails or is rolled back, which a request is
/// expected to be seen for the first time: the kept answer is looked for only when the work
/// fails or its key is taken, saving a round trip on every first request. A repeated
/// CreateProfile, say, finds its username registered — by its own first run — or its key
/// kept, and answers the first answer; nothing of the repetition is committed. Only for work
/// without effects outside its transaction.
pub(crate) async fn once_new<R, F>(
    store: &Store,
    scope: &str,
    request_id: RequestId<'_>,
    seen: Seen<'_>,
    work: F,
) -> Result<R, IdentityError>
where
    R: Serialize + DeserializeOwned,
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<R, IdentityError>,
{
    let txn = store.begin().await?;
    let answer = match work(&txn).await {
        Ok(answer) => answer,
        Err(error) => {
            txn.rollback().await.map_err(StoreError::from)?;
            // A concurrent twin may have committed first, changing what `work` saw (a stale
            // etag now, a number held already): the twin's answer is the answer.
            if let Some(kept) = kept_answer(store, scope, request_id, seen).await? {
                return Ok(kept);
            }
            return Err(error);
        }
    };
    if !request_id.id().is_empty() {
        let encoded = encode_kept(&answer)?;
        if !store
            .keep_response(
                &txn,
                scope,
                request_id.id(),
                Some(request_id.digest()),
                encoded,
            )
            .await?
        {
            txn.rollback().await.map_err(StoreError::from)?;
            return kept_answer(store, scope, request_id, seen)
                .await?
                .ok_or_else(|| IdentityError::Corrupt("idempotency key vanished".into()));
        }
    }
    txn.commit().await.map_err(StoreError::from)?;
    Ok(answer)
}

/// The answer kept for `(scope, request_id)`, if the request was answered before: when it
/// answered this very request (else the id is refused, see [`RequestId`]) and the caller may
/// still see what it tells of (see [`Seen`]).
async fn kept_answer<R: DeserializeOwned>(
    store: &Store,
    scope: &str,
    request_id: RequestId<'_>,
    seen: Seen<'_>,
) -> Result<Option<R>, IdentityError> {
    if request_id.id().is_empty() {
        return Ok(None);
    }
    match store.stored_response(scope, request_id.id()).await? {
        None => Ok(None),
        Some(kept) if !request_id.answers(kept.digest.as_deref()) => Err(request_id_reused()),
        Some(kept) => seen
            .replay(store, decode_kept(&kept.response)?)
            .await
            .map(Some),
    }
}

/// An answer to keep, as [`decode_kept`] reads it back.
pub(crate) fn encode_kept(answer: &impl Serialize) -> Result<Vec<u8>, IdentityError> {
    serde_json::to_vec(answer)
        .map_err(|error| IdentityError::Corrupt(format!("answer to keep: {error}")))
}

/// A kept answer. Answers kept before the use-case layer were protobuf messages, which this
/// layer cannot read back: such a request id is refused, and nothing is done a second time.
pub(crate) fn decode_kept<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, IdentityError> {
    if bytes.first() != Some(&b'{') {
        return Err(IdentityError::Precondition(
            "this request_id was answered by an earlier version of Roster, whose answer cannot \
             be replayed; nothing was done again: read the resource to see its state, or send \
             a new request_id"
                .into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|error| IdentityError::Corrupt(format!("kept answer: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_kept_as_json_is_replayed() {
        // Every kept answer is a JSON object; anything else is not one of ours.
        assert!(decode_kept::<Vec<u32>>(b"[1,2]").is_err());
        let kept: serde_json::Value = decode_kept(br#"{"a":1}"#).unwrap();
        assert_eq!(kept["a"], 1);
    }

    #[test]
    fn an_answer_kept_as_protobuf_is_refused_and_not_done_again() {
        // A CreateProfileResponse: field 1, length-delimited.
        let error = decode_kept::<serde_json::Value>(&[0x0a, 0x02, 0x08, 0x01]).unwrap_err();
        assert!(
            matches!(&error, IdentityError::Precondition(message) if message.contains("new request_id")),
            "{error:?}"
        );
    }
}
