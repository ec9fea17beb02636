//! BatchUpsertProfiles: up to 1,000 creates and updates of one account in one transaction,
//! each item on its own idempotency key and with its own result. Items fail alone: a refused
//! username, an invalid field or an extension number held by another profile fails that item,
//! and the others go through.
//!
//! The items' answers are kept for replay either one record per item key, or — when the call
//! has a request_id — together in one record of the batch, which saves a write and a lookup
//! per item for callers that repeat a batch whole (bulk-import's windows of rows).
//!
//! What becomes of each item is decided by the pure planner in [`crate::domain::batch`]; this
//! module reads what it needs, carries the plan out and keeps each answer. The database has the
//! last word (the unique indexes of the username registry and of `extensions`): when a
//! concurrent transaction takes a username or number between the reads and the writes of this
//! batch, the whole batch is rolled back and decided again on fresh reads, so every item is
//! still answered on its own.

use std::collections::{HashMap, HashSet};

use roster_runtime::Caller;
use serde::{Deserialize, Serialize};

use super::events::origin;
use super::{Identity, decode_kept, emails, encode_kept, request_scope, usernames};
use crate::domain::assignment::{Extension, Role};
use crate::domain::batch::{
    KeptUpsert, MAX_BATCH, Plan, UpsertItem, UpsertOutcome, decide_extensions, first_claims_win,
    new_username, plan, wanted_numbers,
};
use crate::domain::error::{IdentityError, Refusal};
use crate::domain::event::{self, NewEvent, Origin};
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::Profile;
use crate::domain::suggestions::Seeds;
use crate::domain::username::Username;
use crate::store::StoreError;

/// How often a batch is decided again after losing a race to a concurrent transaction.
const ATTEMPTS: usize = 3;

/// One item's answer.
#[derive(Debug)]
pub struct UpsertResult {
    pub idempotency_key: String,
    pub outcome: Result<KeptUpsert, IdentityError>,
}

/// The answers of a batch's items kept by an earlier call.
enum Kept<'a> {
    /// One record per item key (a call without request_id), encoded.
    PerItem(HashMap<String, Vec<u8>>),
    /// The one record of the call's request_id; `None` when it was never answered.
    Batch {
        request_id: &'a str,
        record: Option<KeptBatch>,
    },
}

/// What a batch called with a request_id keeps: each answered item's answer, by item key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeptBatch {
    items: HashMap<String, KeptUpsert>,
}

impl Kept<'_> {
    fn contains(&self, key: &str) -> bool {
        match self {
            Kept::PerItem(stored) => stored.contains_key(key),
            Kept::Batch { record, .. } => record
                .as_ref()
                .is_some_and(|record| record.items.contains_key(key)),
        }
    }

    /// The first answer to the item `key`, if it was answered.
    fn answer(&self, key: &str) -> Option<Result<KeptUpsert, IdentityError>> {
        match self {
            Kept::PerItem(stored) => stored.get(key).map(|bytes| decode_kept(bytes)),
            Kept::Batch { record, .. } => record.as_ref()?.items.get(key).cloned().map(Ok),
        }
    }
}

/// One try at a batch.
enum Attempt {
    Done(Vec<UpsertResult>),
    /// A concurrent transaction took a username or extension number after this one read it.
    LostRace,
}

impl Identity {
    /// Creates and updates the profiles of `items` in `account_id`, each item answered on its
    /// own (see the module doc).
    ///
    /// With a `request_id` the items' answers are kept in one record of the batch (empty:
    /// one record per item key).
    pub async fn upsert_profiles(
        &self,
        caller: &Caller,
        account_id: AccountId,
        request_id: &str,
        items: Vec<UpsertItem>,
        send_welcome_emails: bool,
    ) -> Result<Vec<UpsertResult>, IdentityError> {
        // A batch's record has a scope of its own: a request_id never meets an item key.
        let scope = match request_id {
            "" => request_scope(caller, &format!("BatchUpsertProfiles:{account_id}")),
            _ => request_scope(caller, &format!("BatchUpsertProfiles.batch:{account_id}")),
        };
        let key = Some(request_id).filter(|id| !id.is_empty());
        for _ in 0..ATTEMPTS {
            if let Attempt::Done(mut results) = self
                .attempt(caller, &scope, key, account_id, &items, send_welcome_emails)
                .await?
            {
                if key.is_none() {
                    self.twins_answers(&scope, &mut results).await?;
                }
                self.suggest_for_refused(&items, &mut results).await;
                return Ok(results);
            }
        }
        Err(IdentityError::Contention(
            "concurrent calls kept taking the usernames or extensions of this batch; retry it"
                .into(),
        ))
    }

