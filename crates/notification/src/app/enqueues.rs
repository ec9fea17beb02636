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

use roster_runtime::shared::{Shared, Work};

use super::NotificationError;
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
        // A power of two (there is always one waiting): the statement's shape depends on its
        // count, and so do the prepared statements each connection keeps (six shapes at most).
        let count = waiting.count().min(MAX_TOGETHER);
        (0..1 << count.ilog2()).collect()
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

/// Queues `notification` as the one `(scope, request_id)` created, unless that key is held:
/// the notification handed back, and whether it was queued ([`Store::enqueue`]'s answer). On
/// PostgreSQL with concurrent calls where they can share a statement; otherwise, and when a
/// shared statement failed, in a statement of its own.
pub(crate) async fn enqueue(
    enqueues: &Shared<Enqueues>,
    notification: Notification,
    scope: &str,
    request_id: &str,
) -> Result<(Notification, bool), NotificationError> {
    let store = &enqueues.work().store;
    if !store.is_postgres() {
        let queued = store.enqueue(&notification, scope, request_id).await?;
        return Ok((notification, queued));
    }
    let call = Enqueue {
        notification,
        scope: scope.to_owned(),
        request_id: request_id.to_owned(),
    };
    match enqueues.call(call).await {
        Enqueued::Decided(call, queued) => Ok((call.notification, queued)),
        Enqueued::Alone(call) => {
            let queued = store.enqueue(&call.notification, scope, request_id).await?;
            Ok((call.notification, queued))
        }
        Enqueued::Failed(error) => Err(error.into()),
        Enqueued::Lost => Err(NotificationError::EnqueueLost),
    }
}
