//! AssignRoles, UnassignRoles, AssignExtension and UnassignExtension.

use roster_proto::identity::v1 as pb;
use roster_runtime::request::{check_request_id, parse_etag, parse_id};
use roster_runtime::{ApiError, Caller};
use tonic::Request;

use super::{Answer, profile_answer};
use crate::api::convert::{self, api_error};
use crate::app::Identity;
use crate::app::assignments::{ProfileChange, roles_named};
use crate::domain::ids::ProfileId;

/// Reads the request id, the profile id and the etag that every such call carries.
fn change<'a>(
    caller: &'a Caller,
    request_id: &'a str,
    profile_id: &str,
    etag: &str,
) -> Result<ProfileChange<'a>, ApiError> {
    check_request_id("request_id", request_id)?;
    Ok(ProfileChange {
        caller,
        request_id,
        id: ProfileId(parse_id("profile_id", profile_id)?),
        expected: parse_etag("etag", etag)?,
    })
}

pub(super) async fn assign_roles(
    app: &Identity,
    request: Request<pb::AssignRolesRequest>,
) -> Answer<pb::AssignRolesResponse> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    let call = change(
        &caller,
        &request.request_id,
        &request.profile_id,
        &request.etag,
    )?;
    let roles = roles_named(&convert::role_values(&request.roles)).map_err(api_error)?;
    profile_answer(app.assign_roles(call, &roles).await, |profile| {
        pb::AssignRolesResponse { profile }
    })
}

pub(super) async fn unassign_roles(
    app: &Identity,
    request: Request<pb::UnassignRolesRequest>,
) -> Answer<pb::UnassignRolesResponse> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    let call = change(
        &caller,
        &request.request_id,
        &request.profile_id,
        &request.etag,
    )?;
    let roles = roles_named(&convert::role_values(&request.roles)).map_err(api_error)?;
    profile_answer(app.unassign_roles(call, &roles).await, |profile| {
        pb::UnassignRolesResponse { profile }
    })
}

pub(super) async fn assign_extension(
    app: &Identity,
    request: Request<pb::AssignExtensionRequest>,
) -> Answer<pb::AssignExtensionResponse> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    let call = change(
        &caller,
        &request.request_id,
        &request.profile_id,
        &request.etag,
    )?;
    let extension = request
        .extension
        .ok_or_else(|| ApiError::invalid("extension", "is required"))?;
    profile_answer(
        app.assign_extension(
            call,
            &extension.number,
            convert::extension_kind(extension.kind),
        )
        .await,
        |profile| pb::AssignExtensionResponse { profile },
    )
}

pub(super) async fn unassign_extension(
    app: &Identity,
    request: Request<pb::UnassignExtensionRequest>,
) -> Answer<pb::UnassignExtensionResponse> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    let call = change(
        &caller,
        &request.request_id,
        &request.profile_id,
        &request.etag,
    )?;
    profile_answer(
        app.unassign_extension(call, &request.number).await,
        |profile| pb::UnassignExtensionResponse { profile },
    )
}
