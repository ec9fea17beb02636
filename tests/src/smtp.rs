//! A real SMTP server for tests: aiosmtpd (PyPI) run as a process by `support/smtp_server.py`,
//! recording every accepted message as JSON so tests count deliveries by reading records.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The user tests authenticate to the SMTP server with.
pub const SMTP_USER: &str = "roster";
/// The password tests authenticate to the SMTP server with.
pub const SMTP_PASSWORD: &str = "s3cret";

/// The aiosmtpd server process, on a fixed address across restarts, recording into a directory.
pub struct SmtpServer {
    /// The loopback address it listens on (see [`SmtpServer::start`]).
    pub host: &'static str,
    pub port: u16,
    records: tempfile::TempDir,
    options: Vec<String>,
    child: Option<std::process::Child>,
}

impl SmtpServer {
    /// Starts a server with extra options (`--reject ADDR`, `--tempfail ADDR`, and for TLS
    /// `--tls-cert FILE --tls-key FILE` with `--starttls` or `--implicit-tls`); `None` when
    /// aiosmtpd is unavailable outside CI (see [`crate::not_run`]).
    ///
    /// A plain server listens on 127.0.0.2, so that its port is still free when it restarts: on
    /// 127.0.0.1 the freed port could be taken meanwhile by any of the suite's outgoing
    /// connections (to PostgreSQL, say), whose source ports come from the same range and whose
    /// source address is 127.0.0.1. A TLS server listens on 127.0.0.1, where `localhost` (the
    /// name its certificate carries) resolves.
    pub async fn start(options: &[&str]) -> Option<SmtpServer> {
        let tls = options
            .iter()
            .any(|option| matches!(*option, "--starttls" | "--implicit-tls"));
        let host = if tls { "127.0.0.1" } else { "127.0.0.2" };
        let port = std::net::TcpListener::bind((host, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = SmtpServer {
            host,
            port,
            records: tempfile::tempdir().expect("records directory"),
            options: options.iter().map(|option| (*option).to_owned()).collect(),
            child: None,
        };
        server.launch().await.then_some(server)
    }

    async fn launch(&mut self) -> bool {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/smtp_server.py");
        let mut child = std::process::Command::new("python3")
            .arg(&script)
            .arg("--host")
            .arg(self.host)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.records.path())
            .arg("--auth")
            .arg(format!("{SMTP_USER}:{SMTP_PASSWORD}"))
            .args(&self.options)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("piped stdout");
        // The first line says the server accepts connections (or EOF: it could not start).
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        });
        match tokio::time::timeout(Duration::from_secs(30), first_line).await {
            Ok(Ok(Ok(line))) if line.starts_with("READY") => {
                self.child = Some(child);
                true
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                crate::not_run(&format!(
                    "the aiosmtpd test server did not start ({other:?}); `scripts/test` installs \
                     aiosmtpd under the target directory, or `python3 -m pip install aiosmtpd`"
                ));
                false
            }
        }
    }

    /// Kills the server: every connection drops and new ones are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SMTP server stops");
            child.wait().expect("SMTP server exits");
        }
    }

    /// Starts the server again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.launch().await, "the SMTP server restarts");
    }

    /// Starts the server again on the same port with other options: a mail server that was
    /// refusing is fixed, or the other way round.
    pub async fn restart_with(&mut self, options: &[&str]) {
        self.stop();
        self.options = options.iter().map(|option| (*option).to_owned()).collect();
        self.restart().await;
    }

    /// The transport URL, with authentication.
    pub fn url(&self) -> String {
        format!(
            "smtp://{SMTP_USER}:{SMTP_PASSWORD}@{}:{}",
            self.host, self.port
        )
    }

    /// The STARTTLS-required transport URL (for a `--starttls` server), with authentication,
    /// naming the host `localhost` as its certificate does.
    pub fn starttls_url(&self) -> String {
        format!(
            "smtp://{SMTP_USER}:{SMTP_PASSWORD}@localhost:{}?tls=required",
            self.port
        )
    }

    /// The implicit-TLS transport URL (for an `--implicit-tls` server), with authentication,
    /// naming the host `localhost` as its certificate does.
    pub fn smtps_url(&self) -> String {
        format!(
            "smtps://{SMTP_USER}:{SMTP_PASSWORD}@localhost:{}",
            self.port
        )
    }

    /// Every message the server accepted; each record's `tls` says whether its session was TLS.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_dir(self.records.path())
            .expect("records directory")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .map(|path| {
                serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("JSON")
            })
            .collect()
    }

    /// How many times each Message-ID was received.
    pub fn deliveries(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for record in self.records() {
            *counts
                .entry(record["message_id"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
        counts
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
