//! The background work on imports: validation after an upload, the apply after a submit, the
//! sweep of abandoned uploads, and ([`retention`]) the purge of expired and old finished
//! imports.
//!
//! Every replica runs one [`Worker`]. It finds imports whose lease is free or expired and
//! claims one with a conditional UPDATE, so exactly one replica works on an import at a time.
//! While it works, a heartbeat renews the lease; every transaction that records progress
//! renews it too and gives up when the lease was taken over (fencing). A replica that dies
//! stops renewing: once its lease expires another replica — or the same one restarted —
//! claims the import and carries on from the progress in the database. Shutdown stops the
//! work between batches and gives the lease back at once.
//!
//! An upload is received by the replica that serves its call, which fails it when the client
//! stops sending or goes away. When that replica dies instead, the upload stays UPLOADING with
//! the pieces it stored: every replica's sweep fails such uploads once they have received
//! nothing for longer than the idle timeout, and deletes their pieces. A conditional UPDATE
//! decides each one, so replicas sweeping at the same moment fail it once.

mod apply;
pub mod retention;
mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use roster_runtime::Shutdown;
use roster_runtime::metrics::ImportProgress;
use roster_runtime::telemetry::TraceContext;
use tokio::sync::{Notify, Semaphore};
use tonic::Status;
use tracing::Instrument;
use uuid::Uuid;

use crate::domain::import::ImportId;
use crate::domain::state::ImportState;
use crate::identity::{Identity, is_transient};
use crate::store::{Store, StoreError, now_millis};

/// Timings and sizes of the background work.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often a worker looks for work when nobody wakes it.
    pub poll_interval: Duration,
    /// How long an upload may receive nothing before it counts as abandoned.
    pub upload_idle_timeout: Duration,
    /// How often abandoned uploads are looked for.
    pub upload_sweep_interval: Duration,
    /// Imports one replica works on at once.
    pub max_jobs: usize,
    /// Rows per validation batch (identity's batch calls take up to 1000).
    pub validate_batch: usize,
    /// Rows per BatchUpsertProfiles call.
    pub apply_batch: usize,
    /// BatchUpsertProfiles calls in flight at once for one import.
    pub apply_batches_in_flight: usize,
    /// Longest cell, in characters.
    pub max_field_chars: usize,
    /// Longest row, in bytes.
    pub max_row_bytes: usize,
    /// Attempts of an identity call that fails transiently before the job gives up.
    pub identity_attempts: u32,
    /// Where the apply waits before it sends each group of batches, their rows and profiles
    /// read (tests only; off by default).
    pub apply_pause: ApplyPause,
}

impl JobConfig {
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

/// A pause of the apply before each group of batches it sends (their rows and profiles read),
/// for tests that act at a known point of an apply (a cancel, or a change of a profile, between
/// the read and the write). Off unless made with [`ApplyPause::on`]: then the apply, before
/// each group, says it arrived and waits to be let go on.
#[derive(Clone, Debug, Default)]
pub struct ApplyPause(Option<Arc<(Semaphore, Semaphore)>>);

impl ApplyPause {
    /// A pause that is on.
    pub fn on() -> Self {
        Self(Some(Arc::new((Semaphore::new(0), Semaphore::new(0)))))
    }

    /// Completes when the apply arrived at the pause before its next group.
    pub async fn arrived(&self) {
        if let Some(pause) = &self.0 {
            pause.0.acquire().await.expect("never closed").forget();
        }
    }

    /// Lets the apply go on with one group.
    pub fn go_on(&self) {
        if let Some(pause) = &self.0 {
            pause.1.add_permits(1);
        }
    }

