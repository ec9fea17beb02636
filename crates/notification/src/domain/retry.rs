//! What a failed delivery attempt leads to: another attempt after an exponential backoff with
//! jitter, or giving up.
//!
//! SMTP 4xx replies and connection errors are temporary; 5xx replies, unrenderable templates and
//! invalid messages are permanent. Jitter spreads the retries of many messages that failed
//! together (a mail server restart), so they do not all come back at the same instant.

use std::time::Duration;

use rand::Rng;

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// May work later: SMTP 4xx, connection refused or lost, timeout, TLS handshake.
    Temporary(String),
    /// Will never work: SMTP 5xx, a template that cannot be rendered, an invalid message.
    Permanent(String),
}

impl Failure {
    /// The text stored as `last_error`, at most 1024 characters.
    pub fn text(&self) -> String {
        let text = match self {
            Failure::Temporary(text) | Failure::Permanent(text) => text,
        };
        truncate(text, 1024)
    }
}

/// The state a message goes to after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Give up: FAILED.
    GiveUp,
}

/// Retry limits: attempt `n` (1-based) that fails temporarily is retried after about
/// `base · 2^(n-1)`, capped at `max`, until `max_attempts` attempts were made.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// What follows when attempt number `attempts` failed with `failure`.
    pub fn after_failure(
        &self,
        attempts: u32,
        failure: &Failure,
        rng: &mut impl Rng,
    ) -> AfterFailure {
        match failure {
            Failure::Permanent(_) => AfterFailure::GiveUp,
            Failure::Temporary(_) if attempts >= self.max_attempts => AfterFailure::GiveUp,
            Failure::Temporary(_) => AfterFailure::RetryAfter(self.backoff(attempts, rng)),
        }
    }

    /// The delay after failed attempt `attempts`: "equal jitter", uniformly between half the
    /// exponential delay and all of it, so it never collapses to zero yet still spreads out.
    pub fn backoff(&self, attempts: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempts.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max);
        let millis = ceiling.as_millis() as u64;
        let half = millis / 2;
        Duration::from_millis(half + rng.random_range(0..=millis - half))
    }
}

/// At most `max` characters of `text`.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            max_attempts: 5,
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=12u32 {
            let ceiling = Duration::from_secs(30)
                .saturating_mul(1 << (attempt - 1))
                .min(Duration::from_secs(3600));
            for _ in 0..50 {
                let delay = policy().backoff(attempt, &mut rng);
                assert!(
                    delay <= ceiling,
                    "attempt {attempt}: {delay:?} > {ceiling:?}"
                );
                assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?} < half");
            }
        }
    }

    #[test]
    fn jitter_spreads_retries() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<_> =
            (0..20).map(|_| policy().backoff(3, &mut rng)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn permanent_failures_and_exhausted_retries_give_up() {
        let mut rng = StdRng::seed_from_u64(3);
        let temporary = Failure::Temporary("421 try later".into());
        assert!(matches!(
            policy().after_failure(1, &temporary, &mut rng),
            AfterFailure::RetryAfter(_)
        ));
        assert_eq!(
            policy().after_failure(5, &temporary, &mut rng),
            AfterFailure::GiveUp
        );
        assert_eq!(
            policy().after_failure(1, &Failure::Permanent("550 no".into()), &mut rng),
            AfterFailure::GiveUp
        );
    }

    #[test]
    fn errors_are_cut_at_1024_characters() {
        let long = "é".repeat(2000);
        assert_eq!(Failure::Temporary(long).text().chars().count(), 1024);
    }
}
