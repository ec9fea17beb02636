//! CheckUsername and BatchCheckUsernames.

use roster_proto::identity::v1 as pb;
use roster_runtime::ApiError;
use roster_runtime::request::{check_batch, check_lengths};
use tonic::{Request, Response};

use super::Answer;
use crate::api::convert::{self, api_error};
use crate::app::Identity;
use crate::app::usernames::{SeedText, UsernameCheck};
use crate::domain::batch::MAX_BATCH;
use crate::domain::email;
use crate::domain::fields::{MAX_NAME_LENGTH, max_input_bytes};

pub(super) async fn check(
    app: &Identity,
    request: Request<pb::CheckUsernameRequest>,
) -> Answer<pb::CheckUsernameResponse> {
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
    let seeds = SeedText {
        first_name: request.first_name,
        last_name: request.last_name,
        email: request.email,
    };
    let check = app
        .check_username(&request.username, &seeds)
        .await
        .map_err(api_error)?;
    Ok(Response::new(pb::CheckUsernameResponse {
        available: check.refusal.is_none(),
        canonical: check.canonical,
        reason: convert::refusal(check.refusal) as i32,
        message: check.message,
        suggestions: check.suggestions,
    }))
}

pub(super) async fn batch_check(
    app: &Identity,
    request: Request<pb::BatchCheckUsernamesRequest>,
) -> Answer<pb::BatchCheckUsernamesResponse> {
    let caller = roster_runtime::auth::caller(&request)?;
    let request = request.into_inner();
    let (usernames, seeds) = (request.usernames, request.seeds);
    check_batch("usernames", "usernames", usernames.len(), MAX_BATCH)?;
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
    let seeds: Vec<SeedText> = seeds
        .into_iter()
        .map(|seed| SeedText {
            first_name: seed.first_name,
            last_name: seed.last_name,
            email: seed.email,
        })
        .collect();
    let checks = app
        .check_usernames(&caller, usernames, &seeds)
        .await
        .map_err(api_error)?;
    Ok(Response::new(pb::BatchCheckUsernamesResponse {
        checks: checks.into_iter().map(username_check).collect(),
    }))
}

fn username_check(check: UsernameCheck) -> pb::UsernameCheck {
    pb::UsernameCheck {
        username: check.username,
        available: check.refusal.is_none(),
        canonical: check.canonical,
        reason: convert::refusal(check.refusal) as i32,
        message: check.message,
        holder_profile_id: check
            .holder
            .map(|holder| holder.to_string())
            .unwrap_or_default(),
        suggestions: check.suggestions,
    }
}
