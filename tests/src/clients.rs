//! Typed clients of each service, for tests: one method per unary RPC, taking the request
//! message and answering the response message or the refusal, with the caller's key attached.
//! A client is cheap to clone and every method takes `&self`, so concurrent calls need no
//! ceremony. `refusal` reads what a caller can act on from a refused call.

use roster_proto::identity::v1 as identity;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_proto::identity::v1::credential_service_client::CredentialServiceClient;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_proto::imports::v1 as imports;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_proto::notification::v1 as notification;
use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{ADMIN_KEY, TestServer, authed};

/// One method per unary RPC of `$client` (a field holding a tonic client): the request message
/// in, the response message (or the refusal) out, under the client's key.
macro_rules! unary {
    ($client:ident, $package:ident: $($method:ident($request:ident) -> $response:ident;)+) => {$(
        #[doc = concat!("Calls `", stringify!($method), "` with the client's key.")]
        pub async fn $method(
            &self,
            request: $package::$request,
        ) -> Result<$package::$response, Status> {
            self.$client
                .clone()
                .$method(authed(&self.key, request))
                .await
                .map(tonic::Response::into_inner)
        }
    )+};
}

/// Identity's three services under one key.
#[derive(Clone)]
pub struct Identity {
    key: String,
    accounts: AccountServiceClient<Channel>,
    profiles: ProfileServiceClient<Channel>,
    credentials: CredentialServiceClient<Channel>,
}

impl Identity {
    /// A client of identity on `channel`, calling with `key`.
    pub fn new(channel: Channel, key: &str) -> Identity {
        Identity {
            key: key.to_owned(),
            accounts: AccountServiceClient::new(channel.clone()),
            profiles: ProfileServiceClient::new(channel.clone()),
            credentials: CredentialServiceClient::new(channel),
        }
    }

    /// A client of the identity `server`, calling with the administrator's key.
    pub async fn connect(server: &TestServer) -> Identity {
        Identity::new(server.channel().await, ADMIN_KEY)
    }

    /// The same connection, calling with another key.
    pub fn with_key(&self, key: &str) -> Identity {
        Identity {
            key: key.to_owned(),
            ..self.clone()
        }
    }

    unary! { accounts, identity:
        create_account(CreateAccountRequest) -> CreateAccountResponse;
        get_account(GetAccountRequest) -> GetAccountResponse;
        update_account(UpdateAccountRequest) -> UpdateAccountResponse;
        list_accounts(ListAccountsRequest) -> ListAccountsResponse;
        get_password_policy(GetPasswordPolicyRequest) -> GetPasswordPolicyResponse;
        update_password_policy(UpdatePasswordPolicyRequest) -> UpdatePasswordPolicyResponse;
    }

    unary! { profiles, identity:
        create_profile(CreateProfileRequest) -> CreateProfileResponse;
        get_profile(GetProfileRequest) -> GetProfileResponse;
        list_profiles(ListProfilesRequest) -> ListProfilesResponse;
        update_profile(UpdateProfileRequest) -> UpdateProfileResponse;
        delete_profile(DeleteProfileRequest) -> DeleteProfileResponse;
        check_username(CheckUsernameRequest) -> CheckUsernameResponse;
        batch_check_usernames(BatchCheckUsernamesRequest) -> BatchCheckUsernamesResponse;
        batch_get_profiles(BatchGetProfilesRequest) -> BatchGetProfilesResponse;
        batch_upsert_profiles(BatchUpsertProfilesRequest) -> BatchUpsertProfilesResponse;
        assign_roles(AssignRolesRequest) -> AssignRolesResponse;
        unassign_roles(UnassignRolesRequest) -> UnassignRolesResponse;
        assign_extension(AssignExtensionRequest) -> AssignExtensionResponse;
        unassign_extension(UnassignExtensionRequest) -> UnassignExtensionResponse;
    }

