//! BatchUpsertProfiles: up to 1,000 creates and updates of one account in one transaction,
//! each item on its own idempotency key and with its own result. Items fail alone: a refused
//! username, an invalid field or an extension number held by another profile fails that item,
//! and the others go through.
//!
//! An item with `set_assignments` replaces the profile's roles and extensions with the ones it
//! lists. Items are decided in order, as if they were sent one after another: of two items
//! claiming one extension number the first wins, and a number that an earlier item frees can be
//! taken by a later one. The database has the last word (the unique indexes of the username
//! registry and of `extensions`): when a concurrent transaction takes a username or number
//! between the reads and the writes of this batch, the whole batch is rolled back and decided
//! again on fresh reads, so every item is still answered on its own.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use prost::Message;
use roster_proto::identity::v1 as pb;
use roster_runtime::Caller;
use sea_orm::DatabaseTransaction;
use tonic::Code;
use uuid::Uuid;

use super::convert;
use crate::domain::assignment::{Extension, ExtensionBounds, ExtensionNumber, Role};
use crate::domain::error::{IdentityError, Refusal, Violation};
use crate::domain::profile::{ProfileFields, RawProfile};
use crate::domain::suggestions::Seeds;
use crate::domain::username::Username;
use crate::store::entities::profile;
use crate::store::{DELETED, ProfileRecord, Store, extension_rows, role_names};
use crate::{emails, suggest};

/// How often a batch is decided again after losing a race to a concurrent transaction.
const ATTEMPTS: usize = 3;

/// The roles and extensions an item sets, replacing the profile's.
#[derive(Clone, Debug)]
struct Assignments {
    /// Sorted, each once.
    roles: Vec<Role>,
    /// Sorted by number, each number once.
    extensions: Vec<Extension>,
}

impl Assignments {
    /// True when `record` holds exactly these roles and extensions.
    fn held_by(&self, record: &ProfileRecord) -> bool {
        role_names(&self.roles) == record.roles
            && extension_rows(&self.extensions) == record.extensions
    }
}

/// What becomes of one item.
enum Plan {
    /// Answered before under the same key: the stored result.
    Replay(pb::ProfileUpsertResult),
    Failed(IdentityError),
    Create(ProfileFields, Option<Assignments>),
    Update(ProfileRecord, ProfileFields, Option<Assignments>),
    Unchanged(ProfileRecord),
}

impl Plan {
    /// The assignments an item sets and the extensions its profile holds now.
    fn assignments(&self) -> Option<(&Assignments, &[(String, String)])> {
        match self {
            Plan::Create(_, Some(assignments)) => Some((assignments, &[])),
            Plan::Update(record, _, Some(assignments)) => Some((assignments, &record.extensions)),
            _ => None,
        }
    }
}

/// One try at a batch.
enum Attempt {
    Done(Vec<pb::ProfileUpsertResult>),
    /// A concurrent transaction took a username or extension number after this one read it.
    LostRace,
}

pub async fn upsert(
    store: &Store,
    caller: &Caller,
    account_id: Uuid,
    items: Vec<pb::ProfileUpsert>,
    send_welcome_emails: bool,
) -> Result<Vec<pb::ProfileUpsertResult>, IdentityError> {
    let scope = format!("{}:BatchUpsertProfiles:{account_id}", caller.name);
    for _ in 0..ATTEMPTS {
        if let Attempt::Done(mut results) =
            attempt(store, &scope, account_id, &items, send_welcome_emails).await?
        {
            suggest_for_refused(store, &items, &mut results).await;
            return Ok(results);
        }
    }
    Err(IdentityError::Contention(
        "concurrent calls kept taking the usernames or extensions of this batch; retry it".into(),
    ))
}

