//! Concurrent SendEmail calls share one statement on PostgreSQL ([`roster_runtime::shared`]):
//! under load, the next statement queues up to [`MAX_TOGETHER`] waiting calls' emails and keys
//! at once ([`Store::enqueue_together`]) instead of one statement and one commit each. A lone
//! call runs the statement of its own, as before.
//!
//! Every call still gets the answer a statement of its own would have given: the shared
//! statement decides per key (a key held — by an earlier request, or by a twin earlier in the
//! same statement — queues nothing for its call, which then reads the first request's
//! notification), and should it fail, it writes nothing for any, and each call runs alone, so
//! an error is the call's own.

use roster_runtime::shared::Work;

use crate::domain::notification::Notification;
use crate::store::{Store, StoreError};

/// The most calls one statement carries.
const MAX_TOGETHER: usize = 32;

/// One SendEmail's write: its notification and the key that makes it once.
pub(crate) struct Enqueue {
    pub notification: Notification,
    pub scope: String,
    pub request_id: String,
}

/// What became of one call's write.
pub(crate) enum Enqueued {
    /// Decided: queued (true), or nothing written because its key is held (false).
    Decided(Enqueue, bool),
    /// The shared statement failed and wrote nothing: the call runs alone.
    Alone(Enqueue),
    /// Its own statement (it went alone) failed.
    Failed(StoreError),
    /// The statement's task ended without an answer.
    Lost,
}

pub(crate) struct Enqueues {
    pub store: Store,
}

impl Work for Enqueues {
    type Item = Enqueue;
    type Answer = Enqueued;
    const IN_FLIGHT: usize = 4;

    fn pick<'a>(&self, waiting: impl Iterator<Item = &'a Enqueue>) -> Vec<usize> {
        // A power of two: the statement's shape depends on its count, and so do the prepared
        // statements each connection keeps (six shapes at most).
        let count = waiting.count().min(MAX_TOGETHER);
        let count = if count.is_power_of_two() {
            count
        } else {
            count.next_power_of_two() / 2
        };
        (0..count).collect()
    }

    async fn run(&self, mut calls: Vec<Enqueue>) -> Vec<Enqueued> {
        if calls.len() == 1 {
            let call = calls.remove(0);
            return vec![match self
                .store
                .enqueue(&call.notification, &call.scope, &call.request_id)
                .await
            {
                Ok(queued) => Enqueued::Decided(call, queued),
                Err(error) => Enqueued::Failed(error),
            }];
        }
        let together: Vec<(&Notification, &str, &str)> = calls
            .iter()
            .map(|call| {
                (
                    &call.notification,
                    call.scope.as_str(),
                    call.request_id.as_str(),
                )
            })
            .collect();
        match self.store.enqueue_together(&together).await {
            Ok(queued) => calls
                .into_iter()
                .zip(queued)
                .map(|(call, queued)| Enqueued::Decided(call, queued))
                .collect(),
            Err(error) => {
                tracing::debug!(%error, calls = calls.len(), "shared SendEmail statement failed; each goes alone");
                calls.into_iter().map(Enqueued::Alone).collect()
            }
        }
    }

    fn lost() -> Enqueued {
        Enqueued::Lost
    }
}
