//! TLS and mutual TLS on the server bootstrap, with certificates made for the test: a client
//! that trusts the CA is served, a plaintext client is not, and a mutual-TLS server refuses a
//! client without a certificate (or with one from another CA).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use roster_runtime::client::{Client, ClientConfig, ClientTls};
use roster_runtime::server::{RunningServer, ServerConfig, ServerTls, ServiceSet, serve};
use roster_runtime::{KeyRing, Shutdown};
use tonic::Request;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A throwaway CA that signs server and client certificates into a temporary directory.
struct TestCa {
    dir: tempfile::TempDir,
    name: &'static str,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Roster test CA {name}"));
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join(format!("{name}-ca.pem")), certificate.pem()).unwrap();
        Self {
            dir,
            name,
            issuer: Issuer::new(params, key),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join(format!("{}-ca.pem", self.name))
    }

    /// Signs a certificate for `names`, returning its certificate and key files.
    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages.push(usage);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let write = |path: &Path, text: String| std::fs::write(path, text).unwrap();
        let cert = self.dir.path().join(format!("{file}.pem"));
        let key_file = self.dir.path().join(format!("{file}-key.pem"));
        write(&cert, certificate.pem());
        write(&key_file, key.serialize_pem());
        (cert, key_file)
    }

    fn server_tls(&self, client_ca: Option<PathBuf>) -> ServerTls {
        let (cert_file, key_file) = self.issue(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        ServerTls {
            cert_file,
            key_file,
            client_ca_file: client_ca,
        }
    }
}

async fn start(tls: ServerTls) -> (RunningServer, Shutdown) {
    let shutdown = Shutdown::new();
    let config = ServerConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        request_timeout: Duration::from_secs(10),
        concurrency_limit: 16,
        max_header_list_bytes: 16 * 1024,
        drain_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(1),
        db_health_interval: Duration::from_secs(1),
        rate_limit_per_second: 0,
        rate_limit_burst: 0,
        metrics_addr: None,
        tls: Some(tls),
    };
    let server = serve(
        config,
        ServiceSet::new(),
        Arc::new(KeyRing::default()),
        None,
        shutdown.clone(),
    )
    .await
    .expect("TLS server starts");
    (server, shutdown)
}

async fn check(url: String, tls: ClientTls) -> Result<i32, tonic::Status> {
    let config = ClientConfig::new("test", &url)
        .timeout(Duration::from_secs(5))
        .tls(tls);
    let mut health = HealthClient::new(Client::new(config).expect("client configuration"));
    health
        .check(Request::new(HealthCheckRequest::default()))
        .await
        .map(|response| response.into_inner().status)
}

#[tokio::test]
async fn a_tls_server_serves_a_client_that_trusts_its_ca_and_no_plaintext_client() {
    let ca = TestCa::new("a");
    let (server, shutdown) = start(ca.server_tls(None)).await;
    let addr = server.local_addr;

    let trusting = ClientTls {
        ca_file: Some(ca.ca_file()),
        ..ClientTls::default()
    };
    assert_eq!(
        check(format!("https://{addr}"), trusting.clone())
            .await
            .expect("served"),
        ServingStatus::Serving as i32
    );
    // The certificate names `localhost`: a client connecting by IP may check that name.
    let by_name = ClientTls {
        domain: Some("localhost".to_owned()),
        ..trusting
    };
    assert_eq!(
        check(format!("https://{addr}"), by_name)
            .await
            .expect("served"),
        ServingStatus::Serving as i32
    );

    let plaintext = check(format!("http://{addr}"), ClientTls::default()).await;
    assert!(plaintext.is_err(), "a plaintext call to a TLS server fails");

    let other_ca = TestCa::new("other");
    let distrusting = ClientTls {
        ca_file: Some(other_ca.ca_file()),
        ..ClientTls::default()
    };
    assert!(
        check(format!("https://{addr}"), distrusting).await.is_err(),
        "a server whose CA the client does not trust is refused"
    );

    shutdown.trigger();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn a_mutual_tls_server_refuses_a_client_without_a_certificate() {
    let ca = TestCa::new("m");
    let (server, shutdown) = start(ca.server_tls(Some(ca.ca_file()))).await;
    let url = format!("https://{}", server.local_addr);

    let anonymous = ClientTls {
        ca_file: Some(ca.ca_file()),
        ..ClientTls::default()
    };
    let refused = check(url.clone(), anonymous).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");

    let (cert_file, key_file) = ca.issue(
        "identity",
        &["identity"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let known = ClientTls {
        ca_file: Some(ca.ca_file()),
        cert_file: Some(cert_file),
        key_file: Some(key_file),
        domain: None,
    };
    assert_eq!(
        check(url.clone(), known).await.expect("served"),
        ServingStatus::Serving as i32
    );

    let stranger_ca = TestCa::new("stranger");
    let (cert_file, key_file) = stranger_ca.issue(
        "stranger",
        &["stranger"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stranger = ClientTls {
        ca_file: Some(ca.ca_file()),
        cert_file: Some(cert_file),
        key_file: Some(key_file),
        domain: None,
    };
    assert!(
        check(url, stranger).await.is_err(),
        "a client certificate from another CA is refused"
    );

    shutdown.trigger();
    server.stopped().await.unwrap();
}
