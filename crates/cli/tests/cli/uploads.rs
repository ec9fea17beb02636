//! Uploads from a terminal and after a crash, on SQLite and PostgreSQL: a 150 MB file goes
//! through `roster import upload` although the upload takes far longer than the server's
//! deadline for one call, and the command then follows validation past that deadline too; the
//! command says which encoding, delimiter and line ending the file was read with, detected or
//! named with `--encoding`;
//! `roster import list` and `roster import cancel` show and end imports, as tables and as
//! JSON; an upload left UPLOADING by a bulk-import process killed with SIGKILL is failed by the
//! restarted process's sweep, its stored pieces gone.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster_proto::imports::v1 as pb;
use roster_tests::clients::Imports;
use roster_tests::imports::{iconv, people_csv, stored_chunks};
use roster_tests::{ADMIN_KEY, Backend, ImportSuite, TestDatabase, both_backends, connect};
use serde_json::Value;

/// What one `roster` run printed, and how it ended.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
    /// How long it ran.
    took: Duration,
    /// When stderr said the file was uploaded, after the start.
    uploaded_after: Option<Duration>,
}

impl Run {
    fn ok(self) -> Run {
        assert!(
            self.success,
            "roster failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{}", self.stdout))
    }
}

/// A `roster` process running against the suite's services with the admin key.
struct Running {
    started: Instant,
    child: Child,
    stderr: std::sync::mpsc::Receiver<(Duration, String)>,
    lines: Vec<(Duration, String)>,
}

impl Running {
    fn start(suite: &ImportSuite, args: &[&str]) -> Running {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .env("ROSTER_KEY", ADMIN_KEY)
            .env("ROSTER_IDENTITY_ADDR", suite.identity.addr.to_string())
            .env("ROSTER_BULK_IMPORT_ADDR", suite.imports.addr.to_string())
            .env_remove("ROSTER_TIMEOUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("roster starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send((started.elapsed(), line)).is_err() {
                    return;
                }
            }
        });
        Running {
            started,
            child,
            stderr: receiver,
            lines: Vec::new(),
        }
    }

    /// Waits until stderr has printed a line starting with `prefix`; returns the line and
    /// when it came after the start.
    async fn line(&mut self, prefix: &str, timeout: Duration) -> (Duration, String) {
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                self.lines.push(line);
            }
            if let Some(found) = self.lines.iter().find(|(_, line)| line.starts_with(prefix)) {
                return found.clone();
            }
            assert!(
                self.started.elapsed() < timeout,
                "roster printed no {prefix:?} within {timeout:?}: {:?}",
                self.lines
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to end.
    async fn finish(mut self) -> Run {
        let child = self.child;
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("the blocking task completes")
            .expect("roster runs");
        let took = self.started.elapsed();
        // The reader thread ends with the process's stderr.
        for line in self.stderr.iter() {
            self.lines.push(line);
        }
        Run {
            success: output.status.success(),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: self
                .lines
                .iter()
                .map(|(_, line)| format!("{line}\n"))
                .collect(),
            took,
            uploaded_after: self
                .lines
                .iter()
                .find(|(_, line)| line.starts_with("uploaded as import"))
                .map(|(after, _)| *after),
        }
    }
}

/// Runs `roster args…` to its end.
async fn roster(suite: &ImportSuite, args: &[&str]) -> Run {
    Running::start(suite, args).finish().await
}

/// Writes a CSV of at least `bytes` bytes: the template header and rows of new people whose
/// cells are long but valid (about 690 bytes a row); returns the number of rows.
fn write_big_csv(path: &Path, bytes: u64) -> u64 {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("CSV file"));
    file.write_all(
        b"Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone\r\n",
    )
    .unwrap();
    let first = "Firstname".repeat(10);
    let last = "Lastname".repeat(12);
    let local = "big.upload.person".repeat(3);
    let domain = ["a".repeat(60), "b".repeat(60), "c".repeat(60)].join(".");
    let title = "Senior Principal Engineer ".repeat(3);
    let department = "Research and Development ".repeat(3);
    let (mut written, mut rows) = (0u64, 0u64);
    while written < bytes {
        let row = format!(
            ",{first},{last},{local}{rows}@{domain}.example,,{},{},en-GB,America/Argentina/Buenos_Aires\r\n",
            title.trim_end(),
            department.trim_end(),
        );
        file.write_all(row.as_bytes()).unwrap();
        written += row.len() as u64;
        rows += 1;
    }
    file.flush().unwrap();
    rows
}

