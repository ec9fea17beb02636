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
    let call = Arc::new(call);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let workers: Vec<_> = (0..load.concurrency.max(1))
        .map(|_| {
            let call = call.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut latency = histogram();
                let mut errors = 0;
                let mut first_error = None;
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let result = call(counter.fetch_add(1, Ordering::Relaxed)).await;
                    let finished = Instant::now();
                    if began < start || finished > end {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            let micros = finished.duration_since(began).as_micros();
                            latency.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                        }
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert(error);
                        }
                    }
                }
                (latency, errors, first_error)
            })
        })
        .collect();
    let mut outcome = Outcome {
        ok: 0,
        errors: 0,
        first_error: None,
        window: load.duration,
        latency: histogram(),
    };
    for worker in workers {
        let Ok((latency, errors, first_error)) = worker.await else {
            outcome.errors += 1;
            outcome
                .first_error
                .get_or_insert_with(|| "a load task panicked".to_owned());
            continue;
        };
        outcome
            .latency
            .add(&latency)
            .expect("same histogram bounds");
        outcome.errors += errors;
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
        }
    }
    outcome.ok = outcome.latency.len();
    outcome
}

/// The text of a failed gRPC call.
pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Makes exactly `total` calls, `concurrency` at a time, as fast as they are answered; the
/// outcome's window is the time they took.
pub async fn run_count<F, Fut>(concurrency: usize, total: u64, call: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let call = call.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut latency = histogram();
                let mut errors = 0;
                let mut first_error = None;
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let began = Instant::now();
                    match call(n).await {
                        Ok(()) => {
                            let micros = began.elapsed().as_micros();
                            latency.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                        }
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert(error);
                        }
                    }
                }
                (latency, errors, first_error)
            })
        })
        .collect();
    let mut outcome = Outcome {
        ok: 0,
        errors: 0,
        first_error: None,
        window: Duration::ZERO,
        latency: histogram(),
    };
    for worker in workers {
        let Ok((latency, errors, first_error)) = worker.await else {
            outcome.errors += 1;
            continue;
        };
        outcome
            .latency
            .add(&latency)
            .expect("same histogram bounds");
        outcome.errors += errors;
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
        }
    }
    outcome.ok = outcome.latency.len();
    outcome.window = started.elapsed();
    outcome
}
