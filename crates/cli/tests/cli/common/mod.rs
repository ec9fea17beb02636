//! Helpers for the tests that run the `roster` binary as a real process.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use roster_runtime::auth::hash_key_hex;

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
