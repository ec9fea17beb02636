//! AccountService (accounts, their password policies and their SCIM tokens): decode, call one
//! use case of [`crate::app`], encode.

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_server::AccountService;
use roster_proto::identity::v1::{
    CreateAccountRequest, CreateAccountResponse, CreateScimTokenRequest, CreateScimTokenResponse,
    DeleteAccountRequest, DeleteAccountResponse, GetAccountRequest, GetAccountResponse,
    GetPasswordPolicyRequest, GetPasswordPolicyResponse, ListAccountsRequest, ListAccountsResponse,
    ListScimTokensRequest, ListScimTokensResponse, RevokeScimTokenRequest, RevokeScimTokenResponse,
    UndeleteAccountRequest, UndeleteAccountResponse, UpdateAccountRequest, UpdateAccountResponse,
    UpdatePasswordPolicyRequest, UpdatePasswordPolicyResponse,
};
use roster_runtime::ApiError;
use roster_runtime::auth::caller;
use roster_runtime::request::{
    UpdateMask, check_request_id, id_token, page_size, parse_etag, parse_id, parse_id_token,
};
use tonic::{Request, Response, Status};

use super::convert::{self, api_error};
use crate::app::Identity;
use crate::app::accounts::{Listed, NewAccount};
use crate::app::scim_tokens::NewScimToken;
use crate::domain::account::{ACCOUNT_FIELDS, Account, AccountPatch, POLICY_FIELDS, PolicyPatch};
use crate::domain::ids::{AccountId, ScimTokenId};

/// AccountService over identity's use cases.
pub struct AccountApi {
    app: Identity,
}

impl AccountApi {
    pub fn new(app: Identity) -> Self {
        Self { app }
    }

    /// `record` as the API shows it.
    fn account(&self, record: &Account) -> pb::Account {
        convert::account(record, self.app.account_purge_time(record))
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
        refuse_limited(&caller, "create")?;
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let new = NewAccount {
            display_name: request.display_name,
            preset: convert::preset_from_proto(request.password_policy_preset)?,
            extension_min_length: request.extension_min_length,
            extension_max_length: request.extension_max_length,
        };
        let account = self
            .app
            .create_account(&caller, request_id, new)
            .await
            .map_err(api_error)?;
        Ok(Response::new(CreateAccountResponse {
            account: Some(self.account(&account)),
        }))
    }

    async fn get_account(
        &self,
        request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        let caller = caller(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let account = self
            .app
            .account(&caller, AccountId(id))
            .await
            .map_err(api_error)?;
        Ok(Response::new(GetAccountResponse {
            account: Some(self.account(&account)),
        }))
    }

    async fn update_account(
        &self,
        request: Request<UpdateAccountRequest>,
    ) -> Result<Response<UpdateAccountResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let changes = request
            .account
            .ok_or_else(|| ApiError::invalid("account", "is required"))?;
        let id = parse_id("account.id", &changes.id)?;
        let expected = parse_etag("account.etag", &changes.etag)?;
        let mask = UpdateMask::parse(
            request
                .update_mask
                .map(|mask| mask.paths)
                .unwrap_or_default(),
            &ACCOUNT_FIELDS,
        )?;
        let patch = AccountPatch {
            display_name: if mask.contains("display_name") {
                Some(
                    crate::domain::account::display_name(
                        "account.display_name",
                        &changes.display_name,
                    )
                    .map_err(api_error)?,
                )
            } else {
                None
            },
            extension_min_length: mask
                .contains("extension_min_length")
                .then_some(changes.extension_min_length),
            extension_max_length: mask
                .contains("extension_max_length")
                .then_some(changes.extension_max_length),
        };
        let account = self
            .app
            .update_account(&caller, request_id, AccountId(id), expected, patch)
            .await
            .map_err(api_error)?;
        Ok(Response::new(UpdateAccountResponse {
            account: Some(self.account(&account)),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let after = parse_id_token('p', &request.page_token)?.map(AccountId);
        let which = match request.filter.trim() {
            "" if request.show_deleted => Listed::All,
            "" => Listed::Open,
            "delete_time:*" if request.show_deleted => Listed::Deleted,
            "delete_time:*" => {
                return Err(ApiError::invalid(
                    "filter",
                    "`delete_time:*` lists deleted accounts: set show_deleted too",
                )
                .into());
            }
            _ => {
                return Err(ApiError::invalid(
                    "filter",
                    "the only filter supported is `delete_time:*` (deleted accounts)",
                )
                .into());
            }
        };
        let found = self
            .app
            .list_accounts(&caller, after, which, limit + 1)
            .await
            .map_err(api_error)?;
        let more = found.len() as u64 > limit;
        let page = &found[..found.len().min(limit as usize)];
        Ok(Response::new(ListAccountsResponse {
            accounts: page.iter().map(|account| self.account(account)).collect(),
            next_page_token: match page.last() {
                Some(last) if more => id_token('p', last.id.0),
                _ => String::new(),
            },
        }))
    }

    async fn delete_account(
        &self,
        request: Request<DeleteAccountRequest>,
    ) -> Result<Response<DeleteAccountResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        refuse_limited(&caller, "delete")?;
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let id = parse_id("id", &request.id)?;
        let expected = parse_etag("etag", &request.etag)?;
        let account = self
            .app
            .delete_account(&caller, request_id, AccountId(id), expected)
            .await
            .map_err(api_error)?;
        Ok(Response::new(DeleteAccountResponse {
            account: Some(self.account(&account)),
        }))
    }

    async fn undelete_account(
        &self,
        request: Request<UndeleteAccountRequest>,
    ) -> Result<Response<UndeleteAccountResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        refuse_limited(&caller, "undelete")?;
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let id = parse_id("id", &request.id)?;
        let expected = parse_etag("etag", &request.etag)?;
        let account = self
            .app
            .undelete_account(&caller, request_id, AccountId(id), expected)
            .await
            .map_err(api_error)?;
        Ok(Response::new(UndeleteAccountResponse {
            account: Some(self.account(&account)),
        }))
    }

    async fn get_password_policy(
        &self,
        request: Request<GetPasswordPolicyRequest>,
    ) -> Result<Response<GetPasswordPolicyResponse>, Status> {
        let caller = caller(&request)?;
        let id = parse_id("account_id", &request.get_ref().account_id)?;
        caller.require_account(id)?;
        let account = self
            .app
            .account(&caller, AccountId(id))
            .await
            .map_err(api_error)?;
        Ok(Response::new(GetPasswordPolicyResponse {
            policy: Some(convert::policy(&account)),
        }))
    }

    async fn update_password_policy(
        &self,
        request: Request<UpdatePasswordPolicyRequest>,
    ) -> Result<Response<UpdatePasswordPolicyResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let changes = request
            .policy
            .ok_or_else(|| ApiError::invalid("policy", "is required"))?;
        let id = parse_id("policy.account_id", &changes.account_id)?;
        caller.require_account(id)?;
        let expected = parse_etag("policy.etag", &changes.etag)?;
        let mask = UpdateMask::parse(
            request
                .update_mask
                .map(|mask| mask.paths)
                .unwrap_or_default(),
            &POLICY_FIELDS,
        )?;
        let preset = if mask.contains("preset") {
            Some(convert::preset_from_proto(changes.preset).map_err(|_| {
                ApiError::invalid(
                    "policy.preset",
                    "must be PASSWORD_POLICY_PRESET_DEFAULT or PASSWORD_POLICY_PRESET_NIST",
                )
            })?)
        } else {
            None
        };
        let patch = PolicyPatch {
            preset,
            values: convert::policy_values(
                &changes,
                preset.unwrap_or(crate::domain::policy::Preset::Custom),
            ),
            paths: mask.paths().to_vec(),
        };
        let account = self
            .app
            .update_password_policy(&caller, request_id, AccountId(id), expected, patch)
            .await
            .map_err(api_error)?;
        Ok(Response::new(UpdatePasswordPolicyResponse {
            policy: Some(convert::policy(&account)),
        }))
    }

