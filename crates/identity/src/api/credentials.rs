//! CredentialService handlers.

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::credential_service_server::CredentialService;
use roster_runtime::ApiError;
use roster_runtime::auth::caller;
use secrecy::SecretString;
use tonic::{Request, Response, Status};

use super::convert::{self, api_error};
use crate::app::credentials::{MAX_PASSWORD_CHARS, Passwords, password_too_long};
use crate::domain::email::EmailAddress;
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::policy::Rule;
use roster_runtime::request::{check_request_id, parse_etag, parse_id};

/// CredentialService over the password operations.
pub struct CredentialApi {
    passwords: Passwords,
}

impl CredentialApi {
    pub fn new(passwords: Passwords) -> Self {
        Self { passwords }
    }
}

fn rule(rule: Rule) -> pb::PasswordRule {
    pb::PasswordRule {
        code: rule.code.to_owned(),
        description: rule.description,
    }
}

fn secret(field: &str, value: String) -> Result<SecretString, ApiError> {
    check_secret(field, &value)?;
    Ok(SecretString::from(value))
}

/// A password field is given, and within [`MAX_PASSWORD_CHARS`].
fn check_secret(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if password_too_long(value) {
        return Err(ApiError::invalid(
            field,
            format!("is longer than {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// The address an admin confirmed before asking for a reset, in stored form.
fn confirmed_email(value: &str) -> Result<EmailAddress, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(
            "email",
            "is required: the email address the reset link goes to, as the admin confirmed it",
        ));
    }
    EmailAddress::parse(value).map_err(|error| ApiError::invalid("email", error.to_string()))
}

#[tonic::async_trait]
impl CredentialService for CredentialApi {
    async fn get_password_requirements(
        &self,
        request: Request<pb::GetPasswordRequirementsRequest>,
    ) -> Result<Response<pb::GetPasswordRequirementsResponse>, Status> {
        let caller = caller(&request)?;
        let id = parse_id("account_id", &request.get_ref().account_id)?;
        caller.require_account(id)?;
        let account = self
            .passwords
            .account(AccountId(id))
            .await
            .map_err(api_error)?;
        Ok(Response::new(pb::GetPasswordRequirementsResponse {
            rules: account.policy.rules().into_iter().map(rule).collect(),
        }))
    }

    async fn check_password(
        &self,
        request: Request<pb::CheckPasswordRequest>,
    ) -> Result<Response<pb::CheckPasswordResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        let password = secret("password", request.password)?;
        let account = self
            .passwords
            .account(AccountId(account_id))
            .await
            .map_err(api_error)?;
        let profile = if request.profile_id.is_empty() {
            None
        } else {
            let id = parse_id("profile_id", &request.profile_id)?;
            Some(
                self.passwords
                    .profile_in(AccountId(account_id), ProfileId(id))
                    .await
                    .map_err(api_error)?,
            )
        };
        let violations = Passwords::check(&account, profile.as_ref(), &password);
        Ok(Response::new(pb::CheckPasswordResponse {
            acceptable: violations.is_empty(),
            violations: violations.into_iter().map(rule).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn send_password_reset(
        &self,
        request: Request<pb::SendPasswordResetRequest>,
    ) -> Result<Response<pb::SendPasswordResetResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let id = parse_id("profile_id", &request.profile_id)?;
        let confirmed = confirmed_email(&request.email)?;
        let expected = parse_etag("etag", &request.etag)?;
        let issued = self
            .passwords
            .send_reset(&caller, request_id, ProfileId(id), &confirmed, expected)
            .await
            .map_err(api_error)?;
        Ok(Response::new(pb::SendPasswordResetResponse {
            profile_id: issued.profile_id.to_string(),
            email: issued.email,
            expire_time: Some(convert::timestamp(issued.expires_at)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_password_reset(
        &self,
        request: Request<pb::CompletePasswordResetRequest>,
    ) -> Result<Response<pb::CompletePasswordResetResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
        // Bounded before the request's digest is taken over it.
        check_secret("new_password", &request.new_password)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let password = SecretString::from(request.new_password);
        self.passwords
            .complete_reset(&caller, request_id, &request.token, password)
            .await
            .map_err(api_error)?;
        Ok(Response::new(pb::CompletePasswordResetResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_password(
        &self,
        request: Request<pb::VerifyPasswordRequest>,
    ) -> Result<Response<pb::VerifyPasswordResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let password = secret("password", request.password)?;
        let verified = self
            .passwords
            .verify(&caller, &request.username, password)
            .await
            .map_err(api_error)?;
        Ok(Response::new(match verified {
            Some(record) => pb::VerifyPasswordResponse {
                verified: true,
                profile_id: record.id.to_string(),
                account_id: record.account_id.to_string(),
            },
            None => pb::VerifyPasswordResponse::default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn clear_sign_in_throttle(
        &self,
        request: Request<pb::ClearSignInThrottleRequest>,
    ) -> Result<Response<pb::ClearSignInThrottleResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let id = parse_id("profile_id", &request.profile_id)?;
        let cleared = self
            .passwords
            .clear_signin_throttle(&caller, request_id, ProfileId(id))
            .await
            .map_err(api_error)?;
        Ok(Response::new(pb::ClearSignInThrottleResponse {
            unlocked: cleared.unlocked,
            failures_cleared: cleared.failures.min(i32::MAX as u32) as i32,
        }))
    }

    async fn get_sign_in_state(
        &self,
        request: Request<pb::GetSignInStateRequest>,
    ) -> Result<Response<pb::GetSignInStateResponse>, Status> {
        let caller = caller(&request)?;
        let id = parse_id("profile_id", &request.get_ref().profile_id)?;
        let state = self
            .passwords
            .signin_state(&caller, ProfileId(id))
            .await
            .map_err(api_error)?;
        Ok(Response::new(pb::GetSignInStateResponse {
            failures: state.failures.min(i32::MAX as u32) as i32,
            last_failure_time: state.last_failure_at.map(convert::timestamp),
            locked_until: state.locked_until.map(convert::timestamp),
        }))
    }
}