async fn a_150_mb_upload_through_the_cli_outlasts_the_request_timeout(backend: Backend) {
    // Bulk-import's defaults, but for a 2 s deadline per call: the upload takes far longer.
    let Some(suite) = ImportSuite::start_configured(
        backend,
        roster_tests::identity_settings(),
        |server| server.request_timeout_seconds = 2,
        |_| {},
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Big Upload").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.csv");
    let bytes = 150 * 1000 * 1000;
    write_big_csv(&path, bytes);

    let mut upload = Running::start(
        &suite,
        &[
            "import",
            "upload",
            path.to_str().unwrap(),
            "--account",
            &account,
        ],
    );
    let (after, line) = upload
        .line("uploaded as import", Duration::from_secs(600))
        .await;
    assert!(
        after > Duration::from_secs(2),
        "the upload ({after:?}) outlasted the 2 s request timeout"
    );
    let import_id = line
        .trim_start_matches("uploaded as import ")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let client = suite.import_client().await;
    let import = client
        .get_import(pb::GetImportRequest {
            import_id: import_id.clone(),
        })
        .await
        .expect("GetImport")
        .import
        .expect("import");
    assert!(
        [
            pb::ImportState::Validating as i32,
            pb::ImportState::Validated as i32
        ]
        .contains(&import.state),
        "the whole file arrived and is validated: {import:?}"
    );
    // Validating 200,000 rows would take minutes more: the operator cancels it, and the
    // upload command, still following the import, reports that.
    let cancelled = roster(&suite, &["import", "cancel", &import_id]).await.ok();
    assert!(
        cancelled.stdout.contains("cancelled"),
        "{}",
        cancelled.stdout
    );
    let run = upload.finish().await.ok();
    assert!(
        run.stdout
            .contains(&format!("import {import_id} is CANCELLED")),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("--timeout"), "{}", run.stderr);
}

async fn the_upload_command_follows_validation_past_the_request_timeout(backend: Backend) {
    let Some(suite) = ImportSuite::start_configured(
        backend,
        roster_tests::identity_settings(),
        |server| server.request_timeout_seconds = 1,
        |_| {},
        Vec::new(),
    )
    .await
    else {
        return;
    };
    let account = suite.account("Long Watch").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.csv");
    // About 10,000 rows of long cells: their validation lasts well past the 1 s request
    // timeout on a fast machine too (2 MB took 0.8 s on one).
    let rows = write_big_csv(&path, 6 * 1000 * 1000);

    let run = roster(
        &suite,
        &[
            "import",
            "upload",
            path.to_str().unwrap(),
            "--account",
            &account,
        ],
    )
    .await
    .ok();
    let uploaded_after = run.uploaded_after.expect("the upload was reported");
    assert!(
        run.took - uploaded_after > Duration::from_secs(1),
        "WatchImport followed validation for longer than the 1 s request timeout ({:?})",
        run.took - uploaded_after
    );
    assert!(run.stdout.contains("is VALIDATED"), "{}", run.stdout);
    let counts = format!("rows {rows}: create {rows}, update 0, unchanged 0, errors 0");
    assert!(run.stdout.contains(&counts), "{counts} in\n{}", run.stdout);
}

