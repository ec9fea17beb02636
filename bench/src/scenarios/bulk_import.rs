//! Bulk import: rows/s of validation and of the apply for spreadsheets of each size, next to
//! the same rows inserted by bare batched SQL, and the peak resident memory (`VmHWM`) of the
//! bulk-import server — which therefore runs as its own process, `roster serve bulk-import`
//! from the release build, calling the in-process identity server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use roster_identity::domain::username::Username;
use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_runtime::auth::AccountAccess;
use roster_tests::{TestKey, authed};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait, Value};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::report::{Report, Row, Verdict, percent};
use crate::suite::{self, Options, observed};
use crate::system::{self, Usage, Watch};

const SCENARIO: &str = "Bulk import";
/// The key bulk-import calls identity with.
const IDENTITY_KEY: &str = "bench-bulk-import-to-identity";
/// The key the benchmark calls bulk-import with.
const BULK_KEY: &str = "bench-bulk-import-admin";
/// Rows per transaction of the bare SQL baseline: bulk-import's default apply batch.
const SQL_BATCH: usize = 500;
/// Upload chunk size.
const CHUNK: usize = 1024 * 1024;

/// How the import went.
struct Measured {
    upload: Duration,
    validate: Duration,
    apply: Option<Duration>,
    import: pb::Import,
    peak_rss_mib: Option<f64>,
    usage_validate: Usage,
    usage_apply: Option<Usage>,
    timed_out: Option<&'static str>,
}

/// What the bulk-import scenario runs.
pub struct ImportOptions {
    /// Spreadsheet sizes, in rows.
    pub sizes: Vec<u64>,
    /// The `roster` binary to run `serve bulk-import` from.
    pub roster_bin: PathBuf,
    /// Longest wait for validation, and for the apply.
    pub timeout: Duration,
    /// Diagnostic: run `ANALYZE` on identity's and bulk-import's databases this often during
    /// the apply, to show what planner statistics change (this machine's PostgreSQL runs
    /// without autovacuum).
    pub analyze_every: Option<Duration>,
}

