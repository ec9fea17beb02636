//! Notification's typed client.

use roster_proto::notification::v1 as notification;
use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tonic::transport::Channel;

use super::{Caller, caller, unary};

/// Notification's RPCs from one caller.
#[derive(Clone)]
pub struct Notifications {
    caller: Caller,
    notifications: NotificationServiceClient<Channel>,
}

impl Notifications {
    /// A client of notification on `channel`, calling with `key`.
    pub fn new(channel: Channel, key: &str) -> Notifications {
        Notifications {
            caller: Caller::with_key(key),
            notifications: NotificationServiceClient::new(channel),
        }
    }

    caller!(Notifications);

    unary! { notifications, notification:
        send_email(SendEmailRequest) -> SendEmailResponse;
        get_notification(GetNotificationRequest) -> GetNotificationResponse;
        list_notifications(ListNotificationsRequest) -> ListNotificationsResponse;
        retry_notification(RetryNotificationRequest) -> RetryNotificationResponse;
        cancel_notification(CancelNotificationRequest) -> CancelNotificationResponse;
    }
}

/// A welcome email for Ada of Acme to `recipient`, for `account_id`, under `request_id`.
pub fn welcome_email(
    request_id: &str,
    account_id: &str,
    recipient: &str,
) -> notification::SendEmailRequest {
    notification::SendEmailRequest {
        request_id: request_id.into(),
        account_id: account_id.into(),
        recipient: recipient.into(),
        template: "welcome".into(),
        locale: "en".into(),
        variables: [
            ("first_name".to_owned(), "Ada".to_owned()),
            ("username".to_owned(), "ada".to_owned()),
        ]
        .into(),
        account_display_name: "Acme".into(),
    }
}