    unary! { credentials, identity:
        get_password_requirements(GetPasswordRequirementsRequest) -> GetPasswordRequirementsResponse;
        check_password(CheckPasswordRequest) -> CheckPasswordResponse;
        send_password_reset(SendPasswordResetRequest) -> SendPasswordResetResponse;
        complete_password_reset(CompletePasswordResetRequest) -> CompletePasswordResetResponse;
        verify_password(VerifyPasswordRequest) -> VerifyPasswordResponse;
    }

    /// Creates an account named `name` and answers it.
    pub async fn account(&self, name: &str) -> identity::Account {
        self.create_account(identity::CreateAccountRequest {
            display_name: name.into(),
            ..Default::default()
        })
        .await
        .expect("account created")
        .account
        .expect("account")
    }

    /// Creates Alice Liddell at `email` in `account_id` and answers her profile.
    pub async fn alice(&self, account_id: &str, email: &str) -> identity::Profile {
        self.create_profile(identity::CreateProfileRequest {
            account_id: account_id.into(),
            first_name: "Alice".into(),
            last_name: "Liddell".into(),
            email: email.into(),
            ..Default::default()
        })
        .await
        .expect("profile created")
        .profile
        .expect("profile")
    }

    /// The profile `id` as it is now.
    pub async fn profile(&self, id: &str) -> identity::Profile {
        self.get_profile(identity::GetProfileRequest { id: id.into() })
            .await
            .expect("profile read")
            .profile
            .expect("profile")
    }
}

/// Bulk import's unary RPCs under one key (its streams have helpers of their own in
/// [`crate::imports`]).
#[derive(Clone)]
pub struct Imports {
    key: String,
    imports: ImportServiceClient<Channel>,
}

impl Imports {
    /// A client of bulk import on `channel`, calling with `key`.
    pub fn new(channel: Channel, key: &str) -> Imports {
        Imports {
            key: key.to_owned(),
            imports: ImportServiceClient::new(channel),
        }
    }

    /// The same connection, calling with another key.
    pub fn with_key(&self, key: &str) -> Imports {
        Imports {
            key: key.to_owned(),
            ..self.clone()
        }
    }

    unary! { imports, imports:
        create_import(CreateImportRequest) -> CreateImportResponse;
        get_import(GetImportRequest) -> GetImportResponse;
        list_imports(ListImportsRequest) -> ListImportsResponse;
        list_import_rows(ListImportRowsRequest) -> ListImportRowsResponse;
        submit_import(SubmitImportRequest) -> SubmitImportResponse;
        cancel_import(CancelImportRequest) -> CancelImportResponse;
    }
}

/// Notification's RPCs under one key.
#[derive(Clone)]
pub struct Notifications {
    key: String,
    notifications: NotificationServiceClient<Channel>,
}

impl Notifications {
    /// A client of notification on `channel`, calling with `key`.
    pub fn new(channel: Channel, key: &str) -> Notifications {
        Notifications {
            key: key.to_owned(),
            notifications: NotificationServiceClient::new(channel),
        }
    }

    /// The same connection, calling with another key.
    pub fn with_key(&self, key: &str) -> Notifications {
        Notifications {
            key: key.to_owned(),
            ..self.clone()
        }
    }

    unary! { notifications, notification:
        send_email(SendEmailRequest) -> SendEmailResponse;
        get_notification(GetNotificationRequest) -> GetNotificationResponse;
        list_notifications(ListNotificationsRequest) -> ListNotificationsResponse;
    }
}

/// What a caller can act on in a refused call: its code, its `ErrorInfo.reason` (empty when it
/// has none) and each `BadRequest` field violation as `field: description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub reason: String,
    pub violations: Vec<String>,
}

/// The refusal a status carries.
pub fn refusal(status: &Status) -> Refusal {
    Refusal {
        code: status.code(),
        reason: crate::reason(status).unwrap_or_default(),
        violations: status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations
                    .into_iter()
                    .map(|violation| format!("{}: {}", violation.field, violation.description))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
