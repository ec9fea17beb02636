//! VerifyPassword: verifications/s against the argon2 limit — cores ÷ the time of one hash at
//! the configured parameters, measured here — and CheckUsername's p99 while verification
//! saturates the hashing pool, against its p99 when idle.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use roster_identity::hashing::HashingSettings;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::credential_service_client::CredentialServiceClient;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_tests::{ADMIN_KEY, TestServer, authed};
use sea_orm::{ConnectionTrait, Statement};
use tonic::transport::Channel;

use crate::load::{self, Load, Outcome, RoundRobin, status_text};
use crate::report::{Report, Row, Verdict, percent};
use crate::scenarios::check_username::check_usernames;
use crate::suite::{self, Options, observed};
use crate::system;

const SCENARIO: &str = "VerifyPassword";
const PASSWORD: &str = "Violet-Tundra-84-Lantern";
/// Profiles with a password; sign-ins go round them.
const USERS: usize = 8;
/// The concurrency that saturates the pool (2 workers + a queue of 64) without overflowing it.
const SATURATING: usize = 32;

pub async fn run(
    options: &Options,
    concurrencies: &[usize],
    hashing_workers: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut identity = roster_tests::identity_settings();
    identity.hashing.workers = hashing_workers;
    if hashing_workers != 0 {
        report.note(format!(
            "VerifyPassword ran with {hashing_workers} hashing worker(s) instead of one per core"
        ));
    }
    let limit = argon2_limit(
        &identity.hashing,
        options.duration.min(Duration::from_secs(5)),
        report,
    )
    .await?;

    let (server, channels, account) = suite::identity_with_account(options, identity).await?;
    suite::seed_profiles(&server.database.url, &account, 20_000).await?;
    let usernames = set_up_passwords(&server, &channels[0], &account).await?;

    let mut best: Option<Outcome> = None;
    for &concurrency in concurrencies {
        let load = options.load(concurrency);
        let (outcome, usage, peak) = observed(None, verify(&channels, &usernames, load)).await;
        report.add(Row {
            usage: Some(usage),
            peak_rss_mib: peak,
            note: format!(
                "{} of the argon2 limit{}",
                percent(outcome.rate() / limit),
                if outcome.errors > 0 {
                    format!("; {}", outcome.first_error.clone().unwrap_or_default())
                } else {
                    String::new()
                }
            ),
            ..Row::from_outcome(
                SCENARIO,
                "Roster VerifyPassword",
                concurrency,
                "verifications/s",
                &outcome,
            )
        });
        if best.as_ref().is_none_or(|b| outcome.rate() > b.rate()) {
            best = Some(outcome);
        }
    }
    if let Some(best) = best {
        let ratio = best.rate() / limit;
        report.verdict(Verdict {
            what: "VerifyPassword vs argon2 limit".into(),
            measured: format!("{} ({:.1} vs {:.1}/s)", percent(ratio), best.rate(), limit),
            target: "≥ 80 %".into(),
            met: Some(ratio >= 0.80),
        });
    }

    // CheckUsername, one call at a time, idle and then beside saturating verification.
    let probe = options.load(1);
    let (idle, usage, peak) = observed(None, check_usernames(&channels, probe)).await;
    report.add(Row {
        usage: Some(usage),
        peak_rss_mib: peak,
        ..Row::from_outcome(SCENARIO, "CheckUsername probe, idle", 1, "calls/s", &idle)
    });
    let background = Load {
        concurrency: SATURATING,
        // Saturated before the probe's warm-up starts, until after its window ends.
        warmup: Duration::ZERO,
        duration: options.warmup + options.duration + Duration::from_secs(2),
    };
    let saturate = tokio::spawn(verify(&channels, &usernames, background));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (loaded, usage, peak) = observed(None, check_usernames(&channels, probe)).await;
    let saturated = saturate.await.context("verification load")?;
    report.add(Row {
        usage: Some(usage),
        peak_rss_mib: peak,
        note: format!(
            "beside VerifyPassword at concurrency {SATURATING} ({:.1} verifications/s)",
            saturated.rate()
        ),
        ..Row::from_outcome(
            SCENARIO,
            "CheckUsername probe, verification saturated",
            1,
            "calls/s",
            &loaded,
        )
    });
    let (idle_p99, loaded_p99) = (idle.quantile_ms(0.99), loaded.quantile_ms(0.99));
    report.verdict(Verdict {
        what: "CheckUsername p99 with VerifyPassword saturated vs idle".into(),
        measured: format!(
            "{:.2}× ({loaded_p99:.2} ms vs {idle_p99:.2} ms)",
            loaded_p99 / idle_p99
        ),
        target: "≤ 2×".into(),
        met: Some(loaded_p99 <= 2.0 * idle_p99),
    });
    Ok(())
}

