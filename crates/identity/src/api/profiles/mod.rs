//! ProfileService: a dispatcher that only delegates, one file per group of RPCs — profiles
//! (create, read, list, update, delete, undelete), usernames (checks), assignments (roles and
//! extensions) and batches. Each handler decodes the request, calls one use case of
//! [`crate::app`] and encodes its answer.

mod assignments;
mod batch;
mod records;
mod usernames;

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::profile_service_server::ProfileService;
use tonic::{Request, Response, Status};

use crate::api::convert;
use crate::app::Identity;
use crate::domain::error::IdentityError;
use crate::domain::profile::Profile;

/// ProfileService over identity's use cases.
pub struct ProfileApi {
    app: Identity,
}

impl ProfileApi {
    pub fn new(app: Identity) -> Self {
        Self { app }
    }
}

type Answer<T> = Result<Response<T>, Status>;

/// The answer of a call that answers with a profile: `wrap` puts the encoded profile into the
/// call's response.
fn profile_answer<R>(
    profile: Result<Profile, IdentityError>,
    wrap: impl FnOnce(Option<pb::Profile>) -> R,
) -> Answer<R> {
    let profile = profile.map_err(convert::api_error)?;
    Ok(Response::new(wrap(Some(convert::profile(&profile)))))
}

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn create_profile(
        &self,
        request: Request<pb::CreateProfileRequest>,
    ) -> Answer<pb::CreateProfileResponse> {
        records::create(&self.app, request).await
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Answer<pb::GetProfileResponse> {
        records::get(&self.app, request).await
    }

    async fn list_profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Answer<pb::ListProfilesResponse> {
        records::list(&self.app, request).await
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Answer<pb::UpdateProfileResponse> {
        records::update(&self.app, request).await
    }

    async fn delete_profile(
        &self,
        request: Request<pb::DeleteProfileRequest>,
    ) -> Answer<pb::DeleteProfileResponse> {
        records::delete(&self.app, request).await
    }

    async fn undelete_profile(
        &self,
        request: Request<pb::UndeleteProfileRequest>,
    ) -> Answer<pb::UndeleteProfileResponse> {
        records::undelete(&self.app, request).await
    }

    async fn check_username(
        &self,
        request: Request<pb::CheckUsernameRequest>,
    ) -> Answer<pb::CheckUsernameResponse> {
        usernames::check(&self.app, request).await
    }

    async fn batch_check_usernames(
        &self,
        request: Request<pb::BatchCheckUsernamesRequest>,
    ) -> Answer<pb::BatchCheckUsernamesResponse> {
        usernames::batch_check(&self.app, request).await
    }

    async fn batch_get_profiles(
        &self,
        request: Request<pb::BatchGetProfilesRequest>,
    ) -> Answer<pb::BatchGetProfilesResponse> {
        batch::get(&self.app, request).await
    }

    async fn batch_upsert_profiles(
        &self,
        request: Request<pb::BatchUpsertProfilesRequest>,
    ) -> Answer<pb::BatchUpsertProfilesResponse> {
        batch::upsert(&self.app, request).await
    }

    async fn assign_roles(
        &self,
        request: Request<pb::AssignRolesRequest>,
    ) -> Answer<pb::AssignRolesResponse> {
        assignments::assign_roles(&self.app, request).await
    }

    async fn unassign_roles(
        &self,
        request: Request<pb::UnassignRolesRequest>,
    ) -> Answer<pb::UnassignRolesResponse> {
        assignments::unassign_roles(&self.app, request).await
    }

    async fn assign_extension(
        &self,
        request: Request<pb::AssignExtensionRequest>,
    ) -> Answer<pb::AssignExtensionResponse> {
        assignments::assign_extension(&self.app, request).await
    }

    async fn unassign_extension(
        &self,
        request: Request<pb::UnassignExtensionRequest>,
    ) -> Answer<pb::UnassignExtensionResponse> {
        assignments::unassign_extension(&self.app, request).await
    }
}
