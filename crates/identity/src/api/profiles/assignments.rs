//! AssignRoles, UnassignRoles, AssignExtension and UnassignExtension.

use roster_proto::identity::v1 as pb;
use roster_runtime::request::{check_request_id, parse_etag, parse_id};
use roster_runtime::{ApiError, Caller};
use tonic::{Request, Status};

use super::{Answer, profile_answer};
use crate::api::convert::{self, api_error};
use crate::app::Identity;
use crate::app::assignments::{ProfileChange, roles_named};
use crate::domain::ids::ProfileId;

/// A request of a call that changes a profile's roles or extensions: each carries a request
/// id, the profile's id and an optional etag.
trait ChangeRequest: crate::api::digest::Canonical {
    fn request_id(&self) -> &str;
    fn profile_id(&self) -> &str;
    fn etag(&self) -> &str;
}

macro_rules! change_requests {
    ($($request:ty),*) => {
        $(impl ChangeRequest for $request {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn profile_id(&self) -> &str {
                &self.profile_id
            }
            fn etag(&self) -> &str {
                &self.etag
            }
        })*
    };
}

change_requests!(
    pb::AssignRolesRequest,
    pb::UnassignRolesRequest,
    pb::AssignExtensionRequest,
    pb::UnassignExtensionRequest
);

/// The caller and the request, with the request id, the profile id and the etag read.
fn change<T: ChangeRequest>(
    request: Request<T>,
) -> Result<(Caller, T, ProfileId, Option<i64>), Status> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    check_request_id("request_id", request.request_id())?;
    let id = ProfileId(parse_id("profile_id", request.profile_id())?);
    let expected = parse_etag("etag", request.etag())?;
    Ok((caller, request, id, expected))
}

/// The [`ProfileChange`] of a decoded request.
fn call<'a, T: ChangeRequest>(
    caller: &'a Caller,
    request: &'a T,
    id: ProfileId,
    expected: Option<i64>,
) -> ProfileChange<'a> {
    ProfileChange {
        caller,
        request_id: crate::api::request_key(request, request.request_id()),
        id,
        expected,
    }
}

pub(super) async fn assign_roles(
    app: &Identity,
    request: Request<pb::AssignRolesRequest>,
) -> Answer<pb::AssignRolesResponse> {
    let (caller, request, id, expected) = change(request)?;
    let call = call(&caller, &request, id, expected);
    let roles = roles_named(&convert::role_values(&request.roles)).map_err(api_error)?;
    profile_answer(app.assign_roles(call, &roles).await, |profile| {
        pb::AssignRolesResponse { profile }
    })
}

pub(super) async fn unassign_roles(
    app: &Identity,
    request: Request<pb::UnassignRolesRequest>,
) -> Answer<pb::UnassignRolesResponse> {
    let (caller, request, id, expected) = change(request)?;
    let call = call(&caller, &request, id, expected);
    let roles = roles_named(&convert::role_values(&request.roles)).map_err(api_error)?;
    profile_answer(app.unassign_roles(call, &roles).await, |profile| {
        pb::UnassignRolesResponse { profile }
    })
}

pub(super) async fn assign_extension(
    app: &Identity,
    request: Request<pb::AssignExtensionRequest>,
) -> Answer<pb::AssignExtensionResponse> {
    let (caller, request, id, expected) = change(request)?;
    let call = call(&caller, &request, id, expected);
    let extension = request
        .extension
        .as_ref()
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
    let (caller, request, id, expected) = change(request)?;
    let call = call(&caller, &request, id, expected);
    profile_answer(
        app.unassign_extension(call, &request.number).await,
        |profile| pb::UnassignExtensionResponse { profile },
    )
}
