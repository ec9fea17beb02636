use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::{AccountAccess, hash_key_hex};

fn stanza(name: &str, key: &str) -> String {
    format!(
        "[[keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\naccounts = [\"*\"]\n",
        hash_key_hex(key)
    )
}

/// Writes `text` to `path` as a rotation does: a new file renamed over the old one.
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).expect("temporary keys file");
    std::fs::rename(&temporary, path).expect("rename over the keys file");
}

fn in_code() -> KeyRing {
    let mut ring = KeyRing::default();
    ring.insert_plaintext("in-code", "operator", &["admin"], AccountAccess::All);
    ring
}

struct Watched {
    _dir: tempfile::TempDir,
    path: PathBuf,
    reloader: Reloader,
    metrics: Metrics,
}

/// A keys file accepting `old`, opened with the keys given in code, not yet watched.
fn watched(old: &str) -> Watched {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, stanza("old", old)).expect("keys file");
    let (file, ring) = KeysFile::open(&path, in_code()).expect("the keys file opens");
    let metrics = Metrics::new();
    Watched {
        _dir: dir,
        path,
        reloader: Reloader {
            file,
            keys: SharedKeyRing::new(ring),
            metrics: ReloadMetrics::register(&metrics),
        },
        metrics,
    }
}

fn accepts(keys: &SharedKeyRing, key: &str) -> bool {
    keys.current().authenticate(key).is_some()
}

async fn series(metrics: &Metrics, line_start: &str) -> String {
    let text = metrics.encode().await;
    text.lines()
        .find(|line| line.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .to_owned()
}

#[tokio::test]
async fn a_changed_keys_file_is_put_in_force_with_the_keys_given_in_code() {
    let mut watched = watched("old-key");
    assert!(!watched.reloader.file.changed());

    replace_file(&watched.path, &stanza("new", "new-key"));
    assert!(watched.reloader.file.changed());
    watched.reloader.reload(Trigger::Changed);

    let keys = &watched.reloader.keys;
    assert!(accepts(keys, "new-key"));
    assert!(!accepts(keys, "old-key"));
    assert!(accepts(keys, "in-code"), "keys given in code stay");
    assert!(!watched.reloader.file.changed(), "the change is read once");
    assert_eq!(
        series(
            &watched.metrics,
            "roster_keys_reloads_total{outcome=\"applied\"}"
        )
        .await,
        "roster_keys_reloads_total{outcome=\"applied\"} 1"
    );
    assert_eq!(
        series(&watched.metrics, "roster_keys_in_force ").await,
        "roster_keys_in_force 2"
    );
}

#[tokio::test]
async fn a_malformed_keys_file_is_refused_and_the_keys_in_force_stay() {
    let mut watched = watched("old-key");
    replace_file(
        &watched.path,
        "[[keys]]\nname = \"broken\"\nsha256 = \"not hex\"\nscopes = []\naccounts = [\"*\"]\n",
    );
    assert!(watched.reloader.file.changed());
    watched.reloader.reload(Trigger::Changed);

    let keys = &watched.reloader.keys;
    assert!(accepts(keys, "old-key"));
    assert!(accepts(keys, "in-code"));
    assert!(
        !watched.reloader.file.changed(),
        "a refused change is not read (nor logged) again until the file changes"
    );
    assert_eq!(
        series(
            &watched.metrics,
            "roster_keys_reloads_total{outcome=\"refused\"}"
        )
        .await,
        "roster_keys_reloads_total{outcome=\"refused\"} 1"
    );
    assert_eq!(
        series(
            &watched.metrics,
            "roster_keys_reloads_total{outcome=\"applied\"}"
        )
        .await,
        "roster_keys_reloads_total{outcome=\"applied\"} 0"
    );

    // What a rewrite in place leaves for a moment.
    std::fs::write(&watched.path, "").expect("keys file truncated");
    assert!(watched.reloader.file.changed());
    watched.reloader.reload(Trigger::Changed);
    assert!(accepts(&watched.reloader.keys, "old-key"));

    std::fs::remove_file(&watched.path).expect("keys file removed");
    assert!(
        watched.reloader.file.changed(),
        "a vanished file is a change"
    );
    watched.reloader.reload(Trigger::Changed);
    assert!(accepts(&watched.reloader.keys, "old-key"));
}

/// A Kubernetes Secret volume: `keys.toml -> ..data/keys.toml`, `..data -> ..<version>`, and an
/// update swaps `..data` to a new version directory.
#[cfg(unix)]
#[tokio::test]
async fn a_secret_volume_update_is_seen_through_its_symbolic_links() {
    use std::os::unix::fs::symlink;

    let dir = tempfile::tempdir().expect("temporary directory");
    let version = |name: &str, key: &str| {
        let version = dir.path().join(name);
        std::fs::create_dir(&version).expect("version directory");
        // Same length as the other version's file, and possibly the same modification time.
        std::fs::write(version.join("keys.toml"), stanza("key", key)).expect("keys file");
    };
    version("..v1", "key-one");
    symlink("..v1", dir.path().join("..data")).expect("..data link");
    symlink("..data/keys.toml", dir.path().join("keys.toml")).expect("keys.toml link");
    let (mut file, _) = KeysFile::open(&dir.path().join("keys.toml"), KeyRing::default())
        .expect("the keys file opens");

    version("..v2", "key-two");
    symlink("..v2", dir.path().join("..data_tmp")).expect("new ..data link");
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).expect("swap ..data");

    assert!(file.changed());
    let ring = file.reread().expect("the new version reads");
    assert!(ring.authenticate("key-two").is_some());
    assert!(ring.authenticate("key-one").is_none());
}

#[tokio::test]
async fn the_watch_puts_a_new_keys_file_in_force_without_being_asked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, stanza("old", "old-key")).expect("keys file");
    let (file, ring) = KeysFile::open(&path, KeyRing::default()).expect("the keys file opens");
    let keys = SharedKeyRing::new(ring);
    let shutdown = Shutdown::new();
    watch(
        file,
        keys.clone(),
        Some(Duration::from_millis(20)),
        &Metrics::new(),
        shutdown.clone(),
    );

    replace_file(&path, &stanza("new", "new-key"));
    let started = Instant::now();
    while !accepts(&keys, "new-key") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new keys file was not put in force"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!accepts(&keys, "old-key"));
    shutdown.trigger();
}
