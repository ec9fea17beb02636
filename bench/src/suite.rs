//! Starting Roster for a scenario, through the test harness (`roster-tests`): each scenario gets
//! its services on fresh PostgreSQL databases, with the production defaults where they matter to
//! speed (a database pool of 16, a concurrency limit of 256) and two deliberate differences,
//! both stated in the report: no per-caller rate limit (it would measure the limiter) and no log
//! subscriber.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::account_service_client::AccountServiceClient;
use roster_runtime::{CommonSettings, Service};
use roster_tests::{ADMIN_KEY, Backend, TestDatabase, TestKey, TestServer, authed, test_settings};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tonic::transport::Channel;

use crate::load::Load;
use crate::system::{self, Usage, Watch};

/// What every scenario is given.
#[derive(Clone, Debug)]
pub struct Options {
    pub warmup: std::time::Duration,
    pub duration: std::time::Duration,
    /// gRPC connections the load generator spreads its calls over.
    pub connections: usize,
    /// Each service's database pool.
    pub db_pool: u32,
}

impl Options {
    /// `concurrency` calls in flight, for the run's warm-up and then its measured duration.
    pub fn load(&self, concurrency: usize) -> Load {
        Load {
            concurrency,
            warmup: self.warmup,
            duration: self.duration,
        }
    }
}

/// A fresh PostgreSQL database, created through the harness.
pub async fn database() -> anyhow::Result<Arc<TestDatabase>> {
    let database = TestDatabase::create(Backend::Postgres)
        .await
        .context("PostgreSQL is unreachable (set ROSTER_TEST_POSTGRES_URL)")?;
    let name = url::Url::parse(&database.url)?
        .path()
        .trim_start_matches('/')
        .to_owned();
    system::watch_database(&name);
    Ok(Arc::new(database))
}

/// The common settings of a service under benchmark on `database_url`.
pub fn settings(service: Service, database_url: &str, options: &Options) -> CommonSettings {
    let mut settings = test_settings(service, database_url);
    settings.db_max_connections = options.db_pool;
    settings
}

/// Identity on a fresh database, accepting the harness's admin key and `keys`.
pub async fn identity(
    options: &Options,
    identity: roster_identity::Settings,
    keys: Vec<TestKey>,
) -> anyhow::Result<TestServer> {
    let database = database().await?;
    let settings = settings(Service::Identity, &database.url, options);
    Ok(TestServer::start_with(Service::Identity, settings, identity, database, keys).await)
}

/// An identity server as [`identity`] starts it (no extra keys), `options.connections` channels
/// to it, and the id of an account made on it: what the identity scenarios call against.
pub async fn identity_with_account(
    options: &Options,
    identity: roster_identity::Settings,
) -> anyhow::Result<(TestServer, Vec<Channel>, String)> {
    let server = self::identity(options, identity, Vec::new()).await?;
    let channels = channels(server.addr, options.connections).await;
    let account = create_account(channels[0].clone()).await?;
    Ok((server, channels, account))
}

/// `count` channels to `addr`, each its own HTTP/2 connection.
pub async fn channels(addr: SocketAddr, count: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        channels.push(roster_tests::connect(addr).await);
    }
    channels
}

/// Creates an account and returns its id.
pub async fn create_account(channel: Channel) -> anyhow::Result<String> {
    let account = AccountServiceClient::new(channel)
        .create_account(authed(
            ADMIN_KEY,
            pb::CreateAccountRequest {
                display_name: "Bench Corp".into(),
                ..Default::default()
            },
        ))
        .await
        .context("CreateAccount")?
        .into_inner()
        .account
        .context("CreateAccount returned no account")?;
    Ok(account.id)
}

/// A connection to a service's database, for seeding and baselines.
pub async fn connect_database(url: &str) -> anyhow::Result<DatabaseConnection> {
    Database::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Registers `count` usernames (`seed-<n>@bench.example`) with their profiles in `account`,
/// straight in SQL, so lookups run against a registry that is not empty.
pub async fn seed_profiles(url: &str, account: &str, count: u64) -> anyhow::Result<()> {
    let db = connect_database(url).await?;
    let name = "'seed-' || g || '@bench.example'";
    let id = "md5('seed-' || g)::uuid";
    db.execute_unprepared(&format!(
        "INSERT INTO username_registry \
           (canonical, skeleton, username, profile_id, account_id, created_at) \
         SELECT {name}, {name}, {name}, {id}, '{account}', now() \
         FROM generate_series(1, {count}) AS g"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO profiles \
           (id, account_id, first_name, last_name, email, email_search, username, \
            canonical_username, status, created_at, updated_at, version) \
         SELECT {id}, '{account}', 'Seed', 'Profile', {name}, {name}, {name}, {name}, \
                'active', now(), now(), 1 \
         FROM generate_series(1, {count}) AS g"
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    let _ = db.close().await;
    Ok(())
}

/// Runs `work` and tells what the machine did meanwhile and this process's peak memory;
/// `extra` is another process whose CPU counts as the benchmark's (the bulk-import server).
pub async fn observed<T>(
    extra: Option<u32>,
    work: impl Future<Output = T>,
) -> (T, Usage, Option<f64>) {
    system::reset_own_peak();
    let watch = Watch::start(extra.as_slice());
    let value = work.await;
    let usage = watch.stop();
    (value, usage, system::peak_rss_mib(std::process::id()))
}
