//! The foundation every service stands on, seen from a client: health, reflection,
//! authentication and message limits, on SQLite and PostgreSQL.

use roster_proto::identity::v1::{CreateAccountRequest, ListAccountsRequest};
use roster_runtime::Service;
use roster_tests::clients::{Health, Identity};
use roster_tests::{ADMIN_KEY, Backend, TestServer, both_backends, reason};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

async fn health_status(server: &TestServer, service: &str) -> ServingStatus {
    Health::connect(server)
        .await
        .check(service)
        .await
        .expect("health answers without a key")
}

async fn listed_services_v1(server: &TestServer) -> Vec<String> {
    use futures::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1 answers without a key")
        .into_inner();
    match stream
        .next()
        .await
        .expect("a response")
        .expect("ok")
        .message_response
    {
        Some(MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn listed_services_v1alpha(server: &TestServer) -> Vec<String> {
    use futures::StreamExt;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1alpha answers without a key")
        .into_inner();
    match stream
        .next()
        .await
        .expect("a response")
        .expect("ok")
        .message_response
    {
        Some(MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn every_service_is_healthy_and_reflects_its_services(backend: Backend) {
    let expectations = [
        (
            Service::Identity,
            vec![
                "roster.identity.v1.AccountService",
                "roster.identity.v1.ProfileService",
                "roster.identity.v1.CredentialService",
                "roster.identity.v1.EventService",
            ],
        ),
        (Service::BulkImport, vec!["roster.imports.v1.ImportService"]),
        (
            Service::Notification,
            vec!["roster.notification.v1.NotificationService"],
        ),
    ];
    for (service, names) in expectations {
        let Some(server) = TestServer::spawn(service, backend).await else {
            return;
        };
        assert_eq!(health_status(&server, "").await, ServingStatus::Serving);
        for name in &names {
            assert_eq!(
                health_status(&server, name).await,
                ServingStatus::Serving,
                "{name}"
            );
        }
        for listed in [
            listed_services_v1(&server).await,
            listed_services_v1alpha(&server).await,
        ] {
            for name in names.iter().chain(&["grpc.health.v1.Health"]) {
                assert!(
                    listed.iter().any(|listed| listed == name),
                    "{name} not in {listed:?}"
                );
            }
            assert!(
                !listed.iter().any(
                    |listed| listed.starts_with("roster.") && !names.contains(&listed.as_str())
                ),
                "{service:?} lists services it does not host: {listed:?}"
            );
        }
    }
}

async fn calls_need_a_known_key(backend: Backend) {
    let Some(server) = TestServer::spawn(Service::Identity, backend).await else {
        return;
    };
    let accounts = Identity::new(server.channel().await, ADMIN_KEY);

    let missing = accounts
        .without_key()
        .list_accounts(ListAccountsRequest::default())
        .await
        .expect_err("no key is refused");
    assert_eq!(missing.code(), Code::Unauthenticated);

    let unknown = accounts
        .with_key("not-a-key")
        .list_accounts(ListAccountsRequest::default())
        .await
        .expect_err("an unknown key is refused");
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(reason(&unknown).as_deref(), Some("UNAUTHENTICATED"));

    accounts
        .list_accounts(ListAccountsRequest::default())
        .await
        .expect("the admin key is accepted");
}

async fn a_message_over_the_limit_is_resource_exhausted(backend: Backend) {
    let Some(database) = roster_tests::TestDatabase::create(backend).await else {
        return;
    };
    let database = std::sync::Arc::new(database);
    let mut settings = roster_tests::test_settings(Service::Identity, &database.url);
    settings.max_message_bytes = 64 * 1024;
    let server = TestServer::start(Service::Identity, settings, database, Vec::new()).await;
    let oversized = CreateAccountRequest {
        display_name: "x".repeat(100 * 1024),
        ..Default::default()
    };

    let plain = Identity::new(server.channel().await, ADMIN_KEY);
    let status = plain
        .create_account(oversized.clone())
        .await
        .expect_err("an oversized message is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // 100 KiB of one letter compresses to a few hundred bytes: the limit holds after
    // decompression, so a small compressed message cannot inflate past it.
    let gzip = Identity::new(server.channel().await, ADMIN_KEY).gzip();
    let status = gzip
        .create_account(oversized)
        .await
        .expect_err("an oversized message is refused after decompression");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

both_backends!(
    every_service_is_healthy_and_reflects_its_services,
    calls_need_a_known_key,
    a_message_over_the_limit_is_resource_exhausted
);

#[tokio::test]
async fn health_turns_not_serving_on_shutdown() {
    let Some(mut server) = TestServer::spawn(Service::Notification, Backend::Sqlite).await else {
        return;
    };
    let mut watch = Health::connect(&server)
        .await
        .watch("")
        .await
        .expect("watch");
    let first = watch.message().await.expect("ok").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(async move { server.stop().await });
    let next = watch.message().await.expect("ok").expect("a status");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    stopping.await.expect("server stops");
}
