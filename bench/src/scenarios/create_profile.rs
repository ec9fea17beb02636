//! CreateProfile: profiles/s and latency at several concurrencies, next to pgbench running the
//! equivalent two-insert transaction (username row + profile row) on the same database.
//!
//! A second pgbench script replays the statement one CreateProfile call actually sends (the
//! account's row locked, and the registry row, the profile, the kept answer, the event and its
//! place in the numbering queue inserted from it), which splits the gap to the target into
//! "more SQL per call" and "time spent in the service"; one more Roster run without a
//! `request_id` shows what idempotency costs.

use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::profile_service_client::ProfileServiceClient;
use roster_tests::{ADMIN_KEY, authed};

use crate::load::{self, Load, Outcome, RoundRobin};
use crate::report::{Report, Row, Verdict, percent};
use crate::suite::{self, Options, observed};
use crate::tools;

pub const SCENARIO: &str = "CreateProfile";
/// The subject of Roster's rows at each concurrency, and of the baseline's (charted together).
pub const ROSTER: &str = "Roster CreateProfile";
pub const BASELINE: &str = "pgbench 2-insert transaction";

/// The `(canonical, profile id)` expressions of a pgbench transaction: a unique username from
/// the client id and two random numbers, and a profile id derived from it.
const NAME: &str = "'pgb-' || CAST(:client_id AS text) || '-' || CAST(:a AS text) || '-' \
                    || CAST(:b AS text) || '@bench.example'";

fn variables() -> &'static str {
    "\\set a random(1, 2147483647)\n\\set b random(1, 2147483647)\n"
}

fn registry_insert(account: &str, on_conflict: bool) -> String {
    format!(
        "INSERT INTO username_registry (canonical, skeleton, username, profile_id, account_id, \
         created_at) VALUES ({NAME}, {NAME}, {NAME}, md5({NAME})::uuid, '{account}', now()){};\n",
        if on_conflict {
            " ON CONFLICT DO NOTHING"
        } else {
            ""
        }
    )
}

fn profile_insert(account: &str) -> String {
    format!(
        "INSERT INTO profiles (id, account_id, first_name, last_name, email, email_search, \
         username, canonical_username, job_title, department, locale, time_zone, status, \
         created_at, updated_at, deleted_at, version) VALUES (md5({NAME})::uuid, '{account}', \
         'Ada', 'Lovelace', {NAME}, {NAME}, {NAME}, {NAME}, NULL, NULL, NULL, NULL, 'active', \
         now(), now(), NULL, 1);\n"
    )
}

/// The baseline of issue 9: one transaction with the username row and the profile row.
pub fn two_insert_script(account: &str) -> String {
    format!(
        "{}BEGIN;\n{}{}COMMIT;\n",
        variables(),
        registry_insert(account, false),
        profile_insert(account)
    )
}

/// What one CreateProfile call with a `request_id` sends on PostgreSQL: one statement that
/// locks the account's row and inserts the registry row, the profile, the kept answer, the
/// event and its place in the numbering queue.
fn roster_statement_script(account: &str) -> String {
    let request_id =
        "CAST(:client_id AS text) || '-' || CAST(:a AS text) || '-' || CAST(:b AS text)";
    // A kept answer (the profile as JSON) is about 400 bytes, an event's changes about 300.
    let answer = "decode(repeat('ab', 400), 'hex')";
    let changes = "repeat('x', 300)";
    let registry = registry_insert(account, false)
        .replace(" VALUES (", " SELECT ")
        .replace(");\n", " FROM account");
    let profile = profile_insert(account)
        .replace(" VALUES (", " SELECT ")
        .replace(");\n", " FROM account");
    format!(
        "{}WITH account AS (SELECT id FROM accounts WHERE id = '{account}' \
         AND deleted_at IS NULL FOR KEY SHARE), \
         registered AS ({registry}), created AS ({profile}), \
         kept AS (INSERT INTO idempotency_keys (scope, request_id, response, created_at) \
         SELECT 'bench/CreateProfile', {request_id}, {answer}, now() FROM account), \
         written AS (INSERT INTO events (id, occurred_at, account_id, subject_type, subject_id, \
         event_type, actor, caller, source, request_id, trace_id, changes) \
         SELECT gen_random_uuid(), now(), id, 'profile', md5({NAME})::uuid, \
         'roster.profile.created', 'bench', 'bench', 'grpc', {request_id}, 'none', {changes} \
         FROM account RETURNING insert_id, account_id, subject_id) \
         INSERT INTO event_pending (insert_id, account_id, subject_id) \
         SELECT insert_id, account_id, subject_id FROM written;\n",
        variables(),
    )
}