    async fn wait(&self) {
        if let Some(pause) = &self.0 {
            pause.0.add_permits(1);
            pause.1.acquire().await.expect("never closed").forget();
        }
    }
}

/// Why a job stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {0}")]
    Database(StoreError),
    /// Another replica holds the lease now (or the import was cancelled).
    #[error("the lease was lost")]
    LeaseLost,
    /// This replica is shutting down.
    #[error("shutting down")]
    Stopping,
    /// Identity refused a call, or kept failing.
    #[error("identity: {0}")]
    Identity(Status),
    /// The import reached a final state early (e.g. INVALID, or CANCELLED during the apply);
    /// nothing is left to do.
    #[error("the job ended early")]
    Ended,
}

// Not `#[from]`: the message holds the database's, so it is no `source` too (a report of the
// chain would print it twice).
impl From<StoreError> for JobError {
    fn from(error: StoreError) -> Self {
        JobError::Database(error)
    }
}

/// What every job of a replica shares.
pub(crate) struct Context {
    pub store: Store,
    pub identity: Identity,
    pub config: JobConfig,
    /// This replica's lease owner name, unique per process start.
    pub owner: String,
    pub shutdown: Shutdown,
    /// Where rows processed are counted, for the metrics endpoint.
    pub progress: ImportProgress,
}

/// One claimed import.
pub(crate) struct Job {
    pub context: Arc<Context>,
    pub import_id: ImportId,
    lost: Arc<AtomicBool>,
}

impl Job {
    /// Err when the job must stop now: the lease is gone or the replica stops.
    pub fn check(&self) -> Result<(), JobError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(JobError::LeaseLost);
        }
        if self.context.shutdown.is_triggered() {
            return Err(JobError::Stopping);
        }
        Ok(())
    }

    /// Runs an identity call, again after a pause when it fails transiently.
    pub async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, JobError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            self.check()?;
            match call().await {
                Ok(value) => return Ok(value),
                Err(status)
                    if is_transient(&status) && attempt < self.context.config.identity_attempts =>
                {
                    tracing::warn!(import_id = %self.import_id, attempt, %status, "{what} failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(status) => return Err(JobError::Identity(status)),
            }
        }
    }

    pub fn lease_ms(&self) -> i64 {
        self.context.config.lease_ms()
    }
}

/// The background worker of one replica.
pub struct Worker {
    context: Arc<Context>,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
}

impl Worker {
    pub fn new(
        store: Store,
        identity: Identity,
        config: JobConfig,
        progress: ImportProgress,
        wake: Arc<Notify>,
        shutdown: Shutdown,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "bulk-import".to_owned());
        let owner = format!(
            "{host}/{}/{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let slots = Arc::new(Semaphore::new(config.max_jobs.max(1)));
        Self {
            context: Arc::new(Context {
                store,
                identity,
                config,
                owner,
                shutdown,
                progress,
            }),
            wake,
            slots,
        }
    }

    /// This replica's lease owner name.
    pub fn owner(&self) -> &str {
        &self.context.owner
    }

    /// Runs until shutdown, then waits for the jobs in progress to stop.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run().await })
    }

    async fn run(self) {
        let context = &self.context;
        let mut last_sweep = 0i64;
        tracing::info!(owner = %context.owner, "import worker started");
        loop {
            if let Err(error) = self.claim_work().await {
                tracing::error!(%error, "looking for import work failed");
            }
            let now = now_millis();
            if now - last_sweep >= context.config.upload_sweep_interval.as_millis() as i64 {
                last_sweep = now;
                if let Err(error) =
                    sweep_uploads(&context.store, context.config.upload_idle_timeout).await
                {
                    tracing::error!(%error, "sweeping abandoned uploads failed");
                }
            }
            tokio::select! {
                () = context.shutdown.wait() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(context.config.poll_interval) => {}
            }
        }
        // Every job holds a slot: taking them all waits for the jobs to stop.
        let _ = self
            .slots
            .acquire_many(context.config.max_jobs.max(1) as u32)
            .await;
        tracing::info!(owner = %context.owner, "import worker stopped");
    }

    async fn claim_work(&self) -> Result<(), StoreError> {
        let store = &self.context.store;
        let candidates = store
            .claimable(now_millis(), self.context.config.max_jobs as u64 * 4)
            .await?;
        for import_id in candidates {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                return Ok(());
            };
            if self.context.shutdown.is_triggered() {
                return Ok(());
            }
            if !store
                .try_claim(
                    import_id,
                    &self.context.owner,
                    self.context.config.lease_ms(),
                )
                .await?
            {
                continue;
            }
            let context = self.context.clone();
            let wake = self.wake.clone();
            tokio::spawn(async move {
                run_job(context, import_id).await;
                drop(slot);
                // The slot is free again: look for more work at once.
                wake.notify_one();
            });
        }
        Ok(())
    }
}

