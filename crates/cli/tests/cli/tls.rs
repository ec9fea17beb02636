//! The operator CLI against services that serve mutual TLS, as the production overlay runs them:
//! identity (and bulk-import) as `roster serve` processes with certificates from a CA made at run
//! time, and the `roster` binary connecting with the `--tls-*` options or their variables.

use crate::common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use roster_tests::pki::{CertFiles, TestCa};
use serde_json::Value;

const KEY: &str = "tls-operator-key";

/// A `roster serve` process, killed when the test ends however it ends.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Identity serving mutual TLS, the CA that signed its certificate, and a client certificate.
struct Mtls {
    ca: TestCa,
    client: CertFiles,
    dir: tempfile::TempDir,
    identity_port: u16,
    _identity: Served,
}

impl Mtls {
    fn start() -> Mtls {
        let ca = TestCa::new("cli");
        let client = ca.client("operator");
        let dir = tempfile::tempdir().expect("temporary directory");
        common::write_admin_keys_file(&dir.path().join("keys.toml"), KEY);
        let identity_port = common::free_port();
        let server = ca.server("identity");
        let identity = Served(common::serve(
            "identity",
            &[
                ("LISTEN_ADDR", format!("127.0.0.1:{identity_port}")),
                ("DATABASE_URL", sqlite_url(dir.path(), "identity")),
                ("KEYS_FILE", keys_file(dir.path())),
                (
                    "RESET_HTTP_ADDR",
                    format!("127.0.0.1:{}", common::free_port()),
                ),
                ("SCIM_ADDR", "off".to_owned()),
                ("METRICS_ADDR", "off".to_owned()),
                ("TLS_CERT_FILE", server.cert.display().to_string()),
                ("TLS_KEY_FILE", server.key.display().to_string()),
                ("TLS_CLIENT_CA_FILE", ca.ca_file().display().to_string()),
            ],
        ));
        wait_for_port(identity_port);
        Mtls {
            ca,
            client,
            dir,
            identity_port,
            _identity: identity,
        }
    }

    /// Starts bulk-import serving mutual TLS and calling identity over mutual TLS; returns its
    /// port.
    fn start_bulk_import(&self) -> (u16, Served) {
        let port = common::free_port();
        let server = self.ca.server("bulk-import");
        let client = self.ca.client("bulk-import-client");
        let path = |path: &Path| path.display().to_string();
        let served = Served(common::serve(
            "bulk-import",
            &[
                ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("DATABASE_URL", sqlite_url(self.dir.path(), "imports")),
                ("KEYS_FILE", keys_file(self.dir.path())),
                ("METRICS_ADDR", "off".to_owned()),
                ("TLS_CERT_FILE", path(&server.cert)),
                ("TLS_KEY_FILE", path(&server.key)),
                ("TLS_CLIENT_CA_FILE", path(&self.ca.ca_file())),
                (
                    "IDENTITY_URL",
                    format!("https://127.0.0.1:{}", self.identity_port),
                ),
                ("IDENTITY_KEY", KEY.to_owned()),
                ("IDENTITY_TLS_CA_FILE", path(&self.ca.ca_file())),
                ("IDENTITY_TLS_CERT_FILE", path(&client.cert)),
                ("IDENTITY_TLS_KEY_FILE", path(&client.key)),
            ],
        ));
        wait_for_port(port);
        (port, served)
    }

    fn identity_addr(&self) -> String {
        format!("127.0.0.1:{}", self.identity_port)
    }

    /// `--tls-ca-file`, `--tls-cert-file` and `--tls-key-file` with this CA and client.
    fn tls_flags(&self) -> Vec<String> {
        vec![
            "--tls-ca-file".into(),
            self.ca.ca_file().display().to_string(),
            "--tls-cert-file".into(),
            self.client.cert.display().to_string(),
            "--tls-key-file".into(),
            self.client.key.display().to_string(),
        ]
    }
}

fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}/{name}.db?mode=rwc", dir.display())
}

fn keys_file(dir: &Path) -> String {
    dir.join("keys.toml").display().to_string()
}

