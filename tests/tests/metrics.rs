//! The Prometheus endpoint of each service, scraped after real calls: calls by method and
//! status code (from headers and from trailers), latency histograms, the database pool, the
//! notification queue's depth and age, and bulk-import's rows processed and imports by state.

use std::collections::HashMap;
use std::sync::Arc;

use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_proto::identity::v1::{
    CreateAccountRequest, GetAccountRequest, GetProfileRequest, ListAccountsRequest,
};
use roster_proto::imports::v1 as im;
use roster_proto::notification::v1::SendEmailRequest;
use roster_proto::notification::v1::notification_service_client::NotificationServiceClient;
use roster_runtime::Service;
use roster_tests::imports::{
    ImportSuite, create_import, people_csv, submit_import, wait_for_state,
};
use roster_tests::{
    ADMIN_KEY, TestDatabase, TestServer, authed, both_backends, notification_settings,
    scrape_metrics, test_settings,
};
use tonic::Code;

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn handled(service: &str, method: &str, code: &str) -> String {
    format!(
        "grpc_server_handled_total{{grpc_service=\"{service}\",grpc_method=\"{method}\",grpc_code=\"{code}\"}}"
    )
}

async fn list_services_by_reflection(server: &TestServer) {
    use futures::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    while let Some(message) = stream.next().await {
        message.expect("a reflection answer");
    }
}

both_backends! {
    async fn metrics_count_calls_by_method_and_code_and_show_the_pool(backend) {
        let Some(identity) = TestServer::spawn(Service::Identity, backend).await else {
            return;
        };
        let mut accounts = AccountServiceClient::new(identity.channel().await);
        accounts
            .create_account(authed(
                ADMIN_KEY,
                CreateAccountRequest {
                    request_id: "metrics".into(),
                    display_name: "Metrics Ltd".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("account created");
        let missing = accounts
            .get_account(authed(
                ADMIN_KEY,
                GetAccountRequest {
                    id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let anonymous = accounts
            .list_accounts(tonic::Request::new(ListAccountsRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(anonymous.code(), Code::Unauthenticated);
        list_services_by_reflection(&identity).await;

        let (content_type, text) = scrape_metrics(identity.metrics_addr()).await;
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let account_service = "roster.identity.v1.AccountService";
        for (series, count) in [
            (handled(account_service, "CreateAccount", "OK"), 1.0),
            (handled(account_service, "GetAccount", "NOT_FOUND"), 1.0),
            (handled(account_service, "ListAccounts", "UNAUTHENTICATED"), 1.0),
            // A streamed response: its status comes in the trailers.
            (
                handled(
                    "grpc.reflection.v1.ServerReflection",
                    "ServerReflectionInfo",
                    "OK",
                ),
                1.0,
            ),
            (
                format!(
                    "grpc_server_handling_seconds_count{{grpc_service=\"{account_service}\",grpc_method=\"CreateAccount\"}}"
                ),
                1.0,
            ),
            (
                format!(
                    "grpc_server_handling_seconds_bucket{{grpc_service=\"{account_service}\",grpc_method=\"CreateAccount\",le=\"+Inf\"}}"
                ),
                1.0,
            ),
            (
                "roster_db_pool_max_connections".to_owned(),
                f64::from(identity.settings.db_max_connections),
            ),
        ] {
            assert_eq!(sample(&text, &series), Some(count), "{series} in\n{text}");
        }
        let open = sample(&text, "roster_db_pool_connections").expect("pool size");
        let idle = sample(&text, "roster_db_pool_idle_connections").expect("idle connections");
        assert!(open >= 1.0 && idle <= open, "pool: {open} open, {idle} idle");
    }

    async fn metrics_show_the_notification_queue_depth_and_age(backend) {
        let Some(database) = TestDatabase::create(backend).await else {
            return;
        };
        let settings = test_settings(Service::Notification, &database.url);
        // Nobody listens on port 1: the email waits for a retry a minute away.
        let notification = TestServer::start_notification(
            settings,
            roster_notification::Settings {
                retry_base_millis: 60_000,
                retry_max_millis: 120_000,
                ..notification_settings("smtp://127.0.0.1:1")
            },
            Arc::new(database),
            Vec::new(),
        )
        .await;
        let channel = notification.channel().await;
        NotificationServiceClient::new(channel.clone())
            .send_email(authed(
                ADMIN_KEY,
                SendEmailRequest {
                    request_id: "metrics-queue".into(),
                    account_id: uuid::Uuid::new_v4().to_string(),
                    recipient: "ada@example.com".into(),
                    template: "welcome".into(),
                    locale: "en".into(),
                    variables: HashMap::from([
                        ("first_name".to_owned(), "Ada".to_owned()),
                        ("username".to_owned(), "ada".to_owned()),
                    ]),
                    account_display_name: "Acme".into(),
                },
            ))
            .await
            .expect("queued");
        // A method this server does not host is counted, but not by its name.
        let unhosted = ProfileServiceClient::new(channel)
            .get_profile(authed(ADMIN_KEY, GetProfileRequest { id: "x".into() }))
            .await
            .unwrap_err();
        assert_eq!(unhosted.code(), Code::Unimplemented);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        let (_, text) = scrape_metrics(notification.metrics_addr()).await;
        assert_eq!(
            sample(&text, "roster_notification_queue_depth"),
            Some(1.0),
            "{text}"
        );
        let age = sample(&text, "roster_notification_queue_oldest_age_seconds").expect("age");
        assert!(age > 0.0 && age < 60.0, "oldest email waits {age} s");
        assert_eq!(
            sample(&text, &handled("unknown", "unknown", "UNIMPLEMENTED")),
            Some(1.0),
            "{text}"
        );
        assert!(!text.contains("GetProfile"), "{text}");
    }

    async fn metrics_show_import_rows_processed_and_imports_by_state(backend) {
        let Some(suite) = ImportSuite::start(backend).await else {
            return;
        };
        let account = suite.account("Metrics Imports Ltd").await;
        let mut imports = suite.import_client().await;
        // Three new people and one row in error (no email address).
        let mut file = people_csv("metrics", 3);
        file.extend_from_slice(b",Nobody,Nowhere,,,,,,\r\n");
        let created = create_import(&mut imports, ADMIN_KEY, &account, file).await.unwrap();
        wait_for_state(&mut imports, &created.id, &[im::ImportState::Validated], WAIT).await;

        let (_, text) = scrape_metrics(suite.imports.metrics_addr()).await;
        assert_eq!(sample(&text, "roster_import_rows_processed_total{state=\"validated\"}"), Some(4.0), "{text}");
        assert_eq!(sample(&text, "roster_imports{state=\"VALIDATED\"}"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "roster_imports{state=\"APPLYING\"}"), Some(0.0), "{text}");

        submit_import(&mut imports, &created.id, false).await;
        wait_for_state(&mut imports, &created.id, &[im::ImportState::CompletedWithErrors], WAIT).await;

        let (_, text) = scrape_metrics(suite.imports.metrics_addr()).await;
        assert_eq!(sample(&text, "roster_import_rows_processed_total{state=\"applied\"}"), Some(3.0), "{text}");
        assert_eq!(sample(&text, "roster_import_rows_processed_total{state=\"failed\"}"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "roster_imports{state=\"VALIDATED\"}"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "roster_imports{state=\"COMPLETED_WITH_ERRORS\"}"), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, &handled("roster.imports.v1.ImportService", "SubmitImport", "OK")),
            Some(1.0),
            "{text}"
        );
    }
}
