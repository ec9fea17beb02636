//! One trace id per call, the same everywhere, without any trace export: `roster` sends a W3C
//! `traceparent`; `roster serve identity` (a process of its own, no OTLP endpoint) adopts its
//! trace id, logs it on every line of the call, JSON and pretty alike, and an INTERNAL error
//! quotes it — the id the CLI prints with the failure. A caller that sends no traceparent (as
//! grpcurl) gets one the server makes, quoted and logged the same way.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster_proto::identity::v1 as pb;
use roster_tests::clients::{self, Health};
use roster_tests::connect;
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const KEY: &str = "trace-ids-test-key";

/// `roster serve identity` on SQLite, its log (stdout) in a file.
struct Identity {
    child: Child,
    port: u16,
    log: PathBuf,
    database_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Identity {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Identity {
    async fn start(log_format: &str) -> Identity {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = format!("sqlite://{}/identity.db?mode=rwc", dir.path().display());
        let keys_file = dir.path().join("keys.toml");
        common::write_admin_keys_file(&keys_file, KEY);
        let log = dir.path().join("identity.log");
        let port = common::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["serve", "identity"])
            .env("RUST_LOG", "debug")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("ROSTER_IDENTITY__LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ROSTER_IDENTITY__DATABASE_URL", &database_url)
            .env("ROSTER_IDENTITY__KEYS_FILE", &keys_file)
            .env("ROSTER_IDENTITY__LOG_FORMAT", log_format)
            .env("ROSTER_IDENTITY__METRICS_ADDR", "off")
            .env(
                "ROSTER_IDENTITY__RESET_HTTP_ADDR",
                format!("127.0.0.1:{}", common::free_port()),
            )
            .env("ROSTER_IDENTITY__SCIM_ADDR", "off")
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("roster starts");
        let identity = Identity {
            child,
            port,
            log,
            database_url,
            _dir: dir,
        };
        identity.wait_serving().await;
        identity
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn wait_serving(&self) {
        let started = Instant::now();
        loop {
            let channel = connect(self.addr().parse().expect("address")).await;
            let status = Health::new(channel).check("").await.ok();
            if status == Some(ServingStatus::Serving) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "identity did not turn SERVING"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `roster args…` against this identity.
    fn roster(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .env("ROSTER_KEY", KEY)
            .env("ROSTER_IDENTITY_ADDR", self.addr())
            .env_remove("ROSTER_TIMEOUT")
            .stdin(Stdio::null())
            .output()
            .expect("roster runs")
    }

    /// Makes every later read of accounts fail inside the server: its table is gone.
    async fn break_accounts(&self) {
        let database = Database::connect(self.database_url.as_str())
            .await
            .expect("a second connection");
        database
            .execute_unprepared("ALTER TABLE accounts RENAME TO accounts_gone")
            .await
            .expect("table renamed");
    }

    /// The log lines written so far, once the ones of the last call are in.
    async fn log_lines(&self, containing: &str) -> Vec<String> {
        let started = Instant::now();
        loop {
            let lines = read_lines(&self.log);
            if lines.iter().any(|line| line.contains(containing)) {
                return lines;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no log line holds {containing:?}:\n{}",
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The log's lines, without the terminal colours of the pretty format.
fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(without_colours)
        .collect()
}

fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// `→ METHOD  request-id R  trace-id T` lines that `--verbose` prints: (request id, trace id).
fn verbose_ids(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["→", _, "request-id", request, "trace-id", trace] => {
                    Some(((*request).to_owned(), (*trace).to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Asserts that every log line of the call `request_id` carries `trace_id`, and returns them.
fn lines_of_call(lines: &[String], json: bool, request_id: &str, trace_id: &str) -> Vec<String> {
    let of_call: Vec<String> = lines
        .iter()
        .filter(|line| line.contains(request_id))
        .cloned()
        .collect();
    assert!(
        !of_call.is_empty(),
        "no line of call {request_id}:\n{}",
        lines.join("\n")
    );
    for line in &of_call {
        if json {
            let parsed: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("a JSON log line ({error}): {line}"));
            assert_eq!(parsed["trace_id"], trace_id, "{line}");
        } else {
            assert!(line.contains(&format!("trace_id={trace_id}")), "{line}");
        }
    }
    of_call
}

async fn the_cli_trace_id_is_the_servers(log_format: &str) {
    let json = log_format == "json";
    let identity = Identity::start(log_format).await;

    // A call that works: each of its lines names the trace the CLI made.
    let created = identity.roster(&["--verbose", "accounts", "create", "--name", "Traced Ltd"]);
    let stderr = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(created.status.success(), "{stderr}");
    let ids = verbose_ids(&stderr);
    let [(request_id, trace_id)] = ids.as_slice() else {
        panic!("one call, its ids printed: {stderr}");
    };
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let lines = identity.log_lines(request_id).await;
    lines_of_call(&lines, json, request_id, trace_id);

    // A call that fails inside the server: the INTERNAL error quotes the CLI's trace id, the
    // CLI prints that one, and the server's lines of the call, the error's included, carry it.
    identity.break_accounts().await;
    let failed = identity.roster(&["--json", "accounts", "list"]);
    assert!(!failed.status.success());
    let error: Value = serde_json::from_slice(&failed.stderr).unwrap_or_else(|error| {
        panic!(
            "stderr is one JSON document ({error}): {}",
            String::from_utf8_lossy(&failed.stderr)
        )
    });
    let error = &error["error"];
    assert_eq!(error["code"], "INTERNAL", "{error}");
    let trace_id = error["trace_id"].as_str().expect("a trace id").to_owned();
    let request_id = error["request_id"]
        .as_str()
        .expect("a request id")
        .to_owned();
    assert!(
        error["status_message"]
            .as_str()
            .is_some_and(|message| message.contains(&format!("trace id {trace_id}"))),
        "the INTERNAL message quotes the CLI's trace id: {error}"
    );
    let lines = identity.log_lines(&request_id).await;
    let of_call = lines_of_call(&lines, json, &request_id, &trace_id);
    assert!(
        of_call.iter().any(|line| line.contains("internal error")),
        "the internal error is logged with the call: {of_call:#?}"
    );
    let text = identity.roster(&["accounts", "list"]);
    let text = String::from_utf8_lossy(&text.stderr).into_owned();
    let quoted = text
        .split("internal error (trace id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the text form quotes the server's message: {text}"));
    assert!(
        text.contains(&format!(", trace id {quoted}")),
        "the CLI's trace id is the one the server quotes: {text}"
    );

    // A caller without a traceparent: the server makes the trace id, quotes and logs it.
    let channel = connect(identity.addr().parse().expect("address")).await;
    let status = clients::Identity::new(channel, KEY)
        .with_metadata("x-request-id", "no-traceparent")
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect_err("the table is gone");
    assert_eq!(status.code(), Code::Internal);
    let made = status
        .message()
        .split("trace id ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a trace id is quoted: {}", status.message()))
        .to_owned();
    assert!(
        made.len() == 32 && made.chars().all(|c| c.is_ascii_hexdigit()) && made != *trace_id,
        "a W3C trace id of the server's own: {made}"
    );
    let lines = identity.log_lines("no-traceparent").await;
    lines_of_call(&lines, json, "no-traceparent", &made);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_callers_trace_id_on_every_line_and_internal_errors_quote_it() {
    the_cli_trace_id_is_the_servers("json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_logs_carry_the_callers_trace_id_on_every_line_and_internal_errors_quote_it() {
    the_cli_trace_id_is_the_servers("pretty").await;
}
