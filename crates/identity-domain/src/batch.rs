//! The plan of a batch of profile upserts (BatchUpsertProfiles, and so the bulk import): what
//! becomes of each item, decided in order as if the items were sent one after another. Pure:
//! the store's reads come in, the plan goes out, and `app::batch` carries it out.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignment::{
    Extension, ExtensionBounds, ExtensionKind, ExtensionNumber, RequestedExtension, Role,
    requested_roles,
};
use super::error::{IdentityError, Refusal, Violation};
use super::ids::ProfileId;
use super::profile::{BATCH_UPDATABLE, OwnedProfile, Profile, ProfileFields, RawProfile};
use super::username::Username;

/// Most items in one batch call.
pub const MAX_BATCH: usize = 1000;

/// One item of a batch, as the transport read it.
#[derive(Clone, Debug, Default)]
pub struct UpsertItem {
    /// The item's own idempotency key: 1 to 128 characters, once in a batch.
    pub idempotency_key: String,
    /// The profile to update; empty creates one.
    pub id: String,
    /// The fields; an empty username keeps an updated profile's, or defaults to the email, and
    /// an empty external id keeps an updated profile's (the gRPC and import items carry none,
    /// so they never wipe what the customer's directory set).
    pub fields: OwnedProfile,
    /// True when the item replaces the profile's roles and extensions with its own.
    pub set_assignments: bool,
    /// Each role value, or the value that is no role.
    pub roles: Vec<Result<Role, i32>>,
    /// Each extension's number and kind (`None`: no kind named).
    pub extensions: Vec<(String, Option<ExtensionKind>)>,
    /// For an update: the fields the item writes (see [`BATCH_UPDATABLE`]), every other one
    /// keeping the profile's value as the batch's transaction reads it. `None`: every field.
    pub mask: Option<Vec<String>>,
}

impl UpsertItem {
    /// The profile the item names, when it names one by a UUID.
    pub fn profile_id(&self) -> Option<ProfileId> {
        Uuid::parse_str(&self.id).ok().map(ProfileId)
    }
}

/// What an item did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    Created,
    Updated,
    Unchanged,
}

/// An item's answer as kept under its idempotency key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeptUpsert {
    pub outcome: UpsertOutcome,
    pub profile: Profile,
}

/// The roles and extensions an item sets, replacing the profile's.
#[derive(Clone, Debug)]
pub struct Assignments {
    /// Sorted, each once.
    pub roles: Vec<Role>,
    /// Sorted by number, each number once.
    pub extensions: Vec<Extension>,
}

impl Assignments {
    /// True when `record` holds exactly these roles and extensions.
    pub fn held_by(&self, profile: &Profile) -> bool {
        self.roles == profile.roles && self.extensions == profile.extensions
    }
}

/// What becomes of one item. (Variants differ in size; a batch holds at most 1,000 of them.)
#[allow(clippy::large_enum_variant)]
pub enum Plan {
    /// Answered before under the same key: the kept result.
    Replay(UpsertOutcome, Profile),
    Failed(IdentityError),
    Create(ProfileFields, Option<Assignments>),
    Update(Profile, ProfileFields, Option<Assignments>),
    Unchanged(Profile),
}

impl Plan {
    /// The assignments an item sets and the extensions its profile holds now.
    pub fn assignments(&self) -> Option<(&Assignments, &[Extension])> {
        match self {
            Plan::Create(_, Some(assignments)) => Some((assignments, &[])),
            Plan::Update(record, _, Some(assignments)) => Some((assignments, &record.extensions)),
            _ => None,
        }
    }
}