/// Waits until something accepts connections on `port`: the servers bind once their database is
/// migrated, and serve from then on.
fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `roster` with the caller key, `env` and `args`, and none of the operator's own settings.
fn roster(args: &[String], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    for variable in [
        "ROSTER_IDENTITY_ADDR",
        "ROSTER_BULK_IMPORT_ADDR",
        "ROSTER_NOTIFICATION_ADDR",
        "ROSTER_TIMEOUT",
        "ROSTER_TLS_CA_FILE",
        "ROSTER_TLS_CERT_FILE",
        "ROSTER_TLS_KEY_FILE",
        "ROSTER_TLS_DOMAIN",
    ] {
        command.env_remove(variable);
    }
    command
        .args(args)
        .env("ROSTER_KEY", KEY)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .expect("roster runs")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "roster failed\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

#[track_caller]
fn assert_failure(output: &Output) {
    assert!(
        !output.status.success(),
        "roster succeeded\nstdout:\n{}",
        stdout(output)
    );
}

/// A listener that nothing should connect to, for options that must be refused before any
/// connection is made.
fn untouched_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("its address").to_string();
    (listener, addr)
}

#[track_caller]
fn assert_never_connected(listener: &TcpListener) {
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("roster connected before refusing its options: {other:?}"),
    }
}

#[test]
fn accounts_are_created_and_listed_over_mutual_tls_with_the_client_certificate() {
    let mtls = Mtls::start();
    let mut create = args(&["--identity-addr", &mtls.identity_addr()]);
    create.extend(mtls.tls_flags());
    create.extend(args(&[
        "--json",
        "accounts",
        "create",
        "--name",
        "Secure Ltd",
    ]));
    let created = roster(&create, &[]);
    assert_success(&created);
    let created: Value = serde_json::from_str(&stdout(&created)).expect("JSON");

    // The same through the variables, with an explicit https:// address.
    let listed = roster(
        &args(&["--json", "accounts", "list"]),
        &[
            (
                "ROSTER_IDENTITY_ADDR",
                format!("https://{}", mtls.identity_addr()),
            ),
            (
                "ROSTER_TLS_CA_FILE",
                mtls.ca.ca_file().display().to_string(),
            ),
            (
                "ROSTER_TLS_CERT_FILE",
                mtls.client.cert.display().to_string(),
            ),
            ("ROSTER_TLS_KEY_FILE", mtls.client.key.display().to_string()),
        ],
    );
    assert_success(&listed);
    let listed: Value = serde_json::from_str(&stdout(&listed)).expect("JSON");
    let ids: Vec<&Value> = listed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|account| &account["id"])
        .collect();
    assert_eq!(ids, [&created["account"]["id"]], "{listed}");
}

