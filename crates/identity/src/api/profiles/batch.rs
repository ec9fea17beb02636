//! BatchGetProfiles and BatchUpsertProfiles. An item's failure is encoded by the same map as a
//! call's, so one failure has one code and one reason whichever RPC reports it.

use roster_proto::identity::v1 as pb;
use roster_runtime::ApiError;
use roster_runtime::error::FieldViolation;
use roster_runtime::request::{check_batch, check_request_id, parse_id};
use tonic::{Request, Response};
use uuid::Uuid;

use super::Answer;
use crate::api::convert::{self, api_error};
use crate::app::Identity;
use crate::app::batch::UpsertResult;
use crate::domain::assignment::ExtensionNumber;
use crate::domain::batch::{MAX_BATCH, UpsertItem, UpsertOutcome};
use crate::domain::ids::{AccountId, ProfileId};
use crate::domain::profile::OwnedProfile;

pub(super) async fn get(
    app: &Identity,
    request: Request<pb::BatchGetProfilesRequest>,
) -> Answer<pb::BatchGetProfilesResponse> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    let account_id = parse_id("account_id", &request.account_id)?;
    caller.require_account(account_id)?;
    if request.ids.is_empty() && request.extension_numbers.is_empty() {
        return Err(ApiError::invalid(
            "ids",
            "must hold 1 to 1000 ids, unless extension_numbers holds numbers",
        )
        .into());
    }
    if !request.ids.is_empty() {
        check_batch("ids", "ids", request.ids.len(), MAX_BATCH)?;
    }
    if !request.extension_numbers.is_empty() {
        check_batch(
            "extension_numbers",
            "numbers",
            request.extension_numbers.len(),
            MAX_BATCH,
        )?;
    }
    // Every bad number is named, not only the first.
    let mut numbers = Vec::with_capacity(request.extension_numbers.len());
    let mut violations = Vec::new();
    for (index, number) in request.extension_numbers.iter().enumerate() {
        match ExtensionNumber::parse(number) {
            Ok(number) => numbers.push(number),
            Err(message) => violations.push(FieldViolation::new(
                format!("extension_numbers[{index}]"),
                message,
            )),
        }
    }
    if !violations.is_empty() {
        return Err(ApiError::invalid_fields(violations).into());
    }
    let ids: Vec<ProfileId> = request
        .ids
        .iter()
        .filter_map(|id| Uuid::parse_str(id).ok().map(ProfileId))
        .collect();
    let found = app
        .profiles_of(AccountId(account_id), &ids)
        .await
        .map_err(api_error)?;
    let mut profiles = Vec::new();
    let mut missing_ids = Vec::new();
    for raw in request.ids {
        match Uuid::parse_str(&raw)
            .ok()
            .and_then(|id| found.get(&ProfileId(id)))
        {
            Some(profile) => profiles.push(convert::profile(profile)),
            None => missing_ids.push(raw),
        }
    }
    let extension_holders = match numbers.is_empty() {
        true => Vec::new(),
        false => app
            .extension_holders(AccountId(account_id), &numbers)
            .await
            .map_err(api_error)?
            .into_iter()
            .map(|(number, holder, username)| pb::ExtensionHolder {
                number: number.as_str().to_owned(),
                profile_id: holder.0.to_string(),
                username,
            })
            .collect(),
    };
    Ok(Response::new(pb::BatchGetProfilesResponse {
        profiles,
        missing_ids,
        extension_holders,
    }))
}

pub(super) async fn upsert(
    app: &Identity,
    request: Request<pb::BatchUpsertProfilesRequest>,
) -> Answer<pb::BatchUpsertProfilesResponse> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    let account_id = parse_id("account_id", &request.account_id)?;
    caller.require_account(account_id)?;
    check_batch("items", "items", request.items.len(), MAX_BATCH)?;
    check_request_id("request_id", &request.request_id)?;
    let caller = match request.import_id.as_str() {
        "" => caller,
        import_id => {
            let import_id = parse_id("import_id", import_id)?;
            caller
                .via("import")
                .acting_for(format!("import {import_id}"))
        }
    };
    let items = request.items.into_iter().map(item).collect();
    let results = app
        .upsert_profiles(
            &caller,
            AccountId(account_id),
            &request.request_id,
            items,
            request.send_welcome_emails,
        )
        .await
        .map_err(api_error)?;
    Ok(Response::new(pb::BatchUpsertProfilesResponse {
        results: results.into_iter().map(result).collect(),
    }))
}

