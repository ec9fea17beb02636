//! gRPC handlers of NotificationService.

use roster_proto::notification::v1::notification_service_server::NotificationService;

/// NotificationService. Its RPCs answer UNIMPLEMENTED until delivery lands.
pub struct NotificationApi;

impl NotificationService for NotificationApi {}
