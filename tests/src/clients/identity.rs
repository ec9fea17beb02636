//! Identity's typed client: its three services from one caller.

use roster_proto::identity::v1 as identity;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_proto::identity::v1::credential_service_client::CredentialServiceClient;
use roster_proto::identity::v1::event_service_client::EventServiceClient;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use tonic::transport::Channel;

use super::{Caller, caller, server_streaming, unary};
use crate::{ADMIN_KEY, TestServer};

/// How long the audit log may take to number an event: events are numbered shortly after their
/// transactions end, on PostgreSQL once every write transaction of the cluster older than
/// theirs has ended — other tests' included (a migration in one transaction, a held row lock).
pub const NUMBERING_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Identity's three services from one caller.
#[derive(Clone)]
pub struct Identity {
    caller: Caller,
    accounts: AccountServiceClient<Channel>,
    profiles: ProfileServiceClient<Channel>,
    credentials: CredentialServiceClient<Channel>,
    events: EventServiceClient<Channel>,
}

impl Identity {
    /// A client of identity on `channel`, calling with `key`.
    pub fn new(channel: Channel, key: &str) -> Identity {
        Identity {
            caller: Caller::with_key(key),
            accounts: AccountServiceClient::new(channel.clone()),
            profiles: ProfileServiceClient::new(channel.clone()),
            credentials: CredentialServiceClient::new(channel.clone()),
            events: EventServiceClient::new(channel),
        }
    }

    /// A client of the identity `server`, calling with the administrator's key.
    pub async fn connect(server: &TestServer) -> Identity {
        Identity::new(server.channel().await, ADMIN_KEY)
    }

    caller!(Identity);

    /// The same caller, sending and reading messages of any size, so that only the server's
    /// limits apply.
    pub fn unbounded(&self) -> Identity {
        Identity {
            caller: self.caller.clone(),
            accounts: self
                .accounts
                .clone()
                .max_encoding_message_size(usize::MAX)
                .max_decoding_message_size(usize::MAX),
            profiles: self
                .profiles
                .clone()
                .max_encoding_message_size(usize::MAX)
                .max_decoding_message_size(usize::MAX),
            credentials: self
                .credentials
                .clone()
                .max_encoding_message_size(usize::MAX)
                .max_decoding_message_size(usize::MAX),
            events: self.events.clone(),
        }
    }

    /// The same caller, its requests compressed with gzip.
    pub fn gzip(&self) -> Identity {
        let gzip = tonic::codec::CompressionEncoding::Gzip;
        Identity {
            caller: self.caller.clone(),
            accounts: self.accounts.clone().send_compressed(gzip),
            profiles: self.profiles.clone().send_compressed(gzip),
            credentials: self.credentials.clone().send_compressed(gzip),
            events: self.events.clone().send_compressed(gzip),
        }
    }

    unary! { accounts, identity:
        create_account(CreateAccountRequest) -> CreateAccountResponse;
        get_account(GetAccountRequest) -> GetAccountResponse;
        update_account(UpdateAccountRequest) -> UpdateAccountResponse;
        list_accounts(ListAccountsRequest) -> ListAccountsResponse;
        delete_account(DeleteAccountRequest) -> DeleteAccountResponse;
        undelete_account(UndeleteAccountRequest) -> UndeleteAccountResponse;
        get_password_policy(GetPasswordPolicyRequest) -> GetPasswordPolicyResponse;
        update_password_policy(UpdatePasswordPolicyRequest) -> UpdatePasswordPolicyResponse;
        create_scim_token(CreateScimTokenRequest) -> CreateScimTokenResponse;
        list_scim_tokens(ListScimTokensRequest) -> ListScimTokensResponse;
        revoke_scim_token(RevokeScimTokenRequest) -> RevokeScimTokenResponse;
    }

    unary! { profiles, identity:
        create_profile(CreateProfileRequest) -> CreateProfileResponse;
        get_profile(GetProfileRequest) -> GetProfileResponse;
        list_profiles(ListProfilesRequest) -> ListProfilesResponse;
        update_profile(UpdateProfileRequest) -> UpdateProfileResponse;
        delete_profile(DeleteProfileRequest) -> DeleteProfileResponse;
        undelete_profile(UndeleteProfileRequest) -> UndeleteProfileResponse;
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
        clear_sign_in_throttle(ClearSignInThrottleRequest) -> ClearSignInThrottleResponse;
        get_sign_in_state(GetSignInStateRequest) -> GetSignInStateResponse;
    }

    unary! { events, identity:
        list_events(ListEventsRequest) -> ListEventsResponse;
    }

    server_streaming! { events, identity:
        watch_events(WatchEventsRequest) -> WatchEventsResponse;
    }

    /// Every event of `account_id` the caller may read, oldest first, through ListEvents
    /// paging.
    pub async fn all_events(&self, account_id: &str) -> Vec<identity::Event> {
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_events(identity::ListEventsRequest {
                    account_id: account_id.to_owned(),
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("ListEvents");
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                events.reverse();
                return events;
            }
            page_token = page.next_page_token;
        }
    }

    /// Every event of `account_id`, oldest first, once the log has numbered at least `count`
    /// of them; fails after [`NUMBERING_WAIT`].
    pub async fn numbered_events(&self, account_id: &str, count: usize) -> Vec<identity::Event> {
        self.events_once(account_id, &format!("{count} events"), |events| {
            events.len() >= count
        })
        .await
    }

