//! `roster serve identity` and `roster serve bulk-import` from the release build, each a
//! process of its own, so that each one's peak memory is its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use super::{BULK_KEY, IDENTITY_KEY};

/// A running `roster serve <service>`; killed when dropped.
pub(super) struct ServiceProcess {
    service: &'static str,
    child: tokio::process::Child,
    pub(super) addr: std::net::SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A free port on the loopback interface.
fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A `[[keys]]` entry of a keys file for `key`, with `scopes` on every account.
fn key_entry(name: &str, key: &str, scopes: &str) -> String {
    format!(
        "[[keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\naccounts = [\"*\"]\n",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

impl ServiceProcess {
    /// Identity on `database_url` with a pool of `db_pool` connections, accepting the
    /// harness's admin key (to make the account) and the key bulk-import calls it with; its
    /// other listeners on free loopback ports.
    pub(super) async fn identity(
        roster_bin: &Path,
        database_url: &str,
        db_pool: u32,
    ) -> anyhow::Result<Self> {
        let keys = key_entry("bench", roster_tests::ADMIN_KEY, "\"admin\"")
            + &key_entry("bulk-import", IDENTITY_KEY, "\"profiles\"");
        let (reset, scim) = (free_addr()?.to_string(), free_addr()?.to_string());
        let pool = db_pool.to_string();
        Self::start(
            roster_bin,
            "identity",
            database_url,
            &keys,
            &[
                ("RESET_HTTP_ADDR", reset.as_str()),
                ("SCIM_ADDR", scim.as_str()),
                ("METRICS_ADDR", "off"),
                ("DB_MAX_CONNECTIONS", pool.as_str()),
            ],
        )
        .await
    }

    /// Bulk-import on `database_url`, calling identity at `identity`.
    pub(super) async fn bulk_import(
        roster_bin: &Path,
        database_url: &str,
        identity: &str,
    ) -> anyhow::Result<Self> {
        Self::start(
            roster_bin,
            "bulk-import",
            database_url,
            &key_entry("bench", BULK_KEY, "\"admin\""),
            &[
                ("IDENTITY_URL", identity),
                ("IDENTITY_KEY", IDENTITY_KEY),
                ("METRICS_ADDR", "off"),
            ],
        )
        .await
    }

    /// `roster serve <service>` with the production defaults but for the listen address, the
    /// database, the keys, no per-caller rate limit (it would be what is measured) and `env`
    /// (setting names without the service's prefix).
    async fn start(
        roster_bin: &Path,
        service: &'static str,
        database_url: &str,
        keys: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let keys_file = dir.path().join("keys.toml");
        std::fs::write(&keys_file, keys)?;
        let addr = free_addr()?;
        let log = dir.path().join(format!("{service}.log"));
        let log_file = std::fs::File::create(&log)?;
        let prefix = format!("ROSTER_{}__", service.replace('-', "_").to_uppercase());
        let mut command = tokio::process::Command::new(roster_bin);
        command
            .args(["serve", service])
            .env(format!("{prefix}LISTEN_ADDR"), addr.to_string())
            .env(format!("{prefix}DATABASE_URL"), database_url)
            .env(format!("{prefix}KEYS_FILE"), &keys_file)
            .env(format!("{prefix}RATE_LIMIT_PER_SECOND"), "0")
            .env(format!("{prefix}LOG_FORMAT"), "json")
            .env("RUST_LOG", "warn");
        for (name, value) in env {
            command.env(format!("{prefix}{name}"), value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} serve {service}", roster_bin.display()))?;
        Ok(Self {
            service,
            child,
            addr,
            log,
            _dir: dir,
        })
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A channel once the server accepts connections (migrations run first).
    pub(super) async fn channel(&mut self) -> anyhow::Result<Channel> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))?
            .timeout(Duration::from_secs(120));
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "roster serve {} exited ({status}): {}",
                    self.service,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(channel) = endpoint.connect().await {
                return Ok(channel);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "roster serve {} did not listen on {}",
            self.service,
            self.addr
        )
    }
}
