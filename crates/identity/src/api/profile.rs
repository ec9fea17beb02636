//! ProfileService handlers.

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::profile_service_server::ProfileService;
use roster_runtime::auth::caller;
use roster_runtime::{ApiError, Caller};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert;
use crate::domain::assignment::{ExtensionNumber, Role};
use crate::domain::email;
use crate::domain::error::{IdentityError, Refusal, Violation};
use crate::domain::fields::{MAX_NAME_LENGTH, max_input_bytes};
use crate::domain::profile::{ProfileFields, RawProfile};
use crate::domain::suggestions::Seeds;
use crate::domain::username::{Username, canonical_prefix};
use crate::store::{ACTIVE, DELETED, ProfileFilter, ProfileRecord, SUSPENDED, Store};
use crate::{emails, suggest};
use roster_runtime::request::{
    UpdateMask, check_lengths, check_request_id, id_token, page_size, parse_etag, parse_id,
    parse_id_token,
};

/// Most items in one batch call.
pub const MAX_BATCH: usize = 1000;

/// ProfileService over the identity store.
pub struct ProfileApi {
    store: Store,
}

impl ProfileApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// NOT_FOUND for a profile that does not exist or that the caller may not see: the two are
/// indistinguishable by design.
fn profile_not_found() -> IdentityError {
    IdentityError::NotFound("profile")
}

/// The profile if it exists and the caller may see it.
async fn visible_profile(
    store: &Store,
    conn: &impl sea_orm::ConnectionTrait,
    caller: &Caller,
    id: Uuid,
) -> Result<ProfileRecord, IdentityError> {
    store
        .profile(conn, id)
        .await?
        .filter(|record| caller.may_access(record.profile.account_id))
        .ok_or_else(profile_not_found)
}

/// The profile an assignment call changes: locked until the transaction ends, visible to the
/// caller, not deleted, and at the version `expected` names (when it names one).
async fn changeable_profile(
    store: &Store,
    txn: &sea_orm::DatabaseTransaction,
    caller: &Caller,
    id: Uuid,
    expected: Option<i64>,
) -> Result<ProfileRecord, IdentityError> {
    let current = store
        .lock_profile(txn, id, caller.account_limit())
        .await?
        .ok_or_else(profile_not_found)?;
    if current.profile.status == DELETED {
        return Err(IdentityError::Precondition(
            "the profile is deleted; its roles and extensions cannot change".into(),
        ));
    }
    if expected.is_some_and(|version| version != current.profile.version) {
        return Err(IdentityError::StaleEtag);
    }
    Ok(current)
}

/// The roles an AssignRoles or UnassignRoles call names: at least one, each a role.
fn requested_roles(values: &[i32]) -> Result<Vec<Role>, ApiError> {
    if values.is_empty() {
        return Err(IdentityError::RoleInvalid(vec![Violation::new(
            "roles",
            "must name at least one role",
        )])
        .into());
    }
    Ok(convert::parse_roles("roles", values)?)
}

fn check_etag(record: &ProfileRecord, etag: &str) -> Result<(), ApiError> {
    match parse_etag("etag", etag)? {
        Some(version) if version != record.profile.version => Err(ApiError::stale_etag()),
        _ => Ok(()),
    }
}

fn refusal_to_proto(refusal: Refusal) -> pb::UsernameRefusal {
    match refusal {
        Refusal::Taken => pb::UsernameRefusal::Taken,
        Refusal::Retired => pb::UsernameRefusal::Retired,
        Refusal::Confusable => pb::UsernameRefusal::Confusable,
        Refusal::Invalid => pb::UsernameRefusal::Invalid,
    }
}

