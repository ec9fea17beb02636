//! TLS and mutual TLS on the server bootstrap, with certificates made for the test: a client
//! that trusts the CA is served, a plaintext client is not, and a mutual-TLS server refuses a
//! client without a certificate (or with one from another CA). Beside a TLS port, the plaintext
//! health listener (`health_addr`) answers what kubelet's gRPC probes ask, and nothing else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use roster_runtime::client::{Client, ClientConfig, ClientTls};
use roster_runtime::server::{RunningServer, ServerConfig, ServerTls, ServiceSet, serve};
use roster_runtime::{SharedKeyRing, Shutdown};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

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

    /// A client that trusts `trusted` and presents a certificate `name` this CA signs.
    fn client_tls(&self, name: &str, trusted: &TestCa) -> ClientTls {
        let (cert_file, key_file) = self.issue(name, &[name], ExtendedKeyUsagePurpose::ClientAuth);
        ClientTls {
            ca_file: Some(trusted.ca_file()),
            cert_file: Some(cert_file),
            key_file: Some(key_file),
            domain: None,
        }
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

/// The configuration of a TLS server on a free port, without metrics or a health listener.
fn config(tls: ServerTls) -> ServerConfig {
    ServerConfig {
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
        health_addr: None,
        tls: Some(tls),
    }
}

async fn start(tls: ServerTls) -> (RunningServer, Shutdown) {
    start_with(config(tls)).await
}

async fn start_with(config: ServerConfig) -> (RunningServer, Shutdown) {
    let shutdown = Shutdown::new();
    let server = serve(
        config,
        ServiceSet::new(),
        SharedKeyRing::default(),
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

/// What kubelet's gRPC probe does: plaintext HTTP/2, no client certificate, no retry, a Check
/// of the overall health (the service "").
async fn probe(addr: std::net::SocketAddr) -> Result<i32, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    HealthClient::new(channel)
        .check(Request::new(HealthCheckRequest::default()))
        .await
        .map(|response| response.into_inner().status)
}

/// Lists the hosted services through server reflection.
async fn list_services(
    url: String,
    tls: ClientTls,
) -> Result<ServerReflectionResponse, tonic::Status> {
    let config = ClientConfig::new("test", &url)
        .timeout(Duration::from_secs(5))
        .tls(tls);
    let mut reflection =
        ServerReflectionClient::new(Client::new(config).expect("client configuration"));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    responses
        .message()
        .await?
        .ok_or_else(|| tonic::Status::internal("reflection answered nothing"))
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

    let known = ca.client_tls("identity", &ca);
    assert_eq!(
        check(url.clone(), known).await.expect("served"),
        ServingStatus::Serving as i32
    );

    // Kept to the end: its directory holds the certificate files.
    let stranger_ca = TestCa::new("stranger");
    let stranger = stranger_ca.client_tls("stranger", &ca);
    assert!(
        check(url, stranger).await.is_err(),
        "a client certificate from another CA is refused"
    );

    shutdown.trigger();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn the_health_port_of_a_mutual_tls_server_answers_plaintext_probes_and_nothing_else() {
    let ca = TestCa::new("h");
    let (server, shutdown) = start_with(ServerConfig {
        health_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..config(ca.server_tls(Some(ca.ca_file())))
    })
    .await;
    let health_addr = server.health_addr.expect("the health listener is on");
    assert_ne!(health_addr.port(), 0, "the bound port is reported");
    assert_ne!(health_addr, server.local_addr);

    assert_eq!(
        probe(health_addr)
            .await
            .expect("a plaintext probe is served"),
        ServingStatus::Serving as i32
    );
    assert!(
        probe(server.local_addr).await.is_err(),
        "the main port speaks TLS only"
    );
    // One reporter behind both ports: what turns the server NOT_SERVING (the database watch,
    // the shutdown) shows on the health port.
    server
        .health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    assert_eq!(
        probe(health_addr).await.expect("served"),
        ServingStatus::NotServing as i32
    );
    server
        .health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    // The main port hosts reflection (for a client with a certificate); the health port does not.
    let tls = ca.client_tls("caller", &ca);
    list_services(format!("https://{}", server.local_addr), tls)
        .await
        .expect("reflection is served on the main port");
    let refused = list_services(format!("http://{health_addr}"), ClientTls::default())
        .await
        .expect_err("no reflection on the health port");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");

    shutdown.trigger();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn the_health_port_reports_not_serving_while_draining_then_closes() {
    let ca = TestCa::new("d");
    let (server, shutdown) = start_with(ServerConfig {
        health_addr: Some("127.0.0.1:0".parse().unwrap()),
        drain_delay: Duration::from_millis(500),
        ..config(ca.server_tls(None))
    })
    .await;
    let health_addr = server.health_addr.expect("the health listener is on");
    assert_eq!(
        probe(health_addr).await.expect("served"),
        ServingStatus::Serving as i32
    );

    shutdown.trigger();
    // The shutdown signal turns health NOT_SERVING at once; the listener stays open for the
    // drain delay so that probes and load balancers see it.
    let mut status = probe(health_addr).await;
    for _ in 0..20 {
        if status.as_ref().ok() == Some(&(ServingStatus::NotServing as i32)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        status = probe(health_addr).await;
    }
    assert_eq!(
        status.expect("answered while draining"),
        ServingStatus::NotServing as i32
    );

    server.stopped().await.unwrap();
    assert!(
        probe(health_addr).await.is_err(),
        "the health listener closes with the main listener"
    );
}

#[tokio::test]
async fn a_health_addr_already_in_use_stops_the_start() {
    let ca = TestCa::new("u");
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let error = serve(
        ServerConfig {
            health_addr: Some(addr),
            ..config(ca.server_tls(None))
        },
        ServiceSet::new(),
        SharedKeyRing::default(),
        None,
        Shutdown::new(),
    )
    .await
    .err()
    .expect("the start fails")
    .to_string();
    assert!(error.contains("health_addr"), "{error}");
}