/// Decides what to do with one item that was not answered before.
pub fn plan(
    item: &UpsertItem,
    current: &HashMap<ProfileId, Profile>,
    bounds: ExtensionBounds,
    seen_keys: &mut HashSet<String>,
    shared_ids: &HashSet<ProfileId>,
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
        let id = item
            .profile_id()
            .ok_or(IdentityError::NotFound("profile"))?;
        let record = current.get(&id).ok_or(IdentityError::NotFound("profile"))?;
        record.ensure_changeable(None)?;
        if item.set_assignments && shared_ids.contains(&id) {
            return Err(IdentityError::invalid(
                "id",
                "another item of this batch names this profile too; an item that sets roles \
                 and extensions must be the only one for its profile",
            ));
        }
        Some(record)
    };
    let masked;
    let given = match (existing, &item.mask) {
        (Some(record), Some(paths)) => {
            masked = masked_fields(record, &item.fields, paths)?;
            &masked
        }
        _ => &item.fields,
    };
    let username = match existing {
        Some(record) if given.username.trim().is_empty() => record.username.as_str(),
        _ => given.username.as_str(),
    };
    let external_id = match existing {
        Some(record) if given.external_id.trim().is_empty() => {
            record.external_id.as_deref().unwrap_or_default()
        }
        _ => given.external_id.as_str(),
    };
    let fields = ProfileFields::parse(RawProfile {
        username,
        external_id,
        ..given.as_raw()
    });
    let assignments = requested_assignments(item, existing, bounds);
    let (fields, assignments) = match (fields, assignments) {
        (Ok(fields), Ok(assignments)) => (fields, assignments),
        // Every violation at once, under the reason of invalid fields.
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
            if record.has_fields(&fields)
                && assignments.as_ref().is_none_or(|a| a.held_by(record)) =>
        {
            Plan::Unchanged(record.clone())
        }
        Some(record) => Plan::Update(record.clone(), fields, assignments),
    })
}

