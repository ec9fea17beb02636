//! Tenant isolation: a key limited to account A never reads or changes account B. Naming B in
//! a request is PERMISSION_DENIED; reaching B's object by its id is NOT_FOUND, byte-identical
//! to an id that does not exist.

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_runtime::Service;
use roster_tests::{ADMIN_KEY, RawCodec, TestKey, TestServer, authed, both_backends};
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
                send_welcome_emails: false,
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
                send_welcome_emails: false,
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

/// Every method of every Roster service, read from the descriptor set that reflection serves,
/// so a new RPC is covered the day it is added.
fn every_method() -> Vec<(Service, String)> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in set.file {
        let package = file.package.clone().unwrap_or_default();
        let service = match package.as_str() {
            "roster.identity.v1" => Service::Identity,
            "roster.imports.v1" => Service::BulkImport,
            "roster.notification.v1" => Service::Notification,
            _ => continue,
        };
        for definition in file.service {
            for method in &definition.method {
                methods.push((
                    service,
                    format!("/{package}.{}/{}", definition.name(), method.name()),
                ));
            }
        }
    }
    methods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_of_every_service_needs_a_key() {
    let methods = every_method();
    assert!(
        methods.len() >= 30,
        "the descriptor set lists every RPC: {methods:?}"
    );
    for service in [
        Service::Identity,
        Service::BulkImport,
        Service::Notification,
    ] {
        let Some(server) = TestServer::spawn(service, roster_tests::Backend::Sqlite).await else {
            return;
        };
        let channel = server.channel().await;
        for (_, path) in methods.iter().filter(|(owner, _)| *owner == service) {
            for key in [None, Some("not-a-key")] {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.unwrap();
                let mut request = tonic::Request::new(tokio_stream::iter(vec![Vec::new()]));
                if let Some(key) = key {
                    request
                        .metadata_mut()
                        .insert("authorization", format!("Bearer {key}").parse().unwrap());
                }
                let status = grpc
                    .streaming(
                        request,
                        http::uri::PathAndQuery::from_maybe_shared(path.clone()).unwrap(),
                        RawCodec,
                    )
                    .await
                    .expect_err("refused without a valid key");
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{path} with {key:?}: {status:?}"
                );
            }
        }
    }
}