    async fn attempt(
        &self,
        caller: &Caller,
        scope: &str,
        request_id: Option<&str>,
        account_id: AccountId,
        items: &[UpsertItem],
        send_welcome_emails: bool,
    ) -> Result<Attempt, IdentityError> {
        let store = &self.store;
        let txn = store.begin().await?;
        let account = store
            .account_in(&txn, account_id)
            .await?
            .ok_or(IdentityError::NotFound("account"))?;
        account.ensure_open()?;
        let stored = match request_id {
            None => {
                let keys: Vec<String> = items
                    .iter()
                    .map(|item| item.idempotency_key.clone())
                    .collect();
                Kept::PerItem(store.stored_responses(&txn, scope, &keys).await?)
            }
            Some(request_id) => {
                let record = match store.batch_answers(&txn, scope, request_id).await? {
                    None => None,
                    Some(bytes) => Some(decode_kept::<KeptBatch>(&bytes)?),
                };
                if let Some(record) = &record {
                    within_one_batch(record, items)?;
                }
                Kept::Batch { request_id, record }
            }
        };
        let targets: Vec<ProfileId> = items
            .iter()
            .filter(|item| !stored.contains(&item.idempotency_key))
            .filter_map(UpsertItem::profile_id)
            .collect();
        // Only the batch's own account: an id of another account's profile is neither locked
        // nor found, exactly like an id nothing holds.
        let current: HashMap<ProfileId, Profile> = store
            .lock_profiles(&txn, &targets, Some(&HashSet::from([account_id])))
            .await?
            .into_iter()
            .map(|profile| (profile.id, profile))
            .collect();

        // Profiles that more than one item names: none of those items may set assignments,
        // which are decided against the profile as it was before the batch.
        let mut named = HashSet::new();
        let shared_ids: HashSet<ProfileId> = items
            .iter()
            .filter_map(UpsertItem::profile_id)
            .filter(|id| !named.insert(*id))
            .collect();
        let mut seen_keys = HashSet::new();
        // Parsing a thousand items is CPU work: off the executor.
        let mut plans: Vec<Plan> = roster_runtime::work::cpu_bound(|| {
            items
                .iter()
                .map(|item| {
                    if let Some(kept) = stored.answer(&item.idempotency_key) {
                        return kept.map_or_else(Plan::Failed, |kept| {
                            Plan::Replay(kept.outcome, kept.profile)
                        });
                    }
                    plan(
                        item,
                        &current,
                        account.extension_bounds,
                        &mut seen_keys,
                        &shared_ids,
                    )
                    .unwrap_or_else(Plan::Failed)
                })
                .collect()
        });

        // Usernames to register: every create, and updates whose canonical form changes.
        first_claims_win(&mut plans);
        let mut ids: Vec<Option<ProfileId>> = plans
            .iter()
            .map(|plan| match plan {
                Plan::Create(..) => Some(ProfileId::generate()),
                Plan::Update(current, ..) => Some(current.id),
                _ => None,
            })
            .collect();
        // The common batch, where every username is free and no extension changes hands, is
        // decided by registering them all at once: when every one registers, no standing
        // could have refused any, and the registry's reads are saved. Otherwise nothing of
        // that try is kept and each username's standing decides, as below.
        let all_registered = wanted_numbers(&plans).is_empty()
            && store
                .reserve_all_usernames(&txn, account_id, &claims(&plans, &ids))
                .await?;
        if !all_registered {
            let wanted: Vec<Username> = plans.iter().filter_map(new_username).cloned().collect();
            let refs: Vec<&Username> = wanted.iter().collect();
            let standings: HashMap<String, Refusal> = refs
                .iter()
                .zip(store.standings(&txn, &refs).await?)
                .filter_map(|(username, standing)| {
                    standing.map(|standing| (username.canonical().to_owned(), standing.refusal))
                })
                .collect();
            for (plan, id) in plans.iter_mut().zip(ids.iter_mut()) {
                if let Some(refusal) = new_username(plan).and_then(|u| standings.get(u.canonical()))
                {
                    *plan = Plan::Failed(IdentityError::username_refused(*refusal));
                    *id = None;
                }
            }
            let numbers = wanted_numbers(&plans);
            if !numbers.is_empty() {
                let holders = store.extension_holders(&txn, account_id, &numbers).await?;
                decide_extensions(&mut plans, &ids, holders);
            }

            // Register the usernames. One that a concurrent transaction registered first
            // invalidates the decisions above: decide again.
            let claims = claims(&plans, &ids);
            let registered = store.reserve_usernames(&txn, account_id, &claims).await?;
            if claims.len() != registered.len() {
                return Ok(Attempt::LostRace);
            }
        }

        // A username written another way (case, width) that looks different: its registered
        // skeleton follows, or the item is refused as confusable, as a new username would be.
        for (plan, id) in plans.iter_mut().zip(ids.iter_mut()) {
            let Plan::Update(current, fields, _) = &*plan else {
                continue;
            };
            if store.look_kept(&txn, current, &fields.username).await? {
                continue;
            }
            *plan = Plan::Failed(IdentityError::username_refused(Refusal::Confusable));
            *id = None;
        }

        // Assignments: numbers are freed before they are claimed, so one can change hands.
        let mut released = Vec::new();
        let mut claimed: Vec<(ProfileId, &Extension)> = Vec::new();
        let mut role_sets: Vec<(ProfileId, Vec<Role>)> = Vec::new();
        for (plan, id) in plans.iter().zip(&ids) {
            let (Some((assignments, held)), Some(id)) = (plan.assignments(), *id) else {
                continue;
            };
            released.extend(
                held.iter()
                    .filter(|held| !assignments.extensions.contains(held))
                    .map(|held| (id, held.number.as_str().to_owned())),
            );
            claimed.extend(
                assignments
                    .extensions
                    .iter()
                    .filter(|wanted| !held.contains(wanted))
                    .map(|wanted| (id, wanted)),
            );
            let held_roles: &[Role] = match plan {
                Plan::Update(current, ..) => &current.roles,
                _ => &[],
            };
            if assignments.roles != held_roles {
                role_sets.push((id, assignments.roles.clone()));
            }
        }
        store
            .release_extensions(&txn, account_id, &released)
            .await?;
        let taken = store.claim_extensions(&txn, account_id, &claimed).await?;
        if taken.len() != claimed.len() {
            return Ok(Attempt::LostRace);
        }
        store.replace_roles(&txn, &role_sets).await?;

        let now = crate::store::now();
        let mut inserts = Vec::new();
        let mut updates = Vec::new();
        let mut readdressed = Vec::new();
        let mut done: Vec<Option<KeptUpsert>> = Vec::with_capacity(plans.len());
        let mut events: Vec<(Origin, Vec<NewEvent>)> = Vec::new();
        for ((plan, id), item) in plans.iter().zip(&ids).zip(items) {
            let kept = match (plan, id) {
                (Plan::Create(fields, assignments), Some(id)) => {
                    let mut profile = Profile::new(*id, account_id, fields, now);
                    if let Some(assignments) = assignments {
                        profile.roles.clone_from(&assignments.roles);
                        profile.extensions.clone_from(&assignments.extensions);
                    }
                    inserts.push(profile.clone());
                    let origin = origin(caller, &item.idempotency_key);
                    events.push((origin, event::profile_created_with_assignments(&profile)));
                    Some(KeptUpsert {
                        outcome: UpsertOutcome::Created,
                        profile,
                    })
                }
                (Plan::Update(current, fields, assignments), _) => {
                    let mut profile = current.clone().with_fields(fields);
                    profile.updated_at = now;
                    profile.version = current.version + 1;
                    if let Some(assignments) = assignments {
                        profile.roles.clone_from(&assignments.roles);
                        profile.extensions.clone_from(&assignments.extensions);
                    }
                    if profile.email != current.email {
                        readdressed.push(profile.id);
                    }
                    updates.push(profile.clone());
                    let origin = origin(caller, &item.idempotency_key);
                    events.push((origin, event::profile_changed(current, &profile)));
                    Some(KeptUpsert {
                        outcome: UpsertOutcome::Updated,
                        profile,
                    })
                }
                (Plan::Unchanged(current), _) => Some(KeptUpsert {
                    outcome: UpsertOutcome::Unchanged,
                    profile: current.clone(),
                }),
                _ => None,
            };
            done.push(kept);
        }
        store.insert_profiles(&txn, &inserts).await?;
        if !inserts.is_empty() {
            // A deletion of the account that committed since it was read above.
            store.ensure_account_open(&txn, account_id).await?;
        }
        store.update_profiles(&txn, &updates).await?;
        // A link mailed to an address the import replaced sets no password.
        store.revoke_reset_tokens_of(&txn, &readdressed).await?;
        store.append_event_sets(&txn, &events).await?;
        if send_welcome_emails {
            let welcomes: Vec<_> = inserts
                .iter()
                .map(|profile| emails::welcome(&account, profile))
                .collect();
            store.enqueue_emails(&txn, &welcomes).await?;
        }

        let mut results = Vec::with_capacity(plans.len());
        let mut to_keep = Vec::new();
        for ((item, plan), kept) in items.iter().zip(plans).zip(done) {
            let outcome = match (plan, kept) {
                (Plan::Replay(outcome, profile), _) => Ok(KeptUpsert { outcome, profile }),
                (Plan::Failed(error), _) => Err(error),
                (_, Some(kept)) => {
                    to_keep.push((item.idempotency_key.clone(), kept.clone()));
                    Ok(kept)
                }
                (_, None) => Err(IdentityError::Corrupt("batch item without a plan".into())),
            };
            results.push(UpsertResult {
                idempotency_key: item.idempotency_key.clone(),
                outcome,
            });
        }
        if !keep_answers(store, &txn, scope, stored, to_keep).await? {
            return Ok(Attempt::LostRace);
        }
        txn.commit().await.map_err(StoreError::from)?;
        Ok(Attempt::Done(results))
    }