async fn imports_are_listed_and_cancelled_from_the_cli(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Listed").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("team.csv");
    std::fs::write(&path, people_csv("listed", 3)).unwrap();
    let run = roster(
        &suite,
        &[
            "import",
            "upload",
            path.to_str().unwrap(),
            "--account",
            &account,
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("is VALIDATED"), "{}", run.stdout);
    // A second import, left UPLOADING by a client that is still connected.
    let upload = Imports::new(suite.imports.channel().await, ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    assert!(upload.send(&people_csv("open", 10)).await);
    let open = suite
        .import_client()
        .await
        .uploading_import(
            &suite.imports.database,
            &account,
            // The file is too small to be stored before its end: the import is there from
            // the header.
            0,
            Duration::from_secs(30),
        )
        .await;

    let table = roster(&suite, &["import", "list", "--account", &account])
        .await
        .ok()
        .stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "a header and two imports:\n{table}");
    assert!(
        lines[1].starts_with(&open) && lines[1].contains("uploading"),
        "newest first:\n{table}"
    );
    assert!(
        lines[2].contains("team.csv") && lines[2].contains("validated"),
        "{table}"
    );

    let listed = roster(
        &suite,
        &[
            "--json",
            "import",
            "list",
            "--account",
            &account,
            "--state",
            "uploading",
        ],
    )
    .await
    .ok()
    .json();
    let imports = listed["imports"].as_array().expect("imports");
    assert_eq!(imports.len(), 1, "{listed}");
    assert_eq!(imports[0]["id"], open.as_str());
    assert_eq!(imports[0]["state"], "IMPORT_STATE_UPLOADING");
    assert_eq!(listed["next_page_token"], "");

    let cancelled = roster(&suite, &["--json", "import", "cancel", &open])
        .await
        .ok()
        .json();
    assert_eq!(cancelled["import"]["id"], open.as_str());
    assert_eq!(cancelled["import"]["state"], "IMPORT_STATE_CANCELLED");
    assert_eq!(
        stored_chunks(&suite.imports.database, &open).await,
        0,
        "a cancelled upload keeps nothing"
    );
    // The client still sending learns that its import is over.
    assert!(upload.send(&people_csv("late", 10)).await);
    let status = upload
        .finish()
        .await
        .expect_err("the upload ended with the cancel");
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(
        roster_tests::reason(&status).as_deref(),
        Some("UPLOAD_ENDED")
    );

    let validated = lines[2].split_whitespace().next().unwrap().to_owned();
    let text = roster(&suite, &["import", "cancel", &validated])
        .await
        .ok()
        .stdout;
    assert!(
        text.contains("state:") && text.contains("cancelled"),
        "{text}"
    );
    let again = roster(&suite, &["import", "cancel", "not-an-id"]).await;
    assert!(!again.success);
    assert!(again.stderr.contains("import_id"), "{}", again.stderr);
    let failed = roster(&suite, &["--json", "import", "cancel", "not-an-id"]).await;
    let error: Value = serde_json::from_str(&failed.stderr).expect("the error is JSON");
    assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");

    let listed = roster(
        &suite,
        &[
            "--json",
            "import",
            "list",
            "--account",
            &account,
            "--state",
            "cancelled",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        listed["imports"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let empty = roster(
        &suite,
        &["import", "list", "--account", &account, "--state", "failed"],
    )
    .await
    .ok();
    assert_eq!(empty.stdout.trim(), "No imports.");
}

both_backends!(
    a_150_mb_upload_through_the_cli_outlasts_the_request_timeout,
    the_upload_command_follows_validation_past_the_request_timeout,
    imports_are_listed_and_cancelled_from_the_cli
);

async fn the_upload_command_says_how_the_file_was_read(backend: Backend) {
    let Some(suite) = ImportSuite::start(backend).await else {
        return;
    };
    let account = suite.account("Moscow").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("team.csv");
    let russian = "First Name;Last Name;Email Address\r\n\
                   Иван;Петров;ivan@example.com\r\n\
                   Ольга;Смирнова;olga@example.com\r\n\
                   Сергей;Кузнецов;sergey@example.com\r\n";
    std::fs::write(&path, iconv(russian, "WINDOWS-1251")).unwrap();
    let file = path.to_str().unwrap();
    let run = roster(&suite, &["import", "upload", file, "--account", &account])
        .await
        .ok();
    assert!(
        run.stdout
            .contains("\n  read as windows-1251 (detected), delimiter ';', line ending CRLF\n"),
        "{}",
        run.stdout
    );
    let named = [
        "import",
        "upload",
        file,
        "--account",
        &account,
        "--encoding",
        "koi8-r",
    ];
    let run = roster(&suite, &named).await.ok();
    assert!(
        run.stdout
            .contains("\n  read as KOI8-R (as given), delimiter ';', line ending CRLF\n"),
        "{}",
        run.stdout
    );
    let unknown = [
        "import",
        "upload",
        file,
        "--account",
        &account,
        "--encoding",
        "klingon",
    ];
    let run = roster(&suite, &unknown).await;
    assert!(!run.success);
    assert!(run.stderr.contains("header.encoding"), "{}", run.stderr);
}

both_backends!(the_upload_command_says_how_the_file_was_read);

/// `roster serve bulk-import` on `database_url`, its log in `log`.
fn serve_bulk_import(port: u16, database_url: &str, keys: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    let env = [
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("DATABASE_URL", database_url.to_owned()),
        ("KEYS_FILE", keys.display().to_string()),
        ("METRICS_ADDR", "off".to_owned()),
        // Nothing is validated here: identity is never called.
        ("IDENTITY_URL", "http://127.0.0.1:9".to_owned()),
        ("IDENTITY_KEY", "unused-identity-key".to_owned()),
        ("UPLOAD_IDLE_TIMEOUT_SECONDS", "2".to_owned()),
        ("UPLOAD_SWEEP_INTERVAL_SECONDS", "3".to_owned()),
    ];
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["serve", "bulk-import"])
        .envs(
            env.iter()
                .map(|(key, value)| (format!("ROSTER_BULK_IMPORT__{key}"), value)),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("roster starts")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn an_upload_left_by_a_killed_process_is_swept_after_the_restart(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    common::write_admin_keys_file(&keys, ADMIN_KEY);
    let account = uuid::Uuid::new_v4().to_string();

    let port = common::free_port();
    let mut first = Killed(serve_bulk_import(
        port,
        &database.url,
        &keys,
        &dir.path().join("first.log"),
    ));
    let channel = connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let upload = Imports::new(channel.clone(), ADMIN_KEY)
        .open_upload(&account, None)
        .await;
    let file = people_csv("killed", 20_000);
    for piece in file.chunks(256 * 1024).take(3) {
        assert!(upload.send(piece).await);
    }
    let imports = Imports::new(channel, ADMIN_KEY);
    let import_id = imports
        .uploading_import(&database, &account, 3, Duration::from_secs(30))
        .await;

    // The process dies mid-upload: nothing of it runs any more, its client still connected.
    common::signal(&first.0, "KILL");
    let _ = first.0.wait();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        stored_chunks(&database, &import_id).await,
        3,
        "the crash leaves the pieces"
    );

    let port = common::free_port();
    let _second = Killed(serve_bulk_import(
        port,
        &database.url,
        &keys,
        &dir.path().join("second.log"),
    ));
    let imports = Imports::new(
        connect(format!("127.0.0.1:{port}").parse().unwrap()).await,
        ADMIN_KEY,
    );
    let serving = Instant::now();
    let import = loop {
        let import = imports
            .get_import(pb::GetImportRequest {
                import_id: import_id.clone(),
            })
            .await
            .expect("GetImport")
            .import
            .expect("import");
        if import.state != pb::ImportState::Uploading as i32 {
            break import;
        }
        assert!(
            serving.elapsed() < Duration::from_secs(3 + 2),
            "not swept within one sweep interval of the restart: {import:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(import.state, pb::ImportState::Failed as i32, "{import:?}");
    assert!(
        import.error_message.contains("abandoned"),
        "{}",
        import.error_message
    );
    assert_eq!(stored_chunks(&database, &import_id).await, 0);
    drop(upload);
}

both_backends!(an_upload_left_by_a_killed_process_is_swept_after_the_restart);