fn item(item: pb::ProfileUpsert) -> UpsertItem {
    UpsertItem {
        idempotency_key: item.idempotency_key,
        id: item.id,
        fields: OwnedProfile {
            first_name: item.first_name,
            last_name: item.last_name,
            email: item.email,
            username: item.username,
            job_title: item.job_title,
            department: item.department,
            locale: item.locale,
            time_zone: item.time_zone,
            // Not carried by the batch: an updated profile keeps its own.
            external_id: String::new(),
        },
        set_assignments: item.set_assignments,
        roles: convert::role_values(&item.roles),
        extensions: item
            .extensions
            .into_iter()
            .map(|extension| (extension.number, convert::extension_kind(extension.kind)))
            .collect(),
        mask: item.update_mask.map(|mask| mask.paths),
    }
}

fn result(result: UpsertResult) -> pb::ProfileUpsertResult {
    let key = result.idempotency_key;
    match result.outcome {
        Ok(kept) => pb::ProfileUpsertResult {
            idempotency_key: key,
            outcome: match kept.outcome {
                UpsertOutcome::Created => pb::UpsertOutcome::Created,
                UpsertOutcome::Updated => pb::UpsertOutcome::Updated,
                UpsertOutcome::Unchanged => pb::UpsertOutcome::Unchanged,
            } as i32,
            profile: Some(convert::profile(&kept.profile)),
            ..Default::default()
        },
        Err(error) => {
            let (defaulted, suggestions) = match &error {
                crate::domain::error::IdentityError::UsernameRefused {
                    defaulted,
                    suggestions,
                    ..
                } => (*defaulted, suggestions.clone()),
                _ => (false, Vec::new()),
            };
            let error = api_error(error);
            let field_errors = match &error {
                ApiError::InvalidArgument { violations, .. } => violations
                    .iter()
                    .map(|violation| pb::FieldError {
                        field: violation.field.clone(),
                        description: violation.description.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let message = match &error {
                ApiError::Internal(_) => {
                    tracing::error!(%error, "batch item failed");
                    "internal error".to_owned()
                }
                other => other.to_string(),
            };
            pb::ProfileUpsertResult {
                idempotency_key: key,
                outcome: pb::UpsertOutcome::Failed as i32,
                profile: None,
                error_code: error.code() as i32,
                error_reason: error.reason().to_owned(),
                error_message: message,
                field_errors,
                username_defaulted: defaulted,
                username_suggestions: suggestions,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::{IdentityError, Refusal, Violation};

    fn failed(error: IdentityError) -> pb::ProfileUpsertResult {
        result(UpsertResult {
            idempotency_key: "k".into(),
            outcome: Err(error),
        })
    }

    #[test]
    fn an_item_fails_with_the_code_and_reason_of_the_same_failure_as_a_call() {
        let invalid = failed(IdentityError::Invalid(vec![Violation::new(
            "email",
            "is required",
        )]));
        assert_eq!(invalid.outcome, pb::UpsertOutcome::Failed as i32);
        assert_eq!(invalid.error_code, tonic::Code::InvalidArgument as i32);
        assert_eq!(invalid.error_reason, "INVALID_ARGUMENT");
        assert_eq!(invalid.field_errors[0].field, "email");

        let taken = failed(IdentityError::UsernameRefused {
            refusal: Refusal::Taken,
            defaulted: true,
            suggestions: vec!["ada.lovelace".into()],
        });
        assert_eq!(taken.error_code, tonic::Code::AlreadyExists as i32);
        assert_eq!(taken.error_reason, "USERNAME_TAKEN");
        assert!(taken.username_defaulted);
        assert_eq!(taken.username_suggestions, ["ada.lovelace"]);
        assert!(
            taken.error_message.contains("ada.lovelace"),
            "{}",
            taken.error_message
        );

        let internal = failed(IdentityError::Corrupt("row 7".into()));
        assert_eq!(internal.error_code, tonic::Code::Internal as i32);
        assert_eq!(internal.error_message, "internal error");
    }
}
