//! Tenant isolation: a key limited to account A never reads or changes account B. Naming B in
//! a request is PERMISSION_DENIED; reaching B's object by its id is NOT_FOUND, byte-identical
//! to an id that does not exist.

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_runtime::Service;
use roster_tests::{ADMIN_KEY, TestKey, TestServer, authed, both_backends};
use tonic::Code;

const KEY_A: &str = "key-for-account-a";

/// Everything a caller can observe of a refusal.
fn observable(status: &tonic::Status) -> (Code, String, Vec<u8>) {
    (
        status.code(),
        status.message().to_owned(),
        status.details().to_vec(),
    )
}

both_backends! {
    async fn a_key_for_one_account_cannot_reach_another(backend) {
        let Some(server) = TestServer::spawn(Service::Identity, backend).await else { return };
        let channel = server.channel().await;
        let mut admin_accounts = AccountServiceClient::new(channel.clone());
        let mut admin_profiles = ProfileServiceClient::new(channel);
        let mut account_ids = Vec::new();
        for name in ["A", "B"] {
            let account = admin_accounts
                .create_account(authed(ADMIN_KEY, pb::CreateAccountRequest {
                    display_name: name.into(),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner()
                .account
                .unwrap();
            account_ids.push(account.id);
        }
        let (a, b) = (account_ids[0].clone(), account_ids[1].clone());
        let b_profile = admin_profiles
            .create_profile(authed(ADMIN_KEY, pb::CreateProfileRequest {
                account_id: b.clone(),
                first_name: "Bea".into(),
                last_name: "B".into(),
                email: "bea@b.example".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();

        let scoped = TestKey::limited(
            KEY_A,
            &["accounts", "profiles"],
            &[a.parse().unwrap()],
        );
        let server = server.restart_with_keys(vec![scoped]).await;
        let channel = server.channel().await;
        let mut accounts = AccountServiceClient::new(channel.clone());
        let mut profiles = ProfileServiceClient::new(channel.clone());
        let nobody = uuid::Uuid::now_v7().to_string();

        // Requests that name account B.
        let denied = [
            accounts.create_account(authed(KEY_A, pb::CreateAccountRequest {
                display_name: "C".into(),
                ..Default::default()
            })).await.map(|_| ()),
            accounts.get_password_policy(authed(KEY_A, pb::GetPasswordPolicyRequest {
                account_id: b.clone(),
            })).await.map(|_| ()),
            profiles.create_profile(authed(KEY_A, pb::CreateProfileRequest {
                account_id: b.clone(),
                first_name: "Eve".into(),
                last_name: "E".into(),
                email: "eve@b.example".into(),
                ..Default::default()
            })).await.map(|_| ()),
            profiles.list_profiles(authed(KEY_A, pb::ListProfilesRequest {
                account_id: b.clone(),
                ..Default::default()
            })).await.map(|_| ()),
            profiles.batch_get_profiles(authed(KEY_A, pb::BatchGetProfilesRequest {
                account_id: b.clone(),
                ids: vec![b_profile.id.clone()],
            })).await.map(|_| ()),
            profiles.batch_upsert_profiles(authed(KEY_A, pb::BatchUpsertProfilesRequest {
                account_id: b.clone(),
                items: vec![pb::ProfileUpsert {
                    idempotency_key: "x".into(),
                    id: b_profile.id.clone(),
                    first_name: "Eve".into(),
                    last_name: "E".into(),
                    email: "eve@b.example".into(),
                    ..Default::default()
                }],
            })).await.map(|_| ()),
        ];
        for (n, result) in denied.into_iter().enumerate() {
            let status = result.expect_err("refused");
            assert_eq!(status.code(), Code::PermissionDenied, "call {n}: {status:?}");
        }

        // Objects of account B reached by id: indistinguishable from ids that do not exist.
        let get_account = |id: String| {
            let mut accounts = accounts.clone();
            async move { accounts.get_account(authed(KEY_A, pb::GetAccountRequest { id })).await.unwrap_err() }
        };
        assert_eq!(observable(&get_account(b.clone()).await), observable(&get_account(nobody.clone()).await));
        assert_eq!(get_account(b.clone()).await.code(), Code::NotFound);

        let get_profile = |id: String| {
            let mut profiles = profiles.clone();
            async move { profiles.get_profile(authed(KEY_A, pb::GetProfileRequest { id })).await.unwrap_err() }
        };
        assert_eq!(observable(&get_profile(b_profile.id.clone()).await), observable(&get_profile(nobody.clone()).await));
        assert_eq!(get_profile(b_profile.id.clone()).await.code(), Code::NotFound);

        let update_profile = |id: String| {
            let mut profiles = profiles.clone();
            async move {
                profiles.update_profile(authed(KEY_A, pb::UpdateProfileRequest {
                    profile: Some(pb::Profile { id, first_name: "Mallory".into(), ..Default::default() }),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["first_name".into()] }),
                    request_id: String::new(),
                })).await.unwrap_err()
            }
        };
        assert_eq!(observable(&update_profile(b_profile.id.clone()).await), observable(&update_profile(nobody.clone()).await));

        let delete_profile = |id: String| {
            let mut profiles = profiles.clone();
            async move {
                profiles.delete_profile(authed(KEY_A, pb::DeleteProfileRequest {
                    id,
                    ..Default::default()
                })).await.unwrap_err()
            }
        };
        assert_eq!(observable(&delete_profile(b_profile.id.clone()).await), observable(&delete_profile(nobody.clone()).await));

        let batch = profiles
            .batch_get_profiles(authed(KEY_A, pb::BatchGetProfilesRequest {
                account_id: a.clone(),
                ids: vec![b_profile.id.clone()],
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(batch.profiles.is_empty());
        let upsert = profiles
            .batch_upsert_profiles(authed(KEY_A, pb::BatchUpsertProfilesRequest {
                account_id: a.clone(),
                items: vec![pb::ProfileUpsert {
                    idempotency_key: "steal".into(),
                    id: b_profile.id.clone(),
                    first_name: "Mallory".into(),
                    last_name: "M".into(),
                    email: "bea@b.example".into(),
                    ..Default::default()
                }],
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(upsert.results[0].error_code, Code::NotFound as i32);

        // Username checks are global but never reveal another account's profile.
        let checks = profiles
            .batch_check_usernames(authed(KEY_A, pb::BatchCheckUsernamesRequest {
                usernames: vec![b_profile.username.clone()],
            }))
            .await
            .unwrap()
            .into_inner()
            .checks;
        assert!(!checks[0].available);
        assert!(checks[0].holder_profile_id.is_empty());

        let listed = accounts
            .list_accounts(authed(KEY_A, pb::ListAccountsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .accounts;
        assert_eq!(listed.iter().map(|account| &account.id).collect::<Vec<_>>(), vec![&a]);

        // Nothing of B changed.
        let after = ProfileServiceClient::new(channel)
            .get_profile(authed(ADMIN_KEY, pb::GetProfileRequest { id: b_profile.id.clone() }))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(after, b_profile);
    }
}