    /// A call without request_id and a twin of it (the same item keys) at once: the twin that
    /// commits first registers the usernames, and the other, having waited on them, finds them
    /// taken and fails those items — though they were done, under its own keys. As a single
    /// request answers its twin's kept answer, a failed item whose key a twin answered is
    /// answered that answer (read after this call's own transaction ended).
    async fn twins_answers(
        &self,
        scope: &str,
        results: &mut [UpsertResult],
    ) -> Result<(), IdentityError> {
        let failed: Vec<String> = results
            .iter()
            .filter(|result| result.outcome.is_err())
            .map(|result| result.idempotency_key.clone())
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let kept = self
            .store
            .stored_responses(self.store.connection(), scope, &failed)
            .await?;
        for result in results.iter_mut() {
            if let (Err(_), Some(bytes)) = (&result.outcome, kept.get(&result.idempotency_key)) {
                result.outcome = decode_kept(bytes);
            }
        }
        Ok(())
    }

    /// Fills the suggestions of every item whose username was refused as taken, retired or
    /// confusable, with one registry lookup for the whole batch. Without them (the lookup
    /// failed) the refusals stand as they are.
    async fn suggest_for_refused(&self, items: &[UpsertItem], results: &mut [UpsertResult]) {
        let refused: Vec<(usize, Option<Username>)> = results
            .iter()
            .enumerate()
            .filter_map(|(index, result)| match &result.outcome {
                Err(IdentityError::UsernameRefused {
                    refusal,
                    suggestions,
                    ..
                }) if *refusal != Refusal::Invalid && suggestions.is_empty() => {
                    let fields = &items[index].fields;
                    let typed = if fields.username.trim().is_empty() {
                        &fields.email
                    } else {
                        &fields.username
                    };
                    Some((index, Username::parse(typed).ok()))
                }
                _ => None,
            })
            .collect();
        if refused.is_empty() {
            return;
        }
        let seeds: Vec<Seeds> = refused
            .iter()
            .map(|(index, username)| Seeds {
                first_name: &items[*index].fields.first_name,
                last_name: &items[*index].fields.last_name,
                email: &items[*index].fields.email,
                refused: username.as_ref(),
            })
            .collect();
        let lists = match usernames::free_usernames(&self.store, &seeds).await {
            Ok(lists) => lists,
            Err(error) => {
                tracing::warn!(%error, "username suggestions unavailable");
                return;
            }
        };
        for ((index, _), found) in refused.iter().zip(lists) {
            let defaulted = items[*index].fields.username.trim().is_empty();
            if let Err(IdentityError::UsernameRefused {
                defaulted: item_defaulted,
                suggestions,
                ..
            }) = &mut results[*index].outcome
            {
                *item_defaulted = defaulted;
                *suggestions = found;
            }
        }
    }
}