pub async fn run(
    options: &Options,
    import_options: &ImportOptions,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sizes = &import_options.sizes;
    let roster_bin = import_options.roster_bin.as_path();
    let command = format!(
        "cargo build --release -p roster-bench -p roster && \
         target/release/roster-bench --scenario bulk-import --import-rows {}",
        sizes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    if !roster_bin.exists() {
        not_measured(
            report,
            &format!("{} does not exist", roster_bin.display()),
            &command,
        );
        return Ok(());
    }
    let mut peaks = Vec::new();
    for &rows in sizes {
        // The baseline first: it is worth having even when the import cannot run yet.
        let (sql, sql_usage) = bare_sql(options, rows).await?;
        report.add(Row {
            scenario: SCENARIO.into(),
            subject: format!(
                "bare batched SQL ({SQL_BATCH} rows per INSERT and transaction), {rows} rows"
            ),
            concurrency: "1".into(),
            rate: rows as f64 / sql.as_secs_f64(),
            unit: "rows/s".into(),
            usage: Some(sql_usage),
            note: format!("{:.1} s", sql.as_secs_f64()),
            ..Row::default()
        });
        let csv = spreadsheet(rows);
        let measured = match import(options, import_options, &csv, rows).await {
            Ok(measured) => measured,
            Err(error) if is_unimplemented(&error) => {
                not_measured(
                    report,
                    "this build's ImportService answers UNIMPLEMENTED",
                    &command,
                );
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        record(report, rows, &measured, sql);
        peaks.push((rows, measured.peak_rss_mib));
    }
    memory_verdicts(report, &peaks);
    Ok(())
}

fn record(report: &mut Report, rows: u64, measured: &Measured, sql: Duration) {
    let import = &measured.import;
    let size = format!("{rows} rows");
    let state = pb::ImportState::try_from(import.state)
        .map_or_else(|_| import.state.to_string(), |state| format!("{state:?}"));
    let timeout_note = measured
        .timed_out
        .map(|phase| format!("; TIMED OUT during {phase}"))
        .unwrap_or_default();
    report.add(Row {
        scenario: SCENARIO.into(),
        subject: format!("Roster upload + validate, {size}"),
        concurrency: "1 import".into(),
        rate: rows as f64 / measured.validate.as_secs_f64(),
        unit: "rows/s".into(),
        errors: u64::try_from(import.error_count).unwrap_or(0),
        peak_rss_mib: measured.peak_rss_mib,
        usage: Some(measured.usage_validate),
        note: format!(
            "upload {:.1} s, validation {:.1} s after it; creates {}, errors {}{timeout_note}",
            measured.upload.as_secs_f64(),
            measured.validate.as_secs_f64(),
            import.create_count,
            import.error_count
        ),
        ..Row::default()
    });
    let sql_rate = rows as f64 / sql.as_secs_f64();
    if let Some(apply) = measured.apply {
        let applied = u64::try_from(import.applied_count).unwrap_or(0);
        let rate = applied as f64 / apply.as_secs_f64();
        report.add(Row {
            scenario: SCENARIO.into(),
            subject: format!("Roster apply, {size}"),
            concurrency: "1 import".into(),
            rate,
            unit: "rows/s".into(),
            errors: u64::try_from(import.failed_count).unwrap_or(0),
            peak_rss_mib: measured.peak_rss_mib,
            usage: measured.usage_apply,
            note: format!(
                "{applied} applied in {:.1} s; final state {state}; {} of bare SQL{timeout_note}",
                apply.as_secs_f64(),
                percent(rate / sql_rate)
            ),
            ..Row::default()
        });
        report.verdict(Verdict {
            what: format!("Import apply vs bare batched SQL, {size}"),
            measured: format!(
                "{} ({rate:.0} vs {sql_rate:.0} rows/s)",
                percent(rate / sql_rate)
            ),
            target: "≥ 50 %".into(),
            met: Some(rate / sql_rate >= 0.5),
        });
        if rows == 1_000_000 {
            let total = measured.upload + measured.validate + apply;
            report.verdict(Verdict {
                what: "1,000,000 rows uploaded, validated and applied".into(),
                measured: match measured.timed_out {
                    None => format!("{:.0} s", total.as_secs_f64()),
                    Some(phase) => format!(
                        "not finished: {applied} rows applied after {:.0} s ({phase} timed out)",
                        total.as_secs_f64()
                    ),
                },
                target: "≤ 120 s".into(),
                met: Some(measured.timed_out.is_none() && total <= Duration::from_secs(120)),
            });
        }
    }
}

fn memory_verdicts(report: &mut Report, peaks: &[(u64, Option<f64>)]) {
    let known: Vec<(u64, f64)> = peaks
        .iter()
        .filter_map(|(rows, peak)| peak.map(|peak| (*rows, peak)))
        .collect();
    let Some(largest) = known.iter().map(|(_, peak)| *peak).reduce(f64::max) else {
        return;
    };
    report.verdict(Verdict {
        what: "bulk-import peak RSS, largest import".into(),
        measured: format!("{largest:.0} MiB"),
        target: "< 200 MB".into(),
        met: Some(largest * 1.048_576 < 200.0),
    });
    if let (Some((small_rows, small)), Some((large_rows, large))) = (known.first(), known.last())
        && small_rows != large_rows
    {
        let growth = large / small - 1.0;
        report.verdict(Verdict {
            what: format!("bulk-import peak RSS, {large_rows} vs {small_rows} rows"),
            measured: format!("{large:.0} vs {small:.0} MiB ({:+.0} %)", growth * 100.0),
            target: "within 20 %".into(),
            met: Some(growth.abs() <= 0.20),
        });
    }
}

fn not_measured(report: &mut Report, why: &str, command: &str) {
    report.verdict(Verdict {
        what: "Bulk import (apply vs SQL, 1M rows ≤ 120 s, peak RSS)".into(),
        measured: format!("not measured: {why}"),
        target: "see issue 9".into(),
        met: None,
    });
    report.note(format!(
        "Bulk import not yet measured ({why}); measure it with: {command}"
    ));
}

fn is_unimplemented(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tonic::Status>()
        .is_some_and(|status| status.code() == tonic::Code::Unimplemented)
}

/// Row `n` of the generated spreadsheets: a new profile whose username defaults to its email.
fn row_email(n: u64) -> String {
    format!("user{n}@bulk.example")
}

/// A spreadsheet of `rows` new profiles, as the template's columns.
fn spreadsheet(rows: u64) -> Arc<Vec<u8>> {
    let mut csv = Vec::with_capacity(rows as usize * 90 + 200);
    csv.extend_from_slice(
        b"Internal ID,First Name,Last Name,Email Address,Username,Job Title,Department,Locale,Time Zone\r\n",
    );
    for n in 0..rows {
        csv.extend_from_slice(
            format!(
                ",Given{n},Family{n},{},,Engineer,Research,en,Europe/Paris\r\n",
                row_email(n)
            )
            .as_bytes(),
        );
    }
    Arc::new(csv)
}

/// A running `roster serve bulk-import`; killed when dropped.
struct BulkImportProcess {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BulkImportProcess {
    async fn start(roster_bin: &Path, database_url: &str, identity: &str) -> anyhow::Result<Self> {
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

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A channel once the server accepts connections (migrations run first).
    async fn channel(&mut self) -> anyhow::Result<Channel> {
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

/// Uploads, validates and applies one spreadsheet through a fresh bulk-import process and a
/// fresh identity.
async fn import(
    options: &Options,
    import_options: &ImportOptions,
    csv: &Arc<Vec<u8>>,
    rows: u64,
) -> anyhow::Result<Measured> {
    let (roster_bin, timeout) = (import_options.roster_bin.as_path(), import_options.timeout);
    let key = TestKey {
        key: IDENTITY_KEY.to_owned(),
        scopes: vec!["profiles"],
        accounts: AccountAccess::All,
    };
    let identity = suite::identity(options, roster_tests::identity_settings(), vec![key]).await?;
    let account = suite::create_account(identity.channel().await).await?;
    let database = suite::database().await?;
    let mut process = BulkImportProcess::start(
        roster_bin,
        &database.url,
        &format!("http://{}", identity.addr),
    )
    .await?;
    let mut client = ImportServiceClient::new(process.channel().await?)
        .max_decoding_message_size(64 * 1024 * 1024);
    let pid = process.pid().context("bulk-import exited")?;
    eprintln!(
        "  bulk-import pid {pid}, {rows} rows ({} MiB)",
        csv.len() / (1024 * 1024)
    );

    let watch = Watch::start(Some(pid));
    let started = Instant::now();
    let chunks = {
        let csv = csv.clone();
        let header = pb::UploadImportRequest {
            content: Some(pb::upload_import_request::Content::Header(
                pb::UploadImportHeader {
                    account_id: account.clone(),
                    request_id: uuid::Uuid::new_v4().to_string(),
                    file_name: format!("bench-{rows}.csv"),
                    encoding: String::new(),
                },
            )),
        };
        let count = csv.len().div_ceil(CHUNK);
        std::iter::once(header).chain((0..count).map(move |index| {
            let end = ((index + 1) * CHUNK).min(csv.len());
            pb::UploadImportRequest {
                content: Some(pb::upload_import_request::Content::Chunk(
                    csv[index * CHUNK..end].to_vec(),
                )),
            }
        }))
    };
    let uploaded = client
        .upload_import(authed(BULK_KEY, tokio_stream::iter(chunks)))
        .await
        .map_err(anyhow::Error::from)?
        .into_inner()
        .import
        .context("UploadImport returned no import")?;
    let upload = started.elapsed();
    let id = uploaded.id.clone();

    use pb::ImportState as S;
    let mut peak = system::peak_rss_mib(pid);
    let validating_since = Instant::now();
    let (import, timed_out) = wait_for(
        &mut client,
        &id,
        &[S::Uploading, S::Validating],
        timeout,
        pid,
        &mut peak,
    )
    .await?;
    let validate = validating_since.elapsed();
    let usage_validate = watch.stop();
    if timed_out || import.state != S::Validated as i32 {
        return Ok(Measured {
            upload,
            validate,
            apply: None,
            import,
            peak_rss_mib: peak,
            usage_validate,
            usage_apply: None,
            timed_out: timed_out.then_some("validation"),
        });
    }

    let analyze = import_options.analyze_every.map(|every| {
        let urls = [identity.database.url.clone(), database.url.clone()];
        tokio::spawn(async move {
            let mut databases = Vec::new();
            for url in &urls {
                databases.extend(suite::connect_database(url).await);
            }
            loop {
                tokio::time::sleep(every).await;
                for db in &databases {
                    let _ = db.execute_unprepared("ANALYZE").await;
                }
            }
        })
    });
    let watch = Watch::start(Some(pid));
    let applying_since = Instant::now();
    client
        .submit_import(authed(
            BULK_KEY,
            pb::SubmitImportRequest {
                import_id: id.clone(),
                request_id: uuid::Uuid::new_v4().to_string(),
                send_welcome_emails: false,
            },
        ))
        .await
        .map_err(anyhow::Error::from)?;
    let (import, timed_out) = wait_for(
        &mut client,
        &id,
        &[S::Validated, S::Applying],
        timeout,
        pid,
        &mut peak,
    )
    .await?;
    let apply = applying_since.elapsed();
    let usage_apply = watch.stop();
    if let Some(analyze) = analyze {
        analyze.abort();
    }
    peak = system::peak_rss_mib(pid).or(peak);
    drop(process);
    Ok(Measured {
        upload,
        validate,
        apply: Some(apply),
        import,
        peak_rss_mib: peak,
        usage_validate,
        usage_apply: Some(usage_apply),
        timed_out: timed_out.then_some("apply"),
    })
}

/// Polls the import while its state is one of `while_in`, up to `timeout`, following the
/// process's peak memory; returns the last import seen and whether the time ran out.
async fn wait_for(
    client: &mut ImportServiceClient<Channel>,
    id: &str,
    while_in: &[pb::ImportState],
    timeout: Duration,
    pid: u32,
    peak: &mut Option<f64>,
) -> anyhow::Result<(pb::Import, bool)> {
    let started = Instant::now();
    loop {
        let import = client
            .get_import(authed(
                BULK_KEY,
                pb::GetImportRequest {
                    import_id: id.to_owned(),
                },
            ))
            .await
            .map_err(anyhow::Error::from)?
            .into_inner()
            .import
            .context("GetImport returned no import")?;
        *peak = system::peak_rss_mib(pid).or(*peak);
        let waiting = while_in.iter().any(|state| *state as i32 == import.state);
        if !waiting {
            return Ok((import, false));
        }
        if started.elapsed() > timeout {
            return Ok((import, true));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same rows as the spreadsheet inserted straight into a fresh identity database with
/// multi-row INSERTs, [`SQL_BATCH`] rows per statement and transaction, on one connection. The
/// canonical forms and skeletons are computed before the clock starts.
async fn bare_sql(options: &Options, rows: u64) -> anyhow::Result<(Duration, Usage)> {
    let identity = suite::identity(options, roster_tests::identity_settings(), Vec::new()).await?;
    let account = uuid::Uuid::parse_str(&suite::create_account(identity.channel().await).await?)?;
    let db = suite::connect_database(&identity.database.url).await?;
    let prepared: Vec<(String, String, String, uuid::Uuid)> = (0..rows)
        .map(|n| {
            let email = row_email(n);
            let username = Username::parse(&email).map_err(|error| anyhow::anyhow!("{error:?}"))?;
            Ok((
                email,
                username.canonical().to_owned(),
                username.skeleton().to_owned(),
                uuid::Uuid::now_v7(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let backend = db.get_database_backend();
    let (elapsed, usage, _) = observed(None, async {
        let started = Instant::now();
        for batch in prepared.chunks(SQL_BATCH) {
            let txn = db.begin().await?;
            let now = chrono_now();
            let mut registry = String::from(
                "INSERT INTO username_registry \
                 (canonical, skeleton, username, profile_id, account_id, created_at) VALUES ",
            );
            let mut registry_values: Vec<Value> = Vec::with_capacity(batch.len() * 6);
            let mut profiles = String::from(
                "INSERT INTO profiles (id, account_id, first_name, last_name, email, \
                 email_search, username, canonical_username, job_title, department, locale, \
                 time_zone, status, created_at, updated_at, version) VALUES ",
            );
            let mut profile_values: Vec<Value> = Vec::with_capacity(batch.len() * 16);
            for (index, (email, canonical, skeleton, id)) in batch.iter().enumerate() {
                let r = index * 6;
                let p = index * 16;
                if index > 0 {
                    registry.push(',');
                    profiles.push(',');
                }
                registry.push_str(&format!(
                    "(${},${},${},${},${},${})",
                    r + 1,
                    r + 2,
                    r + 3,
                    r + 4,
                    r + 5,
                    r + 6
                ));
                registry_values.extend([
                    canonical.clone().into(),
                    skeleton.clone().into(),
                    email.clone().into(),
                    (*id).into(),
                    account.into(),
                    now.into(),
                ]);
                profiles.push('(');
                profiles.push_str(
                    &(1..=16)
                        .map(|k| format!("${}", p + k))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                profiles.push(')');
                let n = &email[4..email.find('@').unwrap_or(email.len())];
                profile_values.extend([
                    (*id).into(),
                    account.into(),
                    format!("Given{n}").into(),
                    format!("Family{n}").into(),
                    email.clone().into(),
                    email.to_lowercase().into(),
                    email.clone().into(),
                    canonical.clone().into(),
                    "Engineer".into(),
                    "Research".into(),
                    "en".into(),
                    "Europe/Paris".into(),
                    "active".into(),
                    now.into(),
                    now.into(),
                    1i64.into(),
                ]);
            }
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                registry,
                registry_values,
            ))
            .await?;
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                profiles,
                profile_values,
            ))
            .await?;
            txn.commit().await?;
        }
        anyhow::Ok(started.elapsed())
    })
    .await;
    let _ = db.close().await;
    Ok((elapsed?, usage))
}

fn chrono_now() -> sea_orm::prelude::DateTimeUtc {
    sea_orm::prelude::DateTimeUtc::from(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_usernames_are_valid_and_never_confusable() {
        let mut skeletons = std::collections::HashSet::new();
        for n in 0..20_000 {
            let username = Username::parse(&row_email(n)).unwrap();
            assert!(skeletons.insert(username.skeleton().to_owned()), "row {n}");
        }
    }

    #[test]
    fn spreadsheets_have_a_header_and_one_line_per_row() {
        let csv = spreadsheet(3);
        let text = String::from_utf8(csv.to_vec()).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.starts_with("Internal ID,First Name,"));
    }
}