/// The paths UpdateProfile accepts.
const UPDATABLE: [&str; 9] = [
    "first_name",
    "last_name",
    "email",
    "username",
    "job_title",
    "department",
    "locale",
    "time_zone",
    "status",
];

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn create_profile(
        &self,
        request: Request<pb::CreateProfileRequest>,
    ) -> Result<Response<pb::CreateProfileResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        check_request_id("request_id", &request.request_id)?;
        let fields = ProfileFields::parse(RawProfile {
            first_name: &request.first_name,
            last_name: &request.last_name,
            email: &request.email,
            username: &request.username,
            job_title: &request.job_title,
            department: &request.department,
            locale: &request.locale,
            time_zone: &request.time_zone,
        })
        .map_err(ApiError::from)?;
        let scope = format!("{}:CreateProfile", caller.name);
        let store = &self.store;
        let response = store
            .idempotent(&scope, &request.request_id, async |txn| {
                let record = store.create_profile(txn, account_id, &fields).await?;
                if request.send_welcome_email {
                    let account = store
                        .account_in(txn, account_id)
                        .await?
                        .ok_or(IdentityError::NotFound("account"))?;
                    store
                        .enqueue_email(txn, &emails::welcome(&account, &record))
                        .await?;
                }
                Ok(pb::CreateProfileResponse {
                    profile: Some(convert::profile(&record)),
                })
            })
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let seeds = Seeds {
                    first_name: &request.first_name,
                    last_name: &request.last_name,
                    email: &request.email,
                    refused: Some(&fields.username),
                };
                let error = error.defaulted(request.username.trim().is_empty());
                return Err(
                    ApiError::from(suggest::with_suggestions(store, error, seeds).await).into(),
                );
            }
        };
        Ok(Response::new(response))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let caller = caller(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let record = visible_profile(&self.store, self.store.connection(), &caller, id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(convert::profile(&record)),
        }))
    }

    async fn list_profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        let limit = page_size(request.page_size)?;
        let after = parse_id_token('p', &request.page_token)?;
        let status = match pb::ProfileStatus::try_from(request.status) {
            Ok(pb::ProfileStatus::Unspecified) => None,
            Ok(pb::ProfileStatus::Active) => Some(ACTIVE),
            Ok(pb::ProfileStatus::Suspended) => Some(SUSPENDED),
            Ok(pb::ProfileStatus::Deleted) => Some(DELETED),
            Err(_) => return Err(ApiError::invalid("status", "is not a ProfileStatus").into()),
        };
        let role = match pb::Role::try_from(request.role) {
            Ok(role) => convert::role(role).map(|role| role.as_str().to_owned()),
            Err(_) => return Err(ApiError::invalid("role", "is not a Role").into()),
        };
        check_lengths(&[("email_prefix", &request.email_prefix, 4 * email::MAX_LENGTH)])?;
        let username_prefix = canonical_prefix(&request.username_prefix)
            .map_err(|error| ApiError::invalid("username_prefix", error.description()))?;
        let filter = ProfileFilter {
            status,
            username_prefix: Some(username_prefix).filter(|prefix| !prefix.is_empty()),
            email_prefix: Some(request.email_prefix.trim().to_lowercase())
                .filter(|prefix| !prefix.is_empty()),
            role,
        };
        let records = self
            .store
            .list_profiles(account_id, &filter, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let more = records.len() as u64 > limit;
        let page = &records[..records.len().min(limit as usize)];
        Ok(Response::new(pb::ListProfilesResponse {
            profiles: page.iter().map(convert::profile).collect(),
            next_page_token: match page.last() {
                Some(last) if more => id_token('p', last.profile.id),
                _ => String::new(),
            },
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
        let changes = request
            .profile
            .ok_or_else(|| ApiError::invalid("profile", "is required"))?;
        let id = parse_id("profile.id", &changes.id)?;
        let mask = UpdateMask::parse(
            request
                .update_mask
                .map(|mask| mask.paths)
                .unwrap_or_default(),
            &UPDATABLE,
        )?;
        let new_status = if mask.contains("status") {
            match pb::ProfileStatus::try_from(changes.status) {
                Ok(pb::ProfileStatus::Active) => Some(ACTIVE),
                Ok(pb::ProfileStatus::Suspended) => Some(SUSPENDED),
                _ => {
                    return Err(ApiError::invalid(
                        "profile.status",
                        "must be PROFILE_STATUS_ACTIVE or PROFILE_STATUS_SUSPENDED (DeleteProfile deletes)",
                    )
                    .into());
                }
            }
        } else {
            None
        };
        let masked = |path: &str| mask.contains(path);
        // The value a field takes: the request's when the mask names it, else the current one.
        let pick = |path: &str, new: &'_ str, old: &'_ str| -> String {
            if masked(path) { new } else { old }.to_owned()
        };
        let scope = format!("{}:UpdateProfile", caller.name);
        let store = &self.store;
        let response = store
            .idempotent(&scope, &request.request_id, async |txn| {
                let current = visible_profile(store, txn, &caller, id).await?;
                if current.profile.status == DELETED {
                    return Err(IdentityError::Precondition(
                        "the profile is deleted and cannot change".into(),
                    ));
                }
                if let Some(version) = parse_etag("profile.etag", &changes.etag).map_err(|_| {
                    IdentityError::invalid("profile.etag", "is not an etag returned by Roster")
                })? && version != current.profile.version
                {
                    return Err(IdentityError::StaleEtag);
                }
                let old = &current.profile;
                let first_name = pick("first_name", &changes.first_name, &old.first_name);
                let last_name = pick("last_name", &changes.last_name, &old.last_name);
                let email = pick("email", &changes.email, &old.email);
                let username = if masked("username") {
                    changes.username.clone()
                } else {
                    old.username.clone()
                };
                let job_title = pick(
                    "job_title",
                    &changes.job_title,
                    old.job_title.as_deref().unwrap_or(""),
                );
                let department = pick(
                    "department",
                    &changes.department,
                    old.department.as_deref().unwrap_or(""),
                );
                let locale = pick(
                    "locale",
                    &changes.locale,
                    old.locale.as_deref().unwrap_or(""),
                );
                let time_zone = pick(
                    "time_zone",
                    &changes.time_zone,
                    old.time_zone.as_deref().unwrap_or(""),
                );
                if masked("username") && username.trim().is_empty() {
                    return Err(IdentityError::invalid("profile.username", "is required"));
                }
                let fields = ProfileFields::parse(RawProfile {
                    first_name: &first_name,
                    last_name: &last_name,
                    email: &email,
                    username: &username,
                    job_title: &job_title,
                    department: &department,
                    locale: &locale,
                    time_zone: &time_zone,
                })?;
                let status = new_status.unwrap_or(old.status.as_str()).to_owned();
                let record = store
                    .update_profile(txn, &current, &fields, &status)
                    .await?;
                Ok(pb::UpdateProfileResponse {
                    profile: Some(convert::profile(&record)),
                })
            })
            .await;
        match response {
            Ok(response) => Ok(Response::new(response)),
            Err(error @ IdentityError::UsernameRefused { .. }) => {
                // Suggestions from the names and email the profile would have had.
                let current = visible_profile(store, store.connection(), &caller, id)
                    .await
                    .map_err(ApiError::from)?;
                let first_name = pick(
                    "first_name",
                    &changes.first_name,
                    &current.profile.first_name,
                );
                let last_name = pick("last_name", &changes.last_name, &current.profile.last_name);
                let email = pick("email", &changes.email, &current.profile.email);
                let refused = Username::parse(&changes.username).ok();
                let seeds = Seeds {
                    first_name: &first_name,
                    last_name: &last_name,
                    email: &email,
                    refused: refused.as_ref(),
                };
                Err(ApiError::from(suggest::with_suggestions(store, error, seeds).await).into())
            }
            Err(error) => Err(ApiError::from(error).into()),
        }
    }

    async fn delete_profile(
        &self,
        request: Request<pb::DeleteProfileRequest>,
    ) -> Result<Response<pb::DeleteProfileResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
        let id = parse_id("id", &request.id)?;
        parse_etag("etag", &request.etag)?;
        let scope = format!("{}:DeleteProfile", caller.name);
        let store = &self.store;
        let response = store
            .idempotent(&scope, &request.request_id, async |txn| {
                let current = visible_profile(store, txn, &caller, id).await?;
                check_etag(&current, &request.etag).map_err(|_| IdentityError::StaleEtag)?;
                let record = if current.profile.status == DELETED {
                    current
                } else {
                    store.delete_profile(txn, &current).await?
                };
                Ok(pb::DeleteProfileResponse {
                    profile: Some(convert::profile(&record)),
                })
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(response))
    }

    async fn check_username(
        &self,
        request: Request<pb::CheckUsernameRequest>,
    ) -> Result<Response<pb::CheckUsernameResponse>, Status> {
        let request = request.into_inner();
        // The names and email only seed suggestions; bounded like the fields they stand for.
        check_lengths(&[
            ("email", &request.email, 4 * email::MAX_LENGTH),
            (
                "first_name",
                &request.first_name,
                max_input_bytes(MAX_NAME_LENGTH),
            ),
            (
                "last_name",
                &request.last_name,
                max_input_bytes(MAX_NAME_LENGTH),
            ),
        ])?;
        let username = match Username::parse(&request.username) {
            Ok(username) => username,
            Err(error) => {
                return Ok(Response::new(pb::CheckUsernameResponse {
                    available: false,
                    canonical: String::new(),
                    reason: pb::UsernameRefusal::Invalid as i32,
                    message: error.description(),
                    suggestions: self
                        .suggestions(&request, None)
                        .await
                        .map_err(ApiError::from)?,
                }));
            }
        };
        let standing = self
            .store
            .standings(self.store.connection(), &[&username])
            .await
            .map_err(ApiError::from)?
            .pop()
            .flatten();
        let response = match standing {
            None => pb::CheckUsernameResponse {
                available: true,
                canonical: username.canonical().to_owned(),
                reason: pb::UsernameRefusal::Unspecified as i32,
                message: String::new(),
                suggestions: Vec::new(),
            },
            Some(standing) => pb::CheckUsernameResponse {
                available: false,
                canonical: username.canonical().to_owned(),
                reason: refusal_to_proto(standing.refusal) as i32,
                message: standing.refusal.message().to_owned(),
                suggestions: self
                    .suggestions(&request, Some(&username))
                    .await
                    .map_err(ApiError::from)?,
            },
        };
        Ok(Response::new(response))
    }

    async fn batch_check_usernames(
        &self,
        request: Request<pb::BatchCheckUsernamesRequest>,
    ) -> Result<Response<pb::BatchCheckUsernamesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let (usernames, seeds) = (request.usernames, request.seeds);
        if usernames.is_empty() || usernames.len() > MAX_BATCH {
            return Err(ApiError::invalid(
                "usernames",
                format!("must hold 1 to {MAX_BATCH} usernames"),
            )
            .into());
        }
        if seeds.len() > usernames.len() {
            return Err(ApiError::invalid(
                "seeds",
                "holds more entries than usernames; give at most one per username",
            )
            .into());
        }
        let bounds: Vec<(String, &str, usize)> = seeds
            .iter()
            .enumerate()
            .flat_map(|(index, seed)| {
                [
                    (
                        format!("seeds[{index}].first_name"),
                        seed.first_name.as_str(),
                        max_input_bytes(MAX_NAME_LENGTH),
                    ),
                    (
                        format!("seeds[{index}].last_name"),
                        seed.last_name.as_str(),
                        max_input_bytes(MAX_NAME_LENGTH),
                    ),
                    (
                        format!("seeds[{index}].email"),
                        seed.email.as_str(),
                        4 * email::MAX_LENGTH,
                    ),
                ]
            })
            .collect();
        let bounds: Vec<(&str, &str, usize)> = bounds
            .iter()
            .map(|(field, value, max)| (field.as_str(), *value, *max))
            .collect();
        check_lengths(&bounds)?;
        let parsed: Vec<_> = roster_runtime::work::cpu_bound(|| {
            usernames.iter().map(|raw| Username::parse(raw)).collect()
        });
        let valid: Vec<&Username> = parsed
            .iter()
            .filter_map(|result| result.as_ref().ok())
            .collect();
        let mut standings = self
            .store
            .standings(self.store.connection(), &valid)
            .await
            .map_err(ApiError::from)?
            .into_iter();
        let mut checks: Vec<pb::UsernameCheck> = usernames
            .into_iter()
            .zip(parsed.iter())
            .map(|(raw, parsed)| match parsed {
                Err(error) => pb::UsernameCheck {
                    username: if raw.len() > crate::domain::username::MAX_INPUT_BYTES {
                        String::new()
                    } else {
                        raw
                    },
                    available: false,
                    canonical: String::new(),
                    reason: pb::UsernameRefusal::Invalid as i32,
                    message: error.description(),
                    holder_profile_id: String::new(),
                    suggestions: Vec::new(),
                },
                Ok(username) => {
                    let standing = standings.next().flatten();
                    pb::UsernameCheck {
                        username: raw,
                        available: standing.is_none(),
                        canonical: username.canonical().to_owned(),
                        reason: standing.map_or(pb::UsernameRefusal::Unspecified, |s| {
                            refusal_to_proto(s.refusal)
                        }) as i32,
                        message: standing
                            .map(|s| s.refusal.message().to_owned())
                            .unwrap_or_default(),
                        holder_profile_id: standing
                            .and_then(|s| s.holder)
                            .filter(|(_, account)| caller.may_access(*account))
                            .map(|(profile, _)| profile.to_string())
                            .unwrap_or_default(),
                        suggestions: Vec::new(),
                    }
                }
            })
            .collect();
        // Suggestions for every refused username that came with seeds: one lookup for all.
        let wanted: Vec<(usize, Seeds)> = seeds
            .iter()
            .enumerate()
            .filter(|(index, _)| {
                let check = &checks[*index];
                !check.available && check.reason != pb::UsernameRefusal::Invalid as i32
            })
            .map(|(index, seed)| {
                (
                    index,
                    Seeds {
                        first_name: &seed.first_name,
                        last_name: &seed.last_name,
                        email: &seed.email,
                        refused: parsed[index].as_ref().ok(),
                    },
                )
            })
            .collect();
        if !wanted.is_empty() {
            let all: Vec<Seeds> = wanted.iter().map(|(_, seeds)| *seeds).collect();
            let lists = suggest::free_usernames(&self.store, &all)
                .await
                .map_err(ApiError::from)?;
            for ((index, _), suggestions) in wanted.iter().zip(lists) {
                checks[*index].suggestions = suggestions;
            }
        }
        Ok(Response::new(pb::BatchCheckUsernamesResponse { checks }))
    }

    async fn batch_get_profiles(
        &self,
        request: Request<pb::BatchGetProfilesRequest>,
    ) -> Result<Response<pb::BatchGetProfilesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        if request.ids.is_empty() || request.ids.len() > MAX_BATCH {
            return Err(ApiError::invalid("ids", format!("must hold 1 to {MAX_BATCH} ids")).into());
        }
        let ids: Vec<Uuid> = request
            .ids
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        let found: std::collections::HashMap<Uuid, ProfileRecord> = self
            .store
            .profiles_by_ids(self.store.connection(), &ids)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .filter(|record| record.profile.account_id == account_id)
            .map(|record| (record.profile.id, record))
            .collect();
        let mut profiles = Vec::new();
        let mut missing_ids = Vec::new();
        for raw in request.ids {
            match Uuid::parse_str(&raw).ok().and_then(|id| found.get(&id)) {
                Some(record) => profiles.push(convert::profile(record)),
                None => missing_ids.push(raw),
            }
        }
        Ok(Response::new(pb::BatchGetProfilesResponse {
            profiles,
            missing_ids,
        }))
    }

    async fn batch_upsert_profiles(
        &self,
        request: Request<pb::BatchUpsertProfilesRequest>,
    ) -> Result<Response<pb::BatchUpsertProfilesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        if request.items.is_empty() || request.items.len() > MAX_BATCH {
            return Err(
                ApiError::invalid("items", format!("must hold 1 to {MAX_BATCH} items")).into(),
            );
        }
        let results = super::batch::upsert(
            &self.store,
            &caller,
            account_id,
            request.items,
            request.send_welcome_emails,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(pb::BatchUpsertProfilesResponse { results }))
    }

    async fn assign_roles(
        &self,
        request: Request<pb::AssignRolesRequest>,
    ) -> Result<Response<pb::AssignRolesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let change = ProfileChange::parse(
            &caller,
            "AssignRoles",
            &request.request_id,
            &request.profile_id,
            &request.etag,
        )?;
        let roles = requested_roles(&request.roles)?;
        let store = &self.store;
        self.change_profile(
            change,
            async |txn, current| store.add_roles(txn, current, &roles).await,
            |profile| pb::AssignRolesResponse { profile },
        )
        .await
    }

    async fn unassign_roles(
        &self,
        request: Request<pb::UnassignRolesRequest>,
    ) -> Result<Response<pb::UnassignRolesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let change = ProfileChange::parse(
            &caller,
            "UnassignRoles",
            &request.request_id,
            &request.profile_id,
            &request.etag,
        )?;
        let roles = requested_roles(&request.roles)?;
        let store = &self.store;
        self.change_profile(
            change,
            async |txn, current| store.remove_roles(txn, current, &roles).await,
            |profile| pb::UnassignRolesResponse { profile },
        )
        .await
    }

    async fn assign_extension(
        &self,
        request: Request<pb::AssignExtensionRequest>,
    ) -> Result<Response<pb::AssignExtensionResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let change = ProfileChange::parse(
            &caller,
            "AssignExtension",
            &request.request_id,
            &request.profile_id,
            &request.etag,
        )?;
        let extension = request
            .extension
            .ok_or_else(|| ApiError::invalid("extension", "is required"))?;
        let store = &self.store;
        self.change_profile(
            change,
            async |txn, current| {
                let account = store
                    .account_in(txn, current.profile.account_id)
                    .await?
                    .ok_or(IdentityError::NotFound("account"))?;
                let held = |number: &ExtensionNumber| {
                    current
                        .extensions
                        .iter()
                        .any(|(held, _)| held == number.as_str())
                };
                let wanted = convert::parse_extension(
                    "extension",
                    &extension,
                    account.extension_bounds,
                    held,
                )
                .map_err(IdentityError::ExtensionInvalid)?;
                store.assign_extension(txn, current, &wanted).await
            },
            |profile| pb::AssignExtensionResponse { profile },
        )
        .await
    }

    async fn unassign_extension(
        &self,
        request: Request<pb::UnassignExtensionRequest>,
    ) -> Result<Response<pb::UnassignExtensionResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let change = ProfileChange::parse(
            &caller,
            "UnassignExtension",
            &request.request_id,
            &request.profile_id,
            &request.etag,
        )?;
        let number = ExtensionNumber::parse(&request.number).map_err(|error| {
            ApiError::from(IdentityError::ExtensionInvalid(vec![Violation::new(
                "number", error,
            )]))
        })?;
        let store = &self.store;
        self.change_profile(
            change,
            async |txn, current| store.unassign_extension(txn, current, &number).await,
            |profile| pb::UnassignExtensionResponse { profile },
        )
        .await
    }
}

