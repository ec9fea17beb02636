//! CreateProfile, GetProfile, ListProfiles, UpdateProfile, DeleteProfile and UndeleteProfile.

use roster_proto::identity::v1 as pb;
use roster_runtime::ApiError;
use roster_runtime::auth::caller;
use roster_runtime::request::{
    UpdateMask, check_lengths, check_request_id, id_token, page_size, parse_etag, parse_id,
    parse_id_token,
};
use tonic::{Request, Response};

use super::{Answer, profile_answer};
use crate::api::convert::{self, api_error};
use crate::app::Identity;
use crate::app::profiles::NewProfile;
use crate::domain::email;
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::{OwnedProfile, ProfilePatch, UPDATABLE};
use crate::domain::username::canonical_prefix;
use crate::store::ProfileFilter;

pub(super) async fn create(
    app: &Identity,
    request: Request<pb::CreateProfileRequest>,
) -> Answer<pb::CreateProfileResponse> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    let account_id = parse_id("account_id", &request.account_id)?;
    caller.require_account(account_id)?;
    check_request_id("request_id", &request.request_id)?;
    let request_id = crate::api::request_key(&request, &request.request_id);
    let new = NewProfile {
        account_id: AccountId(account_id),
        fields: OwnedProfile {
            first_name: request.first_name,
            last_name: request.last_name,
            email: request.email,
            username: request.username,
            job_title: request.job_title,
            department: request.department,
            locale: request.locale,
            time_zone: request.time_zone,
            // Set through SCIM only.
            external_id: String::new(),
        },
        send_welcome_email: request.send_welcome_email,
        suspended: false,
        roles: Vec::new(),
    };
    profile_answer(
        app.create_profile(&caller, request_id, new).await,
        |profile| pb::CreateProfileResponse { profile },
    )
}

pub(super) async fn get(
    app: &Identity,
    request: Request<pb::GetProfileRequest>,
) -> Answer<pb::GetProfileResponse> {
    let caller = caller(&request)?;
    let id = parse_id("id", &request.get_ref().id)?;
    profile_answer(app.profile(&caller, ProfileId(id)).await, |profile| {
        pb::GetProfileResponse { profile }
    })
}

pub(super) async fn list(
    app: &Identity,
    request: Request<pb::ListProfilesRequest>,
) -> Answer<pb::ListProfilesResponse> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    let account_id = parse_id("account_id", &request.account_id)?;
    caller.require_account(account_id)?;
    let limit = page_size(request.page_size)?;
    let after = parse_id_token('p', &request.page_token)?.map(ProfileId);
    let status = match pb::ProfileStatus::try_from(request.status) {
        Ok(status) => convert::profile_status_from_proto(status),
        Err(_) => return Err(ApiError::invalid("status", "is not a ProfileStatus").into()),
    };
    let role = match pb::Role::try_from(request.role) {
        Ok(role) => convert::role(role),
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
    let profiles = app
        .list_profiles(AccountId(account_id), &filter, after, limit + 1)
        .await
        .map_err(api_error)?;
    let more = profiles.len() as u64 > limit;
    let page = &profiles[..profiles.len().min(limit as usize)];
    Ok(Response::new(pb::ListProfilesResponse {
        profiles: page.iter().map(convert::profile).collect(),
        next_page_token: match page.last() {
            Some(last) if more => id_token('p', last.id.0),
            _ => String::new(),
        },
    }))
}

pub(super) async fn update(
    app: &Identity,
    request: Request<pb::UpdateProfileRequest>,
) -> Answer<pb::UpdateProfileResponse> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    check_request_id("request_id", &request.request_id)?;
    let request_id = crate::api::request_key(&request, &request.request_id);
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
    let expected = parse_etag("profile.etag", &changes.etag)?;
    let status = mask.contains("status").then(|| {
        pb::ProfileStatus::try_from(changes.status)
            .ok()
            .and_then(convert::profile_status_from_proto)
    });
    let value = |path: &str| -> Option<String> {
        let value = match path {
            "first_name" => &changes.first_name,
            "last_name" => &changes.last_name,
            "email" => &changes.email,
            "username" => &changes.username,
            "job_title" => &changes.job_title,
            "department" => &changes.department,
            "locale" => &changes.locale,
            "time_zone" => &changes.time_zone,
            _ => return None,
        };
        Some(value.clone())
    };
    let patch = ProfilePatch {
        fields: mask
            .paths()
            .iter()
            .filter_map(|path| Some((path.clone(), value(path)?)))
            .collect(),
        status,
    };
    profile_answer(
        app.update_profile(&caller, request_id, ProfileId(id), expected, patch)
            .await,
        |profile| pb::UpdateProfileResponse { profile },
    )
}

pub(super) async fn delete(
    app: &Identity,
    request: Request<pb::DeleteProfileRequest>,
) -> Answer<pb::DeleteProfileResponse> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    check_request_id("request_id", &request.request_id)?;
    let request_id = crate::api::request_key(&request, &request.request_id);
    let id = parse_id("id", &request.id)?;
    let expected = parse_etag("etag", &request.etag)?;
    profile_answer(
        app.delete_profile(&caller, request_id, ProfileId(id), expected)
            .await,
        |profile| pb::DeleteProfileResponse { profile },
    )
}

pub(super) async fn undelete(
    app: &Identity,
    request: Request<pb::UndeleteProfileRequest>,
) -> Answer<pb::UndeleteProfileResponse> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    check_request_id("request_id", &request.request_id)?;
    let request_id = crate::api::request_key(&request, &request.request_id);
    let id = parse_id("id", &request.id)?;
    let expected = parse_etag("etag", &request.etag)?;
    let undeleted = app
        .undelete_profile(&caller, request_id, ProfileId(id), expected)
        .await
        .map_err(api_error)?;
    Ok(Response::new(pb::UndeleteProfileResponse {
        profile: Some(convert::profile(&undeleted.profile)),
        unrestored_extensions: undeleted.unrestored_extensions,
    }))
}