/// The profile's fields with those `paths` names taken from `given`; a name outside
/// [`BATCH_UPDATABLE`] fails the item, naming every such name.
fn masked_fields(
    record: &Profile,
    given: &OwnedProfile,
    paths: &[String],
) -> Result<OwnedProfile, IdentityError> {
    let unknown: Vec<Violation> = paths
        .iter()
        .filter(|path| !BATCH_UPDATABLE.contains(&path.as_str()))
        .map(|path| {
            Violation::new(
                "update_mask",
                format!(
                    "{path:?} cannot be written by a batch item; it may name: {}",
                    BATCH_UPDATABLE.join(", ")
                ),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(IdentityError::Invalid(unknown));
    }
    let mut raw = record.raw();
    let mut given = given.clone();
    for path in paths {
        if let (Some(slot), Some(value)) = (raw.field_mut(path), given.field_mut(path)) {
            std::mem::swap(slot, value);
        }
    }
    Ok(raw)
}

/// The roles and extensions an item sets, if it sets them. New numbers must be within the
/// account's bounds; numbers the profile holds already are kept whatever the bounds.
fn requested_assignments(
    item: &UpsertItem,
    existing: Option<&Profile>,
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
        existing.is_some_and(|profile| profile.extensions.iter().any(|held| held.number == *number))
    };
    if item.extensions.len() > crate::assignment::MAX_EXTENSIONS {
        return Err(IdentityError::ExtensionInvalid(vec![Violation::new(
            "extensions",
            format!(
                "lists {} extensions; a profile holds at most {}",
                item.extensions.len(),
                crate::assignment::MAX_EXTENSIONS
            ),
        )]));
    }
    let mut violations = Vec::new();
    let mut extensions: Vec<Extension> = Vec::new();
    for (index, (number, kind)) in item.extensions.iter().enumerate() {
        let field = format!("extensions[{index}]");
        let given = RequestedExtension {
            number,
            kind: *kind,
        };
        match given.check(&field, bounds, held) {
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
    match requested_roles("roles", &item.roles).map_err(IdentityError::RoleInvalid) {
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
pub fn new_username(plan: &Plan) -> Option<&Username> {
    match plan {
        Plan::Create(fields, _) => Some(&fields.username),
        Plan::Update(record, fields, _)
            if fields.username.canonical() != record.canonical_username =>
        {
            Some(&fields.username)
        }
        _ => None,
    }
}

/// Within one batch the first claim of a username wins, as it would have in sequence: a later
/// item claiming the same canonical form is taken, one with the same skeleton confusable.
pub fn first_claims_win(plans: &mut [Plan]) {
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
            *plan = Plan::Failed(IdentityError::username_refused(refusal));
        }
    }
}

/// Decides, item by item in order, whether each item that sets extensions may hold them, given
/// who holds each wanted number now (`holders`): a number held by a profile other than the
/// item's fails the item with EXTENSION_TAKEN; an item that goes through takes its numbers and
/// frees the ones it drops, for the items after it.
pub fn decide_extensions(
    plans: &mut [Plan],
    ids: &[Option<ProfileId>],
    mut holders: HashMap<String, ProfileId>,
) {
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
            .map(|held| held.number.as_str().to_owned())
            .filter(|number| {
                !assignments
                    .extensions
                    .iter()
                    .any(|wanted| wanted.number.as_str() == number)
            })
            .collect();
        for number in freed {
            holders.remove(&number);
        }
        for wanted in &assignments.extensions {
            holders.insert(wanted.number.as_str().to_owned(), id);
        }
    }
}

/// The numbers the items of `plans` want, each once.
pub fn wanted_numbers(plans: &[Plan]) -> Vec<String> {
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
    wanted.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;

    fn linked_profile() -> Profile {
        let fields = ProfileFields::parse(RawProfile {
            first_name: "Ada",
            last_name: "Lovelace",
            email: "ada@example.com",
            external_id: "00u1AbC",
            ..RawProfile::default()
        })
        .unwrap();
        Profile::new(
            ProfileId::generate(),
            AccountId::generate(),
            &fields,
            chrono::Utc::now(),
        )
    }

    fn plan_of(item: &UpsertItem, record: &Profile) -> Plan {
        let current = HashMap::from([(record.id, record.clone())]);
        plan(
            item,
            &current,
            ExtensionBounds::default(),
            &mut HashSet::new(),
            &HashSet::new(),
        )
        .unwrap()
    }

    #[test]
    fn an_item_without_an_external_id_keeps_the_profiles() {
        let record = linked_profile();
        let mut item = UpsertItem {
            idempotency_key: "row-1".into(),
            id: record.id.to_string(),
            fields: OwnedProfile {
                external_id: String::new(),
                ..record.raw()
            },
            ..UpsertItem::default()
        };
        assert!(matches!(plan_of(&item, &record), Plan::Unchanged(_)));
        item.fields.last_name = "Byron".into();
        let Plan::Update(_, fields, _) = plan_of(&item, &record) else {
            panic!("expected an update");
        };
        assert_eq!(fields.last_name, "Byron");
        assert_eq!(fields.external_id.as_deref(), Some("00u1AbC"));
    }

    #[test]
    fn a_masked_item_writes_the_fields_its_mask_names_and_no_other() {
        let record = linked_profile();
        let mut item = UpsertItem {
            idempotency_key: "row-1".into(),
            id: record.id.to_string(),
            fields: OwnedProfile {
                first_name: "Augusta".into(),
                last_name: "Byron".into(),
                job_title: "Analyst".into(),
                ..record.raw()
            },
            mask: Some(vec!["job_title".into()]),
            ..UpsertItem::default()
        };
        let Plan::Update(_, fields, _) = plan_of(&item, &record) else {
            panic!("expected an update");
        };
        assert_eq!(fields.job_title.as_deref(), Some("Analyst"));
        assert_eq!(
            (fields.first_name.as_str(), fields.last_name.as_str()),
            ("Ada", "Lovelace"),
            "kept: the mask does not name them"
        );
        // An empty mask writes nothing: the item changes nothing.
        item.mask = Some(Vec::new());
        assert!(matches!(plan_of(&item, &record), Plan::Unchanged(_)));
        // A name that is no field a batch writes fails the item, naming each.
        item.mask = Some(vec!["status".into(), "nickname".into(), "email".into()]);
        let current = HashMap::from([(record.id, record.clone())]);
        let refused = plan(
            &item,
            &current,
            ExtensionBounds::default(),
            &mut HashSet::new(),
            &HashSet::new(),
        );
        let Err(IdentityError::Invalid(violations)) = refused else {
            panic!("expected the item refused");
        };
        assert_eq!(violations.len(), 2);
        assert!(violations.iter().all(|v| v.field == "update_mask"));
        assert!(violations[0].description.contains("\"status\""));
    }
}
