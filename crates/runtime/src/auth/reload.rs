//! Rotating caller keys without a restart: the keys file is read again when it changes, and at
//! once when the process receives SIGHUP.
//!
//! A watch task looks at the file's metadata every `keys_reload_seconds`: the file the path leads
//! to once every symbolic link is followed, its device and inode, size and modification time. A
//! Kubernetes Secret volume updates its files by swapping the `..data` symbolic link to a new
//! directory, so the path the file resolves to and its inode change even when the size and time
//! happen to match. Each change is read once: a file that reads and parses is put in force as a
//! whole, joined by the keys given in code at start (the embedded suite's operator key); a file
//! that does not, or holds no key, keeps the keys in force and logs, once for that change, the
//! file and what is wrong with it.
//!
//! Series: `roster_keys_reloads_total{outcome="applied|refused"}` and `roster_keys_in_force`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{KeyRing, KeyRingError, SharedKeyRing};
use crate::Shutdown;
use crate::metrics::Metrics;

/// A keys file and the keys given in code that every ring read from it keeps.
#[derive(Debug)]
pub struct KeysFile {
    path: PathBuf,
    in_code: KeyRing,
    seen: Fingerprint,
}

impl KeysFile {
    /// Reads the keys file at `path` at start: the ring of its keys and those of `in_code`
    /// (the file's win where both hold the same key), and the file, to watch with [`watch`].
    pub fn open(path: &Path, in_code: KeyRing) -> Result<(KeysFile, KeyRing), KeyRingError> {
        let mut file = KeysFile {
            path: path.to_owned(),
            in_code,
            seen: Fingerprint::default(),
        };
        let keys = file.load()?;
        let ring = file.with_in_code(keys);
        Ok((file, ring))
    }

    /// The file's own keys. The fingerprint is taken before the file is read, so a change made
    /// while reading is seen by the next look.
    fn load(&mut self) -> Result<KeyRing, KeyRingError> {
        self.seen = Fingerprint::of(&self.path);
        KeyRing::load(&self.path)
    }

    /// `keys` and the keys given in code; where both hold the same key, the file's entry wins.
    fn with_in_code(&self, keys: KeyRing) -> KeyRing {
        let mut ring = self.in_code.clone();
        ring.extend(keys);
        ring
    }

    /// The ring read again after the start. A file without any key is refused: a file rewritten
    /// in place is empty between its truncation and its writing, and taken at its word it would
    /// refuse every caller until the next look.
    fn reread(&mut self) -> Result<KeyRing, KeyRingError> {
        let keys = self.load()?;
        if keys.is_empty() {
            return Err(KeyRingError::Invalid {
                path: self.path.display().to_string(),
                message: "holds no key (a file being written?); to refuse every caller, restart \
                          the service with it"
                    .into(),
            });
        }
        Ok(self.with_in_code(keys))
    }

    /// True when the file looks different from when it was last read.
    fn changed(&self) -> bool {
        Fingerprint::of(&self.path) != self.seen
    }
}

/// What tells one version of the keys file from another without reading it. A file that cannot
/// be looked at has the error's kind, so its disappearance is a change too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Fingerprint {
    target: Option<PathBuf>,
    device: u64,
    inode: u64,
    size: u64,
    modified: Option<SystemTime>,
    error: Option<std::io::ErrorKind>,
}

impl Fingerprint {
    fn of(path: &Path) -> Fingerprint {
        // `metadata` and `canonicalize` follow every symbolic link on the way.
        match std::fs::metadata(path) {
            Ok(metadata) => {
                let (device, inode) = file_identity(&metadata);
                Fingerprint {
                    target: std::fs::canonicalize(path).ok(),
                    device,
                    inode,
                    size: metadata.len(),
                    modified: metadata.modified().ok(),
                    error: None,
                }
            }
            Err(error) => Fingerprint {
                error: Some(error.kind()),
                ..Fingerprint::default()
            },
        }
    }
}

#[cfg(unix)]
fn file_identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn file_identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Why a reload happened, for the log.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Changed,
    Hangup,
}

/// The reload series of one server.
#[derive(Clone)]
struct ReloadMetrics {
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
    in_force: Gauge,
}

const APPLIED: &str = "applied";
const REFUSED: &str = "refused";

impl ReloadMetrics {
    fn register(metrics: &Metrics) -> Self {
        let reloads = Family::<[(&'static str, &'static str); 1], Counter>::default();
        // Both outcomes are there from the start (at 0), so an alert on the increase of
        // refusals sees the first one.
        for outcome in [APPLIED, REFUSED] {
            reloads.get_or_create_owned(&[("outcome", outcome)]);
        }
        metrics.register(
            "roster_keys_reloads",
            "Readings of the keys file after the start, by outcome: applied (its keys are in \
             force) or refused (unreadable or malformed; the keys in force stay)",
            reloads.clone(),
        );
        let in_force = metrics.gauge(
            "roster_keys_in_force",
            "Caller keys the server accepts now (the keys file's and those given in code)",
        );
        Self { reloads, in_force }
    }

    fn count(&self, outcome: &'static str) {
        self.reloads.get_or_create(&[("outcome", outcome)]).inc();
    }
}

/// Reads `file` again into `keys` when it changes (looked at every `every`; `None`: only on
/// SIGHUP) and at once on SIGHUP, until `shutdown` fires. `keys` holds the ring `file` was
/// opened with.
pub fn watch(
    file: KeysFile,
    keys: SharedKeyRing,
    every: Option<Duration>,
    metrics: &Metrics,
    shutdown: Shutdown,
) {
    let mut reloader = Reloader {
        file,
        keys,
        metrics: ReloadMetrics::register(metrics),
    };
    reloader
        .metrics
        .in_force
        .set(reloader.keys.current().len() as i64);
    tokio::spawn(async move {
        let mut hangups = hangups();
        let mut ticks = every.map(|every| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(ticks) => {
                        ticks.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick => {
                    if reloader.file.changed() {
                        reloader.reload(Trigger::Changed);
                    }
                }
                Some(()) = next_hangup(&mut hangups) => reloader.reload(Trigger::Hangup),
            }
        }
    });
}

/// A watched keys file and where its rings go.
struct Reloader {
    file: KeysFile,
    keys: SharedKeyRing,
    metrics: ReloadMetrics,
}

impl Reloader {
    /// Reads the file: its ring in force, or the ring in force kept and the reason logged.
    fn reload(&mut self, trigger: Trigger) {
        let file = self.file.path.display().to_string();
        match self.file.reread() {
            Ok(ring) => {
                let count = ring.len();
                self.keys.replace(ring);
                self.metrics.count(APPLIED);
                self.metrics.in_force.set(count as i64);
                tracing::info!(%file, keys = count, ?trigger, "caller keys reloaded");
            }
            Err(error) => {
                self.metrics.count(REFUSED);
                tracing::error!(
                    %file,
                    %error,
                    ?trigger,
                    "keys file refused; the keys in force stay"
                );
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "SIGHUP cannot be caught; the keys file is reloaded on change only");
            None
        }
    }
}

/// The next SIGHUP; never, when SIGHUP cannot be caught.
#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
type Hangups = ();

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}

#[cfg(test)]
mod tests;