/// The argon2 limit of this machine at `settings`' parameters: cores ÷ the median time of one
/// hash on one thread. The same parameters hashed on every core at once are reported beside it
/// (memory bandwidth is shared, and so is the machine). Both are measured by [`probe`] in a
/// child process (`roster-bench --argon2-probe`), so that its hashing memory — glibc keeps
/// ~200 MiB per hashing thread, see docs/BENCHMARKS.md — does not count as Roster's.
async fn argon2_limit(
    settings: &HashingSettings,
    parallel_for: Duration,
    report: &mut Report,
) -> anyhow::Result<f64> {
    let cores = system::cores();
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--argon2-probe")
        .arg(format!("--duration={}", parallel_for.as_secs().max(1)))
        .kill_on_drop(true)
        .output();
    let (output, usage, _) = observed(None, child).await;
    let output = output.context("running the argon2 probe")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut values = text
        .split_whitespace()
        .filter_map(|value| value.parse::<f64>().ok());
    let (Some(single_ms), Some(parallel), Some(probe_rss)) =
        (values.next(), values.next(), values.next())
    else {
        anyhow::bail!(
            "the argon2 probe said {text:?} {:?}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let limit = cores as f64 / (single_ms / 1000.0);
    report.add(Row {
        scenario: SCENARIO.into(),
        subject: format!(
            "argon2 limit: {cores} cores ÷ {single_ms:.1} ms per hash (m={} KiB, t={}, p={})",
            settings.memory_kib, settings.iterations, settings.parallelism
        ),
        concurrency: cores.to_string(),
        rate: limit,
        unit: "hashes/s".into(),
        ..Row::default()
    });
    report.add(Row {
        scenario: SCENARIO.into(),
        subject: format!("bare argon2 on {cores} threads at once (separate process)"),
        concurrency: cores.to_string(),
        rate: parallel,
        unit: "hashes/s".into(),
        peak_rss_mib: Some(probe_rss),
        usage: Some(usage),
        note: format!("{} of the limit", percent(parallel / limit)),
        ..Row::default()
    });
    Ok(limit)
}

/// `roster-bench --argon2-probe`: prints the median milliseconds of one hash on one thread,
/// the hashes/s of one thread per core hashing for `parallel_for`, and this process's peak
/// resident memory in MiB.
pub fn probe(settings: &HashingSettings, parallel_for: Duration) -> anyhow::Result<String> {
    let params = Params::new(
        settings.memory_kib,
        settings.iterations,
        settings.parallelism,
        None,
    )
    .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    hash_once(&argon);
    let mut times: Vec<Duration> = (0..11)
        .map(|_| {
            let started = Instant::now();
            hash_once(&argon);
            started.elapsed()
        })
        .collect();
    times.sort();
    let single = times[times.len() / 2];
    let started = Instant::now();
    let threads: Vec<_> = (0..system::cores())
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || {
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let mut hashes = 0u64;
                while started.elapsed() < parallel_for {
                    hash_once(&argon);
                    hashes += 1;
                }
                hashes
            })
        })
        .collect();
    let hashes: u64 = threads
        .into_iter()
        .map(|thread| thread.join().unwrap_or(0))
        .sum();
    let parallel = hashes as f64 / started.elapsed().as_secs_f64();
    Ok(format!(
        "{:.3} {parallel:.3} {:.1}",
        single.as_secs_f64() * 1000.0,
        system::peak_rss_mib(std::process::id()).unwrap_or(f64::NAN)
    ))
}