pub async fn run(
    options: &Options,
    concurrencies: &[usize],
    report: &mut Report,
) -> anyhow::Result<()> {
    let (server, channels, account) =
        suite::identity_with_account(options, roster_tests::identity_settings()).await?;
    let url = server.database.url.clone();
    let baseline = two_insert_script(&account);
    let mut at_32 = None;

    for &concurrency in concurrencies {
        let load = options.load(concurrency);
        let (outcome, usage, peak) =
            observed(None, create_profiles(&channels, &account, load, true)).await;
        let roster = Row {
            usage: Some(usage),
            peak_rss_mib: peak,
            ..Row::from_outcome(SCENARIO, ROSTER, concurrency, "profiles/s", &outcome)
        };
        report.add(roster);

        let (pgbench, usage, _) = observed(
            None,
            tools::pgbench(
                &url,
                &baseline,
                concurrency,
                options.warmup,
                options.duration,
            ),
        )
        .await;
        let pgbench = pgbench?;
        report.add(Row {
            usage: Some(usage),
            ..Row::from_outcome(SCENARIO, BASELINE, concurrency, "txn/s", &pgbench)
        });
        let ratio = outcome.rate() / pgbench.rate();
        report.note(format!(
            "CreateProfile at concurrency {concurrency}: {} of pgbench",
            percent(ratio)
        ));
        if concurrency == 32 {
            at_32 = Some((outcome, pgbench));
        }
    }

    if let Some((roster, pgbench)) = at_32 {
        let ratio = roster.rate() / pgbench.rate();
        report.verdict(Verdict {
            what: "CreateProfile vs pgbench, c=32".into(),
            measured: percent(ratio),
            target: "≥ 70 %".into(),
            met: Some(ratio >= 0.70),
        });
        let p99 = roster.quantile_ms(0.99);
        report.verdict(Verdict {
            what: "CreateProfile p99, c=32".into(),
            measured: format!("{p99:.1} ms"),
            target: "< 50 ms".into(),
            met: Some(p99 < 50.0),
        });

        // Where the gap comes from: the SQL a call really sends, and idempotency's share.
        let load = options.load(32);
        let (statements, usage, _) = observed(
            None,
            tools::pgbench(
                &url,
                &roster_statement_script(&account),
                32,
                options.warmup,
                options.duration,
            ),
        )
        .await;
        report.add(Row {
            usage: Some(usage),
            ..Row::from_outcome(
                SCENARIO,
                "pgbench replaying CreateProfile's statement",
                32,
                "txn/s",
                &statements?,
            )
        });
        let (outcome, usage, peak) =
            observed(None, create_profiles(&channels, &account, load, false)).await;
        report.add(Row {
            usage: Some(usage),
            peak_rss_mib: peak,
            ..Row::from_outcome(
                SCENARIO,
                "Roster CreateProfile without request_id",
                32,
                "profiles/s",
                &outcome,
            )
        });
    }
    Ok(())
}

/// CreateProfile in a closed loop, each call a new username; with `request_id` as callers are
/// asked to send one (AIP-155), or without.
pub async fn create_profiles(
    channels: &[tonic::transport::Channel],
    account: &str,
    load: Load,
    with_request_id: bool,
) -> Outcome {
    let clients = RoundRobin::new(channels, ProfileServiceClient::new);
    let account = account.to_owned();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    load::run(load, move |n| {
        let mut client = clients.client(n);
        let request = pb::CreateProfileRequest {
            account_id: account.clone(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: format!("p{}-{n}@bench.example", &tag[..8]),
            request_id: if with_request_id {
                uuid::Uuid::new_v4().to_string()
            } else {
                String::new()
            },
            ..Default::default()
        };
        async move { load::answered(client.create_profile(authed(ADMIN_KEY, request)).await) }
    })
    .await
}
