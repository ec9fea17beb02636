//! The closed-loop load generator: `concurrency` tasks each make one call, wait for its answer
//! and make the next, for a warm-up and then a measured window. Only calls that start and end
//! inside the window count; their latencies go into an HDR histogram (microseconds, 3 significant
//! digits), so p50 and p99 are exact to 0.1 %.
//!
//! The same generator drives Roster and the bare baselines, so their ratio compares the servers,
//! not two clients.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How hard and how long to push.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What one measured window saw.
#[derive(Clone)]
pub struct Outcome {
    /// Calls that succeeded inside the window.
    pub ok: u64,
    /// Calls that failed inside the window.
    pub errors: u64,
    /// One failure's text, to say why.
    pub first_error: Option<String>,
    /// The window's length.
    pub window: Duration,
    /// Latency of the successful calls, in microseconds.
    pub latency: Histogram<u64>,
}

impl Outcome {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            return f64::NAN;
        }
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Runs `call` in a closed loop. `call(n)` gets a number unique in this run (for unique
/// usernames and request ids) and resolves to `Err(text)` when the call failed.
pub async fn run<F, Fut>(load: Load, call: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now() + load.warmup;
    let until = Until::Window {
        start,
        end: start + load.duration,
    };
    closed_loop(load.concurrency, until, call)
        .await
        .outcome(load.duration)
}

/// The text of a failed gRPC call.
pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// A call as the load counts it: answered is a success, a status a failure.
pub fn answered<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<(), String> {
    result.map(drop).map_err(|status| status_text(&status))
}

/// One client per replica's channel, call `n` going to replica `n` modulo their number, so the
/// calls spread evenly over the replicas.
pub struct RoundRobin<C>(Vec<C>);

impl<C: Clone> RoundRobin<C> {
    /// `client` over each of `channels`.
    pub fn new(channels: &[Channel], client: impl Fn(Channel) -> C) -> Self {
        Self(channels.iter().cloned().map(client).collect())
    }

    /// The client of call `n`.
    pub fn client(&self, n: u64) -> C {
        self.0[n as usize % self.0.len()].clone()
    }
}

/// Makes exactly `total` calls, `concurrency` at a time, as fast as they are answered; the
/// outcome's window is the time they took.
pub async fn run_count<F, Fut>(concurrency: usize, total: u64, call: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let started = Instant::now();
    closed_loop(concurrency, Until::Calls(total), call)
        .await
        .outcome(started.elapsed())
}

/// When a closed loop stops, and which of its calls count.
#[derive(Clone, Copy)]
enum Until {
    /// Calls start until `end`; only those that start and end inside `start..end` count (the
    /// ones before `start` warm up).
    Window { start: Instant, end: Instant },
    /// Exactly this many calls, every one counted.
    Calls(u64),
}

impl Until {
    /// Whether call `n`, about to start at `began`, is past the end.
    fn over(self, n: u64, began: Instant) -> bool {
        match self {
            Until::Window { end, .. } => began >= end,
            Until::Calls(total) => n >= total,
        }
    }

    /// Whether a call from `began` to `finished` counts.
    fn counts(self, began: Instant, finished: Instant) -> bool {
        match self {
            Until::Window { start, end } => began >= start && finished <= end,
            Until::Calls(_) => true,
        }
    }
}

/// `concurrency` tasks, each making a call, waiting for its answer and making the next, until
/// `until` says stop.
async fn closed_loop<F, Fut>(concurrency: usize, until: Until, call: F) -> Tally
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let counter = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let call = call.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let began = Instant::now();
                    if until.over(n, began) {
                        break;
                    }
                    let result = call(n).await;
                    let finished = Instant::now();
                    if until.counts(began, finished) {
                        tally.record(finished.duration_since(began), result);
                    }
                }
                tally
            })
        })
        .collect();
    Tally::sum(workers).await
}

/// What the counted calls of one task (or, summed, of all) came to.
struct Tally {
    /// Latency of the successful calls, in microseconds.
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: histogram(),
            errors: 0,
            first_error: None,
        }
    }

    /// Counts one call that took `elapsed` and came to `result`.
    fn record(&mut self, elapsed: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let micros = elapsed.as_micros();
                self.latency
                    .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    /// The tallies of all `workers`; a task that panicked counts as one failed call.
    async fn sum(workers: Vec<JoinHandle<Tally>>) -> Self {
        let mut sum = Self::new();
        for worker in workers {
            let Ok(tally) = worker.await else {
                sum.errors += 1;
                sum.first_error
                    .get_or_insert_with(|| "a load task panicked".to_owned());
                continue;
            };
            sum.latency
                .add(&tally.latency)
                .expect("same histogram bounds");
            sum.errors += tally.errors;
            if sum.first_error.is_none() {
                sum.first_error = tally.first_error;
            }
        }
        sum
    }

    /// The outcome of a measured window of length `window`.
    fn outcome(self, window: Duration) -> Outcome {
        Outcome {
            ok: self.latency.len(),
            errors: self.errors,
            first_error: self.first_error,
            window,
            latency: self.latency,
        }
    }
}
