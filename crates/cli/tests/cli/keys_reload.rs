//! Rotating a caller key without a restart: the three services as `roster serve` processes
//! sharing one keys file put a rewritten file in force within seconds, keep their keys when the
//! new file is malformed (and log why), and read the file at once on SIGHUP.

use crate::common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster_proto::identity::v1::ListAccountsRequest;
use roster_proto::imports::v1::ListImportsRequest;
use roster_proto::notification::v1::ListNotificationsRequest;
use roster_runtime::auth::hash_key_hex;
use roster_tests::clients::{Identity, Imports, Notifications};
use roster_tests::connect;
use tonic::Code;

const OLD_KEY: &str = "rotation-old-key";
const NEW_KEY: &str = "rotation-new-key";
const NEXT_KEY: &str = "rotation-next-key";

/// A keys file holding one admin key named `name` whose hash is `sha256`.
fn keys_file(name: &str, sha256: &str) -> String {
    format!(
        "[[keys]]\nname = \"{name}\"\nsha256 = \"{sha256}\"\nscopes = [\"admin\"]\naccounts = [\"*\"]\n"
    )
}

/// Writes `text` over `path` as a rotation does: a new file renamed over the old one.
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).expect("temporary keys file");
    std::fs::rename(&temporary, path).expect("rename over the keys file");
}

/// One `roster serve` process, its log written to a file; killed when the test ends.
struct Served {
    name: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
    port: u16,
}

impl Served {
    /// Starts `roster serve <name>` on `port` with the keys file `keys` and the service's `own`
    /// variables.
    fn start(
        name: &'static str,
        port: u16,
        dir: &Path,
        keys: &Path,
        own: &[(&str, String)],
    ) -> Served {
        let log = dir.join(format!("{name}.log"));
        let prefix = format!("ROSTER_{}__", name.replace('-', "_").to_uppercase());
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .args(["serve", name])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(&log).expect("log file"))
            .stderr(Stdio::inherit());
        let common_env = [
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            (
                "DATABASE_URL",
                format!("sqlite://{}/{name}.db?mode=rwc", dir.display()),
            ),
            ("KEYS_FILE", keys.display().to_string()),
            ("METRICS_ADDR", "off".to_owned()),
        ];
        for (key, value) in common_env.iter().chain(own) {
            command.env(format!("{prefix}{key}"), value);
        }
        let child = command.spawn().expect("roster starts");
        let pid = child.id();
        Served {
            name,
            child,
            pid,
            log,
            port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("log file")
    }