    /// Every event of `account_id`, oldest first, once the log has numbered one of
    /// `event_type`; fails after [`NUMBERING_WAIT`].
    pub async fn events_through(&self, account_id: &str, event_type: &str) -> Vec<identity::Event> {
        self.events_once(account_id, event_type, |events| {
            events.iter().any(|event| event.r#type == event_type)
        })
        .await
    }

    /// Every event of `account_id`, oldest first, once `numbered` holds of them (read every
    /// 25 ms); fails after [`NUMBERING_WAIT`], naming `what` and the types of the events read.
    pub async fn events_once(
        &self,
        account_id: &str,
        what: &str,
        numbered: impl Fn(&[identity::Event]) -> bool,
    ) -> Vec<identity::Event> {
        let deadline = tokio::time::Instant::now() + NUMBERING_WAIT;
        loop {
            let events = self.all_events(account_id).await;
            if numbered(&events) {
                return events;
            }
            if tokio::time::Instant::now() >= deadline {
                let types: Vec<&str> = events.iter().map(|event| event.r#type.as_str()).collect();
                panic!(
                    "{what} not in the log of {account_id:?} after {NUMBERING_WAIT:?}: {types:?}"
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
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

    /// Creates a SCIM token named `name` in `account_id` that sends no welcome emails; answers
    /// the token and its secret.
    pub async fn scim_token(&self, account_id: &str, name: &str) -> (identity::ScimToken, String) {
        let created = self
            .create_scim_token(identity::CreateScimTokenRequest {
                account_id: account_id.into(),
                display_name: name.into(),
                ..Default::default()
            })
            .await
            .expect("SCIM token created");
        (created.token.expect("token"), created.secret)
    }

    /// Every SCIM token of `account_id`, newest first, through ListScimTokens paging.
    pub async fn all_scim_tokens(&self, account_id: &str) -> Vec<identity::ScimToken> {
        let mut tokens = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_scim_tokens(identity::ListScimTokensRequest {
                    account_id: account_id.to_owned(),
                    page_size: 1000,
                    page_token,
                })
                .await
                .expect("ListScimTokens");
            tokens.extend(page.tokens);
            if page.next_page_token.is_empty() {
                return tokens;
            }
            page_token = page.next_page_token;
        }
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

    /// The results of a BatchUpsertProfiles call that must be answered.
    pub async fn upserted(
        &self,
        request: identity::BatchUpsertProfilesRequest,
    ) -> Vec<identity::ProfileUpsertResult> {
        self.batch_upsert_profiles(request)
            .await
            .expect("BatchUpsertProfiles")
            .results
    }

    /// Every current profile of `account_id`, through ListProfiles paging.
    pub async fn all_profiles(&self, account_id: &str) -> Vec<identity::Profile> {
        let mut profiles = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_profiles(identity::ListProfilesRequest {
                    account_id: account_id.to_owned(),
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("ListProfiles");
            profiles.extend(page.profiles);
            if page.next_page_token.is_empty() {
                return profiles;
            }
            page_token = page.next_page_token;
        }
    }

    /// Sets `profile`'s password to `password` the way a user does: a reset link sent, its
    /// token read from `server`'s outbox, the reset completed.
    pub async fn set_password(
        &self,
        server: &TestServer,
        profile: &identity::Profile,
        password: &str,
    ) {
        self.send_password_reset(identity::SendPasswordResetRequest {
            profile_id: profile.id.clone(),
            email: profile.email.clone(),
            ..Default::default()
        })
        .await
        .expect("reset sent");
        let token = crate::newest_reset_token(server).await;
        self.complete_password_reset(identity::CompletePasswordResetRequest {
            token,
            new_password: password.into(),
            request_id: String::new(),
        })
        .await
        .expect("password set");
    }

    /// Gives the profile `profile_id` the extension `number` of `kind`; the profile after it.
    pub async fn give_extension(
        &self,
        profile_id: &str,
        number: &str,
        kind: identity::ExtensionKind,
    ) -> identity::Profile {
        self.assign_extension(identity::AssignExtensionRequest {
            profile_id: profile_id.to_owned(),
            extension: Some(identity::Extension {
                number: number.to_owned(),
                kind: kind as i32,
            }),
            ..Default::default()
        })
        .await
        .expect("extension given")
        .profile
        .expect("profile")
    }

    /// Creates a profile named `first_name last_name` with `email` (the username) in
    /// `account_id`.
    pub async fn person(
        &self,
        account_id: &str,
        first_name: &str,
        last_name: &str,
        email: &str,
    ) -> identity::Profile {
        self.create_profile(identity::CreateProfileRequest {
            account_id: account_id.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            email: email.to_owned(),
            ..Default::default()
        })
        .await
        .expect("profile created")
        .profile
        .expect("profile")
    }
}

/// An UpdateAccount that renames `account_id` to `display_name` and changes nothing else.
pub fn rename_account(account_id: &str, display_name: &str) -> identity::UpdateAccountRequest {
    identity::UpdateAccountRequest {
        account: Some(identity::Account {
            id: account_id.into(),
            display_name: display_name.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
        ..Default::default()
    }
}

/// A BatchUpsertProfiles item for Alice Liddell: `id` empty creates, `username` empty defaults.
pub fn upsert_item(key: &str, id: &str, email: &str, username: &str) -> identity::ProfileUpsert {
    identity::ProfileUpsert {
        idempotency_key: key.into(),
        id: id.into(),
        first_name: "Alice".into(),
        last_name: "Liddell".into(),
        email: email.into(),
        username: username.into(),
        ..Default::default()
    }
}