#[test]
fn the_server_certificate_must_carry_the_tls_domain() {
    let mtls = Mtls::start();
    let list = |domain: &str| {
        let mut list = args(&["--identity-addr", &mtls.identity_addr()]);
        list.extend(mtls.tls_flags());
        list.extend(args(&["--tls-domain", domain, "accounts", "list"]));
        roster(&list, &[])
    };
    // The certificate names localhost, as when port-forwarding to it.
    assert_success(&list("localhost"));

    let refused = list("identity.roster.svc");
    assert_failure(&refused);
    assert!(
        stderr(&refused).contains("cannot reach identity"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn without_a_client_certificate_the_mutual_tls_port_refuses_the_cli() {
    let mtls = Mtls::start();
    let output = roster(
        &args(&[
            "--identity-addr",
            &mtls.identity_addr(),
            "--tls-ca-file",
            &mtls.ca.ca_file().display().to_string(),
            "accounts",
            "list",
        ]),
        &[],
    );
    assert_failure(&output);
    // The server closes the connection once the handshake is over, so the call breaks: the
    // hint names the client certificate options, and does not blame the deadline.
    let stderr = stderr(&output);
    assert!(
        stderr.contains("--tls-cert-file and --tls-key-file"),
        "{stderr}"
    );
    assert!(!stderr.contains("--timeout"), "{stderr}");
}

#[test]
fn a_plaintext_cli_cannot_reach_the_tls_port() {
    let mtls = Mtls::start();
    let output = roster(
        &args(&["--identity-addr", &mtls.identity_addr(), "accounts", "list"]),
        &[],
    );
    assert_failure(&output);
    let stderr = stderr(&output);
    assert!(
        stderr.contains("https://"),
        "the hint says https://: {stderr}"
    );
}

#[test]
fn a_client_certificate_without_its_key_is_refused_before_connecting() {
    let (listener, addr) = untouched_listener();
    let output = roster(
        &args(&[
            "--identity-addr",
            &addr,
            "--tls-cert-file",
            "/nonexistent/client.pem",
            "accounts",
            "list",
        ]),
        &[],
    );
    assert_failure(&output);
    let stderr = stderr(&output);
    assert!(
        stderr.contains("--tls-cert-file") && stderr.contains("--tls-key-file"),
        "{stderr}"
    );
    assert_never_connected(&listener);

    // The same pair checked when the key comes alone, from its variable.
    let output = roster(
        &args(&["--identity-addr", &addr, "accounts", "list"]),
        &[("ROSTER_TLS_KEY_FILE", "/nonexistent/client-key.pem".into())],
    );
    assert_failure(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tls-cert-file") && stderr.contains("--tls-key-file"),
        "{stderr}"
    );
    assert_never_connected(&listener);
}

#[test]
fn tls_options_with_an_http_address_are_refused_naming_both() {
    let (listener, addr) = untouched_listener();
    let output = roster(
        &args(&[
            "--identity-addr",
            &format!("http://{addr}"),
            "--tls-ca-file",
            "/nonexistent/ca.pem",
            "accounts",
            "list",
        ]),
        &[],
    );
    assert_failure(&output);
    let stderr = stderr(&output);
    assert!(
        stderr.contains("--identity-addr") && stderr.contains("--tls-ca-file"),
        "{stderr}"
    );
    assert_never_connected(&listener);
}

#[test]
fn an_unreadable_tls_file_is_named_with_its_option() {
    let (listener, addr) = untouched_listener();
    let output = roster(
        &args(&[
            "--identity-addr",
            &addr,
            "--tls-ca-file",
            "/nonexistent/ca.pem",
            "accounts",
            "list",
        ]),
        &[],
    );
    assert_failure(&output);
    let stderr = stderr(&output);
    assert!(
        stderr.contains("--tls-ca-file /nonexistent/ca.pem"),
        "{stderr}"
    );
    assert_never_connected(&listener);
}

#[test]
fn an_import_template_is_downloaded_over_mutual_tls() {
    let mtls = Mtls::start();
    let (bulk_import_port, _bulk_import) = mtls.start_bulk_import();
    let tls_env = [
        ("ROSTER_IDENTITY_ADDR", mtls.identity_addr()),
        (
            "ROSTER_BULK_IMPORT_ADDR",
            format!("127.0.0.1:{bulk_import_port}"),
        ),
        (
            "ROSTER_TLS_CA_FILE",
            mtls.ca.ca_file().display().to_string(),
        ),
        (
            "ROSTER_TLS_CERT_FILE",
            mtls.client.cert.display().to_string(),
        ),
        ("ROSTER_TLS_KEY_FILE", mtls.client.key.display().to_string()),
    ];
    let created = roster(
        &args(&["--json", "accounts", "create", "--name", "Import Ltd"]),
        &tls_env,
    );
    assert_success(&created);
    let created: Value = serde_json::from_str(&stdout(&created)).expect("JSON");
    let account = created["account"]["id"].as_str().expect("an id").to_owned();
    let profile = roster(
        &args(&[
            "profiles",
            "create",
            "--account",
            &account,
            "--first-name",
            "Ada",
            "--last-name",
            "Lovelace",
            "--email",
            "ada@example.com",
        ]),
        &tls_env,
    );
    assert_success(&profile);

    let template = roster(
        &args(&["import", "template", "--account", &account]),
        &tls_env,
    );
    assert_success(&template);
    let csv = stdout(&template);
    assert!(csv.contains("ada@example.com"), "{csv}");
}
