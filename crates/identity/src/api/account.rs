//! AccountService handlers.

use roster_proto::identity::v1::account_service_server::AccountService;
use roster_proto::identity::v1::{
    CreateAccountRequest, CreateAccountResponse, GetAccountRequest, GetAccountResponse,
    GetPasswordPolicyRequest, GetPasswordPolicyResponse, ListAccountsRequest, ListAccountsResponse,
};
use roster_runtime::ApiError;
use roster_runtime::auth::caller;
use tonic::{Request, Response, Status};

use super::convert;
use crate::domain::policy::PasswordPolicy;
use crate::store::Store;

/// AccountService over the identity store.
pub struct AccountApi {
    store: Store,
}

impl AccountApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn create_account(
        &self,
        request: Request<CreateAccountRequest>,
    ) -> Result<Response<CreateAccountResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        if caller.account_limit().is_some() {
            return Err(ApiError::PermissionDenied {
                reason: "ACCOUNT_NOT_PERMITTED",
                message: "a key limited to some accounts cannot create accounts".into(),
            }
            .into());
        }
        convert::check_request_id(&request.request_id)?;
        let display_name = request.display_name.trim();
        let length = display_name.chars().count();
        if length == 0 || length > 200 || display_name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "display_name",
                "must be 1 to 200 characters without control characters",
            )
            .into());
        }
        let policy = PasswordPolicy::from_preset(convert::preset_from_proto(
            request.password_policy_preset,
        )?);
        let scope = format!("{}:CreateAccount", caller.name);
        let store = &self.store;
        let response = store
            .idempotent(&scope, &request.request_id, async |txn| {
                let record = store.create_account(txn, display_name, &policy).await?;
                Ok(CreateAccountResponse {
                    account: Some(convert::account(&record)),
                })
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(response))
    }

    async fn get_account(
        &self,
        request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id("id", &request.get_ref().id)?;
        let not_found = || ApiError::NotFound {
            resource: "account",
        };
        if !caller.may_access(id) {
            return Err(not_found().into());
        }
        let record = self
            .store
            .account(id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(not_found)?;
        Ok(Response::new(GetAccountResponse {
            account: Some(convert::account(&record)),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let limit = convert::page_size(request.page_size)?;
        let after = convert::parse_page_token(&request.page_token)?;
        let only = caller
            .account_limit()
            .map(|accounts| accounts.iter().copied().collect());
        let records = self
            .store
            .list_accounts(after, only, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let more = records.len() as u64 > limit;
        let accounts: Vec<_> = records
            .iter()
            .take(limit as usize)
            .map(convert::account)
            .collect();
        let next_page_token = if more {
            records
                .get(limit as usize - 1)
                .map(|record| convert::page_token(record.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListAccountsResponse {
            accounts,
            next_page_token,
        }))
    }

    async fn get_password_policy(
        &self,
        request: Request<GetPasswordPolicyRequest>,
    ) -> Result<Response<GetPasswordPolicyResponse>, Status> {
        let caller = caller(&request)?;
        let id = convert::parse_id("account_id", &request.get_ref().account_id)?;
        caller.require_account(id)?;
        let record = self
            .store
            .account(id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound {
                resource: "account",
            })?;
        Ok(Response::new(GetPasswordPolicyResponse {
            policy: Some(convert::policy(&record)),
        }))
    }
}