    async fn create_scim_token(
        &self,
        request: Request<CreateScimTokenRequest>,
    ) -> Result<Response<CreateScimTokenResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let new = NewScimToken {
            account_id: AccountId(account_id),
            display_name: request.display_name,
            send_welcome_emails: request.send_welcome_emails,
        };
        let created = self
            .app
            .create_scim_token(&caller, request_id, new)
            .await
            .map_err(api_error)?;
        Ok(Response::new(CreateScimTokenResponse {
            token: Some(convert::scim_token(&created.token)),
            secret: created
                .secret
                .map(|secret| secret.expose_secret().to_owned())
                .unwrap_or_default(),
        }))
    }

    async fn list_scim_tokens(
        &self,
        request: Request<ListScimTokensRequest>,
    ) -> Result<Response<ListScimTokensResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        let limit = page_size(request.page_size)?;
        let before = parse_id_token('s', &request.page_token)?.map(ScimTokenId);
        let found = self
            .app
            .scim_tokens(&caller, AccountId(account_id), before, limit + 1)
            .await
            .map_err(api_error)?;
        let more = found.len() as u64 > limit;
        let page = &found[..found.len().min(limit as usize)];
        Ok(Response::new(ListScimTokensResponse {
            tokens: page.iter().map(convert::scim_token).collect(),
            next_page_token: match page.last() {
                Some(last) if more => id_token('s', last.id.0),
                _ => String::new(),
            },
        }))
    }

    async fn revoke_scim_token(
        &self,
        request: Request<RevokeScimTokenRequest>,
    ) -> Result<Response<RevokeScimTokenResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let account_id = parse_id("account_id", &request.account_id)?;
        caller.require_account(account_id)?;
        let token_id = parse_id("token_id", &request.token_id)?;
        check_request_id("request_id", &request.request_id)?;
        let request_id = crate::api::request_key(&request, &request.request_id);
        let token = self
            .app
            .revoke_scim_token(
                &caller,
                request_id,
                AccountId(account_id),
                ScimTokenId(token_id),
            )
            .await
            .map_err(api_error)?;
        Ok(Response::new(RevokeScimTokenResponse {
            token: Some(convert::scim_token(&token)),
        }))
    }
}

/// PERMISSION_DENIED for a key limited to some accounts, before any field of the request is
/// read: such a key learns nothing from its request's faults.
fn refuse_limited(caller: &roster_runtime::Caller, what: &str) -> Result<(), Status> {
    crate::app::every_account(caller, what).map_err(|error| api_error(error).into())
}
