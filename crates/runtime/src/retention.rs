//! Retention: each service's periodic purge of the data that would otherwise grow forever,
//! and the leased-job machinery it runs on.
//!
//! - [`JobLease`]: a named job held by one replica at a time through a row of the service's
//!   `job_leases` table ([`create_job_leases`] makes it in a migration). Taking or renewing it is
//!   one conditional statement (insert, or update when the lease ran out or is already ours),
//!   so any number of replicas may try at once and at most one wins.
//! - [`spawn`]: runs a job every interval on whichever replica holds its lease; the others skip
//!   their turn. The holder renews the lease on each run, so one replica keeps the job while it
//!   lives, and another takes over once the lease runs out (at most two intervals).
//! - [`Purged`]: `roster_<service>_retention_purged_total{table}`, what each table lost.
//!
//! The lease only keeps replicas from doing the same work twice. The purges themselves stay
//! correct without it: each deletes by a list of ids or under a condition re-checked by the
//! DELETE, and counts the rows the database says it deleted, so two replicas purging at once
//! delete every row once and count it once.

use std::future::Future;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use sea_orm_migration::SchemaManager;

use crate::Shutdown;
use crate::metrics::Metrics;

/// Rows one purge statement deletes at most: a statement stays short, and so do the locks it
/// holds on the rows that live requests use.
pub const BATCH: u64 = 1000;

/// Purge statements of one table in one run at most: a run's work is bounded (100,000 rows
/// per table), whatever backlog it finds; the next run goes on.
pub const STATEMENTS_PER_RUN: u32 = 100;

/// Creates `job_leases` (one row per leased job: who holds it, until when), for a service's
/// migration.
pub async fn create_job_leases(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(
            "CREATE TABLE job_leases (job TEXT PRIMARY KEY, owner TEXT NOT NULL, \
             lease_until BIGINT NOT NULL)",
        )
        .await
        .map(|_| ())
}

/// A job that one replica at a time runs, by its name in `job_leases`.
#[derive(Clone, Debug)]
pub struct JobLease {
    db: DatabaseConnection,
    job: String,
    owner: String,
    lease: Duration,
}

impl JobLease {
    /// The lease of `job` for this replica (`owner`, unique per process), each taking lasting
    /// `lease`.
    pub fn new(db: DatabaseConnection, job: &str, owner: &str, lease: Duration) -> Self {
        Self {
            db,
            job: job.to_owned(),
            owner: owner.to_owned(),
            lease,
        }
    }

