//! Tenant isolation: a key limited to account A never reads or changes account B. Naming B in
//! a request is PERMISSION_DENIED; reaching B's object by its id is NOT_FOUND, byte-identical
//! to an id that does not exist; finding B's user by username or token is answered exactly as
//! for one that nothing holds. The account-scope audit attacks every RPC of the descriptor set
//! so, and fails when an RPC is added without an entry in it.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use roster_proto::identity::v1 as pb;
use roster_proto::imports::v1 as im;
use roster_proto::notification::v1 as nt;
use roster_runtime::Service;
use roster_tests::clients::{Identity, Imports, Notifications};

use roster_tests::{
    ADMIN_KEY, Backend, ImportSuite, TestKey, TestServer, both_backends, newest_reset_token,
    outbox_emails, raw, reason,
};
use tonic::Code;
use tonic::transport::Channel;

const KEY_A: &str = "key-for-account-a";

/// Everything a caller can observe of a refusal.
fn observable(status: &tonic::Status) -> (Code, String, Vec<u8>) {
    (
        status.code(),
        status.message().to_owned(),
        status.details().to_vec(),
    )
}

async fn a_key_for_one_account_cannot_reach_another(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let channel = server.channel().await;
    let admin = Identity::new(channel, ADMIN_KEY);
    let mut account_ids = Vec::new();
    for name in ["A", "B"] {
        let account = admin
            .create_account(pb::CreateAccountRequest {
                display_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .account
            .unwrap();
        account_ids.push(account.id);
    }
    let (a, b) = (account_ids[0].clone(), account_ids[1].clone());
    let b_profile = admin
        .create_profile(pb::CreateProfileRequest {
            account_id: b.clone(),
            first_name: "Bea".into(),
            last_name: "B".into(),
            email: "bea@b.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .profile
        .unwrap();

    let scoped = TestKey::limited(KEY_A, &["accounts", "profiles"], &[a.parse().unwrap()]);
    let server = server.restart_with_keys(vec![scoped]).await;
    let channel = server.channel().await;
    let as_a = Identity::new(channel.clone(), KEY_A);
    let nobody = uuid::Uuid::now_v7().to_string();

    // Requests that name account B.
    let denied = [
        as_a.create_account(pb::CreateAccountRequest {
            display_name: "C".into(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        as_a.get_password_policy(pb::GetPasswordPolicyRequest {
            account_id: b.clone(),
        })
        .await
        .map(|_| ()),
        as_a.create_profile(pb::CreateProfileRequest {
            account_id: b.clone(),
            first_name: "Eve".into(),
            last_name: "E".into(),
            email: "eve@b.example".into(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        as_a.list_profiles(pb::ListProfilesRequest {
            account_id: b.clone(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        as_a.batch_get_profiles(pb::BatchGetProfilesRequest {
            account_id: b.clone(),
            ids: vec![b_profile.id.clone()],
            ..Default::default()
        })
        .await
        .map(|_| ()),
        as_a.batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
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
            ..Default::default()
        })
        .await
        .map(|_| ()),
    ];
    for (n, result) in denied.into_iter().enumerate() {
        let status = result.expect_err("refused");
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "call {n}: {status:?}"
        );
    }

    // Objects of account B reached by id: indistinguishable from ids that do not exist.
    let get_account = |id: String| {
        let as_a = as_a.clone();
        async move {
            as_a.get_account(pb::GetAccountRequest { id })
                .await
                .unwrap_err()
        }
    };
    assert_eq!(
        observable(&get_account(b.clone()).await),
        observable(&get_account(nobody.clone()).await)
    );
    assert_eq!(get_account(b.clone()).await.code(), Code::NotFound);

    let get_profile = |id: String| {
        let as_a = as_a.clone();
        async move {
            as_a.get_profile(pb::GetProfileRequest { id })
                .await
                .unwrap_err()
        }
    };
    assert_eq!(
        observable(&get_profile(b_profile.id.clone()).await),
        observable(&get_profile(nobody.clone()).await)
    );
    assert_eq!(
        get_profile(b_profile.id.clone()).await.code(),
        Code::NotFound
    );

    let update_profile = |id: String| {
        let as_a = as_a.clone();
        async move {
            as_a.update_profile(pb::UpdateProfileRequest {
                profile: Some(pb::Profile {
                    id,
                    first_name: "Mallory".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["first_name".into()],
                }),
                request_id: String::new(),
            })
            .await
            .unwrap_err()
        }
    };
    assert_eq!(
        observable(&update_profile(b_profile.id.clone()).await),
        observable(&update_profile(nobody.clone()).await)
    );

    let delete_profile = |id: String| {
        let as_a = as_a.clone();
        async move {
            as_a.delete_profile(pb::DeleteProfileRequest {
                id,
                ..Default::default()
            })
            .await
            .unwrap_err()
        }
    };
    assert_eq!(
        observable(&delete_profile(b_profile.id.clone()).await),
        observable(&delete_profile(nobody.clone()).await)
    );

    let batch = as_a
        .batch_get_profiles(pb::BatchGetProfilesRequest {
            account_id: a.clone(),
            ids: vec![b_profile.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(batch.profiles.is_empty());
    let upsert = as_a
        .batch_upsert_profiles(pb::BatchUpsertProfilesRequest {
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
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(upsert.results[0].error_code, Code::NotFound as i32);

    // Username checks are global but never reveal another account's profile.
    let checks = as_a
        .batch_check_usernames(pb::BatchCheckUsernamesRequest {
            usernames: vec![b_profile.username.clone()],
            seeds: Vec::new(),
        })
        .await
        .unwrap()
        .checks;
    assert!(!checks[0].available);
    assert!(checks[0].holder_profile_id.is_empty());

    let listed = as_a
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .unwrap()
        .accounts;
    assert_eq!(
        listed.iter().map(|account| &account.id).collect::<Vec<_>>(),
        vec![&a]
    );

    // Nothing of B changed.
    let after = Identity::new(channel, ADMIN_KEY)
        .get_profile(pb::GetProfileRequest {
            id: b_profile.id.clone(),
        })
        .await
        .unwrap()
        .profile
        .unwrap();
    assert_eq!(after, b_profile);
}

both_backends!(a_key_for_one_account_cannot_reach_another);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_of_every_service_needs_a_key() {
    let methods = raw::every_method();
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
                let status = raw::call(&channel, path, key, Vec::new())
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

async fn a_key_for_one_account_cannot_reach_another_accounts_imports(backend: Backend) {
    use roster_proto::imports::v1 as im;
    let Some(suite) = roster_tests::ImportSuite::start_with(backend, |_| {}, Vec::new()).await
    else {
        return;
    };
    let identity = suite.identity.channel().await;
    let a = Identity::new(identity.clone(), ADMIN_KEY)
        .account("A")
        .await
        .id;
    let b = Identity::new(identity.clone(), ADMIN_KEY)
        .account("B")
        .await
        .id;
    let admin = Imports::new(suite.imports.channel().await, ADMIN_KEY);
    let b_import = admin
        .import_csv(&b, roster_tests::imports::people_csv("bee", 3))
        .await
        .unwrap();
    let imports = suite
        .imports
        .restart_with_keys(vec![TestKey::limited(
            KEY_A,
            &["imports"],
            &[a.parse().unwrap()],
        )])
        .await;
    let as_a = Imports::new(imports.channel().await, KEY_A);
    let nobody = uuid::Uuid::now_v7().to_string();

    let denied = [
        as_a.create_import(im::CreateImportRequest {
            account_id: b.clone(),
            file_name: "x.csv".into(),
            content: roster_tests::imports::people_csv("x", 1),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        as_a.list_imports(im::ListImportsRequest {
            account_id: b.clone(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
        match as_a
            .download_template(im::DownloadTemplateRequest {
                account_id: b.clone(),
            })
            .await
        {
            Ok(mut stream) => stream.message().await.map(|_| ()),
            Err(status) => Err(status),
        },
        as_a.upload_import(tokio_stream::iter(vec![im::UploadImportRequest {
            content: Some(im::upload_import_request::Content::Header(
                im::UploadImportHeader {
                    account_id: b.clone(),
                    file_name: "x.csv".into(),
                    ..Default::default()
                },
            )),
        }]))
        .await
        .map(|_| ()),
    ];
    for (n, result) in denied.into_iter().enumerate() {
        let status = result.expect_err("refused");
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "call {n}: {status:?}"
        );
    }

    macro_rules! same_as_nonexistent {
        ($call:ident, $request:expr) => {{
            let request = $request;
            let theirs = as_a
                .$call(request(b_import.id.clone()))
                .await
                .map(|_| ())
                .unwrap_err();
            let missing = as_a
                .$call(request(nobody.clone()))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(theirs.code(), Code::NotFound, "{}", stringify!($call));
            assert_eq!(
                observable(&theirs),
                observable(&missing),
                "{}",
                stringify!($call)
            );
        }};
    }
    same_as_nonexistent!(get_import, |id| im::GetImportRequest { import_id: id });
    same_as_nonexistent!(list_import_rows, |id| im::ListImportRowsRequest {
        import_id: id,
        ..Default::default()
    });
    same_as_nonexistent!(submit_import, |id| im::SubmitImportRequest {
        import_id: id,
        request_id: String::new(),
        send_welcome_emails: false
    });
    same_as_nonexistent!(cancel_import, |id| im::CancelImportRequest {
        import_id: id,
        request_id: String::new()
    });
    same_as_nonexistent!(watch_import, |id| im::WatchImportRequest { import_id: id });
    same_as_nonexistent!(download_report, |id| im::DownloadReportRequest {
        import_id: id
    });

    // Nothing of B's import changed.
    let after = Imports::new(imports.channel().await, ADMIN_KEY)
        .get_import(im::GetImportRequest {
            import_id: b_import.id.clone(),
        })
        .await
        .unwrap()
        .import
        .unwrap();
    assert_ne!(after.state, im::ImportState::Cancelled as i32);
    assert_ne!(after.state, im::ImportState::Applying as i32);
}

async fn a_key_for_one_account_cannot_reach_another_accounts_notifications(backend: Backend) {
    use roster_proto::notification::v1 as nt;
    let Some(database) = roster_tests::TestDatabase::create(backend).await else {
        return;
    };
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let mail = tempfile::tempdir().unwrap();
    let server = TestServer::start_notification(
        roster_tests::test_settings(Service::Notification, &database.url),
        roster_tests::notification_settings(&format!("file://{}", mail.path().display())),
        std::sync::Arc::new(database),
        vec![TestKey::limited(KEY_A, &["notifications"], &[a])],
    )
    .await;
    let admin = Notifications::new(server.channel().await, ADMIN_KEY);
    let as_a = admin.with_key(KEY_A);
    let email = |account: uuid::Uuid| welcome_email(&account.to_string());
    let theirs = admin
        .send_email(email(b))
        .await
        .unwrap()
        .notification
        .unwrap();
    as_a.send_email(email(a))
        .await
        .expect("its own account is fine");

    let denied = as_a.send_email(email(b)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = as_a
        .list_notifications(nt::ListNotificationsRequest {
            account_id: b.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let get = |id: String| {
        let as_a = as_a.clone();
        async move {
            as_a.get_notification(nt::GetNotificationRequest {
                notification_id: id,
            })
            .await
            .unwrap_err()
        }
    };
    let hidden = get(theirs.id.clone()).await;
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(
        observable(&hidden),
        observable(&get(uuid::Uuid::now_v7().to_string()).await)
    );
}

/// The calls that name a profile by its id and keep their answer for a repeated request id,
/// in an order that each can follow the one before on one profile.
const BY_PROFILE: [&str; 6] = [
    "UpdateProfile",
    "AssignExtension",
    "SendPasswordReset",
    "ClearSignInThrottle",
    "DeleteProfile",
    "UndeleteProfile",
];

/// `call` (one of [`BY_PROFILE`]) on `profile` with `request_id`, its response encoded.
async fn call_by_profile(
    client: &Identity,
    call: &str,
    profile: &pb::Profile,
    number: &str,
    request_id: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let (id, request_id) = (profile.id.clone(), request_id.to_owned());
    Ok(match call {
        "UpdateProfile" => client
            .update_profile(pb::UpdateProfileRequest {
                profile: Some(pb::Profile {
                    id,
                    first_name: format!("{} Renamed", profile.first_name),
                    ..Default::default()
                }),
                update_mask: mask("first_name"),
                request_id,
            })
            .await?
            .encode_to_vec(),
        "AssignExtension" => client
            .assign_extension(pb::AssignExtensionRequest {
                profile_id: id,
                extension: Some(pb::Extension {
                    number: number.to_owned(),
                    kind: pb::ExtensionKind::Physical as i32,
                }),
                etag: String::new(),
                request_id,
            })
            .await?
            .encode_to_vec(),
        "SendPasswordReset" => client
            .send_password_reset(pb::SendPasswordResetRequest {
                request_id,
                profile_id: id,
                email: profile.email.clone(),
                etag: String::new(),
            })
            .await?
            .encode_to_vec(),
        "ClearSignInThrottle" => client
            .clear_sign_in_throttle(pb::ClearSignInThrottleRequest {
                request_id,
                profile_id: id,
            })
            .await?
            .encode_to_vec(),
        "DeleteProfile" => client
            .delete_profile(pb::DeleteProfileRequest {
                id,
                etag: String::new(),
                request_id,
            })
            .await?
            .encode_to_vec(),
        "UndeleteProfile" => client
            .undelete_profile(pb::UndeleteProfileRequest {
                id,
                etag: String::new(),
                request_id,
            })
            .await?
            .encode_to_vec(),
        other => panic!("no call {other}"),
    })
}

/// A key's accounts narrowed in the keys file, its name (and so its request ids' scope) kept:
/// the answers it kept while it could act on B are not replayed to it. Each repeated request
/// naming B's profile is answered NOT_FOUND, byte-identical to a new request naming a profile
/// that does not exist; its repeated requests inside A still get their first answers, and do
/// nothing again.
async fn a_narrowed_key_is_not_replayed_what_it_may_no_longer_see(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let admin = Identity::new(server.channel().await, ADMIN_KEY);
    let mut users = Vec::new();
    for (name, email) in [("A", "ann@a.example"), ("B", "bea@b.example")] {
        let account = admin
            .create_account(pb::CreateAccountRequest {
                display_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .account
            .unwrap();
        let profile = admin
            .create_profile(pb::CreateProfileRequest {
                account_id: account.id.clone(),
                first_name: name.into(),
                last_name: "User".into(),
                email: email.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .profile
            .unwrap();
        users.push((account.id.parse::<uuid::Uuid>().unwrap(), profile));
    }
    let (a, ann) = users[0].clone();
    let (b, bea) = users[1].clone();
    let scopes = ["profiles", "credentials"];
    let server = server
        .restart_with_keys(vec![TestKey::limited(KEY_A, &scopes, &[a, b])])
        .await;
    let as_key = Identity::new(server.channel().await, KEY_A);
    let admin = as_key.with_key(ADMIN_KEY);
    let request_id = |call: &str, profile: &pb::Profile| format!("{call}-{}", profile.id);
    let mut first = BTreeMap::new();
    for (profile, number) in [(&ann, "2001"), (&bea, "2002")] {
        for call in BY_PROFILE {
            let answer =
                call_by_profile(&as_key, call, profile, number, &request_id(call, profile))
                    .await
                    .unwrap_or_else(|status| {
                        panic!("{call} while the key has both accounts: {status:?}")
                    });
            first.insert((call, profile.id.clone()), answer);
        }
    }
    let ann_before = admin.profile(&ann.id).await;

    let server = server
        .restart_with_keys(vec![TestKey::limited(KEY_A, &scopes, &[a])])
        .await;
    let as_key = Identity::new(server.channel().await, KEY_A);
    let admin = as_key.with_key(ADMIN_KEY);
    let nobody = pb::Profile {
        id: uuid::Uuid::now_v7().to_string(),
        ..bea.clone()
    };
    for call in BY_PROFILE {
        let repeated = call_by_profile(&as_key, call, &bea, "2002", &request_id(call, &bea))
            .await
            .map(|_| ())
            .expect_err(&format!(
                "{call}: B's answer replayed to a key narrowed to A"
            ));
        assert_eq!(repeated.code(), Code::NotFound, "{call}: {repeated:?}");
        let new = call_by_profile(&as_key, call, &nobody, "2099", &request_id(call, &nobody))
            .await
            .unwrap_err();
        assert_eq!(observable(&repeated), observable(&new), "{call}");

        let replayed = call_by_profile(&as_key, call, &ann, "2001", &request_id(call, &ann))
            .await
            .unwrap_or_else(|status| panic!("{call} repeated inside A: {status:?}"));
        assert_eq!(replayed, first[&(call, ann.id.clone())], "{call} inside A");

        // The id it used on B's profile, now naming A's: another request, refused, nothing
        // done — not B's answer.
        let reused = call_by_profile(&as_key, call, &ann, "2001", &request_id(call, &bea))
            .await
            .map(|_| ())
            .expect_err(&format!(
                "{call}: B's answer replayed to a request naming A's profile"
            ));
        assert_request_id_refused(&reused, call);
    }
    assert_eq!(
        admin.profile(&ann.id).await,
        ann_before,
        "the repeats inside A did nothing again"
    );
}

/// INVALID_ARGUMENT naming `request_id`: the id was sent before with another request.
fn assert_request_id_refused(status: &tonic::Status, call: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{call}: {status:?}");
    assert!(
        status.message().contains("request_id") && status.message().contains("different request"),
        "{call}: {status:?}"
    );
}

/// A request id answers only the request it was first sent with (AIP-155): sent again with
/// another request — another account, another profile, other fields — it is refused naming
/// `request_id`, and nothing is done. Checked for a key of both accounts and after the key is
/// narrowed to B, where the first answers (A's profile, A's account) must not be replayed to
/// a request naming B's. The same request repeated is still answered its first answer.
async fn a_request_id_answers_only_the_request_it_was_sent_with(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let admin = Identity::new(server.channel().await, ADMIN_KEY);
    let accounts = [admin.account("A").await, admin.account("B").await];
    let ids: Vec<uuid::Uuid> = accounts.iter().map(|a| a.id.parse().unwrap()).collect();
    let scopes = ["profiles", "accounts"];
    let server = server
        .restart_with_keys(vec![TestKey::limited(KEY_A, &scopes, &ids)])
        .await;
    let as_key = Identity::new(server.channel().await, KEY_A);
    let admin = as_key.with_key(ADMIN_KEY);
    let create = |account: &pb::Account, email: &str| pb::CreateProfileRequest {
        account_id: account.id.clone(),
        first_name: "First".into(),
        last_name: "User".into(),
        email: email.into(),
        request_id: "create-1".into(),
        ..Default::default()
    };
    let rename = |account: &pb::Account, name: &str| pb::UpdateAccountRequest {
        account: Some(pb::Account {
            id: account.id.clone(),
            display_name: name.into(),
            ..Default::default()
        }),
        update_mask: mask("display_name"),
        request_id: "rename-1".into(),
    };
    let (a, b) = (&accounts[0], &accounts[1]);
    let created = as_key
        .create_profile(create(a, "ann@a.example"))
        .await
        .unwrap();
    let renamed = as_key.update_account(rename(a, "A renamed")).await.unwrap();
    let ann = created.profile.clone().unwrap();
    let update = |first_name: &str| pb::UpdateProfileRequest {
        profile: Some(pb::Profile {
            id: ann.id.clone(),
            first_name: first_name.into(),
            ..Default::default()
        }),
        update_mask: mask("first_name"),
        request_id: "update-1".into(),
    };
    let updated = as_key.update_profile(update("Ann")).await.unwrap();

    // The same requests again: their first answers, nothing done twice.
    assert_eq!(
        as_key
            .create_profile(create(a, "ann@a.example"))
            .await
            .unwrap(),
        created
    );
    assert_eq!(
        as_key.update_account(rename(a, "A renamed")).await.unwrap(),
        renamed
    );
    assert_eq!(as_key.update_profile(update("Ann")).await.unwrap(), updated);
    // A client retrying a read-modify-write sends what it reads anew: the new etag, times, the
    // fields outside the mask as they are now. Still the same request.
    let reread = pb::UpdateProfileRequest {
        profile: Some(pb::Profile {
            first_name: "Ann".into(),
            ..admin.profile(&ann.id).await
        }),
        ..update("Ann")
    };
    assert_eq!(as_key.update_profile(reread).await.unwrap(), updated);

    // The same ids with other requests, by the key of both accounts.
    let other_account = as_key
        .create_profile(create(b, "bob@b.example"))
        .await
        .unwrap_err();
    assert_request_id_refused(&other_account, "CreateProfile in another account");
    let other_fields = as_key.update_profile(update("Anna")).await.unwrap_err();
    assert_request_id_refused(&other_fields, "UpdateProfile with other fields");
    let other_account = as_key
        .update_account(rename(b, "B renamed"))
        .await
        .unwrap_err();
    assert_request_id_refused(&other_account, "UpdateAccount of another account");

    // Narrowed to B: A's answers are not replayed to requests naming B.
    let server = server
        .restart_with_keys(vec![TestKey::limited(KEY_A, &scopes, &ids[1..])])
        .await;
    let as_key = Identity::new(server.channel().await, KEY_A);
    let admin = as_key.with_key(ADMIN_KEY);
    let status = as_key
        .create_profile(create(b, "bob@b.example"))
        .await
        .unwrap_err();
    assert_request_id_refused(&status, "CreateProfile in B, narrowed");
    let status = as_key
        .update_account(rename(b, "B renamed"))
        .await
        .unwrap_err();
    assert_request_id_refused(&status, "UpdateAccount of B, narrowed");

    assert!(
        admin.all_profiles(&b.id).await.is_empty(),
        "no profile was created in B"
    );
    let channel = server.channel().await;
    assert_eq!(account(&channel, &b.id).await.display_name, "B");
    assert_eq!(account(&channel, &a.id).await.display_name, "A renamed");
    assert_eq!(admin.profile(&ann.id).await.first_name, "Ann");
}

/// CreateImport's request ids are kept as `<key name>:<account>:<request id>`, and a key's
/// name and a request id may both hold ':'. Key `imp:<A>` of account B and key `imp` of account
/// A can so make up the same string: the import it finds is answered only to the key that
/// created it, in the account it names — never B's import to A's key.
async fn a_request_id_cannot_reach_an_import_another_key_created(backend: Backend) {
    use roster_proto::imports::v1 as im;
    let Some(suite) = roster_tests::ImportSuite::start_with(backend, |_| {}, Vec::new()).await
    else {
        return;
    };
    let identity = Identity::new(suite.identity.channel().await, ADMIN_KEY);
    let a = identity.account("A").await.id;
    let b = identity.account("B").await.id;
    let plain = "imp".to_owned();
    let joined = format!("imp:{a}");
    let imports = suite
        .imports
        .restart_with_keys(vec![
            TestKey::limited(&plain, &["imports"], &[a.parse().unwrap()]),
            TestKey::limited(&joined, &["imports"], &[b.parse().unwrap()]),
        ])
        .await;
    let create = |account: &str, request_id: String| im::CreateImportRequest {
        request_id,
        account_id: account.to_owned(),
        file_name: "people.csv".into(),
        content: roster_tests::imports::people_csv("colon", 2),
        encoding: String::new(),
    };
    let as_joined = Imports::new(imports.channel().await, &joined);
    let b_import = as_joined
        .create_import(create(&b, "R".into()))
        .await
        .unwrap()
        .import
        .unwrap();
    let as_plain = Imports::new(imports.channel().await, &plain);
    let refused = as_plain
        .create_import(create(&a, format!("{b}:R")))
        .await
        .map(|created| created.import)
        .expect_err("B's import answered to A's key");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("request_id"), "{refused:?}");
    // The creator's repeat still finds its import.
    let again = as_joined
        .create_import(create(&b, "R".into()))
        .await
        .unwrap()
        .import
        .unwrap();
    assert_eq!(again.id, b_import.id);
}

both_backends!(
    a_request_id_cannot_reach_an_import_another_key_created,
    a_key_for_one_account_cannot_reach_another_accounts_imports,
    a_key_for_one_account_cannot_reach_another_accounts_notifications,
    a_narrowed_key_is_not_replayed_what_it_may_no_longer_see,
    a_request_id_answers_only_the_request_it_was_sent_with
);

// The account-scope audit: every RPC of the descriptor set, attacked with a key limited to
// account A holding every scope, against account B.

/// Every scope a key can hold but `admin`.
const EVERY_SCOPE: [&str; 7] = [
    "accounts",
    "profiles",
    "credentials",
    "signin",
    "events",
    "imports",
    "notifications",
];
/// B's user's password, set through the reset flow.
const B_PASSWORD: &str = "Violet-Tundra-84-Lantern";
/// A username nobody holds, as long as B's user's (`bea@b.example`), so that answers echoing
/// either compare byte for byte once one is put in the other's place.
const UNKNOWN_USERNAME: &str = "zoe@z.example";
/// Longest wait for one answer: an attack that is let through may hang (WatchImport follows
/// an import that never finishes), which must fail the audit, not stall it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What A's key attacks: B's things, and A's own for requests made inside A.
struct World {
    a: pb::Account,
    /// A's user.
    ann: pb::Profile,
    b: pb::Account,
    /// B's user: a password, a role and an extension.
    bea: pb::Profile,
    /// A reset token of B's user that is still usable.
    token: String,
    /// A SCIM token of B, active.
    scim_token: pb::ScimToken,
    /// A VALIDATED import of B.
    import: im::Import,
    /// A notification of B.
    notification: String,
}

/// Which of B's things a request names.
#[derive(Clone, Copy, Debug)]
enum Of {
    Account,
    Profile,
    Username,
    Token,
    ScimToken,
    Import,
    Notification,
    /// B's user's extension number.
    Extension,
}

impl World {
    fn subject(&self, of: Of) -> String {
        match of {
            Of::Account => self.b.id.clone(),
            Of::Profile => self.bea.id.clone(),
            Of::Username => self.bea.username.clone(),
            Of::Token => self.token.clone(),
            Of::ScimToken => self.scim_token.id.clone(),
            Of::Import => self.import.id.clone(),
            Of::Notification => self.notification.clone(),
            Of::Extension => self.bea.extensions[0].number.clone(),
        }
    }

    /// Something of the same kind and length that nothing holds.
    fn stand_in(&self, of: Of) -> String {
        match of {
            Of::Username => UNKNOWN_USERNAME.to_owned(),
            Of::Extension => "9191".to_owned(),
            // Hexadecimal digits are base64url too.
            Of::Token => format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )[..self.token.len()]
                .to_owned(),
            _ => uuid::Uuid::now_v7().to_string(),
        }
    }
}

/// What an attack must be answered.
enum Expect {
    /// The request names account B (or, for CreateAccount, none: a limited key makes no
    /// account): PERMISSION_DENIED, reason ACCOUNT_NOT_PERMITTED.
    Denied,
    /// The request reaches B's object by its id: NOT_FOUND, byte-identical (code, message,
    /// details) to the answer to the same request naming a fresh random id.
    NotFound,
    /// The request finds its subject by something of B's (a username, a token, an id inside a
    /// batch): exactly the answer, response or refusal, to the same request naming something
    /// of the same kind that nothing holds.
    AsUnknown,
    /// An answer that is global by design (usernames are unique across all accounts, DESIGN
    /// §2: "taken" holds whoever holds it): exactly what the admin key is answered, naming
    /// neither B's profile nor B's account.
    Global,
    /// BatchCheckUsernames: what the admin key is answered, but without the holder that the
    /// admin key may see and A's key may not.
    GlobalWithoutHolder,
    /// A request that names no account: exactly these response messages.
    Answers(fn(&World) -> Vec<Vec<u8>>),
}

/// One attack of A's key on B through one RPC.
struct Probe {
    of: Of,
    expect: Expect,
    request: Request,
}

/// An attack's request naming a subject (B's, or its stand-in), encoded.
type Request = Box<dyn Fn(&World, &str) -> Vec<u8>>;

fn probe<M: Message + 'static>(of: Of, expect: Expect, request: fn(&World, &str) -> M) -> Probe {
    Probe {
        of,
        expect,
        request: Box::new(move |world, subject| request(world, subject).encode_to_vec()),
    }
}

fn mask(path: &str) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: vec![path.to_owned()],
    })
}

fn welcome_email(account_id: &str) -> nt::SendEmailRequest {
    nt::SendEmailRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        account_id: account_id.to_owned(),
        recipient: "someone@example.com".into(),
        template: "welcome".into(),
        locale: "en".into(),
        variables: [
            ("first_name".to_owned(), "Sam".to_owned()),
            ("username".to_owned(), "sam".to_owned()),
        ]
        .into(),
        account_display_name: "B".into(),
    }
}

/// The audit: for every RPC of identity, bulk-import and notification, by full method path,
/// how a key limited to account A attacks account B through it and what it must be answered.
fn audit() -> Vec<(&'static str, Vec<Probe>)> {
    use Expect::*;
    vec![
        // AccountService.
        (
            "/roster.identity.v1.AccountService/CreateAccount",
            // No account is named; a key limited to some accounts makes none.
            vec![probe(Of::Account, Denied, |_, _| {
                pb::CreateAccountRequest {
                    display_name: "C".into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/GetAccount",
            vec![probe(Of::Account, NotFound, |_, id| {
                pb::GetAccountRequest { id: id.into() }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/UpdateAccount",
            vec![probe(Of::Account, NotFound, |_, id| {
                pb::UpdateAccountRequest {
                    account: Some(pb::Account {
                        id: id.into(),
                        display_name: "Mallory".into(),
                        ..Default::default()
                    }),
                    update_mask: mask("display_name"),
                    request_id: String::new(),
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/ListAccounts",
            // No account is named: A's own, and only it.
            vec![probe(
                Of::Account,
                Answers(|world| {
                    vec![
                        pb::ListAccountsResponse {
                            accounts: vec![world.a.clone()],
                            next_page_token: String::new(),
                        }
                        .encode_to_vec(),
                    ]
                }),
                |_, _| pb::ListAccountsRequest::default(),
            )],
        ),
        (
            "/roster.identity.v1.AccountService/DeleteAccount",
            // Only a key of every account deletes accounts: refused before the id is read.
            vec![probe(Of::Account, Denied, |_, id| {
                pb::DeleteAccountRequest {
                    id: id.into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/UndeleteAccount",
            vec![probe(Of::Account, Denied, |_, id| {
                pb::UndeleteAccountRequest {
                    id: id.into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/GetPasswordPolicy",
            vec![probe(Of::Account, Denied, |_, account| {
                pb::GetPasswordPolicyRequest {
                    account_id: account.into(),
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/UpdatePasswordPolicy",
            vec![probe(Of::Account, Denied, |_, account| {
                pb::UpdatePasswordPolicyRequest {
                    policy: Some(pb::PasswordPolicy {
                        account_id: account.into(),
                        min_length: 8,
                        ..Default::default()
                    }),
                    update_mask: mask("min_length"),
                    request_id: String::new(),
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/CreateScimToken",
            vec![probe(Of::Account, Denied, |_, account| {
                pb::CreateScimTokenRequest {
                    account_id: account.into(),
                    display_name: "Mallory's directory".into(),
                    send_welcome_emails: true,
                    request_id: String::new(),
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/ListScimTokens",
            vec![probe(Of::Account, Denied, |_, account| {
                pb::ListScimTokensRequest {
                    account_id: account.into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.AccountService/RevokeScimToken",
            vec![
                probe(Of::Account, Denied, |world, account| {
                    pb::RevokeScimTokenRequest {
                        account_id: account.into(),
                        token_id: world.scim_token.id.clone(),
                        request_id: String::new(),
                    }
                }),
                // B's token under A's own account: as a token id that nothing holds.
                probe(Of::ScimToken, NotFound, |world, id| {
                    pb::RevokeScimTokenRequest {
                        account_id: world.a.id.clone(),
                        token_id: id.into(),
                        request_id: String::new(),
                    }
                }),
            ],
        ),
        // ProfileService.
        (
            "/roster.identity.v1.ProfileService/CreateProfile",
            vec![
                probe(Of::Account, Denied, |_, account| pb::CreateProfileRequest {
                    account_id: account.into(),
                    first_name: "Mal".into(),
                    last_name: "Lory".into(),
                    email: "mal@b.example".into(),
                    ..Default::default()
                }),
                probe(Of::Username, Global, |world, username| {
                    pb::CreateProfileRequest {
                        account_id: world.a.id.clone(),
                        first_name: "Mal".into(),
                        last_name: "Lory".into(),
                        email: "mal@a.example".into(),
                        username: username.into(),
                        ..Default::default()
                    }
                }),
            ],
        ),
        (
            "/roster.identity.v1.ProfileService/GetProfile",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::GetProfileRequest { id: id.into() }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/ListProfiles",
            vec![
                probe(Of::Account, Denied, |_, account| pb::ListProfilesRequest {
                    account_id: account.into(),
                    ..Default::default()
                }),
                probe(Of::Username, AsUnknown, |world, username| {
                    pb::ListProfilesRequest {
                        account_id: world.a.id.clone(),
                        username_prefix: username.into(),
                        ..Default::default()
                    }
                }),
            ],
        ),
        (
            "/roster.identity.v1.ProfileService/UpdateProfile",
            vec![
                probe(Of::Profile, NotFound, |_, id| pb::UpdateProfileRequest {
                    profile: Some(pb::Profile {
                        id: id.into(),
                        first_name: "Mallory".into(),
                        ..Default::default()
                    }),
                    update_mask: mask("first_name"),
                    request_id: String::new(),
                }),
                probe(Of::Username, Global, |world, username| {
                    pb::UpdateProfileRequest {
                        profile: Some(pb::Profile {
                            id: world.ann.id.clone(),
                            username: username.into(),
                            ..Default::default()
                        }),
                        update_mask: mask("username"),
                        request_id: String::new(),
                    }
                }),
            ],
        ),
        (
            "/roster.identity.v1.ProfileService/DeleteProfile",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::DeleteProfileRequest {
                    id: id.into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/UndeleteProfile",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::UndeleteProfileRequest {
                    id: id.into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/CheckUsername",
            vec![probe(Of::Username, Global, |_, username| {
                pb::CheckUsernameRequest {
                    username: username.into(),
                    first_name: "Bea".into(),
                    last_name: "B".into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/BatchCheckUsernames",
            vec![probe(Of::Username, GlobalWithoutHolder, |_, username| {
                pb::BatchCheckUsernamesRequest {
                    usernames: vec![username.into()],
                    // Suggestions are global like the verdict: A's key gets what the admin's does.
                    seeds: vec![pb::SuggestionSeeds {
                        first_name: "Bea".into(),
                        last_name: "Bell".into(),
                        email: String::new(),
                    }],
                }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/BatchGetProfiles",
            vec![
                probe(Of::Account, Denied, |world, account| {
                    pb::BatchGetProfilesRequest {
                        account_id: account.into(),
                        ids: vec![world.bea.id.clone()],
                        ..Default::default()
                    }
                }),
                probe(Of::Profile, AsUnknown, |world, id| {
                    pb::BatchGetProfilesRequest {
                        account_id: world.a.id.clone(),
                        ids: vec![id.into()],
                        ..Default::default()
                    }
                }),
                // B's extension number, asked for in A: held by nobody there.
                probe(Of::Extension, AsUnknown, |world, number| {
                    pb::BatchGetProfilesRequest {
                        account_id: world.a.id.clone(),
                        extension_numbers: vec![number.into()],
                        ..Default::default()
                    }
                }),
            ],
        ),
        (
            "/roster.identity.v1.ProfileService/BatchUpsertProfiles",
            vec![
                probe(Of::Account, Denied, |world, account| {
                    pb::BatchUpsertProfilesRequest {
                        account_id: account.into(),
                        items: vec![pb::ProfileUpsert {
                            idempotency_key: "denied".into(),
                            id: world.bea.id.clone(),
                            first_name: "Mallory".into(),
                            last_name: "M".into(),
                            email: "mal@b.example".into(),
                            ..Default::default()
                        }],
                        send_welcome_emails: false,
                        ..Default::default()
                    }
                }),
                probe(Of::Profile, AsUnknown, |world, id| {
                    pb::BatchUpsertProfilesRequest {
                        account_id: world.a.id.clone(),
                        items: vec![pb::ProfileUpsert {
                            // Each attempt on a key of its own, so none replays another.
                            idempotency_key: format!("steal-{id}"),
                            id: id.into(),
                            first_name: "Mallory".into(),
                            last_name: "M".into(),
                            email: "bea@b.example".into(),
                            roles: vec![pb::Role::AccountAdministrator as i32],
                            set_assignments: true,
                            ..Default::default()
                        }],
                        send_welcome_emails: true,
                        ..Default::default()
                    }
                }),
                probe(Of::Username, Global, |world, username| {
                    pb::BatchUpsertProfilesRequest {
                        account_id: world.a.id.clone(),
                        items: vec![pb::ProfileUpsert {
                            idempotency_key: "take-username".into(),
                            first_name: "Mal".into(),
                            last_name: "Lory".into(),
                            email: "mal@a.example".into(),
                            username: username.into(),
                            ..Default::default()
                        }],
                        send_welcome_emails: false,
                        ..Default::default()
                    }
                }),
            ],
        ),
        (
            "/roster.identity.v1.ProfileService/AssignRoles",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::AssignRolesRequest {
                    profile_id: id.into(),
                    roles: vec![pb::Role::AccountAdministrator as i32],
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/UnassignRoles",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::UnassignRolesRequest {
                    profile_id: id.into(),
                    roles: vec![pb::Role::ContactCenterAgent as i32],
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/AssignExtension",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::AssignExtensionRequest {
                    profile_id: id.into(),
                    extension: Some(pb::Extension {
                        number: "4343".into(),
                        kind: pb::ExtensionKind::Physical as i32,
                    }),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.identity.v1.ProfileService/UnassignExtension",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::UnassignExtensionRequest {
                    profile_id: id.into(),
                    number: "4242".into(),
                    ..Default::default()
                }
            })],
        ),
        // CredentialService.
        (
            "/roster.identity.v1.CredentialService/GetPasswordRequirements",
            vec![probe(Of::Account, Denied, |_, account| {
                pb::GetPasswordRequirementsRequest {
                    account_id: account.into(),
                }
            })],
        ),
        (
            "/roster.identity.v1.CredentialService/CheckPassword",
            vec![
                probe(Of::Account, Denied, |_, account| pb::CheckPasswordRequest {
                    account_id: account.into(),
                    password: B_PASSWORD.into(),
                    ..Default::default()
                }),
                probe(Of::Profile, NotFound, |world, id| {
                    pb::CheckPasswordRequest {
                        account_id: world.a.id.clone(),
                        profile_id: id.into(),
                        password: B_PASSWORD.into(),
                    }
                }),
            ],
        ),
        (
            "/roster.identity.v1.CredentialService/SendPasswordReset",
            vec![probe(Of::Profile, NotFound, |world, id| {
                pb::SendPasswordResetRequest {
                    request_id: String::new(),
                    profile_id: id.into(),
                    email: world.bea.email.clone(),
                    etag: String::new(),
                }
            })],
        ),
        (
            "/roster.identity.v1.CredentialService/CompletePasswordReset",
            // No account is named, but the token is of B's user: to A's key it is as invalid
            // as a token that does not exist, and it stays usable.
            vec![probe(Of::Token, AsUnknown, |_, token| {
                pb::CompletePasswordResetRequest {
                    token: token.into(),
                    new_password: "Amber-Glacier-93-Compass".into(),
                    request_id: String::new(),
                }
            })],
        ),
        (
            "/roster.identity.v1.CredentialService/VerifyPassword",
            vec![probe(Of::Username, AsUnknown, |_, username| {
                pb::VerifyPasswordRequest {
                    username: username.into(),
                    password: B_PASSWORD.into(),
                }
            })],
        ),
        (
            "/roster.identity.v1.CredentialService/ClearSignInThrottle",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::ClearSignInThrottleRequest {
                    request_id: String::new(),
                    profile_id: id.into(),
                }
            })],
        ),
        (
            "/roster.identity.v1.CredentialService/GetSignInState",
            vec![probe(Of::Profile, NotFound, |_, id| {
                pb::GetSignInStateRequest {
                    profile_id: id.into(),
                }
            })],
        ),
        // EventService.
        (
            "/roster.identity.v1.EventService/ListEvents",
            vec![
                probe(Of::Account, Denied, |_, account| pb::ListEventsRequest {
                    account_id: account.into(),
                    ..Default::default()
                }),
                // B's profile by id in the filter: the same (empty) page as an id nothing
                // holds.
                probe(Of::Profile, AsUnknown, |_, id| pb::ListEventsRequest {
                    subject_id: id.into(),
                    ..Default::default()
                }),
            ],
        ),
        (
            "/roster.identity.v1.EventService/WatchEvents",
            vec![probe(Of::Account, Denied, |_, account| {
                pb::WatchEventsRequest {
                    account_id: account.into(),
                    cursor: "0".into(),
                    ..Default::default()
                }
            })],
        ),
        // ImportService.
        (
            "/roster.imports.v1.ImportService/DownloadTemplate",
            vec![probe(Of::Account, Denied, |_, account| {
                im::DownloadTemplateRequest {
                    account_id: account.into(),
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/CreateImport",
            vec![probe(Of::Account, Denied, |_, account| {
                im::CreateImportRequest {
                    account_id: account.into(),
                    file_name: "people.csv".into(),
                    content: roster_tests::imports::people_csv("mal", 1),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/UploadImport",
            vec![probe(Of::Account, Denied, |_, account| {
                im::UploadImportRequest {
                    content: Some(im::upload_import_request::Content::Header(
                        im::UploadImportHeader {
                            account_id: account.into(),
                            file_name: "people.csv".into(),
                            ..Default::default()
                        },
                    )),
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/GetImport",
            vec![probe(Of::Import, NotFound, |_, id| im::GetImportRequest {
                import_id: id.into(),
            })],
        ),
        (
            "/roster.imports.v1.ImportService/ListImports",
            vec![probe(Of::Account, Denied, |_, account| {
                im::ListImportsRequest {
                    account_id: account.into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/ListImportRows",
            vec![probe(Of::Import, NotFound, |_, id| {
                im::ListImportRowsRequest {
                    import_id: id.into(),
                    ..Default::default()
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/SubmitImport",
            vec![probe(Of::Import, NotFound, |_, id| {
                im::SubmitImportRequest {
                    import_id: id.into(),
                    request_id: String::new(),
                    send_welcome_emails: true,
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/CancelImport",
            vec![probe(Of::Import, NotFound, |_, id| {
                im::CancelImportRequest {
                    import_id: id.into(),
                    request_id: String::new(),
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/WatchImport",
            vec![probe(Of::Import, NotFound, |_, id| {
                im::WatchImportRequest {
                    import_id: id.into(),
                }
            })],
        ),
        (
            "/roster.imports.v1.ImportService/DownloadReport",
            vec![probe(Of::Import, NotFound, |_, id| {
                im::DownloadReportRequest {
                    import_id: id.into(),
                }
            })],
        ),
        // NotificationService.
        (
            "/roster.notification.v1.NotificationService/SendEmail",
            vec![probe(Of::Account, Denied, |_, account| {
                welcome_email(account)
            })],
        ),
        (
            "/roster.notification.v1.NotificationService/GetNotification",
            vec![probe(Of::Notification, NotFound, |_, id| {
                nt::GetNotificationRequest {
                    notification_id: id.into(),
                }
            })],
        ),
        (
            "/roster.notification.v1.NotificationService/RetryNotification",
            vec![probe(Of::Notification, NotFound, |_, id| {
                nt::RetryNotificationRequest {
                    notification_id: id.into(),
                    request_id: "isolation-retry".into(),
                }
            })],
        ),
        (
            "/roster.notification.v1.NotificationService/CancelNotification",
            vec![probe(Of::Notification, NotFound, |_, id| {
                nt::CancelNotificationRequest {
                    notification_id: id.into(),
                    request_id: "isolation-cancel".into(),
                }
            })],
        ),
        (
            "/roster.notification.v1.NotificationService/ListNotifications",
            vec![probe(Of::Account, Denied, |_, account| {
                nt::ListNotificationsRequest {
                    account_id: account.into(),
                    ..Default::default()
                }
            })],
        ),
    ]
}

/// The audit by method path; each RPC at most once, each with at least one attack.
fn audit_by_path() -> BTreeMap<&'static str, Vec<Probe>> {
    let mut table = BTreeMap::new();
    for (path, probes) in audit() {
        assert!(!probes.is_empty(), "{path}: an entry without an attack");
        assert!(
            table.insert(path, probes).is_none(),
            "{path} appears twice in the audit"
        );
    }
    table
}

#[test]
fn the_account_scope_audit_names_every_rpc_of_the_descriptor_set_and_no_other() {
    let table = audit_by_path();
    let methods = raw::methods();
    let unaudited: Vec<&str> = methods
        .iter()
        .map(|method| method.path.as_str())
        .filter(|path| !table.contains_key(path))
        .collect();
    assert!(
        unaudited.is_empty(),
        "RPCs of the descriptor set with no entry in the account-scope audit (say how a key \
         limited to account A attacks account B through each, and what it must be answered): \
         {unaudited:?}"
    );
    let gone: Vec<&&str> = table
        .keys()
        .filter(|path| !methods.iter().any(|method| method.path == **path))
        .collect();
    assert!(
        gone.is_empty(),
        "the account-scope audit names RPCs the descriptor set no longer has: {gone:?}"
    );
}

/// Everything a caller can observe of an answer.
#[derive(PartialEq)]
enum Seen {
    Answered(Vec<Vec<u8>>),
    Refused(Code, String, Vec<u8>),
}

/// Protobuf bytes shown as text, which is what their strings are.
impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self {
            Seen::Answered(messages) => f
                .debug_tuple("Answered")
                .field(
                    &messages
                        .iter()
                        .map(|message| text(message))
                        .collect::<Vec<_>>(),
                )
                .finish(),
            Seen::Refused(code, message, details) => f
                .debug_tuple("Refused")
                .field(code)
                .field(message)
                .field(&text(details))
                .finish(),
        }
    }
}

impl Seen {
    fn of(answer: &Result<Vec<Vec<u8>>, tonic::Status>) -> Seen {
        match answer {
            Ok(messages) => Seen::Answered(messages.clone()),
            Err(status) => {
                let (code, message, details) = observable(status);
                Seen::Refused(code, message, details)
            }
        }
    }

    /// This answer with every `from` replaced by `to` (of the same length, so that the
    /// protobuf lengths around them stay right).
    fn replacing(self, from: &str, to: &str) -> Seen {
        assert_eq!(from.len(), to.len(), "{from:?} and {to:?}");
        let bytes = |bytes: Vec<u8>| replace_bytes(&bytes, from.as_bytes(), to.as_bytes());
        match self {
            Seen::Answered(messages) => Seen::Answered(messages.into_iter().map(bytes).collect()),
            Seen::Refused(code, message, details) => {
                Seen::Refused(code, message.replace(from, to), bytes(details))
            }
        }
    }

    fn code(&self) -> Code {
        match self {
            Seen::Answered(_) => Code::Ok,
            Seen::Refused(code, ..) => *code,
        }
    }

    /// True when any message, status message or detail holds `text`.
    fn mentions(&self, text: &str) -> bool {
        let holds = |bytes: &[u8]| {
            bytes
                .windows(text.len())
                .any(|window| window == text.as_bytes())
        };
        match self {
            Seen::Answered(messages) => messages.iter().any(|message| holds(message)),
            Seen::Refused(_, message, details) => message.contains(text) || holds(details),
        }
    }
}

fn replace_bytes(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(from) {
            out.extend_from_slice(to);
            at += from.len();
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    out
}

/// Calls `path` on `channel` with `key`, failing the test when no answer comes.
async fn ask(
    channel: &Channel,
    path: &str,
    key: &str,
    request: Vec<u8>,
) -> Result<Vec<Vec<u8>>, tonic::Status> {
    tokio::time::timeout(ANSWER_TIMEOUT, raw::call(channel, path, Some(key), request))
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer within {ANSWER_TIMEOUT:?}"))
}

/// Runs one attack; what went wrong, if anything.
async fn attack(world: &World, channel: &Channel, path: &str, probe: &Probe) -> Result<(), String> {
    let subject = world.subject(probe.of);
    let request = (probe.request)(world, &subject);
    let answer = ask(channel, path, KEY_A, request.clone()).await;
    let seen = Seen::of(&answer);
    // The same request naming `stand_in`, answered, with `stand_in` put back to `subject`.
    let like = async |stand_in: String| {
        let control = (probe.request)(world, &stand_in);
        Seen::of(&ask(channel, path, KEY_A, control).await).replacing(&stand_in, &subject)
    };
    // What an answer must never name, unless the request named it itself.
    let b_ids = [world.bea.id.as_str(), world.b.id.as_str()];
    match &probe.expect {
        Expect::Denied => {
            let denied = answer.as_ref().err().is_some_and(|status| {
                status.code() == Code::PermissionDenied
                    && reason(status).as_deref() == Some("ACCOUNT_NOT_PERMITTED")
            });
            if !denied {
                return Err(format!(
                    "not PERMISSION_DENIED (ACCOUNT_NOT_PERMITTED) but {seen:?}"
                ));
            }
        }
        Expect::NotFound => {
            let missing = like(world.stand_in(probe.of)).await;
            if seen.code() != Code::NotFound || seen != missing {
                return Err(format!(
                    "B's {:?} by id: {seen:?}; a fresh id: {missing:?}",
                    probe.of
                ));
            }
        }
        Expect::AsUnknown => {
            let unknown = like(world.stand_in(probe.of)).await;
            if seen != unknown {
                return Err(format!(
                    "B's {:?}: {seen:?}; one nothing holds: {unknown:?}",
                    probe.of
                ));
            }
        }
        Expect::Global => {
            let admin = Seen::of(&ask(channel, path, ADMIN_KEY, request).await);
            if seen != admin || b_ids.iter().any(|id| seen.mentions(id)) {
                return Err(format!(
                    "B's {:?}: not the global answer the admin key gets ({admin:?}) but {seen:?}",
                    probe.of
                ));
            }
        }
        Expect::GlobalWithoutHolder => {
            let checks = |seen: &Seen| match seen {
                Seen::Answered(messages) if messages.len() == 1 => {
                    pb::BatchCheckUsernamesResponse::decode(messages[0].as_slice())
                        .ok()
                        .map(|response| response.checks)
                }
                _ => None,
            };
            let admin = Seen::of(&ask(channel, path, ADMIN_KEY, request).await);
            let (Some(theirs), Some(mut admins)) = (checks(&seen), checks(&admin)) else {
                return Err(format!(
                    "B's {:?}: {seen:?}; the admin key: {admin:?}",
                    probe.of
                ));
            };
            let admin_sees_holder = admins
                .iter()
                .any(|check| check.holder_profile_id == world.bea.id);
            for check in &mut admins {
                check.holder_profile_id.clear();
            }
            if !admin_sees_holder || theirs != admins || b_ids.iter().any(|id| seen.mentions(id)) {
                return Err(format!(
                    "B's {:?}: {theirs:?}; the admin key, holders left out: {admins:?}",
                    probe.of
                ));
            }
        }
        Expect::Answers(expected) => {
            let expected = Seen::Answered(expected(world));
            if seen != expected {
                return Err(format!("{seen:?} instead of {expected:?}"));
            }
        }
    }
    Ok(())
}

/// What a sign-in attempt shows: the response, or the refusal's code, reason and message.
async fn sign_in(
    channel: &Channel,
    key: &str,
    username: &str,
    password: &str,
) -> Result<pb::VerifyPasswordResponse, (Code, Option<String>, String)> {
    Identity::new(channel.clone(), ADMIN_KEY)
        .with_key(key)
        .verify_password(pb::VerifyPasswordRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map_err(|status| (status.code(), reason(&status), status.message().to_owned()))
}

/// Asks for a reset email to `profile`'s address, as the admin key.
async fn send_reset(identity: &Channel, profile: &pb::Profile) {
    Identity::new(identity.clone(), ADMIN_KEY)
        .send_password_reset(pb::SendPasswordResetRequest {
            request_id: String::new(),
            profile_id: profile.id.clone(),
            email: profile.email.clone(),
            etag: String::new(),
        })
        .await
        .expect("reset sent");
}

/// Sets a password with a reset token, as the admin key.
async fn complete_reset(identity: &Channel, token: String, password: &str) {
    Identity::new(identity.clone(), ADMIN_KEY)
        .complete_password_reset(pb::CompletePasswordResetRequest {
            token,
            new_password: password.into(),
            request_id: String::new(),
        })
        .await
        .expect("password set");
}

async fn account(identity: &Channel, id: &str) -> pb::Account {
    Identity::new(identity.clone(), ADMIN_KEY)
        .get_account(pb::GetAccountRequest { id: id.into() })
        .await
        .expect("GetAccount")
        .account
        .expect("account")
}

/// Everything of account B that A's key must leave as it is, as the admin key sees it.
#[derive(Debug, PartialEq)]
struct StateOfB {
    account: pb::Account,
    policy: pb::PasswordPolicy,
    profile: pb::Profile,
    /// B's SCIM tokens, revoked or not.
    scim_tokens: Vec<pb::ScimToken>,
    imports: Vec<im::Import>,
    /// The emails identity queued for B.
    outbox: Vec<serde_json::Value>,
    /// The notifications of B (their delivery goes on meanwhile).
    notifications: Vec<String>,
}

async fn state_of_b(
    world: &World,
    identity: &TestServer,
    imports: &Channel,
    notification: &Channel,
) -> StateOfB {
    let channel = identity.channel().await;
    let b = world.b.id.clone();
    StateOfB {
        account: account(&channel, &b).await,
        policy: Identity::new(channel.clone(), ADMIN_KEY)
            .get_password_policy(pb::GetPasswordPolicyRequest {
                account_id: b.clone(),
            })
            .await
            .unwrap()
            .policy
            .unwrap(),
        profile: Identity::new(channel.clone(), ADMIN_KEY)
            .get_profile(pb::GetProfileRequest {
                id: world.bea.id.clone(),
            })
            .await
            .unwrap()
            .profile
            .unwrap(),
        scim_tokens: Identity::new(channel, ADMIN_KEY).all_scim_tokens(&b).await,
        imports: Imports::new(imports.clone(), ADMIN_KEY)
            .list_imports(im::ListImportsRequest {
                account_id: b.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .imports,
        outbox: outbox_emails(identity)
            .await
            .into_iter()
            .filter(|email| email["account_id"] == b.as_str())
            .collect(),
        notifications: Notifications::new(notification.clone(), ADMIN_KEY)
            .list_notifications(nt::ListNotificationsRequest {
                account_id: b.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .notifications
            .into_iter()
            .map(|notification| notification.id)
            .collect(),
    }
}

both_backends!(a_key_limited_to_one_account_reaches_nothing_of_another_through_any_rpc);

async fn a_key_limited_to_one_account_reaches_nothing_of_another_through_any_rpc(backend: Backend) {
    use roster_tests::imports::people_csv;
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let Some(notification_db) = roster_tests::TestDatabase::create(backend).await else {
        return;
    };
    let identity = suite.identity.channel().await;
    let a = Identity::new(identity.clone(), ADMIN_KEY)
        .account("A")
        .await
        .id;
    let b = Identity::new(identity.clone(), ADMIN_KEY)
        .account("B")
        .await
        .id;
    let ann = Identity::new(identity.clone(), ADMIN_KEY)
        .person(&a, "Ann", "A", "ann@a.example")
        .await;
    let bea = Identity::new(identity.clone(), ADMIN_KEY)
        .person(&b, "Bea", "B", "bea@b.example")
        .await;
    assert_eq!(bea.username.len(), UNKNOWN_USERNAME.len());

    // B's user: a password set through the reset flow, a role, an extension, and a reset link
    // not used yet.
    send_reset(&identity, &bea).await;
    complete_reset(
        &identity,
        newest_reset_token(&suite.identity).await,
        B_PASSWORD,
    )
    .await;
    let profiles = Identity::new(identity.clone(), ADMIN_KEY);
    profiles
        .assign_roles(pb::AssignRolesRequest {
            profile_id: bea.id.clone(),
            roles: vec![pb::Role::ContactCenterAgent as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    let bea = profiles
        .give_extension(&bea.id, "4242", pb::ExtensionKind::Physical)
        .await;
    send_reset(&identity, &bea).await;
    let token = newest_reset_token(&suite.identity).await;
    let (scim_token, _) = profiles.scim_token(&b, "B's directory").await;

    // B's import, VALIDATED (so that a submit or a cancel would go through), and an email of B.
    let admin_imports = suite.import_client().await;
    let import = admin_imports
        .import_csv(&b, people_csv("bee", 3))
        .await
        .unwrap();
    let import = admin_imports
        .wait_for_state(
            &import.id,
            &[im::ImportState::Validated],
            Duration::from_secs(60),
        )
        .await;
    let key_a = TestKey::limited(KEY_A, &EVERY_SCOPE, &[a.parse().unwrap()]);
    let mail = tempfile::tempdir().unwrap();
    let notification = TestServer::start_notification(
        roster_tests::test_settings(Service::Notification, &notification_db.url),
        roster_tests::notification_settings(&format!("file://{}", mail.path().display())),
        std::sync::Arc::new(notification_db),
        vec![key_a.clone()],
    )
    .await;
    let notification_channel = notification.channel().await;
    let sent = Notifications::new(notification_channel.clone(), ADMIN_KEY)
        .send_email(welcome_email(&b))
        .await
        .unwrap()
        .notification
        .unwrap();

    let world = World {
        a: account(&identity, &a).await,
        ann,
        b: account(&identity, &b).await,
        bea,
        token,
        scim_token,
        import,
        notification: sent.id,
    };
    // A's key on every service: identity and bulk-import replicas that accept it.
    let identity_a = suite.identity_replica(vec![key_a.clone()]).await;
    let identity_channel = identity_a.channel().await;
    let imports_a = suite.import_replica(vec![key_a]).await;
    let imports_channel = imports_a.channel().await;
    let before = state_of_b(
        &world,
        &suite.identity,
        &imports_channel,
        &notification_channel,
    )
    .await;

    // Every RPC of the descriptor set, as the audit says.
    let table = audit_by_path();
    let channel_of = |service: Service| match service {
        Service::Identity => &identity_channel,
        Service::BulkImport => &imports_channel,
        Service::Notification => &notification_channel,
    };
    let mut failures = Vec::new();
    for method in raw::methods() {
        let probes = table
            .get(method.path.as_str())
            .unwrap_or_else(|| panic!("{} is not in the account-scope audit", method.path));
        for probe in probes {
            if let Err(failure) =
                attack(&world, channel_of(method.service), &method.path, probe).await
            {
                failures.push(format!("{}: {failure}", method.path));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "a key limited to account A reached account B:\n{}",
        failures.join("\n")
    );

    // A file of A's naming B's user by Internal ID and by username: its rows tell B's user
    // apart neither from an id that nothing holds nor from a username held in A itself.
    let fresh = uuid::Uuid::now_v7().to_string();
    let file = format!(
        "Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone\r\n\
         {},Mal,Lory,mal1@a.example,,,,,\r\n\
         {fresh},Mal,Lory,mal2@a.example,,,,,\r\n\
         ,Mal,Lory,mal3@a.example,{},,,,\r\n\
         ,Mal,Lory,mal4@a.example,{},,,,\r\n",
        world.bea.id, world.bea.username, world.ann.username
    );
    let imports_of_a = Imports::new(imports_channel.clone(), ADMIN_KEY);
    let file_of_a = imports_of_a
        .with_key(KEY_A)
        .import_csv(&world.a.id, file.into_bytes())
        .await
        .unwrap();
    imports_of_a
        .wait_for_state(
            &file_of_a.id,
            &[im::ImportState::Validated],
            Duration::from_secs(60),
        )
        .await;
    let rows = imports_of_a
        .all_rows(&file_of_a.id, im::ImportRowFilter::All)
        .await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let verdict = |row: &im::ImportRow, from: &str, to: &str| {
        let mut errors = row.errors.clone();
        for error in &mut errors {
            error.message = error.message.replace(from, to);
        }
        (
            row.action,
            row.profile_id.clone(),
            row.changes.clone(),
            errors,
        )
    };
    let by_their_id = verdict(&rows[0], "", "");
    assert_eq!(by_their_id, verdict(&rows[1], &fresh, &world.bea.id));
    assert_eq!(by_their_id.0, im::ImportRowAction::Error as i32);
    assert!(
        by_their_id
            .3
            .iter()
            .any(|error| error.reason == "INTERNAL_ID_UNKNOWN"),
        "{by_their_id:?}"
    );
    // The rows differ only in their own addresses, which the suggestions may offer back.
    let by_their_username = verdict(&rows[2], "", "");
    assert_eq!(
        by_their_username,
        verdict(&rows[3], "mal4@a.example", "mal3@a.example")
    );
    assert!(
        by_their_username
            .3
            .iter()
            .any(|error| error.reason == "USERNAME_TAKEN"),
        "{by_their_username:?}"
    );
    let listed = format!("{:?}", &rows[2..]);
    assert!(!listed.contains(&world.bea.id) && !listed.contains(&world.b.id));

    // VerifyPassword: B's user's right password, then ten wrong guesses, through A's key, are
    // answered exactly like the same attempts on a username nobody holds — throttle included,
    // which counts against A's key alone.
    let guesses = std::iter::once(B_PASSWORD.to_owned())
        .chain((1..=10).map(|n| format!("Wrong-Guess-{n}-Xyz")));
    let (mut theirs, mut nobodys) = (Vec::new(), Vec::new());
    for password in guesses {
        theirs.push(sign_in(&identity_channel, KEY_A, &world.bea.username, &password).await);
        nobodys.push(sign_in(&identity_channel, KEY_A, UNKNOWN_USERNAME, &password).await);
    }
    assert_eq!(theirs[0], Ok(pb::VerifyPasswordResponse::default()));
    assert_eq!(theirs, nobodys);
    assert!(
        nobodys.iter().any(|answer| matches!(
            answer,
            Err((Code::ResourceExhausted, Some(reason), _)) if reason == "SIGNIN_THROTTLED"
        )),
        "ten wrong guesses are throttled: {nobodys:?}"
    );
    let signed_in = Ok(pb::VerifyPasswordResponse {
        verified: true,
        profile_id: world.bea.id.clone(),
        account_id: world.b.id.clone(),
    });
    assert_eq!(
        sign_in(
            &identity_channel,
            ADMIN_KEY,
            &world.bea.username,
            B_PASSWORD
        )
        .await,
        signed_in,
        "B's user signs in at once: A's guesses locked nobody out"
    );

    // BatchCheckUsernames names the holder A may see, and no other.
    let checks = Identity::new(identity_channel.clone(), ADMIN_KEY)
        .with_key(KEY_A)
        .batch_check_usernames(pb::BatchCheckUsernamesRequest {
            usernames: vec![world.ann.username.clone(), world.bea.username.clone()],
            seeds: Vec::new(),
        })
        .await
        .unwrap()
        .checks;
    assert_eq!(checks[0].holder_profile_id, world.ann.id);
    assert_eq!(
        (checks[1].available, checks[1].reason),
        (false, pb::UsernameRefusal::Taken as i32)
    );
    assert!(checks[1].holder_profile_id.is_empty());

    // A's calls that reach B's user by id never lock B's profile row. With that row locked
    // elsewhere they are answered all the same, while a call of the admin key that changes the
    // profile waits for the lock. (SQLite has no row locks: a writer holds the whole database.)
    if backend == Backend::Postgres {
        use sea_orm::{ConnectionTrait, Database, TransactionTrait};
        let db = Database::connect(&suite.identity.database.url)
            .await
            .unwrap();
        let lock = db.begin().await.unwrap();
        lock.execute_unprepared(&format!(
            "SELECT id FROM profiles WHERE id = '{}' FOR UPDATE",
            world.bea.id
        ))
        .await
        .unwrap();
        let admin = tokio::spawn({
            let profiles = Identity::new(identity_channel.clone(), ADMIN_KEY);
            let id = world.bea.id.clone();
            async move {
                profiles
                    .assign_roles(pb::AssignRolesRequest {
                        profile_id: id,
                        roles: vec![pb::Role::ContactCenterAgent as i32],
                        ..Default::default()
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        for method in raw::methods() {
            for probe in &table[method.path.as_str()] {
                if method.service == Service::Identity && matches!(probe.of, Of::Profile) {
                    let answered = tokio::time::timeout(
                        Duration::from_secs(10),
                        attack(&world, &identity_channel, &method.path, probe),
                    )
                    .await
                    .unwrap_or_else(|_| Err("waits for B's locked profile row".to_owned()));
                    if let Err(failure) = answered {
                        failures.push(format!("{} (row locked): {failure}", method.path));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(
            !admin.is_finished(),
            "the admin key's AssignRoles waits for the row lock: {:?}",
            admin.await
        );
        lock.rollback().await.unwrap();
        let assigned = admin
            .await
            .unwrap()
            .expect("AssignRoles once the row is free");
        assert_eq!(assigned.profile.as_ref(), Some(&world.bea));
    }

    // Nothing of B changed, B's user still signs in, and the reset link A's key tried is
    // still B's user's to use.
    assert_eq!(
        state_of_b(
            &world,
            &suite.identity,
            &imports_channel,
            &notification_channel
        )
        .await,
        before
    );
    assert_eq!(
        sign_in(
            &identity_channel,
            ADMIN_KEY,
            &world.bea.username,
            B_PASSWORD
        )
        .await,
        signed_in
    );
    complete_reset(&identity, world.token.clone(), "Amber-Glacier-93-Compass").await;
    assert_eq!(
        sign_in(
            &identity_channel,
            ADMIN_KEY,
            &world.bea.username,
            "Amber-Glacier-93-Compass"
        )
        .await,
        signed_in
    );
}
