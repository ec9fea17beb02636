//! A bulk-import process killed with SIGKILL in the middle of applying a 50,000-row import, on
//! PostgreSQL, with identity and bulk-import as real `roster serve` processes: the restarted
//! process claims the import once the dead one's lease expires and completes it. Every row is
//! applied exactly once, identity holds no duplicate profile, and the report is complete —
//! also when the restarted process is configured with another batch size.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster_bulk_import::store::entities::outcome;
use roster_proto::imports::v1 as pb;
use roster_runtime::auth::hash_key_hex;
use roster_tests::clients::{Identity, Imports};
use roster_tests::imports::{parse_csv, people_csv};
use roster_tests::{ADMIN_KEY, Backend, TestDatabase, connect, free_port};
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter, QuerySelect};

const ROWS: usize = 50_000;

fn serve(service: &str, env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["serve", service])
        .envs(
            env.iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
        .env("RUST_LOG", "warn")
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

fn bulk_import_env(
    port: u16,
    database_url: &str,
    keys: &Path,
    identity_port: u16,
    apply_batch_size: usize,
) -> Vec<(String, String)> {
    [
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("DATABASE_URL", database_url.to_owned()),
        ("KEYS_FILE", keys.display().to_string()),
        ("IDENTITY_URL", format!("http://127.0.0.1:{identity_port}")),
        ("IDENTITY_KEY", ADMIN_KEY.to_owned()),
        ("LEASE_SECONDS", "3".to_owned()),
        ("POLL_INTERVAL_MILLIS", "200".to_owned()),
        ("APPLY_BATCH_SIZE", apply_batch_size.to_string()),
        ("MAX_MESSAGE_BYTES", (16 * 1024 * 1024).to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (format!("ROSTER_BULK_IMPORT__{key}"), value))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_applying_then_restart_applies_every_row_exactly_once() {
    let Some(identity_db) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let Some(import_db) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[[keys]]\nname = \"operator\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\naccounts = [\"*\"]\n",
            hash_key_hex(ADMIN_KEY)
        ),
    )
    .expect("keys file");

    let identity_port = free_port();
    let identity_env: Vec<(String, String)> = [
        ("LISTEN_ADDR", format!("127.0.0.1:{identity_port}")),
        ("DATABASE_URL", identity_db.url.clone()),
        ("KEYS_FILE", keys.display().to_string()),
        ("RESET_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
        ("SCIM_ADDR", "off".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (format!("ROSTER_IDENTITY__{key}"), value))
    .collect();
    let _identity = Killed(serve(
        "identity",
        &identity_env,
        &dir.path().join("identity.log"),
    ));
    let identity_channel = connect(format!("127.0.0.1:{identity_port}").parse().unwrap()).await;
    let account = Identity::new(identity_channel.clone(), ADMIN_KEY)
        .account("Big Company")
        .await
        .id;

    let first_port = free_port();
    let mut first = Killed(serve(
        "bulk-import",
        &bulk_import_env(first_port, &import_db.url, &keys, identity_port, 1000),
        &dir.path().join("bulk-import-1.log"),
    ));
    let imports = Imports::new(
        connect(format!("127.0.0.1:{first_port}").parse().unwrap()).await,
        ADMIN_KEY,
    );
    let file = people_csv("bulk", ROWS);
    let created = imports
        .upload_csv(&account, &file, 256 * 1024)
        .await
        .expect("upload");
    let validated = imports
        .wait_for_state(
            &created.id,
            &[pb::ImportState::Validated],
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(validated.create_count, ROWS as i64, "{validated:?}");
    imports
        .submit_import(pb::SubmitImportRequest {
            import_id: created.id.clone(),
            request_id: "submit".into(),
            send_welcome_emails: false,
        })
        .await
        .expect("submit");

    // Kill the process once some batches are applied and many remain.
    let started = Instant::now();
    loop {
        let import = imports
            .get_import(pb::GetImportRequest {
                import_id: created.id.clone(),
            })
            .await
            .expect("GetImport")
            .import
            .expect("import");
        assert!(
            import.applied_count < ROWS as i64,
            "the apply finished before the kill"
        );
        if import.applied_count >= 5_000 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{import:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-KILL", &first.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let _ = first.0.wait();

    let second_port = free_port();
    let _second = Killed(serve(
        "bulk-import",
        // Configured with another batch size: the import keeps the one pinned when it was
        // submitted, so the window the dead process may have written is sent again whole.
        &bulk_import_env(second_port, &import_db.url, &keys, identity_port, 300),
        &dir.path().join("bulk-import-2.log"),
    ));
    let imports = Imports::new(
        connect(format!("127.0.0.1:{second_port}").parse().unwrap()).await,
        ADMIN_KEY,
    );
    let done = imports
        .wait_for_state(
            &created.id,
            &[
                pb::ImportState::Completed,
                pb::ImportState::CompletedWithErrors,
                pb::ImportState::Failed,
            ],
            Duration::from_secs(150),
        )
        .await;
    assert_eq!(done.state, pb::ImportState::Completed as i32, "{done:?}");
    assert_eq!((done.applied_count, done.failed_count), (ROWS as i64, 0));

    // Both processes applied rows: the second carried on where the first stopped.
    let database = Database::connect(&import_db.url).await.unwrap();
    let import_id = uuid::Uuid::parse_str(&created.id).unwrap();
    let owners: Vec<Option<String>> = outcome::Entity::find()
        .select_only()
        .column(outcome::Column::AppliedBy)
        .distinct()
        .filter(outcome::Column::ImportId.eq(import_id))
        .into_tuple()
        .all(&database)
        .await
        .unwrap();
    assert_eq!(owners.len(), 2, "rows applied by {owners:?}");
    assert!(owners.iter().all(Option::is_some));

    let profiles = Identity::new(identity_channel.clone(), ADMIN_KEY)
        .all_profiles(&account)
        .await;
    assert_eq!(profiles.len(), ROWS, "exactly one profile per row");
    let emails: HashSet<&str> = profiles.iter().map(|p| p.email.as_str()).collect();
    assert_eq!(emails.len(), ROWS, "no duplicate profiles");

    let report = parse_csv(&imports.report(&created.id).await.unwrap());
    assert_eq!(report.len(), ROWS + 1, "the header and every row");
    let ids: HashSet<&str> = report[1..]
        .iter()
        .map(|row| {
            assert_eq!(row[9], "Created", "{row:?}");
            row[0].as_str()
        })
        .collect();
    let profile_ids: HashSet<&str> = profiles.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, profile_ids, "the report names every created profile");
}
