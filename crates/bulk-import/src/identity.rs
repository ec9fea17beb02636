//! Bulk-import's client of identity's ProfileService: the batch calls that validation and the
//! apply are made of, and the listing the template is made from.
//!
//! Calls go through the runtime's [`Client`]: bulk-import's own key (configured as
//! `identity_key`), a deadline on every call, balancing over every identity replica, optional
//! TLS/mTLS, and the current trace context, so one import is one trace across the services.
//! Every call here is marked idempotent — the reads trivially, BatchUpsertProfiles through its
//! per-item idempotency keys — so the client retries them when identity is UNAVAILABLE.
//! Identity alone decides whether a username is free; this client only asks.

use std::collections::HashMap;

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_runtime::client::{Client, ClientConfig, idempotent};
use tonic::{Code, Request, Status};

use crate::domain::assignments::{Extension, ExtensionKind};
use crate::domain::rows::{CurrentProfile, Holder, UpsertFields, UsernameVerdict};

/// The most items identity takes in one batch call.
pub const MAX_BATCH: usize = 1000;

/// The largest message either side sends: a batch of 1,000 profiles with their assignments.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A connection to identity.
#[derive(Clone)]
pub struct Identity {
    client: ProfileServiceClient<Client>,
}

impl Identity {
    /// A client of identity as `config` says. Connections are made on first use, so
    /// bulk-import starts while identity is still starting.
    pub fn new(config: ClientConfig) -> anyhow::Result<Self> {
        let urls = config.urls.join(", ");
        let client = Client::new(config)
            .map_err(|error| anyhow::anyhow!("identity_url {urls:?}: {error}"))?;
        Ok(Self {
            client: ProfileServiceClient::new(client)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        idempotent(Request::new(message))
    }

    /// One page of an account's current (not deleted) profiles, and the next page's token.
    pub async fn list_profiles(
        &self,
        account_id: &str,
        page_token: String,
    ) -> Result<(Vec<CurrentProfile>, String), Status> {
        let response = self
            .client
            .clone()
            .list_profiles(self.request(pb::ListProfilesRequest {
                account_id: account_id.to_owned(),
                page_size: MAX_BATCH as i32,
                page_token,
                ..Default::default()
            }))
            .await?
            .into_inner();
        Ok((
            response.profiles.into_iter().map(current).collect(),
            response.next_page_token,
        ))
    }

    /// The profiles of `account_id` among `ids` (at most [`MAX_BATCH`]), by id. Ids of other
    /// accounts are simply absent, exactly like unknown ones.
    pub async fn profiles(
        &self,
        account_id: &str,
        ids: Vec<String>,
    ) -> Result<HashMap<String, CurrentProfile>, Status> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let response = self
            .client
            .clone()
            .batch_get_profiles(self.request(pb::BatchGetProfilesRequest {
                account_id: account_id.to_owned(),
                ids,
                extension_numbers: Vec::new(),
            }))
            .await?
            .into_inner();
        Ok(response
            .profiles
            .into_iter()
            .map(|profile| (profile.id.clone(), current(profile)))
            .collect())
    }

    /// Which profile of `account_id` holds each of `numbers` (extension numbers of at most
    /// [`ExtensionBounds::LIMIT`] digits; at most [`MAX_BATCH`]), by number; numbers nobody
    /// holds are absent. `None` when identity is of a version that cannot tell (before
    /// `extension_numbers`): then nothing is known of the numbers' holders.
    ///
    /// [`ExtensionBounds::LIMIT`]: roster_identity_domain::assignment::ExtensionBounds::LIMIT
    pub async fn extension_holders(
        &self,
        account_id: &str,
        numbers: Vec<String>,
    ) -> Result<Option<HashMap<String, Holder>>, Status> {
        if numbers.is_empty() {
            return Ok(Some(HashMap::new()));
        }
        let answer = self
            .client
            .clone()
            .batch_get_profiles(self.request(pb::BatchGetProfilesRequest {
                account_id: account_id.to_owned(),
                ids: Vec::new(),
                extension_numbers: numbers,
            }))
            .await;
        let response = match answer {
            Ok(response) => response.into_inner(),
            Err(status) if predates_extension_numbers(&status) => return Ok(None),
            Err(status) => return Err(status),
        };
        Ok(Some(
            response
                .extension_holders
                .into_iter()
                .map(|holder| {
                    (
                        holder.number,
                        Holder {
                            profile_id: holder.profile_id,
                            username: holder.username,
                        },
                    )
                })
                .collect(),
        ))
    }

    /// Identity's verdict on each username (at most [`MAX_BATCH`]), in order.
    pub async fn check_usernames(
        &self,
        usernames: Vec<(String, crate::domain::rows::SuggestionSeeds)>,
    ) -> Result<Vec<UsernameVerdict>, Status> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let (usernames, seeds) = usernames
            .into_iter()
            .map(|(username, seeds)| {
                (
                    username,
                    pb::SuggestionSeeds {
                        first_name: seeds.first_name,
                        last_name: seeds.last_name,
                        email: seeds.email,
                    },
                )
            })
            .unzip();
        let response = self
            .client
            .clone()
            .batch_check_usernames(
                self.request(pb::BatchCheckUsernamesRequest { usernames, seeds }),
            )
            .await?
            .into_inner();
        Ok(response
            .checks
            .into_iter()
            .map(|check| UsernameVerdict {
                available: check.available,
                canonical: check.canonical,
                reason: match pb::UsernameRefusal::try_from(check.reason) {
                    Ok(pb::UsernameRefusal::Taken) => "USERNAME_TAKEN",
                    Ok(pb::UsernameRefusal::Retired) => "USERNAME_RETIRED",
                    Ok(pb::UsernameRefusal::Confusable) => "USERNAME_CONFUSABLE",
                    Ok(pb::UsernameRefusal::Invalid) => "USERNAME_INVALID",
                    _ => "",
                }
                .to_owned(),
                message: check.message,
                holder_profile_id: check.holder_profile_id,
                suggestions: check.suggestions,
            })
            .collect())
    }

