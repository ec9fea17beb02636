//! `roster`: one binary for the whole suite.
//!
//! - `roster dev` runs all three services in one process on SQLite files and a file mail drop
//!   under `./var` (the embedded default).
//! - `roster serve <service>` runs one service (production, one per container).
//! - `roster migrate <service>` applies one service's migrations and exits (a Kubernetes Job).
//! - `roster import template|upload|submit|report` drives a bulk import.

mod dev;
mod import;
mod launch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use roster_runtime::Service;

#[derive(Parser)]
#[command(name = "roster", version, about = "Roster: user profiles behind gRPC")]
struct Cli {
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
    /// Bulk import: template, upload (with preview), submit --watch, report.
    Import(import::ImportArgs),
}

fn parse_service(name: &str) -> Result<Service, String> {
    Service::parse(name).ok_or_else(|| {
        format!("unknown service {name:?}; expected identity, bulk-import or notification")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        match cli.command {
            Command::Dev { dir } => dev::run(&dir).await,
            Command::Serve { service, config } => launch::serve(service, config.as_deref()).await,
            Command::Migrate { service, config } => {
                launch::migrate(service, config.as_deref()).await
            }
            Command::Import(args) => import::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("roster: {error:#}");
            ExitCode::FAILURE
        }
    }
}