    /// Fails unless the process started by the test is still the one running.
    fn assert_not_restarted(&mut self) {
        assert_eq!(self.child.id(), self.pid);
        assert!(
            self.child.try_wait().expect("process status").is_none(),
            "{} exited\nlog:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts connections on `port` (the servers bind once migrated).
async fn wait_for_port(served: &mut Served) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", served.port))
        .await
        .is_err()
    {
        served.assert_not_restarted();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} did not start\nlog:\n{}",
            served.name,
            served.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One call to each service.
struct Suite {
    identity: Identity,
    imports: Imports,
    notifications: Notifications,
}

impl Suite {
    /// What each service answers a listing called with `key`: OK, or the refusal's code.
    async fn answers(&self, key: &str) -> [Code; 3] {
        let code = |result: Result<(), tonic::Status>| match result {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        };
        let account_id = uuid::Uuid::new_v4().to_string();
        [
            code(
                self.identity
                    .with_key(key)
                    .list_accounts(ListAccountsRequest::default())
                    .await
                    .map(drop),
            ),
            code(
                self.imports
                    .with_key(key)
                    .list_imports(ListImportsRequest {
                        account_id: account_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
            code(
                self.notifications
                    .with_key(key)
                    .list_notifications(ListNotificationsRequest {
                        account_id,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
        ]
    }

    /// Waits up to `within` until every service admits `admitted` and refuses `refused` as
    /// UNAUTHENTICATED.
    async fn wait_for_keys(&self, admitted: &str, refused: &str, within: Duration) {
        let started = Instant::now();
        loop {
            let (now_admitted, now_refused) =
                (self.answers(admitted).await, self.answers(refused).await);
            if now_admitted == [Code::Ok; 3] && now_refused == [Code::Unauthenticated; 3] {
                return;
            }
            assert!(
                started.elapsed() < within,
                "after {within:?}: {admitted} answered {now_admitted:?}, {refused} answered \
                 {now_refused:?} (identity, bulk-import, notification)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_keys_file_is_in_force_on_every_service_without_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let keys = dir.path().join("keys.toml");
    common::write_admin_keys_file(&keys, OLD_KEY);
    let identity_port = common::free_port();
    let mut services = [
        Served::start(
            "identity",
            identity_port,
            dir.path(),
            &keys,
            &[
                (
                    "RESET_HTTP_ADDR",
                    format!("127.0.0.1:{}", common::free_port()),
                ),
                ("SCIM_ADDR", "off".to_owned()),
            ],
        ),
        Served::start(
            "bulk-import",
            common::free_port(),
            dir.path(),
            &keys,
            &[
                ("IDENTITY_URL", format!("http://127.0.0.1:{identity_port}")),
                ("IDENTITY_KEY", OLD_KEY.to_owned()),
            ],
        ),
        Served::start(
            "notification",
            common::free_port(),
            dir.path(),
            &keys,
            &[(
                "MAIL_URL",
                format!("file://{}", dir.path().join("mail").display()),
            )],
        ),
    ];
    for served in &mut services {
        wait_for_port(served).await;
    }
    let channel = |served: &Served| connect(format!("127.0.0.1:{}", served.port).parse().unwrap());
    let suite = Suite {
        identity: Identity::new(channel(&services[0]).await, OLD_KEY),
        imports: Imports::new(channel(&services[1]).await, OLD_KEY),
        notifications: Notifications::new(channel(&services[2]).await, OLD_KEY),
    };
    assert_eq!(suite.answers(OLD_KEY).await, [Code::Ok; 3]);
    assert_eq!(suite.answers(NEW_KEY).await, [Code::Unauthenticated; 3]);

    // Rotation: the new key in, the old one out, in one rename.
    replace_file(&keys, &keys_file("current", &hash_key_hex(NEW_KEY)));
    suite
        .wait_for_keys(NEW_KEY, OLD_KEY, Duration::from_secs(5))
        .await;
    for served in &mut services {
        served.assert_not_restarted();
    }

    // A malformed file (a hash that is no hash) is refused: the keys in force stay, and each
    // service says which file and what is wrong.
    let malformed = keys_file("next", &"z".repeat(64));
    replace_file(&keys, &malformed);
    let started = Instant::now();
    for served in &services {
        while !served.log().contains("keys file refused") {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{} did not refuse the malformed keys file\nlog:\n{}",
                served.name,
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = served.log();
        let refusal = log
            .lines()
            .find(|line| line.contains("keys file refused"))
            .expect("the refusal's line");
        assert!(
            refusal.contains(&keys.display().to_string())
                && refusal.contains("sha256 must be 64 hexadecimal characters"),
            "{}: {refusal}",
            served.name
        );
    }
    assert_eq!(suite.answers(NEW_KEY).await, [Code::Ok; 3]);

    // The fix is written in place with the malformed file's size and modification time, so
    // that looking at the file cannot tell it changed: only SIGHUP puts it in force.
    let fixed = keys_file("next", &hash_key_hex(NEXT_KEY));
    assert_eq!(fixed.len(), malformed.len());
    let modified = std::fs::metadata(&keys)
        .and_then(|metadata| metadata.modified())
        .expect("modification time");
    let mut file = File::options()
        .write(true)
        .open(&keys)
        .expect("keys file opened");
    file.write_all(fixed.as_bytes())
        .and_then(|()| file.set_modified(modified))
        .expect("keys file rewritten in place");
    drop(file);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        suite.answers(NEXT_KEY).await,
        [Code::Unauthenticated; 3],
        "the watch saw a change it cannot see"
    );
    for served in &services {
        common::signal(&served.child, "HUP");
    }
    suite
        .wait_for_keys(NEXT_KEY, NEW_KEY, Duration::from_millis(500))
        .await;
    for served in &mut services {
        served.assert_not_restarted();
        assert!(
            served.log().contains("caller keys reloaded"),
            "{}",
            served.name
        );
    }
}
