//! gRPC handlers of NotificationService: decode the request, call the domain and the store, map
//! the result. `SendEmail` only queues; the workers in [`crate::delivery`] send.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roster_proto::notification::v1 as pb;
use roster_proto::notification::v1::notification_service_server::NotificationService;
use roster_runtime::ApiError;
use roster_runtime::auth::caller;
use roster_runtime::error::FieldViolation;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::FieldError;
use crate::domain::request::{EmailRequest, RawEmailRequest, parse_uuid};
use crate::domain::state::DeliveryState;
use crate::domain::templates::Templates;
use crate::store::{Cursor, Enqueued, NewNotification, Store, notification};

/// NotificationService over the notification store.
pub struct NotificationApi {
    store: Store,
    templates: Arc<Templates>,
    wake: Arc<Notify>,
    message_id_domain: String,
}

impl NotificationApi {
    pub fn new(
        store: Store,
        templates: Arc<Templates>,
        wake: Arc<Notify>,
        message_id_domain: String,
    ) -> Self {
        Self {
            store,
            templates,
            wake,
            message_id_domain,
        }
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn send_email(
        &self,
        request: Request<pb::SendEmailRequest>,
    ) -> Result<Response<pb::SendEmailResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let email = EmailRequest::parse(RawEmailRequest {
            request_id: &request.request_id,
            account_id: &request.account_id,
            recipient: &request.recipient,
            template: &request.template,
            locale: &request.locale,
            variables: &request.variables,
            account_display_name: &request.account_display_name,
        })
        .map_err(invalid)?;
        caller.require_account(email.account_id)?;

        let id = Uuid::now_v7();
        let variables = serde_json::to_string(&email.variables).map_err(ApiError::internal)?;
        let new = NewNotification {
            id,
            account_id: email.account_id,
            recipient: email.recipient.to_string(),
            template: email.template.name().to_owned(),
            locale: self.templates.resolve_locale(email.template, &email.locale),
            requested_locale: email.locale,
            variables,
            account_display_name: email.account_display_name,
            message_id: format!("<{id}@{}>", self.message_id_domain),
        };
        let notification = match self
            .store
            .enqueue(&caller.name, &email.request_id, new)
            .await
            .map_err(ApiError::from)?
        {
            Enqueued::Created(notification) => {
                tracing::info!(notification = %notification.id, template = %notification.template, "queued");
                self.wake.notify_one();
                notification
            }
            Enqueued::Replayed(notification) => {
                // Request ids are scoped to the caller; a key that lost access to the account
                // since then must not learn about the notification.
                if !caller.may_access(notification.account_id) {
                    return Err(ApiError::NotFound {
                        resource: "notification",
                    }
                    .into());
                }
                tracing::info!(notification = %notification.id, "repeated request_id; nothing queued");
                notification
            }
        };
        Ok(Response::new(pb::SendEmailResponse {
            notification: Some(to_proto(&notification)),
        }))
    }

    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::GetNotificationResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut errors = Vec::new();
        let id = parse_uuid("notification_id", &request.notification_id, &mut errors)
            .ok_or_else(|| invalid(errors))?;
        // Another account's notification is answered exactly like one that does not exist.
        let notification = self
            .store
            .find(id)
            .await
            .map_err(ApiError::from)?
            .filter(|notification| caller.may_access(notification.account_id))
            .ok_or(ApiError::NotFound {
                resource: "notification",
            })?;
        Ok(Response::new(pb::GetNotificationResponse {
            notification: Some(to_proto(&notification)),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut errors = Vec::new();
        let account_id = parse_uuid("account_id", &request.account_id, &mut errors);
        let page_size = match request.page_size {
            0 => Some(100),
            size @ 1..=1000 => Some(size as u64),
            _ => {
                errors.push(FieldError::new(
                    "page_size",
                    "must be between 1 and 1000 (0 means 100)",
                ));
                None
            }
        };
        let state = match pb::NotificationState::try_from(request.state) {
            Ok(state) => state_from_proto(state),
            Err(_) => {
                errors.push(FieldError::new("state", "is not a NotificationState"));
                None
            }
        };
        let (Some(account_id), Some(page_size)) = (account_id, page_size) else {
            return Err(invalid(errors).into());
        };
        let cursor = PageToken::parse(&request.page_token)
            .and_then(|token| {
                token
                    .map(|token| token.cursor_for(account_id, request.state))
                    .transpose()
            })
            .unwrap_or_else(|()| {
                errors.push(FieldError::new(
                    "page_token",
                    "is not a token that ListNotifications returned for this account and state",
                ));
                None
            });
        if !errors.is_empty() {
            return Err(invalid(errors).into());
        }
        caller.require_account(account_id)?;

        let mut notifications = self
            .store
            .list(account_id, state, cursor, page_size + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = if notifications.len() as u64 > page_size {
            notifications.truncate(page_size as usize);
            notifications
                .last()
                .map(|last| {
                    PageToken {
                        account_id,
                        state: request.state,
                        cursor: Cursor {
                            created_at: last.created_at,
                            id: last.id,
                        },
                    }
                    .encode()
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: notifications.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid_fields(
        errors
            .into_iter()
            .map(|error| FieldViolation::new(error.field, error.description))
            .collect(),
    )
}

/// The opaque `next_page_token`: where the page ends, and the request it belongs to, so a token
/// cannot be replayed against another account or filter.
struct PageToken {
    account_id: Uuid,
    state: i32,
    cursor: Cursor,
}

impl PageToken {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "1|{}|{}|{}|{}",
            self.account_id.simple(),
            self.state,
            self.cursor.created_at.timestamp_micros(),
            self.cursor.id.simple()
        ))
    }

    fn parse(token: &str) -> Result<Option<Self>, ()> {
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| ())?;
        let text = String::from_utf8(bytes).map_err(|_| ())?;
        let mut parts = text.split('|');
        let (Some("1"), Some(account), Some(state), Some(micros), Some(id), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(());
        };
        let created_at = micros
            .parse()
            .ok()
            .and_then(chrono::DateTime::from_timestamp_micros)
            .ok_or(())?;
        Ok(Some(Self {
            account_id: Uuid::try_parse(account).map_err(|_| ())?,
            state: state.parse().map_err(|_| ())?,
            cursor: Cursor {
                created_at,
                id: Uuid::try_parse(id).map_err(|_| ())?,
            },
        }))
    }

    fn cursor_for(self, account_id: Uuid, state: i32) -> Result<Cursor, ()> {
        if self.account_id == account_id && self.state == state {
            Ok(self.cursor)
        } else {
            Err(())
        }
    }
}

fn state_from_proto(state: pb::NotificationState) -> Option<DeliveryState> {
    match state {
        pb::NotificationState::Unspecified => None,
        pb::NotificationState::Queued => Some(DeliveryState::Queued),
        pb::NotificationState::Sending => Some(DeliveryState::Sending),
        pb::NotificationState::Sent => Some(DeliveryState::Sent),
        pb::NotificationState::Retrying => Some(DeliveryState::Retrying),
        pb::NotificationState::Failed => Some(DeliveryState::Failed),
    }
}

fn state_to_proto(state: Option<DeliveryState>) -> pb::NotificationState {
    match state {
        None => pb::NotificationState::Unspecified,
        Some(DeliveryState::Queued) => pb::NotificationState::Queued,
        Some(DeliveryState::Sending) => pb::NotificationState::Sending,
        Some(DeliveryState::Sent) => pb::NotificationState::Sent,
        Some(DeliveryState::Retrying) => pb::NotificationState::Retrying,
        Some(DeliveryState::Failed) => pb::NotificationState::Failed,
    }
}

fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn to_proto(model: &notification::Model) -> pb::Notification {
    let state = DeliveryState::parse(&model.state);
    pb::Notification {
        id: model.id.to_string(),
        account_id: model.account_id.to_string(),
        recipient: model.recipient.clone(),
        template: model.template.clone(),
        locale: model.locale.clone(),
        state: state_to_proto(state) as i32,
        attempts: model.attempts,
        last_error: model.last_error.clone().unwrap_or_default(),
        // Fixed at enqueue, but shown (as the contract says) once the email was first rendered.
        message_id: if model.attempts > 0 {
            model.message_id.clone()
        } else {
            String::new()
        },
        create_time: Some(timestamp(model.created_at)),
        update_time: Some(timestamp(model.updated_at)),
        next_attempt_time: match state {
            Some(DeliveryState::Queued | DeliveryState::Retrying) => {
                model.next_attempt_at.map(timestamp)
            }
            _ => None,
        },
        sent_time: match state {
            Some(DeliveryState::Sent) => model.sent_at.map(timestamp),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_request() {
        let account = Uuid::new_v4();
        let token = PageToken {
            account_id: account,
            state: 3,
            cursor: Cursor {
                created_at: crate::store::now(),
                id: Uuid::now_v7(),
            },
        };
        let cursor = token.cursor;
        let parsed = PageToken::parse(&token.encode()).unwrap().unwrap();
        assert_eq!(parsed.cursor_for(account, 3), Ok(cursor));
        let parsed = PageToken::parse(&token.encode()).unwrap().unwrap();
        assert_eq!(parsed.cursor_for(account, 0), Err(()));
        let parsed = PageToken::parse(&token.encode()).unwrap().unwrap();
        assert_eq!(parsed.cursor_for(Uuid::new_v4(), 3), Err(()));
        assert!(PageToken::parse("garbage!").is_err());
        assert!(PageToken::parse("").unwrap().is_none());
    }
}
