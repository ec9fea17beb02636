//! Abuse at the transport: floods from one caller key, oversized metadata, requests that are
//! not valid protobuf.

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_runtime::Service;
use roster_tests::{
    ADMIN_KEY, TestDatabase, TestKey, TestServer, authed, both_backends, raw_unary,
};
use tonic::Code;
use tonic_types::StatusExt;

const FLOODER: &str = "flooding-key";

both_backends! {
    async fn a_flood_from_one_key_is_refused_while_others_are_served(backend) {
        let Some(database) = TestDatabase::create(backend).await else { return };
        let database = std::sync::Arc::new(database);
        let mut settings = roster_tests::test_settings(Service::Identity, &database.url);
        settings.rate_limit_per_second = 5;
        settings.rate_limit_burst = 10;
        let flooder = TestKey {
            key: FLOODER.to_owned(),
            scopes: vec!["accounts"],
            accounts: roster_runtime::auth::AccountAccess::All,
        };
        let server = TestServer::start(Service::Identity, settings, database, vec![flooder]).await;
        let mut accounts = AccountServiceClient::new(server.channel().await);

        let mut refused = None;
        for _ in 0..40 {
            match accounts.list_accounts(authed(FLOODER, pb::ListAccountsRequest::default())).await {
                Ok(_) => {}
                Err(status) => {
                    refused = Some(status);
                    break;
                }
            }
        }
        let status = refused.expect("the flood is refused before 40 calls");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(roster_tests::reason(&status).as_deref(), Some("RATE_LIMITED"));
        assert!(status.get_details_retry_info().and_then(|info| info.retry_delay).is_some());

        accounts
            .list_accounts(authed(ADMIN_KEY, pb::ListAccountsRequest::default()))
            .await
            .expect("another key is still served");
    }
}

#[tokio::test]
async fn a_huge_metadata_header_list_is_refused() {
    let Some(server) = TestServer::spawn(Service::Identity, roster_tests::Backend::Sqlite).await
    else {
        return;
    };
    let mut accounts = AccountServiceClient::new(server.channel().await);
    let mut request = authed(ADMIN_KEY, pb::ListAccountsRequest::default());
    for n in 0..64 {
        request.metadata_mut().insert(
            tonic::metadata::MetadataKey::from_bytes(format!("x-padding-{n}").as_bytes()).unwrap(),
            "p".repeat(1024).parse().unwrap(),
        );
    }
    accounts
        .list_accounts(request)
        .await
        .expect_err("64 KiB of metadata exceeds the 16 KiB header-list limit");
    let mut accounts = AccountServiceClient::new(server.channel().await);
    accounts
        .list_accounts(authed(ADMIN_KEY, pb::ListAccountsRequest::default()))
        .await
        .expect("the server keeps serving");
}

both_backends! {
    async fn a_request_that_does_not_decode_is_invalid_argument_naming_the_field(backend) {
        let Some(server) = TestServer::spawn(Service::Identity, backend).await else { return };
        let channel = server.channel().await;
        let account = roster_tests::imports::create_account(&channel, "Acme").await;

        // A CreateProfileRequest whose account_id (field 2) is right and whose first_name
        // (field 3) holds a byte that is never UTF-8.
        let mut request = vec![0x12, account.len() as u8];
        request.extend_from_slice(account.as_bytes());
        request.extend_from_slice(&[0x1a, 0x03, b'A', 0xff, b'a']);
        let status = raw_unary(
            &channel,
            ADMIN_KEY,
            "/roster.identity.v1.ProfileService/CreateProfile",
            request,
        )
        .await
        .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.message(),
            "invalid request: field `CreateProfileRequest.first_name`: invalid string value: \
             data is not UTF-8 encoded"
        );
        let violations = status.get_details_bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "first_name");

        // A GetAccountRequest cut off inside its id: a length of 36 with 4 bytes behind it.
        let status = raw_unary(
            &channel,
            ADMIN_KEY,
            "/roster.identity.v1.AccountService/GetAccount",
            [&[0x0a, 36][..], &account.as_bytes()[..4]].concat(),
        )
        .await
        .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("invalid request: field `GetAccountRequest.id`: "),
            "{status:?}"
        );

        // A message cut off inside its first field's tag: prost knows no field to name.
        let status = raw_unary(
            &channel,
            ADMIN_KEY,
            "/roster.identity.v1.AccountService/GetAccount",
            vec![0x80],
        )
        .await
        .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("invalid request: not a valid GetAccountRequest: "),
            "{status:?}"
        );

        // Nothing was created, and well-formed calls are served as before.
        let profiles = roster_tests::imports::all_profiles(&channel, &account).await;
        assert!(profiles.is_empty(), "{profiles:?}");
    }
}