both_backends! {
    async fn a_key_for_one_account_cannot_reach_another_accounts_imports(backend) {
        use roster_proto::imports::v1 as im;
        use roster_proto::imports::v1::import_service_client::ImportServiceClient;
        let Some(suite) = roster_tests::ImportSuite::start_with(backend, |_| {}, Vec::new()).await else { return };
        let identity = suite.identity.channel().await;
        let a = roster_tests::imports::create_account(&identity, "A").await;
        let b = roster_tests::imports::create_account(&identity, "B").await;
        let mut admin = ImportServiceClient::new(suite.imports.channel().await);
        let b_import = roster_tests::imports::create_import(&mut admin, ADMIN_KEY, &b, roster_tests::imports::people_csv("bee", 3))
            .await
            .unwrap();
        let imports = suite
            .imports
            .restart_with_keys(vec![TestKey::limited(KEY_A, &["imports"], &[a.parse().unwrap()])])
            .await;
        let mut client = ImportServiceClient::new(imports.channel().await);
        let nobody = uuid::Uuid::now_v7().to_string();

        let denied = [
            client.create_import(authed(KEY_A, im::CreateImportRequest {
                account_id: b.clone(),
                file_name: "x.csv".into(),
                content: roster_tests::imports::people_csv("x", 1),
                ..Default::default()
            })).await.map(|_| ()),
            client.list_imports(authed(KEY_A, im::ListImportsRequest { account_id: b.clone(), ..Default::default() })).await.map(|_| ()),
            match client.download_template(authed(KEY_A, im::DownloadTemplateRequest { account_id: b.clone() })).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    stream.message().await.map(|_| ())
                }
                Err(status) => Err(status),
            },
            client.upload_import(authed(KEY_A, tokio_stream::iter(vec![im::UploadImportRequest {
                content: Some(im::upload_import_request::Content::Header(im::UploadImportHeader {
                    account_id: b.clone(),
                    file_name: "x.csv".into(),
                    ..Default::default()
                })),
            }]))).await.map(|_| ()),
        ];
        for (n, result) in denied.into_iter().enumerate() {
            let status = result.expect_err("refused");
            assert_eq!(status.code(), Code::PermissionDenied, "call {n}: {status:?}");
        }

        macro_rules! same_as_nonexistent {
            ($call:ident, $request:expr) => {{
                let request = $request;
                let theirs = client.clone().$call(authed(KEY_A, request(b_import.id.clone()))).await.map(|_| ()).unwrap_err();
                let missing = client.clone().$call(authed(KEY_A, request(nobody.clone()))).await.map(|_| ()).unwrap_err();
                assert_eq!(theirs.code(), Code::NotFound, "{}", stringify!($call));
                assert_eq!(observable(&theirs), observable(&missing), "{}", stringify!($call));
            }};
        }
        same_as_nonexistent!(get_import, |id| im::GetImportRequest { import_id: id });
        same_as_nonexistent!(list_import_rows, |id| im::ListImportRowsRequest { import_id: id, ..Default::default() });
        same_as_nonexistent!(submit_import, |id| im::SubmitImportRequest { import_id: id, request_id: String::new(), send_welcome_emails: false });
        same_as_nonexistent!(cancel_import, |id| im::CancelImportRequest { import_id: id, request_id: String::new() });
        same_as_nonexistent!(watch_import, |id| im::WatchImportRequest { import_id: id });
        same_as_nonexistent!(download_report, |id| im::DownloadReportRequest { import_id: id });

        // Nothing of B's import changed.
        let after = ImportServiceClient::new(imports.channel().await)
            .get_import(authed(ADMIN_KEY, im::GetImportRequest { import_id: b_import.id.clone() }))
            .await
            .unwrap()
            .into_inner()
            .import
            .unwrap();
        assert_ne!(after.state, im::ImportState::Cancelled as i32);
        assert_ne!(after.state, im::ImportState::Applying as i32);
    }

    async fn a_key_for_one_account_cannot_reach_another_accounts_notifications(backend) {
        use roster_proto::notification::v1 as nt;
        use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
        let Some(database) = roster_tests::TestDatabase::create(backend).await else { return };
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let mail = tempfile::tempdir().unwrap();
        let server = TestServer::start_notification(
            roster_tests::test_settings(Service::Notification, &database.url),
            roster_tests::notification_settings(&format!("file://{}", mail.path().display())),
            std::sync::Arc::new(database),
            vec![TestKey::limited(KEY_A, &["notifications"], &[a])],
        )
        .await;
        let mut client = NotificationServiceClient::new(server.channel().await);
        let email = |account: uuid::Uuid| nt::SendEmailRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            account_id: account.to_string(),
            recipient: "someone@example.com".into(),
            template: "welcome".into(),
            locale: "en".into(),
            variables: [("first_name".to_owned(), "Sam".to_owned()), ("username".to_owned(), "sam".to_owned())].into(),
            account_display_name: "B".into(),
        };
        let theirs = client.send_email(authed(ADMIN_KEY, email(b))).await.unwrap().into_inner().notification.unwrap();
        client.send_email(authed(KEY_A, email(a))).await.expect("its own account is fine");

        let denied = client.send_email(authed(KEY_A, email(b))).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        let denied = client
            .list_notifications(authed(KEY_A, nt::ListNotificationsRequest { account_id: b.to_string(), ..Default::default() }))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        let get = |id: String| {
            let mut client = client.clone();
            async move { client.get_notification(authed(KEY_A, nt::GetNotificationRequest { notification_id: id })).await.unwrap_err() }
        };
        let hidden = get(theirs.id.clone()).await;
        assert_eq!(hidden.code(), Code::NotFound);
        assert_eq!(observable(&hidden), observable(&get(uuid::Uuid::now_v7().to_string()).await));
    }
}
