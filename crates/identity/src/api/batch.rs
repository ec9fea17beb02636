//! BatchUpsertProfiles: up to 1,000 creates and updates of one account in one transaction,
//! each item on its own idempotency key and with its own result. Items fail alone: a refused
//! username or an invalid field fails that item, and the others go through.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use prost::Message;
use roster_proto::identity::v1 as pb;
use roster_runtime::Caller;
use tonic::Code;
use uuid::Uuid;

use super::convert;
use crate::domain::error::{IdentityError, Refusal};
use crate::domain::profile::{ProfileFields, RawProfile};
use crate::domain::username::Username;
use crate::store::entities::profile;
use crate::store::{DELETED, ProfileRecord, Store};

/// What becomes of one item.
enum Plan {
    /// Answered before under the same key: the stored result.
    Replay(pb::ProfileUpsertResult),
    Failed(IdentityError),
    Create(ProfileFields),
    Update(ProfileRecord, ProfileFields),
    Unchanged(ProfileRecord),
}

pub async fn upsert(
    store: &Store,
    caller: &Caller,
    account_id: Uuid,
    items: Vec<pb::ProfileUpsert>,
) -> Result<Vec<pb::ProfileUpsertResult>, IdentityError> {
    let scope = format!("{}:BatchUpsertProfiles:{account_id}", caller.name);
    let txn = store.begin().await?;
    if !store.account_exists(&txn, account_id).await? {
        return Err(IdentityError::NotFound("account"));
    }
    let keys: Vec<String> = items
        .iter()
        .map(|item| item.idempotency_key.clone())
        .collect();
    let stored = store.stored_responses(&txn, &scope, &keys).await?;
    let targets: Vec<Uuid> = items
        .iter()
        .filter(|item| !stored.contains_key(&item.idempotency_key))
        .filter_map(|item| Uuid::parse_str(&item.id).ok())
        .collect();
    let current: HashMap<Uuid, ProfileRecord> = store
        .lock_profiles(&txn, &targets)
        .await?
        .into_iter()
        .filter(|record| record.profile.account_id == account_id)
        .map(|record| (record.profile.id, record))
        .collect();

    let mut seen_keys = HashSet::new();
    let mut plans: Vec<Plan> = items
        .iter()
        .map(|item| {
            if let Some(response) = stored.get(&item.idempotency_key) {
                return pb::ProfileUpsertResult::decode(response.as_slice())
                    .map(Plan::Replay)
                    .unwrap_or_else(|error| {
                        Plan::Failed(IdentityError::Corrupt(format!("stored result: {error}")))
                    });
            }
            plan(item, &current, &mut seen_keys).unwrap_or_else(Plan::Failed)
        })
        .collect();

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

    // Register the usernames; one that a concurrent transaction registered first fails its item.
    let mut new_ids: Vec<Option<Uuid>> = Vec::with_capacity(plans.len());
    let mut claims: Vec<(&Username, Uuid)> = Vec::new();
    for plan in &plans {
        let id = match plan {
            Plan::Create(_) => Some(Uuid::now_v7()),
            Plan::Update(record, _) => Some(record.profile.id),
            _ => None,
        };
        if let (Some(username), Some(id)) = (new_username(plan), id) {
            claims.push((username, id));
        }
        new_ids.push(id);
    }
    let registered = store.reserve_usernames(&txn, account_id, &claims).await?;
    let lost: Vec<String> = claims
        .iter()
        .map(|(username, _)| username.canonical().to_owned())
        .filter(|canonical| !registered.contains(canonical))
        .collect();
    drop(claims);
    for plan in plans.iter_mut() {
        if new_username(plan)
            .is_some_and(|username| lost.contains(&username.canonical().to_owned()))
        {
            *plan = Plan::Failed(refused(Refusal::Taken));
        }
    }

    let now = crate::store::now();
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    let mut records: Vec<Option<(pb::UpsertOutcome, ProfileRecord)>> =
        Vec::with_capacity(plans.len());
    for (plan, id) in plans.iter().zip(&new_ids) {
        let record = match (plan, id) {
            (Plan::Create(fields), Some(id)) => {
                let model = new_model(*id, account_id, fields, now);
                inserts.push(model.clone());
                Some((
                    pb::UpsertOutcome::Created,
                    ProfileRecord {
                        profile: model,
                        roles: Vec::new(),
                        extensions: Vec::new(),
                    },
                ))
            }
            (Plan::Update(current, fields), _) => {
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
                        ..current.clone()
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
    store.store_responses(&txn, &scope, to_store).await?;
    txn.commit().await?;
    Ok(results)
}

/// Decides what to do with one item that was not answered before.
fn plan(
    item: &pb::ProfileUpsert,
    current: &HashMap<Uuid, ProfileRecord>,
    seen_keys: &mut HashSet<String>,
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
    if item.set_assignments {
        return Err(IdentityError::Precondition(
            "roles and extensions cannot be set through BatchUpsertProfiles yet".into(),
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
    })?;
    Ok(match existing {
        None => Plan::Create(fields),
        Some(record) if same_fields(&record.profile, &fields) => Plan::Unchanged(record.clone()),
        Some(record) => Plan::Update(record.clone(), fields),
    })
}

/// The username an item must register, if any.
fn new_username(plan: &Plan) -> Option<&Username> {
    match plan {
        Plan::Create(fields) => Some(&fields.username),
        Plan::Update(record, fields)
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
    IdentityError::UsernameRefused {
        refusal,
        detail: refusal.message().to_owned(),
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
    }
}
