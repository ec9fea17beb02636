//! gRPC handlers of NotificationService, transport only: decode the request, call one use case
//! of [`crate::app`], encode the result. `SendEmail` only queues; the workers in
//! [`crate::delivery`] send.
//!
//! - [`convert`]: domain values to messages, and the service's error to a status.
//! - [`page_token`]: the opaque token of `ListNotifications`.

mod convert;
mod page_token;

use roster_proto::notification::v1 as pb;
use roster_proto::notification::v1::notification_service_server::NotificationService;
use roster_runtime::ApiError;
use roster_runtime::auth::caller;
use roster_runtime::error::FieldViolation;
use roster_runtime::request::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page_size, parse_id};
use tonic::{Request, Response, Status};

use crate::app::{ListQuery, Notifications};
use crate::domain::request::RawEmailRequest;
use convert::{state_from_proto, to_proto};
use page_token::PageToken;

/// NotificationService over the use cases.
pub struct NotificationApi {
    notifications: Notifications,
}

impl NotificationApi {
    pub fn new(notifications: Notifications) -> Self {
        Self { notifications }
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
        let notification = self
            .notifications
            .send_email(
                &caller,
                RawEmailRequest {
                    request_id: &request.request_id,
                    account_id: &request.account_id,
                    recipient: &request.recipient,
                    template: &request.template,
                    locale: &request.locale,
                    variables: &request.variables,
                    account_display_name: &request.account_display_name,
                },
            )
            .await?;
        Ok(Response::new(pb::SendEmailResponse {
            notification: Some(to_proto(&notification)),
        }))
    }

    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::GetNotificationResponse>, Status> {
        let caller = caller(&request)?;
        let id = parse_id("notification_id", &request.get_ref().notification_id)?;
        let notification = self.notifications.get_notification(&caller, id).await?;
        Ok(Response::new(pb::GetNotificationResponse {
            notification: Some(to_proto(&notification)),
        }))
    }

    async fn retry_notification(
        &self,
        request: Request<pb::RetryNotificationRequest>,
    ) -> Result<Response<pb::RetryNotificationResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = parse_id("notification_id", &request.notification_id)?;
        let notification = self
            .notifications
            .retry_notification(&caller, id, &request.request_id)
            .await?;
        Ok(Response::new(pb::RetryNotificationResponse {
            notification: Some(to_proto(&notification)),
        }))
    }

    async fn cancel_notification(
        &self,
        request: Request<pb::CancelNotificationRequest>,
    ) -> Result<Response<pb::CancelNotificationResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let id = parse_id("notification_id", &request.notification_id)?;
        let notification = self
            .notifications
            .cancel_notification(&caller, id, &request.request_id)
            .await?;
        Ok(Response::new(pb::CancelNotificationResponse {
            notification: Some(to_proto(&notification)),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        // Every bad field is reported, not only the first.
        let mut violations = Vec::new();
        let account_id = collect(parse_id("account_id", &request.account_id), &mut violations)?;
        let page_size = page_size(request.page_size)
            .map_err(|_| {
                violations.push(FieldViolation::new(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
                ));
            })
            .ok();
        let state = match pb::NotificationState::try_from(request.state) {
            Ok(state) => state_from_proto(state),
            Err(_) => {
                violations.push(FieldViolation::new("state", "is not a NotificationState"));
                None
            }
        };
        let (Some(account_id), Some(page_size)) = (account_id, page_size) else {
            return Err(ApiError::invalid_fields(violations).into());
        };
        let cursor = PageToken::parse(&request.page_token)
            .and_then(|token| {
                token
                    .map(|token| token.cursor_for(account_id, request.state))
                    .transpose()
            })
            .unwrap_or_else(|()| {
                violations.push(FieldViolation::new(
                    "page_token",
                    "is not a token that ListNotifications returned for this account and state",
                ));
                None
            });
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations).into());
        }

        let page = self
            .notifications
            .list_notifications(
                &caller,
                ListQuery {
                    account_id,
                    state,
                    cursor,
                    page_size,
                },
            )
            .await?;
        let next_page_token = page
            .next
            .map(|cursor| {
                PageToken {
                    account_id,
                    state: request.state,
                    cursor,
                }
                .encode()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: page.notifications.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }
}

/// The value of a field parsed by `roster_runtime::request`, or `None` with its violations added
/// to `violations`, so that one answer lists every bad field.
fn collect<T>(
    parsed: Result<T, ApiError>,
    violations: &mut Vec<FieldViolation>,
) -> Result<Option<T>, ApiError> {
    match parsed {
        Ok(value) => Ok(Some(value)),
        Err(ApiError::InvalidArgument {
            violations: found, ..
        }) => {
            violations.extend(found);
            Ok(None)
        }
        Err(other) => Err(other),
    }
}
