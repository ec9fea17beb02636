//! AccountService handlers.

use roster_proto::identity::v1::account_service_server::AccountService;
use roster_proto::identity::v1::{
    CreateAccountRequest, CreateAccountResponse, GetAccountRequest, GetAccountResponse,
    GetPasswordPolicyRequest, GetPasswordPolicyResponse, ListAccountsRequest, ListAccountsResponse,
    PasswordPolicy as PolicyMessage, UpdateAccountRequest, UpdateAccountResponse,
    UpdatePasswordPolicyRequest, UpdatePasswordPolicyResponse,
};
use roster_runtime::ApiError;
use roster_runtime::auth::caller;
use tonic::{Request, Response, Status};

use super::convert;
use crate::domain::assignment::ExtensionBounds;
use crate::domain::error::{IdentityError, Violation};
use crate::domain::policy::{PasswordPolicy, Preset};
use crate::store::Store;
use roster_runtime::request::{
    UpdateMask, check_request_id, id_token, page_size, parse_etag, parse_id, parse_id_token,
};

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
        check_request_id("request_id", &request.request_id)?;
        let display_name = display_name("display_name", &request.display_name)?;
        let policy = PasswordPolicy::from_preset(convert::preset_from_proto(
            request.password_policy_preset,
        )?);
        let bounds = extension_bounds(
            "",
            match request.extension_min_length {
                0 => ExtensionBounds::DEFAULT_MIN,
                given => given,
            },
            match request.extension_max_length {
                0 => ExtensionBounds::DEFAULT_MAX,
                given => given,
            },
        )
        .map_err(ApiError::from)?;
        let scope = format!("{}:CreateAccount", caller.name);
        let store = &self.store;
        let response = store
            .idempotent(&scope, &request.request_id, async |txn| {
                let record = store
                    .create_account(txn, display_name, &policy, bounds)
                    .await?;
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
        let id = parse_id("id", &request.get_ref().id)?;
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

    async fn update_account(
        &self,
        request: Request<UpdateAccountRequest>,
    ) -> Result<Response<UpdateAccountResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
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
        let masked = |path: &str| mask.contains(path);
        let new_name = if masked("display_name") {
            Some(display_name("account.display_name", &changes.display_name)?.to_owned())
        } else {
            None
        };
        // Another account is NOT_FOUND, like one that does not exist (as GetAccount).
        if !caller.may_access(id) {
            return Err(ApiError::NotFound {
                resource: "account",
            }
            .into());
        }
        let scope = format!("{}:UpdateAccount", caller.name);
        let store = &self.store;
        let response = store
            .idempotent(&scope, &request.request_id, async |txn| {
                let account = store
                    .account_in(txn, id)
                    .await?
                    .ok_or(IdentityError::NotFound("account"))?;
                if expected.is_some_and(|version| version != account.version) {
                    return Err(IdentityError::StaleEtag);
                }
                let current = account.extension_bounds;
                let min = if masked("extension_min_length") {
                    changes.extension_min_length
                } else {
                    current.min()
                };
                let max = if masked("extension_max_length") {
                    changes.extension_max_length
                } else {
                    current.max()
                };
                let bounds = extension_bounds("account.", min, max)?;
                let name = new_name.as_deref().unwrap_or(&account.display_name);
                let updated = store.update_account(txn, &account, name, bounds).await?;
                Ok(UpdateAccountResponse {
                    account: Some(convert::account(&updated)),
                })
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(response))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let after = parse_id_token('p', &request.page_token)?;
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
                .map(|record| id_token('p', record.id))
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
        let id = parse_id("account_id", &request.get_ref().account_id)?;
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

    async fn update_password_policy(
        &self,
        request: Request<UpdatePasswordPolicyRequest>,
    ) -> Result<Response<UpdatePasswordPolicyResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        check_request_id("request_id", &request.request_id)?;
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
        let scope = format!("{}:UpdatePasswordPolicy", caller.name);
        let store = &self.store;
        let response = store
            .idempotent(&scope, &request.request_id, async |txn| {
                let account = store
                    .account_in(txn, id)
                    .await?
                    .ok_or(IdentityError::NotFound("account"))?;
                if expected.is_some_and(|version| version != account.version) {
                    return Err(IdentityError::StaleEtag);
                }
                let policy = apply_policy_mask(&account.policy, preset, mask.paths(), &changes);
                policy.validate().map_err(IdentityError::Invalid)?;
                let updated = store.update_policy(txn, &account, &policy).await?;
                Ok(UpdatePasswordPolicyResponse {
                    policy: Some(convert::policy(&updated)),
                })
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(response))
    }
}

/// The account fields UpdateAccount accepts in its mask.
const ACCOUNT_FIELDS: [&str; 3] = [
    "display_name",
    "extension_min_length",
    "extension_max_length",
];

/// A display name: 1 to 200 characters without control characters, trimmed.
fn display_name<'a>(field: &str, input: &'a str) -> Result<&'a str, ApiError> {
    let name = input.trim();
    let length = name.chars().count();
    if length == 0 || length > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(name)
}

/// Extension bounds from a request; violations name `prefix` + the field.
fn extension_bounds(prefix: &str, min: u32, max: u32) -> Result<ExtensionBounds, IdentityError> {
    ExtensionBounds::new(min, max).map_err(|violations| {
        IdentityError::Invalid(
            violations
                .into_iter()
                .map(|violation| {
                    Violation::new(
                        format!("{prefix}{}", violation.field),
                        violation.description,
                    )
                })
                .collect(),
        )
    })
}

/// The policy fields UpdatePasswordPolicy accepts in its mask.
const POLICY_FIELDS: [&str; 11] = [
    "preset",
    "min_length",
    "max_length",
    "min_uppercase",
    "min_lowercase",
    "min_digits",
    "min_symbols",
    "forbid_personal_info",
    "history_count",
    "forbid_common",
    "min_strength_score",
];

/// The policy after a masked update: a named preset first replaces every rule, then each
/// other named field is set, which makes the policy CUSTOM.
fn apply_policy_mask(
    current: &PasswordPolicy,
    preset: Option<Preset>,
    paths: &[String],
    changes: &PolicyMessage,
) -> PasswordPolicy {
    let mut policy = preset.map_or_else(|| current.clone(), PasswordPolicy::from_preset);
    let mut customised = false;
    for path in paths {
        customised |= path != "preset";
        match path.as_str() {
            "min_length" => policy.min_length = changes.min_length,
            "max_length" => policy.max_length = changes.max_length,
            "min_uppercase" => policy.min_uppercase = changes.min_uppercase,
            "min_lowercase" => policy.min_lowercase = changes.min_lowercase,
            "min_digits" => policy.min_digits = changes.min_digits,
            "min_symbols" => policy.min_symbols = changes.min_symbols,
            "forbid_personal_info" => policy.forbid_personal_info = changes.forbid_personal_info,
            "history_count" => policy.history_count = changes.history_count,
            "forbid_common" => policy.forbid_common = changes.forbid_common,
            "min_strength_score" => policy.min_strength_score = changes.min_strength_score,
            _ => {}
        }
    }
    if customised {
        policy.preset = Preset::Custom;
    }
    policy
}