    /// Writes a batch (at most [`MAX_BATCH`]), each item on its idempotency key, and the whole
    /// on `request_id` unless it is empty (identity then keeps the items' answers in one
    /// record); with `send_welcome_emails`, identity emails each profile it creates. The
    /// changes are recorded in identity's audit log as the import `import_id`'s.
    pub async fn upsert(
        &self,
        account_id: &str,
        import_id: &str,
        request_id: &str,
        items: Vec<(String, UpsertFields)>,
        send_welcome_emails: bool,
    ) -> Result<Vec<pb::ProfileUpsertResult>, Status> {
        let items = items
            .into_iter()
            .map(|(key, fields)| pb::ProfileUpsert {
                idempotency_key: key,
                id: fields.id,
                first_name: fields.first_name,
                last_name: fields.last_name,
                email: fields.email,
                username: fields.username,
                job_title: fields.job_title,
                department: fields.department,
                locale: fields.locale,
                time_zone: fields.time_zone,
                roles: fields
                    .roles
                    .into_iter()
                    .map(|role| pb::Role::from(role) as i32)
                    .collect(),
                extensions: fields
                    .extensions
                    .into_iter()
                    .map(|extension| pb::Extension {
                        number: extension.number,
                        kind: pb::ExtensionKind::from(extension.kind) as i32,
                    })
                    .collect(),
                set_assignments: fields.set_assignments,
                update_mask: fields.mask.map(|paths| prost_types::FieldMask {
                    paths: paths.into_iter().map(str::to_owned).collect(),
                }),
            })
            .collect();
        Ok(self
            .client
            .clone()
            .batch_upsert_profiles(self.request(pb::BatchUpsertProfilesRequest {
                account_id: account_id.to_owned(),
                items,
                send_welcome_emails,
                import_id: import_id.to_owned(),
                request_id: request_id.to_owned(),
            }))
            .await?
            .into_inner()
            .results)
    }
}

fn current(profile: pb::Profile) -> CurrentProfile {
    let roles = profile
        .roles
        .iter()
        .filter_map(|role| {
            pb::Role::try_from(*role)
                .ok()
                .and_then(roster_proto::convert::role)
        })
        .collect();
    let extensions = profile
        .extensions
        .iter()
        .map(|extension| Extension {
            number: extension.number.clone(),
            // What identity answers is physical unless it says virtual.
            kind: roster_proto::convert::extension_kind(extension.kind)
                .unwrap_or(ExtensionKind::Physical),
        })
        .collect();
    CurrentProfile {
        deleted: profile.status == pb::ProfileStatus::Deleted as i32,
        id: profile.id,
        first_name: profile.first_name,
        last_name: profile.last_name,
        email: profile.email,
        username: profile.username,
        canonical_username: profile.canonical_username,
        job_title: profile.job_title,
        department: profile.department,
        locale: profile.locale,
        time_zone: profile.time_zone,
        ..CurrentProfile::default()
    }
    .with_assignments(roles, extensions)
}

/// True for failures that may pass when the call is made again later. A job pauses and makes
/// such a call again (up to `identity_attempts` times), beyond the client's own quick retries
/// of UNAVAILABLE, to ride out an identity restart, a rate limit or a lost race: safe, since
/// every call here only reads or writes each item on its idempotency key.
pub fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
    )
}

/// The canonical name of a gRPC code number, as written in reports: `ALREADY_EXISTS`.
pub fn code_name(code: i32) -> &'static str {
    roster_runtime::metrics::code_name(Code::from_i32(code))
}

/// Identity's refusal of a BatchGetProfiles without ids, as a version that does not read
/// `extension_numbers` answers it (it requires 1 to 1,000 ids).
fn predates_extension_numbers(status: &Status) -> bool {
    status.code() == Code::InvalidArgument && status.message().starts_with("invalid request: ids:")
}

#[cfg(test)]
mod tests {
    use roster_runtime::ApiError;

    use super::*;

    #[test]
    fn an_identity_without_extension_numbers_is_told_by_its_refusal() {
        // What identity answered before the field, for a request without ids.
        let old: Status = ApiError::invalid("ids", "must hold 1 to 1000 ids").into();
        assert!(predates_extension_numbers(&old), "{old:?}");
        // What it answers now for a bad number, or any other failure: not that.
        let bad: Status = ApiError::invalid("extension_numbers[3]", "must hold digits").into();
        assert!(!predates_extension_numbers(&bad));
        let unavailable = Status::unavailable("invalid request: ids: down");
        assert!(!predates_extension_numbers(&unavailable));
    }
}
