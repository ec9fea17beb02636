//! Helpers for the tests that run the `roster` binary as a real process.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use roster_runtime::auth::hash_key_hex;
use serde_json::Value;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

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
