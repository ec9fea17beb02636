//! One spreadsheet through Roster: uploaded, validated and applied by a fresh bulk-import
//! process against a fresh identity process, timed phase by phase with each process's peak
//! memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use roster_proto::imports::v1 as pb;
use roster_proto::imports::v1::import_service_client::ImportServiceClient;
use roster_tests::authed;
use sea_orm::ConnectionTrait;
use tonic::transport::Channel;

use super::process::ServiceProcess;
use super::{BULK_KEY, ImportOptions};
use crate::suite::{self, Options};
use crate::system::{self, Usage, Watch};

/// Upload chunk size.
const CHUNK: usize = 1024 * 1024;

/// How the import went.
pub(super) struct Measured {
    pub(super) upload: Duration,
    pub(super) validate: Duration,
    pub(super) apply: Option<Duration>,
    /// Rows applied over time: `(seconds since the apply started, applied_count)`, from
    /// `(0, 0)` and at each poll of the import during the apply.
    pub(super) applied: Vec<(f64, f64)>,
    pub(super) import: pb::Import,
    pub(super) peak_rss_mib: Option<f64>,
    /// The identity process's peak.
    pub(super) identity_peak_rss_mib: Option<f64>,
    pub(super) usage_validate: Usage,
    pub(super) usage_apply: Option<Usage>,
    pub(super) timed_out: Option<&'static str>,
}

/// Uploads, validates and applies one spreadsheet through a fresh bulk-import process and a
/// fresh identity.
pub(super) async fn import(
    options: &Options,
    import_options: &ImportOptions,
    csv: &Arc<Vec<u8>>,
    rows: u64,
) -> anyhow::Result<Measured> {
    let (roster_bin, timeout) = (import_options.roster_bin.as_path(), import_options.timeout);
    let identity_database = suite::database().await?;
    let mut identity =
        ServiceProcess::identity(roster_bin, &identity_database.url, options.db_pool).await?;
    let account = suite::create_account(identity.channel().await?).await?;
    let identity_pid = identity.pid().context("identity exited")?;
    let database = suite::database().await?;
    let mut process = ServiceProcess::bulk_import(
        roster_bin,
        &database.url,
        &format!("http://{}", identity.addr),
    )
    .await?;
    let mut client = ImportServiceClient::new(process.channel().await?)
        .max_decoding_message_size(64 * 1024 * 1024);
    let pid = process.pid().context("bulk-import exited")?;
    eprintln!(
        "  bulk-import pid {pid}, identity pid {identity_pid}, {rows} rows ({} MiB)",
        csv.len() / (1024 * 1024)
    );

    let watch = Watch::start(&[pid, identity_pid]);
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
        let end = pb::UploadImportRequest {
            content: Some(pb::upload_import_request::Content::End(
                pb::UploadImportEnd {
                    size_bytes: csv.len() as u64,
                },
            )),
        };
        std::iter::once(header)
            .chain((0..count).map(move |index| {
                let end = ((index + 1) * CHUNK).min(csv.len());
                pb::UploadImportRequest {
                    content: Some(pb::upload_import_request::Content::Chunk(
                        csv[index * CHUNK..end].to_vec(),
                    )),
                }
            }))
            .chain(std::iter::once(end))
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
        None,
    )
    .await?;
    let validate = validating_since.elapsed();
    let usage_validate = watch.stop();
    if timed_out || import.state != S::Validated as i32 {
        return Ok(Measured {
            upload,
            validate,
            apply: None,
            applied: Vec::new(),
            import,
            peak_rss_mib: peak,
            identity_peak_rss_mib: system::peak_rss_mib(identity_pid),
            usage_validate,
            usage_apply: None,
            timed_out: timed_out.then_some("validation"),
        });
    }

    let analyze = import_options.analyze_every.map(|every| {
        let urls = [identity_database.url.clone(), database.url.clone()];
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
    let watch = Watch::start(&[pid, identity_pid]);
    let applying_since = Instant::now();
    let mut applied = vec![(0.0, 0.0)];
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
        Some((applying_since, &mut applied)),
    )
    .await?;
    let apply = applying_since.elapsed();
    let usage_apply = watch.stop();
    if let Some(analyze) = analyze {
        analyze.abort();
    }
    peak = system::peak_rss_mib(pid).or(peak);
    let identity_peak = system::peak_rss_mib(identity_pid);
    drop(process);
    drop(identity);
    Ok(Measured {
        upload,
        validate,
        apply: Some(apply),
        applied,
        import,
        peak_rss_mib: peak,
        identity_peak_rss_mib: identity_peak,
        usage_validate,
        usage_apply: Some(usage_apply),
        timed_out: timed_out.then_some("apply"),
    })
}

/// Polls the import while its state is one of `while_in`, up to `timeout`, following the
/// process's peak memory; returns the last import seen and whether the time ran out. With
/// `applied`, each poll adds `(seconds since the instant given, applied_count)` to it.
async fn wait_for(
    client: &mut ImportServiceClient<Channel>,
    id: &str,
    while_in: &[pb::ImportState],
    timeout: Duration,
    pid: u32,
    peak: &mut Option<f64>,
    mut applied: Option<(Instant, &mut Vec<(f64, f64)>)>,
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
        if let Some((since, samples)) = &mut applied {
            samples.push((since.elapsed().as_secs_f64(), import.applied_count as f64));
        }
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
