//! `roster-bench`: Roster's load generator (issue 9).
//!
//! It starts the suite in-process against PostgreSQL through the test harness (the bulk import
//! through `roster serve bulk-import` and `roster serve identity` processes, so that their
//! memory can be read), runs each scenario
//! at several concurrencies, and prints throughput, p50/p99 latency and peak memory next to a
//! baseline measured in the same run — pgbench, a bare tonic server and h2load, the argon2
//! limit, a bare lettre client, bare batched SQL — with the machine's load around every step.
//!
//! Build and run it in release mode; debug numbers mean nothing:
//!
//! ```sh
//! cargo build --release -p roster-bench -p roster
//! target/release/roster-bench                       # every scenario, ~15 minutes on 2 cores
//! target/release/roster-bench --scenario check-username --duration 5
//! target/release/roster-bench --scenario create-profile-events   # needs NATS with JetStream
//! target/release/roster-bench --markdown /tmp/bench.md   # also /tmp/bench-*.svg, the charts
//! ```

mod chart;
mod echo;
mod load;
mod preflight;
mod report;
mod scenarios;
mod smtp_sink;
mod suite;
mod system;
mod tools;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sea_orm::{ConnectionTrait, Database};

// The allocator the `roster` binary serves with, so that the services run in-process here
// allocate as they do in production.
roster_runtime::global_allocator!();

use report::Report;
use suite::Options;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    CreateProfile,
    CreateProfileEvents,
    CheckUsername,
    VerifyPassword,
    Notification,
    BulkImport,
}

/// The default order. VerifyPassword comes after the other in-process scenarios: the memory
/// glibc keeps for argon2 stays resident in this process and would count in their peaks.
const ALL: [Scenario; 6] = [
    Scenario::CreateProfile,
    Scenario::CreateProfileEvents,
    Scenario::CheckUsername,
    Scenario::Notification,
    Scenario::VerifyPassword,
    Scenario::BulkImport,
];