/// Fails every upload that received nothing for longer than the idle timeout, deleting its
/// pieces; returns the imports this call failed (another replica may have failed others).
pub async fn sweep_uploads(store: &Store, idle: Duration) -> Result<Vec<ImportId>, StoreError> {
    let before = now_millis() - idle.as_millis() as i64;
    let reason = format!(
        "the upload was abandoned: nothing was received for more than {} s (the client or the \
         server receiving it stopped); upload the file again",
        idle.as_secs()
    );
    let mut failed = Vec::new();
    loop {
        let stale = store.stale_uploads(before, 100).await?;
        let batch = stale.len();
        for import_id in stale {
            if store.abort_upload(import_id, &reason, Some(before)).await? {
                tracing::info!(%import_id, "abandoned upload failed and its data removed");
                failed.push(import_id);
            }
        }
        if batch < 100 {
            return Ok(failed);
        }
    }
}

async fn run_job(context: Arc<Context>, import_id: ImportId) {
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat(context.clone(), import_id, lost.clone()));
    let job = Job {
        context: context.clone(),
        import_id,
        lost,
    };
    let result = work(&job).await;
    heartbeat.abort();
    match result {
        Ok(()) | Err(JobError::Ended) => {}
        Err(JobError::LeaseLost) => {
            tracing::warn!(%import_id, "lease lost; another replica carries on");
        }
        Err(JobError::Stopping) => {
            tracing::info!(%import_id, "stopping; the lease is given back");
            if let Err(error) = context.store.release(import_id, &context.owner).await {
                tracing::error!(%import_id, %error, "giving the lease back failed");
            }
        }
        Err(JobError::Identity(status)) if is_transient(&status) => {
            tracing::error!(
                %import_id,
                %status,
                "identity unreachable past the attempts; the import waits in its state and is \
                 tried again once its lease runs out"
            );
        }
        Err(error) => {
            tracing::error!(%import_id, %error, "import job interrupted; it will be retried");
            // Leave the lease to expire: the retry comes after a pause, not in a tight loop.
        }
    }
}

async fn work(job: &Job) -> Result<(), JobError> {
    let store = &job.context.store;
    let Some(import) = store.import(job.import_id).await? else {
        store.drop_lease(job.import_id).await?;
        return Ok(());
    };
    let state = import.state;
    let name = match state {
        ImportState::Validating => "import validation",
        ImportState::Applying => "import apply",
        _ => {
            store.drop_lease(job.import_id).await?;
            return Ok(());
        }
    };
    // The work continues the trace of the request that created the import, however much
    // later and on whichever replica it runs.
    let span = tracing::info_span!(
        "import_job",
        otel.name = name,
        import_id = %job.import_id,
        owner = %job.context.owner,
        trace_id = tracing::field::Empty,
    );
    if !import.trace_context.is_empty() {
        TraceContext::from_traceparent(import.trace_context.clone()).set_parent_of(&span);
    }
    match state {
        ImportState::Validating => validate::run(job, import).instrument(span).await,
        _ => apply::run(job, import).instrument(span).await,
    }
}

async fn heartbeat(context: Arc<Context>, import_id: ImportId, lost: Arc<AtomicBool>) {
    let every = context.config.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        match context
            .store
            .renew(import_id, &context.owner, context.config.lease_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(error) => tracing::warn!(%import_id, %error, "lease heartbeat failed"),
        }
    }
}
