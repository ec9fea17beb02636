//! Helpers for the tests that run the `roster` binary as a real process.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_runtime::auth::hash_key_hex;
use serde_json::Value;

pub use roster_tests::free_port;

/// Writes a keys file accepting `key` with every scope on every account.
pub fn write_admin_keys_file(path: &Path, key: &str) {
    std::fs::write(
        path,
        format!(
            "[[keys]]\nname = \"test\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\naccounts = [\"*\"]\n",
            hash_key_hex(key)
        ),
    )
    .expect("keys file");
}

/// Starts `roster serve <service>` with `ROSTER_<SERVICE>__<KEY>` variables from `env`.
pub fn serve(service: &str, env: &[(&str, String)]) -> Child {
    let prefix = format!("ROSTER_{}__", service.replace('-', "_").to_uppercase());
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    command.args(["serve", service]).stdout(Stdio::null());
    for (key, value) in env {
        command.env(format!("{prefix}{key}"), value);
    }
    command.spawn().expect("roster starts")
}

/// Sends `signal` (e.g. "KILL", "TERM") to a child process.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}

/// What one `roster` run printed, and how it ended.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(output: std::process::Output) -> Run {
        Run {
            success: output.status.success(),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }
}

impl Run {
    /// Asserts the run succeeded, showing what it printed when it did not.
    pub fn ok(self) -> Run {
        assert!(
            self.success,
            "roster failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts the run failed.
    pub fn failed(self) -> Run {
        assert!(!self.success, "roster succeeded\nstdout:\n{}", self.stdout);
        self
    }

    /// Stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{}", self.stdout))
    }

    /// Stderr as one JSON document (the CLI's error document).
    pub fn error_json(&self) -> Value {
        serde_json::from_str(&self.stderr).unwrap_or_else(|error| {
            panic!(
                "stderr is not one JSON document ({error}):\n{}",
                self.stderr
            )
        })
    }
}

/// A `roster` process that runs until it is killed (a watch), what it prints read as it comes.
pub struct Following {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Following {
    /// Starts `command` with its stdout and stderr piped to this process.
    pub fn spawn(mut command: Command) -> Following {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("roster starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            read_into(child.stdout.take().expect("piped stdout"), stdout.clone()),
            read_into(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Following {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// The whole lines printed on stdout so far, once there are at least `count`: waits up to
    /// 20 s, then fails showing what was printed.
    pub async fn lines(&self, count: usize) -> Vec<String> {
        for _ in 0..400 {
            let lines = complete_lines(&self.stdout.lock().expect("stdout"));
            if lines.len() >= count {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fewer than {count} lines after 20 s\nstdout:\n{}\nstderr:\n{}",
            self.stdout.lock().expect("stdout"),
            self.stderr.lock().expect("stderr")
        );
    }

    /// Kills the process with SIGKILL and returns what it printed.
    pub fn kill(mut self) -> Run {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            reader.join().expect("the reader ends with the process");
        }
        let text = |stream: &Mutex<String>| stream.lock().expect("stream").clone();
        Run {
            success: false,
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends what `stream` yields to `into`, a line at a time, on a thread of its own.
fn read_into(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|read| read > 0) {
            into.lock().expect("stream").push_str(&line);
            line.clear();
        }
    })
}

/// The lines of `text` that have their line break.
fn complete_lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| line.trim_end_matches('\n').to_owned())
        .collect()
}
