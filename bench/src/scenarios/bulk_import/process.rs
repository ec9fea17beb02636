//! `roster serve bulk-import` from the release build as a process of its own, so that its peak
//! memory is its own; it calls the benchmark's in-process identity server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use super::{BULK_KEY, IDENTITY_KEY};

/// A running `roster serve bulk-import`; killed when dropped.
pub(super) struct BulkImportProcess {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BulkImportProcess {
    pub(super) async fn start(
        roster_bin: &Path,
        database_url: &str,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let keys = dir.path().join("keys.toml");
        std::fs::write(
            &keys,
            format!(
                "[[keys]]\nname = \"bench\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\naccounts = [\"*\"]\n",
                hex::encode(Sha256::digest(BULK_KEY.as_bytes()))
            ),
        )?;
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?
        };
        let log = dir.path().join("bulk-import.log");
        let log_file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(roster_bin)
            .args(["serve", "bulk-import"])
            .env("ROSTER_BULK_IMPORT__LISTEN_ADDR", addr.to_string())
            .env("ROSTER_BULK_IMPORT__DATABASE_URL", database_url)
            .env("ROSTER_BULK_IMPORT__KEYS_FILE", &keys)
            .env("ROSTER_BULK_IMPORT__IDENTITY_URL", identity)
            .env("ROSTER_BULK_IMPORT__IDENTITY_KEY", IDENTITY_KEY)
            .env("ROSTER_BULK_IMPORT__RATE_LIMIT_PER_SECOND", "0")
            .env("ROSTER_BULK_IMPORT__LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", roster_bin.display()))?;
        Ok(Self {
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
                    "roster serve bulk-import exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(channel) = endpoint.connect().await {
                return Ok(channel);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("roster serve bulk-import did not listen on {}", self.addr)
    }
}
