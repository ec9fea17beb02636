//! CheckUsername: calls/s and latency at several concurrencies next to a bare tonic echo server
//! driven by the same load generator, and both again under h2load as a third-party check.
//!
//! Each call asks about a username nobody holds (the common case while a user types one) in a
//! registry seeded with profiles, so it costs what an availability check costs in production:
//! canonicalisation, the skeleton, two index lookups.

use prost::Message as _;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_tests::{ADMIN_KEY, authed};
use tonic::transport::Channel;

use crate::echo::{self, EchoServer};
use crate::load::{self, Load, Outcome, RoundRobin, status_text};
use crate::report::{Report, Row, Verdict, percent};
use crate::suite::{self, Options, observed};
use crate::tools;

pub const SCENARIO: &str = "CheckUsername";
/// The subject of Roster's rows at each concurrency, and of the baseline's (charted together).
pub const ROSTER: &str = "Roster CheckUsername";
pub const BASELINE: &str = "bare tonic echo";
/// Profiles in the registry before the calls.
const SEEDED: u64 = 20_000;

pub async fn run(
    options: &Options,
    concurrencies: &[usize],
    report: &mut Report,
) -> anyhow::Result<()> {
    let (server, channels, account) =
        suite::identity_with_account(options, roster_tests::identity_settings()).await?;
    suite::seed_profiles(&server.database.url, &account, SEEDED).await?;
    let echo = EchoServer::start().await?;
    let echo_channels = suite::channels(echo.addr, options.connections).await;

    let (mut best_roster, mut best_bare) = (None, None);
    for &concurrency in concurrencies {
        let load = options.load(concurrency);
        let (roster, usage, peak) = observed(None, check_usernames(&channels, load)).await;
        report.add(Row {
            usage: Some(usage),
            peak_rss_mib: peak,
            ..Row::from_outcome(SCENARIO, ROSTER, concurrency, "calls/s", &roster)
        });
        let (bare, usage, peak) = observed(None, echoes(&echo_channels, load)).await;
        report.add(Row {
            usage: Some(usage),
            peak_rss_mib: peak,
            ..Row::from_outcome(SCENARIO, BASELINE, concurrency, "calls/s", &bare)
        });
        let ratio = roster.rate() / bare.rate();
        report.note(format!(
            "CheckUsername at concurrency {concurrency}: {} of the bare echo server",
            percent(ratio)
        ));
        // The target compares each server at its best.
        if best_roster
            .as_ref()
            .is_none_or(|b: &Outcome| roster.rate() > b.rate())
        {
            best_roster = Some(roster);
        }
        if best_bare
            .as_ref()
            .is_none_or(|b: &Outcome| bare.rate() > b.rate())
        {
            best_bare = Some(bare);
        }
    }
    if let (Some(roster), Some(bare)) = (&best_roster, &best_bare) {
        let ratio = roster.rate() / bare.rate();
        report.verdict(Verdict {
            what: "CheckUsername vs bare tonic echo (best of each)".into(),
            measured: format!(
                "{} ({:.0} vs {:.0} calls/s)",
                percent(ratio),
                roster.rate(),
                bare.rate()
            ),
            target: "≥ 30 %".into(),
            met: Some(ratio >= 0.30),
        });
    }

    if !tools::installed("h2load") {
        report.note(
            "h2load is not installed (Debian: apt-get install nghttp2-client): \
             the third-party cross-check of CheckUsername was skipped",
        );
        return Ok(());
    }
    cross_check(options, &server, &echo, report).await
}

/// The same two servers under h2load: 4 connections × 16 streams.
async fn cross_check(
    options: &Options,
    server: &roster_tests::TestServer,
    echo: &EchoServer,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (clients, streams) = (4, 16);
    let check = pb::CheckUsernameRequest {
        username: "nobody-has-this@bench.example".into(),
        ..Default::default()
    };
    // h2load cannot see gRPC errors (they travel in an HTTP 200's trailers): check once.
    ProfileServiceClient::new(server.channel().await)
        .check_username(authed(ADMIN_KEY, check.clone()))
        .await
        .map_err(|status| anyhow::anyhow!("CheckUsername fails: {}", status_text(&status)))?;
    let bearer = format!("Bearer {ADMIN_KEY}");
    let targets = [
        (
            "h2load → Roster CheckUsername",
            format!(
                "http://{}/roster.identity.v1.ProfileService/CheckUsername",
                server.addr
            ),
            check.encode_to_vec(),
            vec![("authorization", bearer.as_str())],
        ),
        (
            "h2load → bare tonic echo",
            format!("http://{}/roster.bench.v1.EchoService/Echo", echo.addr),
            echo::pb::EchoRequest {
                text: "nobody-has-this@bench.example".into(),
            }
            .encode_to_vec(),
            vec![("authorization", bearer.as_str())],
        ),
    ];
    let mut rates = Vec::new();
    for (subject, url, message, headers) in targets {
        let (result, usage, peak) = observed(
            None,
            tools::h2load(
                &url,
                &message,
                &headers,
                clients,
                streams,
                options.warmup,
                options.duration,
            ),
        )
        .await;
        let result = result?;
        rates.push(result.requests_per_second);
        report.add(Row {
            scenario: SCENARIO.into(),
            subject: subject.into(),
            concurrency: format!("{}", clients * streams),
            rate: result.requests_per_second,
            unit: "calls/s".into(),
            p50_ms: None,
            p99_ms: None,
            errors: result.failed,
            peak_rss_mib: peak,
            usage: Some(usage),
            note: format!(
                "h2load gives no percentiles: mean {:.2} ms, max {:.1} ms; {} succeeded",
                result.mean_ms, result.max_ms, result.succeeded
            ),
        });
    }
    report.note(format!(
        "h2load cross-check: CheckUsername at {} of the bare echo server",
        percent(rates[0] / rates[1])
    ));
    Ok(())
}

/// CheckUsername in a closed loop, each call a different username nobody holds.
pub async fn check_usernames(channels: &[Channel], load: Load) -> Outcome {
    let clients = RoundRobin::new(channels, ProfileServiceClient::new);
    load::run(load, move |n| {
        let mut client = clients.client(n);
        let request = pb::CheckUsernameRequest {
            username: format!("free-{n}@bench.example"),
            ..Default::default()
        };
        async move {
            let answer = client
                .check_username(authed(ADMIN_KEY, request))
                .await
                .map_err(|status| status_text(&status))?
                .into_inner();
            if answer.available {
                Ok(())
            } else {
                Err(format!("unexpectedly unavailable: {}", answer.message))
            }
        }
    })
    .await
}

/// The echo call in the same closed loop, with a username-sized text and the same
/// `authorization` header (which the echo server ignores), so the client does the same work.
async fn echoes(channels: &[Channel], load: Load) -> Outcome {
    let clients = RoundRobin::new(
        channels,
        echo::pb::echo_service_client::EchoServiceClient::new,
    );
    load::run(load, move |n| {
        let mut client = clients.client(n);
        let request = echo::pb::EchoRequest {
            text: format!("free-{n}@bench.example"),
        };
        async move { load::answered(client.echo(authed(ADMIN_KEY, request)).await) }
    })
    .await
}
