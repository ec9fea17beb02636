//! `roster`: one binary for the whole suite.
//!
//! - `roster dev` runs all three services in one process on SQLite files and a file mail drop
//!   under `./var` (the embedded default).
//! - `roster serve <service>` runs one service (production, one per container).
//! - `roster migrate <service>` applies one service's migrations and exits (a Kubernetes Job).
//! - `roster import template|upload|submit|report|list|cancel` drives a bulk import.
//! - `roster accounts|profiles|usernames|passwords|notifications|events …` are the operator
//!   commands: gRPC calls to running services, printed as tables or, with `--json`, as JSON.
//! - `roster keys new|hash` make caller keys and their keys-file entries, offline.

mod accounts;
mod client;
mod dev;
mod events;
mod import;
mod keys;
mod launch;
mod notifications;
mod output;
mod passwords;
mod profiles;
mod usernames;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use roster_runtime::Service;

// The services' allocator (see roster_runtime::allocator).
roster_runtime::global_allocator!();

#[derive(Parser)]
#[command(name = "roster", version, about = "Roster: user profiles behind gRPC")]
struct Cli {
    #[command(flatten)]
    client: client::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run identity, bulk-import and notification in one process on SQLite under ./var.
    Dev {
        /// Directory for the databases, the mail drop and the operator key.
        #[arg(long, default_value = "var")]
        dir: PathBuf,
    },
    /// Run one service until SIGTERM or SIGINT.
    Serve {
        /// identity, bulk-import or notification.
        #[arg(value_parser = parse_service)]
        service: Service,
        /// TOML file with a table per service ([identity], [bulk_import], [notification]).
        #[arg(long, env = "ROSTER_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// Apply one service's pending database migrations and exit.
    Migrate {
        /// identity, bulk-import or notification.
        #[arg(value_parser = parse_service)]
        service: Service,
        /// TOML file with a table per service.
        #[arg(long, env = "ROSTER_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// Bulk import: template, upload (with preview), submit --watch, report, list, cancel.
    #[command(subcommand)]
    Import(import::Command),
    /// Accounts, their password policies and their SCIM tokens.
    #[command(subcommand)]
    Accounts(accounts::Command),
    /// User profiles.
    #[command(subcommand)]
    Profiles(profiles::Command),
    /// Username availability.
    #[command(subcommand)]
    Usernames(usernames::Command),
    /// Password requirements, checks, resets and verification.
    #[command(subcommand)]
    Passwords(passwords::Command),
    /// Email notifications and their delivery.
    #[command(subcommand)]
    Notifications(notifications::Command),
    /// Identity's audit log: list its events, or follow them as they commit.
    #[command(subcommand)]
    Events(events::Command),
    /// Caller keys for the keys file (offline).
    #[command(subcommand)]
    Keys(keys::Command),
}

fn parse_service(name: &str) -> Result<Service, String> {
    Service::parse(name).ok_or_else(|| {
        format!("unknown service {name:?}; expected identity, bulk-import or notification")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.client.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("roster: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let client = client::Client::new(cli.client);
        match cli.command {
            Command::Dev { dir } => dev::run(&dir).await,
            Command::Serve { service, config } => launch::serve(service, config.as_deref()).await,
            Command::Migrate { service, config } => {
                launch::migrate(service, config.as_deref()).await
            }
            Command::Import(command) => import::run(command, &client).await,
            Command::Accounts(command) => accounts::run(command, &client).await,
            Command::Profiles(command) => profiles::run(command, &client).await,
            Command::Usernames(command) => usernames::run(command, &client).await,
            Command::Passwords(command) => passwords::run(command, &client).await,
            Command::Notifications(command) => notifications::run(command, &client).await,
            Command::Events(command) => events::run(command, &client).await,
            Command::Keys(command) => keys::run(command, client.json()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `roster … | head`: the reader has what it wanted; a message would only be noise.
        Err(error)
            if error
                .chain()
                .any(|cause| cause.is::<output::ClosedStdout>()) =>
        {
            ExitCode::from(output::CLOSED_STDOUT_EXIT_CODE)
        }
        Err(error) => {
            client::report(&error, json);
            ExitCode::FAILURE
        }
    }
}