/// One call that changes a profile's roles or extensions.
struct ProfileChange<'a> {
    caller: &'a Caller,
    /// The RPC's name: with the caller's, the scope of its request ids.
    method: &'static str,
    request_id: &'a str,
    id: Uuid,
    /// The etag's version, when the caller sent one.
    expected: Option<i64>,
}

impl<'a> ProfileChange<'a> {
    /// Reads the request id, the profile id and the etag that every such call carries.
    fn parse(
        caller: &'a Caller,
        method: &'static str,
        request_id: &'a str,
        profile_id: &str,
        etag: &str,
    ) -> Result<Self, ApiError> {
        check_request_id("request_id", request_id)?;
        Ok(Self {
            caller,
            method,
            request_id,
            id: parse_id("profile_id", profile_id)?,
            expected: parse_etag("etag", etag)?,
        })
    }
}

impl ProfileApi {
    /// Runs a [`ProfileChange`]: a repeated request id answers the first response; otherwise
    /// the profile — the caller's, not deleted, at the expected etag — is locked and `change`
    /// makes its new record in the same transaction, which `respond` wraps.
    async fn change_profile<R>(
        &self,
        call: ProfileChange<'_>,
        change: impl AsyncFnOnce(
            &sea_orm::DatabaseTransaction,
            &ProfileRecord,
        ) -> Result<ProfileRecord, IdentityError>,
        respond: impl FnOnce(Option<pb::Profile>) -> R,
    ) -> Result<Response<R>, Status>
    where
        R: prost::Message + Default,
    {
        let scope = format!("{}:{}", call.caller.name, call.method);
        let store = &self.store;
        let response = store
            .idempotent(&scope, call.request_id, async |txn| {
                let current =
                    changeable_profile(store, txn, call.caller, call.id, call.expected).await?;
                let record = change(txn, &current).await?;
                Ok(respond(Some(convert::profile(&record))))
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(response))
    }

    /// Up to five free usernames for a CheckUsername request (see [`crate::suggest`]).
    async fn suggestions(
        &self,
        request: &pb::CheckUsernameRequest,
        refused: Option<&Username>,
    ) -> Result<Vec<String>, IdentityError> {
        let seeds = Seeds {
            first_name: &request.first_name,
            last_name: &request.last_name,
            email: &request.email,
            refused,
        };
        Ok(suggest::free_usernames(&self.store, &[seeds])
            .await?
            .pop()
            .unwrap_or_default())
    }
}