#[derive(Parser, Debug)]
#[command(
    name = "roster-bench",
    about = "Throughput, latency and memory of Roster next to baselines measured in the same run"
)]
struct Cli {
    /// Scenarios to run, in the order given (default: all, bulk import last).
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Measured seconds of each step.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before each step's measurement starts.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// gRPC connections the load generator spreads its calls over (Roster and baselines alike).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Database pool of each service (the production default is 16).
    #[arg(long, default_value_t = 16)]
    db_pool: u32,
    /// Concurrencies of CreateProfile (and of pgbench's clients).
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 64])]
    create_concurrency: Vec<usize>,
    /// Pairs (publication off, publication on) of CreateProfileEvents; every second pair runs
    /// the other way round, and the verdict takes the mean of each side.
    #[arg(long, default_value_t = 1)]
    events_pairs: usize,
    /// Longest wait, in seconds, for identity's relay to have every event of a published
    /// CreateProfile run on NATS.
    #[arg(long, default_value_t = 120)]
    events_catch_up_timeout: u64,
    /// Concurrencies of CheckUsername and the echo server.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64])]
    check_concurrency: Vec<usize>,
    /// Concurrencies of VerifyPassword.
    #[arg(long, value_delimiter = ',', default_values_t = [2, 8, 32])]
    verify_concurrency: Vec<usize>,
    /// identity's argon2 worker threads (`hashing__workers`; 0: one per core, the default).
    #[arg(long, default_value_t = 0)]
    hashing_workers: usize,
    /// Emails sent through Roster and through bare lettre.
    #[arg(long, default_value_t = 3000)]
    emails: u64,
    /// Spreadsheet sizes of the bulk-import scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000, 1_000_000])]
    import_rows: Vec<u64>,
    /// Longest wait for one import's validation, and for its apply, in seconds.
    #[arg(long, default_value_t = 300)]
    import_timeout: u64,
    /// Diagnostic: run ANALYZE on identity's and bulk-import's databases every this many
    /// seconds during an import's apply (0: never).
    #[arg(long, default_value_t = 0)]
    import_analyze_every: u64,
    /// The `roster` binary bulk-import runs from (default: next to this one).
    #[arg(long)]
    roster_bin: Option<PathBuf>,
    /// Also write the Markdown report to this file, and its charts beside it as SVG files
    /// named from its stem (`bench.md`: `bench-create-profile.svg`, `bench-import-100000.svg`…),
    /// listed at the end of the report.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Internal: measure the argon2 limit in this process and print it (VerifyPassword runs
    /// this as a child process).
    #[arg(long, hide = true)]
    argon2_probe: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.argon2_probe {
        let hashing = roster_tests::identity_settings().hashing;
        let measured =
            scenarios::verify_password::probe(&hashing, Duration::from_secs(cli.duration.max(1)))?;
        println!("{measured}");
        return Ok(());
    }
    let options = Options {
        warmup: Duration::from_secs(cli.warmup),
        duration: Duration::from_secs(cli.duration.max(1)),
        connections: cli.connections.max(1),
        db_pool: cli.db_pool.max(1),
    };
    let scenarios = if cli.scenarios.is_empty() {
        ALL.to_vec()
    } else {
        cli.scenarios.clone()
    };
    let roster_bin = match &cli.roster_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("roster"),
    };

    let needs = preflight::Needs {
        pgbench_clients: if scenarios.contains(&Scenario::CreateProfile) {
            cli.create_concurrency.iter().copied().max().unwrap_or(0)
        } else {
            0
        },
        db_pool: options.db_pool,
        pools: if scenarios.contains(&Scenario::BulkImport) {
            2
        } else {
            1
        },
    };
    let url = std::env::var("ROSTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    preflight::check(needs, preflight::budget(&url).await?)?;

    let header = header(&options).await;
    eprintln!("{header}");
    let mut report = Report::default();
    for scenario in scenarios {
        let load_before = system::load_average();
        eprintln!("\n== {scenario:?} (load average {load_before:.2})");
        let result = match scenario {
            Scenario::CreateProfile => {
                scenarios::create_profile::run(&options, &cli.create_concurrency, &mut report).await
            }
            Scenario::CreateProfileEvents => {
                let events = scenarios::create_profile_events::EventsOptions {
                    pairs: cli.events_pairs,
                    catch_up_timeout: Duration::from_secs(cli.events_catch_up_timeout),
                };
                scenarios::create_profile_events::run(&options, events, &mut report).await
            }
            Scenario::CheckUsername => {
                scenarios::check_username::run(&options, &cli.check_concurrency, &mut report).await
            }
            Scenario::VerifyPassword => {
                scenarios::verify_password::run(
                    &options,
                    &cli.verify_concurrency,
                    cli.hashing_workers,
                    &mut report,
                )
                .await
            }
            Scenario::Notification => {
                scenarios::notification::run(&options, cli.emails, &mut report).await
            }
            Scenario::BulkImport => {
                let import = scenarios::bulk_import::ImportOptions {
                    sizes: cli.import_rows.clone(),
                    roster_bin: roster_bin.clone(),
                    timeout: Duration::from_secs(cli.import_timeout),
                    analyze_every: (cli.import_analyze_every > 0)
                        .then(|| Duration::from_secs(cli.import_analyze_every)),
                };
                scenarios::bulk_import::run(&options, &import, &mut report).await
            }
        };
        if let Err(error) = result {
            report.note(format!("{scenario:?} failed: {error:#}"));
        }
        report.note(format!(
            "{scenario:?}: load average {load_before:.2} before, {:.2} after",
            system::load_average()
        ));
    }

    let mut markdown = format!("{header}\n{}", report.markdown());
    if let Some(path) = &cli.markdown {
        markdown.push_str(&chart::write_beside(path, &chart::figures(&report)));
    }
    println!("{markdown}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &markdown)?;
    }
    Ok(())
}

/// The machine, the tools and the settings, as the report's first lines.
async fn header(options: &Options) -> String {
    let machine = system::Machine::read();
    let postgres = postgres_version().await;
    let build = if cfg!(debug_assertions) {
        "DEBUG build: these numbers mean nothing, build with --release"
    } else {
        "release build"
    };
    format!(
        "# roster-bench ({build})\n\n\
         - machine: {} cores, {} ({} MiB RAM), Linux {}\n\
         - PostgreSQL: {postgres}\n\
         - tools: {}; {}\n\
         - steps: {} s warm-up + {} s measured; {} gRPC connections; database pool {}\n\
         - services: in-process through the test harness (no log subscriber, no per-caller \
         rate limit); the bulk import through `roster serve bulk-import` and `roster serve \
         identity` processes\n\
         - load average at start: {:.2}\n",
        machine.cores,
        machine.cpu_model,
        machine.memory_mib,
        machine.kernel,
        tools::version("pgbench"),
        if tools::installed("h2load") {
            tools::version("h2load")
        } else {
            "h2load not installed".to_owned()
        },
        options.warmup.as_secs(),
        options.duration.as_secs(),
        options.connections,
        options.db_pool,
        system::load_average(),
    )
}

async fn postgres_version() -> String {
    let url = std::env::var("ROSTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let Ok(db) = Database::connect(&url).await else {
        return format!("unreachable at {url}");
    };
    let version = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT version() AS version",
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get::<String>("", "version").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let _ = db.close().await;
    version
}