/// A batch's record holds the answers of one batch at most: a request_id sent again with items
/// of other keys, so that the record would answer more than [`MAX_BATCH`] item keys, is refused
/// before anything is written. Without the bound, one key's record could be grown call after
/// call, and every repeat would read and rewrite all of it.
fn within_one_batch(record: &KeptBatch, items: &[UpsertItem]) -> Result<(), IdentityError> {
    let added: HashSet<&str> = items
        .iter()
        .map(|item| item.idempotency_key.as_str())
        .filter(|key| !record.items.contains_key(*key))
        .collect();
    if record.items.len() + added.len() > MAX_BATCH {
        return Err(IdentityError::Precondition(format!(
            "this request_id already answers {} items, and a batch's request_id answers at most \
             {MAX_BATCH}: it is for repeating that batch; send other items under a new request_id",
            record.items.len()
        )));
    }
    Ok(())
}

/// Keeps the answers of the items this try wrote: one record per item key, or, for a call with
/// a request_id, the batch's record with them added. False when a concurrent twin of the call
/// kept the batch's record first: this try is rolled back, and the next one replays the twin's
/// answers.
async fn keep_answers(
    store: &crate::store::Store,
    txn: &sea_orm::DatabaseTransaction,
    scope: &str,
    stored: Kept<'_>,
    answers: Vec<(String, KeptUpsert)>,
) -> Result<bool, IdentityError> {
    let Kept::Batch { request_id, record } = stored else {
        let encoded = answers
            .into_iter()
            .map(|(key, answer)| Ok((key, encode_kept(&answer)?)))
            .collect::<Result<Vec<_>, IdentityError>>()?;
        store.store_responses(txn, scope, encoded).await?;
        return Ok(true);
    };
    let existed = record.is_some();
    // A first call keeps its record even without an answer in it: a concurrent twin that
    // kept one first is found this way, and this try is decided again as a replay of it.
    if answers.is_empty() && existed {
        return Ok(true);
    }
    let mut record = record.unwrap_or_default();
    record.items.extend(answers);
    Ok(store
        .keep_batch_answers(txn, scope, request_id, encode_kept(&record)?, existed)
        .await?)
}

/// The usernames that `plans` register, each with the profile that will hold it.
fn claims<'a>(plans: &'a [Plan], ids: &[Option<ProfileId>]) -> Vec<(&'a Username, ProfileId)> {
    plans
        .iter()
        .zip(ids)
        .filter_map(|(plan, id)| Some((new_username(plan)?, (*id)?)))
        .collect()
}