fn hash_once(argon: &Argon2<'_>) {
    let salt = SaltString::encode_b64(&[7u8; 16]).expect("a 16-byte salt encodes");
    let _ = argon.hash_password(PASSWORD.as_bytes(), &salt);
}

/// Gives `USERS` new profiles the password [`PASSWORD`] through the reset flow (the only way
/// a password is set) and returns their usernames.
async fn set_up_passwords(
    server: &TestServer,
    channel: &Channel,
    account: &str,
) -> anyhow::Result<Vec<String>> {
    let mut profiles = ProfileServiceClient::new(channel.clone());
    let mut credentials = CredentialServiceClient::new(channel.clone());
    let db = suite::connect_database(&server.database.url).await?;
    let mut usernames = Vec::new();
    for index in 0..USERS {
        let email = format!("signin-{index}@bench.example");
        let profile = profiles
            .create_profile(authed(
                ADMIN_KEY,
                pb::CreateProfileRequest {
                    account_id: account.to_owned(),
                    first_name: "Sam".into(),
                    last_name: "Signin".into(),
                    email: email.clone(),
                    ..Default::default()
                },
            ))
            .await
            .context("CreateProfile")?
            .into_inner()
            .profile
            .context("no profile")?;
        credentials
            .send_password_reset(authed(
                ADMIN_KEY,
                pb::SendPasswordResetRequest {
                    profile_id: profile.id.clone(),
                    email: profile.email.clone(),
                    ..Default::default()
                },
            ))
            .await
            .context("SendPasswordReset")?;
        let token = reset_token(&db, &email).await?;
        credentials
            .complete_password_reset(authed(
                ADMIN_KEY,
                pb::CompletePasswordResetRequest {
                    token,
                    new_password: PASSWORD.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .context("CompletePasswordReset")?;
        usernames.push(profile.username);
    }
    let _ = db.close().await;
    Ok(usernames)
}

/// The token of the reset email to `recipient` in identity's outbox.
async fn reset_token(db: &sea_orm::DatabaseConnection, recipient: &str) -> anyhow::Result<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox ORDER BY created_at DESC",
        ))
        .await?;
    for row in rows {
        let payload: String = row.try_get("", "payload")?;
        let email: serde_json::Value = serde_json::from_str(&payload)?;
        if email["recipient"] == recipient && email["template"] == "password_reset" {
            let url = email["variables"]["reset_url"]
                .as_str()
                .context("reset_url")?;
            let (_, token) = url.split_once("#token=").context("token in reset_url")?;
            return Ok(token.to_owned());
        }
    }
    anyhow::bail!("no reset email to {recipient} in the outbox")
}

/// VerifyPassword with the right password, round the profiles.
fn verify(
    channels: &[Channel],
    usernames: &[String],
    load: Load,
) -> impl Future<Output = Outcome> + Send + 'static {
    let clients = RoundRobin::new(channels, CredentialServiceClient::new);
    let usernames = usernames.to_vec();
    load::run(load, move |n| {
        let mut client = clients.client(n);
        let request = pb::VerifyPasswordRequest {
            username: usernames[n as usize % usernames.len()].clone(),
            password: PASSWORD.into(),
        };
        async move {
            let answer = client
                .verify_password(authed(ADMIN_KEY, request))
                .await
                .map_err(|status| status_text(&status))?
                .into_inner();
            if answer.verified {
                Ok(())
            } else {
                Err("refused".to_owned())
            }
        }
    })
}
