//! bulk-import calls identity over mutual TLS: identity serves only clients whose certificate
//! its CA signed, and bulk-import, configured with `identity_tls_ca_file`,
//! `identity_tls_cert_file` and `identity_tls_key_file`, validates and applies an import
//! through it. Without its client certificate, bulk-import cannot reach identity at all.
//! Certificates come from a CA made at run time.

use std::sync::Arc;
use std::time::Duration;

use roster_proto::identity::v1 as id;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_proto::imports::v1 as pb;
use roster_runtime::Service;
use roster_runtime::client::{Client, ClientConfig, ClientTls};
use roster_tests::clients::Imports;
use roster_tests::imports::{identity_key_for_imports, import_settings, parse_csv, people_csv};
use roster_tests::pki::TestCa;
use roster_tests::{ADMIN_KEY, Backend, TestDatabase, TestServer, authed, test_settings};

const WAIT: Duration = Duration::from_secs(60);

/// Identity serving gRPC over mutual TLS with certificates of `ca`.
async fn identity_over_mtls(ca: &TestCa) -> TestServer {
    let database = Arc::new(
        TestDatabase::create(Backend::Sqlite)
            .await
            .expect("SQLite is always there"),
    );
    let server = ca.server("identity");
    let mut settings = test_settings(Service::Identity, &database.url);
    settings.tls_cert_file = Some(server.cert);
    settings.tls_key_file = Some(server.key);
    settings.tls_client_ca_file = Some(ca.ca_file());
    TestServer::start(
        Service::Identity,
        settings,
        database,
        vec![identity_key_for_imports()],
    )
    .await
}

/// bulk-import calling identity at `https://…` with `tls`.
async fn bulk_import(identity: &TestServer, tls: ClientTls) -> TestServer {
    let database = Arc::new(
        TestDatabase::create(Backend::Sqlite)
            .await
            .expect("SQLite is always there"),
    );
    let settings = roster_bulk_import::Settings {
        identity_url: format!("https://{}", identity.addr),
        identity_tls_ca_file: tls.ca_file,
        identity_tls_cert_file: tls.cert_file,
        identity_tls_key_file: tls.key_file,
        identity_timeout_seconds: 10,
        ..import_settings(None)
    };
    TestServer::start_bulk_import(
        test_settings(Service::BulkImport, &database.url),
        settings,
        database,
        Vec::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_import_validates_and_applies_through_identity_over_mutual_tls() {
    let ca = TestCa::new("imports");
    let identity = identity_over_mtls(&ca).await;
    let client_cert = ca.client("bulk-import");
    let tls = ClientTls {
        ca_file: Some(ca.ca_file()),
        cert_file: Some(client_cert.cert),
        key_file: Some(client_cert.key),
        domain: None,
    };

    // The test itself reaches identity the same way, to create the account.
    let operator = Client::new(
        ClientConfig::new("identity", &format!("https://{}", identity.addr)).tls(tls.clone()),
    )
    .expect("a TLS client");
    // Over the runtime's own `Client` (the transport bulk-import calls identity with), which
    // the typed clients, built on a `Channel`, do not take.
    let account = AccountServiceClient::new(operator)
        .create_account(authed(
            ADMIN_KEY,
            id::CreateAccountRequest {
                display_name: "Encrypted Ltd".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("account created over mutual TLS")
        .into_inner()
        .account
        .expect("an account")
        .id;

    let imports_server = bulk_import(&identity, tls).await;
    let imports = Imports::new(imports_server.channel().await, ADMIN_KEY);
    let validated = imports
        .validated_csv(&account, people_csv("tls", 3), WAIT)
        .await;
    assert_eq!(validated.create_count, 3, "{validated:?}");
    imports.submit(&validated.id, false).await;
    let done = imports
        .wait_for_state(&validated.id, &[pb::ImportState::Completed], WAIT)
        .await;
    assert_eq!(done.applied_count, 3, "{done:?}");

    // The template is made from identity's listing, read over the same connection.
    let template = parse_csv(&imports.template(&account).await);
    let mut emails: Vec<&str> = template[1..].iter().map(|row| row[3].as_str()).collect();
    emails.sort();
    assert_eq!(
        emails,
        ["tls0@example.com", "tls1@example.com", "tls2@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_import_without_its_client_certificate_cannot_reach_identity() {
    let ca = TestCa::new("imports");
    let identity = identity_over_mtls(&ca).await;
    let imports_server = bulk_import(
        &identity,
        ClientTls {
            ca_file: Some(ca.ca_file()),
            ..ClientTls::default()
        },
    )
    .await;
    let imports = Imports::new(imports_server.channel().await, ADMIN_KEY);
    let account = uuid::Uuid::new_v4().to_string();
    let result = imports
        .download_template(pb::DownloadTemplateRequest {
            account_id: account,
        })
        .await;
    let error = match result {
        Err(status) => status,
        Ok(mut stream) => loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the template was made without reaching identity"),
                Err(status) => break status,
            }
        },
    };
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
}