async fn attempt(
    store: &Store,
    scope: &str,
    account_id: Uuid,
    items: &[pb::ProfileUpsert],
    send_welcome_emails: bool,
) -> Result<Attempt, IdentityError> {
    let txn = store.begin().await?;
    let account = store
        .account_in(&txn, account_id)
        .await?
        .ok_or(IdentityError::NotFound("account"))?;
    let keys: Vec<String> = items
        .iter()
        .map(|item| item.idempotency_key.clone())
        .collect();
    let stored = store.stored_responses(&txn, scope, &keys).await?;
    let targets: Vec<Uuid> = items
        .iter()
        .filter(|item| !stored.contains_key(&item.idempotency_key))
        .filter_map(|item| Uuid::parse_str(&item.id).ok())
        .collect();
    // Only the batch's own account: an id of another account's profile is neither locked nor
    // found, exactly like an id nothing holds.
    let current: HashMap<Uuid, ProfileRecord> = store
        .lock_profiles(&txn, &targets, Some(&HashSet::from([account_id])))
        .await?
        .into_iter()
        .map(|record| (record.profile.id, record))
        .collect();

    // Profiles that more than one item names: none of those items may set assignments, which
    // are decided against the profile as it was before the batch.
    let mut named = HashSet::new();
    let shared_ids: HashSet<Uuid> = items
        .iter()
        .filter_map(|item| Uuid::parse_str(&item.id).ok())
        .filter(|id| !named.insert(*id))
        .collect();
    let mut seen_keys = HashSet::new();
    // Parsing a thousand items is CPU work: off the executor.
    let mut plans: Vec<Plan> = roster_runtime::work::cpu_bound(|| {
        items
            .iter()
            .map(|item| {
                if let Some(response) = stored.get(&item.idempotency_key) {
                    return pb::ProfileUpsertResult::decode(response.as_slice())
                        .map(Plan::Replay)
                        .unwrap_or_else(|error| {
                            Plan::Failed(IdentityError::Corrupt(format!("stored result: {error}")))
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

    // Usernames to register: every create, and updates whose canonical form changes. Within
    // the batch the first claim wins, as it would have in sequence.
    let mut claimed_canonical = HashSet::new();
    let mut claimed_skeleton = HashSet::new();
    for plan in plans.iter_mut() {
        let Some(username) = new_username(plan) else {
            continue;
        };
        let refusal = if !claimed_canonical.insert(username.canonical().to_owned()) {
            Some(Refusal::Taken)
        } else if !claimed_skeleton.insert(username.skeleton().to_owned()) {
            Some(Refusal::Confusable)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            *plan = Plan::Failed(refused(refusal));
        }
    }
    let wanted: Vec<Username> = plans.iter().filter_map(new_username).cloned().collect();
    let refs: Vec<&Username> = wanted.iter().collect();
    let standings: HashMap<String, Refusal> = refs
        .iter()
        .zip(store.standings(&txn, &refs).await?)
        .filter_map(|(username, standing)| {
            standing.map(|standing| (username.canonical().to_owned(), standing.refusal))
        })
        .collect();
    for plan in plans.iter_mut() {
        if let Some(refusal) = new_username(plan).and_then(|u| standings.get(u.canonical())) {
            *plan = Plan::Failed(refused(*refusal));
        }
    }

    let ids: Vec<Option<Uuid>> = plans
        .iter()
        .map(|plan| match plan {
            Plan::Create(..) => Some(Uuid::now_v7()),
            Plan::Update(record, ..) => Some(record.profile.id),
            _ => None,
        })
        .collect();
    decide_extensions(store, &txn, account_id, &mut plans, &ids).await?;

    // Register the usernames. One that a concurrent transaction registered first invalidates
    // the decisions above: decide again.
    let claims: Vec<(&Username, Uuid)> = plans
        .iter()
        .zip(&ids)
        .filter_map(|(plan, id)| Some((new_username(plan)?, (*id)?)))
        .collect();
    let registered = store.reserve_usernames(&txn, account_id, &claims).await?;
    if claims.len() != registered.len() {
        return Ok(Attempt::LostRace);
    }

    // Assignments: numbers are freed before they are claimed, so one can change hands.
    let mut released = Vec::new();
    let mut claimed: Vec<(Uuid, &Extension)> = Vec::new();
    let mut role_sets = Vec::new();
    for (plan, id) in plans.iter().zip(&ids) {
        let (Some((assignments, held)), Some(id)) = (plan.assignments(), *id) else {
            continue;
        };
        let keeps = |number: &str, kind: &str| {
            assignments
                .extensions
                .iter()
                .any(|wanted| wanted.number.as_str() == number && wanted.kind.as_str() == kind)
        };
        released.extend(
            held.iter()
                .filter(|(number, kind)| !keeps(number, kind))
                .map(|(number, _)| (id, number.clone())),
        );
        claimed.extend(
            assignments
                .extensions
                .iter()
                .filter(|wanted| {
                    !held.iter().any(|(number, kind)| {
                        number == wanted.number.as_str() && kind == wanted.kind.as_str()
                    })
                })
                .map(|wanted| (id, wanted)),
        );
        let held_roles = match plan {
            Plan::Update(record, ..) => record.roles.clone(),
            _ => Vec::new(),
        };
        if role_names(&assignments.roles) != held_roles {
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
    let mut records: Vec<Option<(pb::UpsertOutcome, ProfileRecord)>> =
        Vec::with_capacity(plans.len());
    for (plan, id) in plans.iter().zip(&ids) {
        let record = match (plan, id) {
            (Plan::Create(fields, assignments), Some(id)) => {
                let model = new_model(*id, account_id, fields, now);
                inserts.push(model.clone());
                Some((
                    pb::UpsertOutcome::Created,
                    ProfileRecord {
                        profile: model,
                        roles: assignments
                            .as_ref()
                            .map(|a| role_names(&a.roles))
                            .unwrap_or_default(),
                        extensions: assignments
                            .as_ref()
                            .map(|a| extension_rows(&a.extensions))
                            .unwrap_or_default(),
                    },
                ))
            }
            (Plan::Update(current, fields, assignments), _) => {
                let mut model = new_model(current.profile.id, account_id, fields, now);
                model.status = current.profile.status.clone();
                model.created_at = current.profile.created_at;
                model.deleted_at = current.profile.deleted_at;
                model.version = current.profile.version + 1;
                updates.push(model.clone());
                Some((
                    pb::UpsertOutcome::Updated,
                    ProfileRecord {
                        profile: model,
                        roles: assignments
                            .as_ref()
                            .map_or_else(|| current.roles.clone(), |a| role_names(&a.roles)),
                        extensions: assignments.as_ref().map_or_else(
                            || current.extensions.clone(),
                            |a| extension_rows(&a.extensions),
                        ),
                    },
                ))
            }
            (Plan::Unchanged(current), _) => Some((pb::UpsertOutcome::Unchanged, current.clone())),
            _ => None,
        };
        records.push(record);
    }
    store.insert_profiles(&txn, &inserts).await?;
    store.update_profiles(&txn, &updates).await?;
    if send_welcome_emails {
        let welcomes: Vec<_> = records
            .iter()
            .flatten()
            .filter(|(outcome, _)| *outcome == pb::UpsertOutcome::Created)
            .map(|(_, record)| emails::welcome(&account, record))
            .collect();
        store.enqueue_emails(&txn, &welcomes).await?;
    }

    let mut results = Vec::with_capacity(plans.len());
    let mut to_store = Vec::new();
    for ((item, plan), record) in items.iter().zip(plans).zip(records) {
        let result = match (plan, record) {
            (Plan::Replay(result), _) => result,
            (Plan::Failed(error), _) => failure(&item.idempotency_key, error),
            (_, Some((outcome, record))) => {
                let result = pb::ProfileUpsertResult {
                    idempotency_key: item.idempotency_key.clone(),
                    outcome: outcome as i32,
                    profile: Some(convert::profile(&record)),
                    ..Default::default()
                };
                to_store.push((item.idempotency_key.clone(), result.encode_to_vec()));
                result
            }
            (_, None) => failure(
                &item.idempotency_key,
                IdentityError::Corrupt("batch item without a plan".into()),
            ),
        };
        results.push(result);
    }
    store.store_responses(&txn, scope, to_store).await?;
    txn.commit().await?;
    Ok(Attempt::Done(results))
}

/// Decides, item by item in order, whether each item that sets extensions may hold them: a
/// number held by a profile other than the item's fails the item with EXTENSION_TAKEN; an
/// item that goes through takes its numbers and frees the ones it drops, for the items after
/// it.
async fn decide_extensions(
    store: &Store,
    txn: &DatabaseTransaction,
    account_id: Uuid,
    plans: &mut [Plan],
    ids: &[Option<Uuid>],
) -> Result<(), IdentityError> {
    let wanted: HashSet<String> = plans
        .iter()
        .filter_map(Plan::assignments)
        .flat_map(|(assignments, _)| {
            assignments
                .extensions
                .iter()
                .map(|wanted| wanted.number.as_str().to_owned())
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let wanted: Vec<String> = wanted.into_iter().collect();
    let mut holders = store.extension_holders(txn, account_id, &wanted).await?;
    for (plan, id) in plans.iter_mut().zip(ids) {
        let (Some((assignments, held)), Some(id)) = (plan.assignments(), *id) else {
            continue;
        };
        let taken = assignments.extensions.iter().find(|wanted| {
            holders
                .get(wanted.number.as_str())
                .is_some_and(|holder| *holder != id)
        });
        if let Some(taken) = taken {
            let number = taken.number.as_str().to_owned();
            *plan = Plan::Failed(IdentityError::ExtensionTaken { number });
            continue;
        }
        let freed: Vec<String> = held
            .iter()
            .map(|(number, _)| number.clone())
            .filter(|number| {
                !assignments
                    .extensions
                    .iter()
                    .any(|wanted| wanted.number.as_str() == number)
            })
            .collect();
        let taking: Vec<String> = assignments
            .extensions
            .iter()
            .map(|wanted| wanted.number.as_str().to_owned())
            .collect();
        for number in freed {
            holders.remove(&number);
        }
        for number in taking {
            holders.insert(number, id);
        }
    }
    Ok(())
}

/// Decides what to do with one item that was not answered before.
fn plan(
    item: &pb::ProfileUpsert,
    current: &HashMap<Uuid, ProfileRecord>,
    bounds: ExtensionBounds,
    seen_keys: &mut HashSet<String>,
    shared_ids: &HashSet<Uuid>,
) -> Result<Plan, IdentityError> {
    let key = &item.idempotency_key;
    if key.is_empty() || key.len() > 128 {
        return Err(IdentityError::invalid(
            "idempotency_key",
            "must be 1 to 128 characters",
        ));
    }
    if !seen_keys.insert(key.clone()) {
        return Err(IdentityError::invalid(
            "idempotency_key",
            "appears twice in this batch",
        ));
    }
    let existing = if item.id.is_empty() {
        None
    } else {
        let id = Uuid::parse_str(&item.id).map_err(|_| IdentityError::NotFound("profile"))?;
        let record = current.get(&id).ok_or(IdentityError::NotFound("profile"))?;
        if record.profile.status == DELETED {
            return Err(IdentityError::Precondition(
                "the profile is deleted and cannot change".into(),
            ));
        }
        if item.set_assignments && shared_ids.contains(&id) {
            return Err(IdentityError::invalid(
                "id",
                "another item of this batch names this profile too; an item that sets roles \
                 and extensions must be the only one for its profile",
            ));
        }
        Some(record)
    };
    let username = match existing {
        Some(record) if item.username.trim().is_empty() => record.profile.username.as_str(),
        _ => item.username.as_str(),
    };
    let fields = ProfileFields::parse(RawProfile {
        first_name: &item.first_name,
        last_name: &item.last_name,
        email: &item.email,
        username,
        job_title: &item.job_title,
        department: &item.department,
        locale: &item.locale,
        time_zone: &item.time_zone,
    });
    let assignments = requested_assignments(item, existing, bounds);
    let (fields, assignments) = match (fields, assignments) {
        (Ok(fields), Ok(assignments)) => (fields, assignments),
        // Every violation at once; with field errors the reason is INVALID_FIELDS.
        (
            Err(IdentityError::Invalid(mut violations)),
            Err(
                IdentityError::Invalid(more)
                | IdentityError::ExtensionInvalid(more)
                | IdentityError::RoleInvalid(more),
            ),
        ) => {
            violations.extend(more);
            return Err(IdentityError::Invalid(violations));
        }
        (Err(error), _) | (_, Err(error)) => return Err(error),
    };
    Ok(match existing {
        None => Plan::Create(fields, assignments),
        Some(record)
            if same_fields(&record.profile, &fields)
                && assignments.as_ref().is_none_or(|a| a.held_by(record)) =>
        {
            Plan::Unchanged(record.clone())
        }
        Some(record) => Plan::Update(record.clone(), fields, assignments),
    })
}

/// The roles and extensions an item sets, if it sets them. New numbers must be within the
/// account's bounds; numbers the profile holds already are kept whatever the bounds.
fn requested_assignments(
    item: &pb::ProfileUpsert,
    existing: Option<&ProfileRecord>,
    bounds: ExtensionBounds,
) -> Result<Option<Assignments>, IdentityError> {
    if !item.set_assignments {
        if item.roles.is_empty() && item.extensions.is_empty() {
            return Ok(None);
        }
        return Err(IdentityError::invalid(
            "set_assignments",
            "roles or extensions are given but set_assignments is false; set it to apply them",
        ));
    }
    let held = |number: &ExtensionNumber| {
        existing.is_some_and(|record| {
            record
                .extensions
                .iter()
                .any(|(held, _)| held == number.as_str())
        })
    };
    let mut violations = Vec::new();
    let mut extensions: Vec<Extension> = Vec::new();
    for (index, given) in item.extensions.iter().enumerate() {
        let field = format!("extensions[{index}]");
        match convert::parse_extension(&field, given, bounds, held) {
            Ok(extension) if extensions.iter().any(|e| e.number == extension.number) => {
                violations.push(Violation::new(
                    format!("{field}.number"),
                    format!("{} appears twice in this item", extension.number),
                ));
            }
            Ok(extension) => extensions.push(extension),
            Err(more) => violations.extend(more),
        }
    }
    match convert::parse_roles("roles", &item.roles) {
        Err(IdentityError::RoleInvalid(mut role_violations)) if !violations.is_empty() => {
            role_violations.extend(violations);
            Err(IdentityError::Invalid(role_violations))
        }
        Err(error) => Err(error),
        Ok(_) if !violations.is_empty() => Err(IdentityError::ExtensionInvalid(violations)),
        Ok(mut roles) => {
            roles.sort();
            extensions.sort();
            Ok(Some(Assignments { roles, extensions }))
        }
    }
}

/// The username an item must register, if any.
fn new_username(plan: &Plan) -> Option<&Username> {
    match plan {
        Plan::Create(fields, _) => Some(&fields.username),
        Plan::Update(record, fields, _)
            if fields.username.canonical() != record.profile.canonical_username =>
        {
            Some(&fields.username)
        }
        _ => None,
    }
}

fn same_fields(model: &profile::Model, fields: &ProfileFields) -> bool {
    model.first_name == fields.first_name
        && model.last_name == fields.last_name
        && model.email == fields.email.as_str()
        && model.username == fields.username.as_str()
        && model.job_title == fields.job_title
        && model.department == fields.department
        && model.locale == fields.locale
        && model.time_zone == fields.time_zone
}

fn new_model(
    id: Uuid,
    account_id: Uuid,
    fields: &ProfileFields,
    now: chrono::DateTime<Utc>,
) -> profile::Model {
    profile::Model {
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
        status: crate::store::ACTIVE.to_owned(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        version: 1,
    }
}

fn refused(refusal: Refusal) -> IdentityError {
    IdentityError::username_refused(refusal)
}

/// Fills the suggestions of every item whose username was refused as taken, retired or
/// confusable, with one registry lookup for the whole batch. Without them (the lookup failed)
/// the refusals stand as they are.
async fn suggest_for_refused(
    store: &Store,
    items: &[pb::ProfileUpsert],
    results: &mut [pb::ProfileUpsertResult],
) {
    let refused: Vec<(usize, Refusal, Option<Username>)> = results
        .iter()
        .enumerate()
        .filter(|(_, result)| result.username_suggestions.is_empty())
        .filter_map(|(index, result)| {
            let refusal = Refusal::from_reason(&result.error_reason)?;
            (refusal != Refusal::Invalid).then_some(index).map(|index| {
                let item = &items[index];
                let typed = if item.username.trim().is_empty() {
                    &item.email
                } else {
                    &item.username
                };
                (index, refusal, Username::parse(typed).ok())
            })
        })
        .collect();
    if refused.is_empty() {
        return;
    }
    let seeds: Vec<Seeds> = refused
        .iter()
        .map(|(index, _, username)| Seeds {
            first_name: &items[*index].first_name,
            last_name: &items[*index].last_name,
            email: &items[*index].email,
            refused: username.as_ref(),
        })
        .collect();
    let lists = match suggest::free_usernames(store, &seeds).await {
        Ok(lists) => lists,
        Err(error) => {
            tracing::warn!(%error, "username suggestions unavailable");
            return;
        }
    };
    for ((index, refusal, _), suggestions) in refused.iter().zip(lists) {
        let defaulted = items[*index].username.trim().is_empty();
        let result = &mut results[*index];
        result.username_defaulted = defaulted;
        result.error_message = refusal.explain(defaulted, &suggestions);
        result.username_suggestions = suggestions;
    }
}

/// An item's failure, with the code and reason it would have had as a call of its own.
fn failure(key: &str, error: IdentityError) -> pb::ProfileUpsertResult {
    let status_error = roster_runtime::ApiError::from(error);
    let field_errors = match &status_error {
        roster_runtime::ApiError::InvalidArgument { violations, .. } => violations
            .iter()
            .map(|violation| pb::FieldError {
                field: violation.field.clone(),
                description: violation.description.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let code = status_error.code();
    let reason = status_error.reason();
    let message = match &status_error {
        roster_runtime::ApiError::Internal(_) => {
            tracing::error!(error = %status_error, "batch item failed");
            "internal error".to_owned()
        }
        other => other.to_string(),
    };
    pb::ProfileUpsertResult {
        idempotency_key: key.to_owned(),
        outcome: pb::UpsertOutcome::Failed as i32,
        profile: None,
        error_code: code as i32,
        error_reason: if code == Code::InvalidArgument && reason == "INVALID_ARGUMENT" {
            "INVALID_FIELDS".to_owned()
        } else {
            reason.to_owned()
        },
        error_message: message,
        field_errors,
        ..Default::default()
    }
}