    /// A replica's owner name: host (the pod's name in Kubernetes), process and a random part,
    /// so that a restarted process never mistakes its predecessor's lease for its own.
    pub fn owner_name(service: &str) -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| service.to_owned());
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}/{}/{}", std::process::id(), &random[..8])
    }

    /// Takes the lease, or renews it when this replica holds it: true when this replica holds
    /// it now, until `lease` from now. False when another replica's lease has not run out.
    pub async fn try_take(&self) -> Result<bool, DbErr> {
        let now = now_millis();
        let until = now.saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX));
        let sql = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                "INSERT INTO job_leases (job, owner, lease_until) VALUES ($1, $2, $3) \
                 ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, \
                 lease_until = excluded.lease_until \
                 WHERE job_leases.owner = excluded.owner OR job_leases.lease_until < $4"
            }
            _ => {
                "INSERT INTO job_leases (job, owner, lease_until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, \
                 lease_until = excluded.lease_until \
                 WHERE job_leases.owner = excluded.owner OR job_leases.lease_until < ?4"
            }
        };
        let taken = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                [
                    self.job.clone().into(),
                    self.owner.clone().into(),
                    until.into(),
                    now.into(),
                ],
            ))
            .await?
            .rows_affected();
        Ok(taken == 1)
    }

    /// Gives the lease up, if this replica holds it (at shutdown: another replica need not
    /// wait for it to run out).
    pub async fn release(&self) -> Result<(), DbErr> {
        let sql = match self.db.get_database_backend() {
            DbBackend::Postgres => "DELETE FROM job_leases WHERE job = $1 AND owner = $2",
            _ => "DELETE FROM job_leases WHERE job = ?1 AND owner = ?2",
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                [self.job.clone().into(), self.owner.clone().into()],
            ))
            .await
            .map(|_| ())
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Rows deleted by retention, per table: `roster_<service>_retention_purged_total{table}`.
#[derive(Clone, Debug)]
pub struct Purged {
    counters: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Purged {
    /// The counter of `service` (`identity`, `notification`, `bulk_import`), registered in
    /// `metrics`, with each of `tables` at zero so that it is scraped before the first purge.
    pub fn register(metrics: &Metrics, service: &str, tables: &[&'static str]) -> Self {
        let counters = Family::default();
        metrics.register(
            &format!("roster_{service}_retention_purged"),
            "Rows deleted by retention, by table",
            counters.clone(),
        );
        let purged = Self { counters };
        for table in tables {
            purged.add(table, 0);
        }
        purged
    }

    /// Counts `rows` deleted from `table`.
    pub fn add(&self, table: &'static str, rows: u64) {
        self.counters
            .get_or_create(&[("table", table)])
            .inc_by(rows);
    }
}

/// Deletes from one table a batch at a time: `batch` deletes up to [`BATCH`] rows and says how
/// many it deleted; it is called again while batches come back full, at most
/// [`STATEMENTS_PER_RUN`] times. Each batch is counted under `table` as soon as it is
/// deleted. Returns the rows deleted.
pub async fn purge_in_batches<E, F, Fut>(
    purged: &Purged,
    table: &'static str,
    mut batch: F,
) -> Result<u64, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, E>>,
{
    let mut total = 0;
    for _ in 0..STATEMENTS_PER_RUN {
        let deleted = batch().await?;
        purged.add(table, deleted);
        total += deleted;
        if deleted < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// How a leased job is run.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The pause between two runs (on the replica holding the lease; the others try as often).
    pub interval: Duration,
    /// The job's name in `job_leases`.
    pub job: &'static str,
}

/// Runs `run` every `schedule.interval` on the replica holding the job's lease, until
/// `shutdown`, then gives the lease up. A failed run is logged and the next one tries again.
pub fn spawn<E, F, Fut>(
    db: DatabaseConnection,
    schedule: Schedule,
    owner: String,
    shutdown: Shutdown,
    mut run: F,
) -> tokio::task::JoinHandle<()>
where
    E: std::fmt::Display + Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
{
    // Two intervals and a margin: the holder renews it on every run, and a replica that
    // died is replaced within about two intervals.
    let lease = JobLease::new(
        db,
        schedule.job,
        &owner,
        schedule.interval * 2 + Duration::from_secs(1),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(schedule.interval) => {}
            }
            match lease.try_take().await {
                Ok(true) => {
                    if let Err(error) = run().await {
                        tracing::warn!(job = schedule.job, %error, "job failed; it runs again next time");
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(job = schedule.job, %error, "job lease not taken; trying again next time");
                }
            }
        }
        if let Err(error) = lease.release().await {
            tracing::warn!(job = schedule.job, %error, "job lease not given back; it runs out");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}/leases.db?mode=rwc", dir.path().display());
        let db = crate::db::connect(&url, 2).await.expect("a database");
        db.execute_unprepared(
            "CREATE TABLE job_leases (job TEXT PRIMARY KEY, owner TEXT NOT NULL, \
             lease_until BIGINT NOT NULL)",
        )
        .await
        .expect("the table");
        (dir, db)
    }

    #[tokio::test]
    async fn one_replica_holds_a_job_until_its_lease_runs_out_or_is_given_back() {
        let (_dir, db) = database().await;
        let lease = |owner: &str, millis: u64| {
            JobLease::new(
                db.clone(),
                "retention",
                owner,
                Duration::from_millis(millis),
            )
        };
        let (first, second) = (lease("first", 60_000), lease("second", 60_000));
        assert!(first.try_take().await.unwrap(), "a free job is taken");
        assert!(!second.try_take().await.unwrap(), "a held one is not");
        assert!(first.try_take().await.unwrap(), "its holder renews it");
        second.release().await.unwrap();
        assert!(
            !second.try_take().await.unwrap(),
            "giving back a lease one does not hold changes nothing"
        );
        first.release().await.unwrap();
        assert!(second.try_take().await.unwrap(), "a given-back job is free");

        let short = lease("short", 1);
        let other_job = JobLease::new(db.clone(), "other", "short", Duration::from_millis(1));
        assert!(
            other_job.try_take().await.unwrap(),
            "each job has its own lease"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!short.try_take().await.unwrap(), "second's lease runs on");
        let expiring = lease("second", 1);
        assert!(expiring.try_take().await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            short.try_take().await.unwrap(),
            "a lease that ran out is taken"
        );
    }
}
