//! The notification service's use cases, one public function per operation: what gRPC calls,
//! and what any other interface would call. A retry or a cancel owns its transaction; a
//! `SendEmail` queues its message and idempotency key in one atomic store call (one statement on
//! PostgreSQL) and decides from its answer. The checks are the domain's, the SQL the store's.

mod enqueues;
mod error;
pub mod offboarding;

pub use error::NotificationError;

use std::sync::Arc;

use roster_runtime::auth::Caller;
use roster_runtime::metrics::Metrics;
use roster_runtime::metrics::prometheus_client::metrics::counter::Counter;
use roster_runtime::shared::Shared;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::notification::{Cursor, NewNotification, Notification};
use crate::domain::request::{EmailRequest, RawEmailRequest, parse_request_id};
use crate::domain::state::DeliveryState;
use crate::domain::templates::Templates;
use crate::store::actions::Action;
use crate::store::{self, Store};

/// The use cases over one store.
#[derive(Clone)]
pub struct Notifications {
    store: Store,
    templates: Arc<Templates>,
    /// Signalled when an email is queued, so an idle delivery worker starts at once.
    wake: Arc<Notify>,
    /// The right-hand side of every `Message-ID`.
    message_id_domain: String,
    /// What operators did to the queue, for the metrics endpoint.
    counters: ActionCounters,
    /// The accounts identity deleted, as last read (the key ring holds them); `None` when
    /// notification does not read them.
    closed: Option<roster_runtime::SharedKeyRing>,
    /// SendEmail's writes, shared by concurrent calls on PostgreSQL (see `enqueues`).
    enqueues: Shared<enqueues::Enqueues>,
}

/// Retries and cancels, counted as they are applied (replays are not counted again):
/// `roster_notification_retries_total` and `roster_notification_cancellations_total`.
#[derive(Clone, Debug, Default)]
pub struct ActionCounters {
    pub retried: Counter,
    pub cancelled: Counter,
}

impl ActionCounters {
    /// The counters, registered on `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            retried: metrics.counter(
                "roster_notification_retries",
                "FAILED emails queued again by RetryNotification",
            ),
            cancelled: metrics.counter(
                "roster_notification_cancellations",
                "Waiting emails cancelled by CancelNotification",
            ),
        }
    }
}

/// Which of an account's notifications to list, and how many.
#[derive(Clone, Copy, Debug)]
pub struct ListQuery {
    pub account_id: Uuid,
    /// Only those in this state; all when `None`.
    pub state: Option<DeliveryState>,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
    pub page_size: u64,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct Page {
    pub notifications: Vec<Notification>,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

/// What a retry or a cancel did.
enum Acted {
    /// It was applied now.
    Applied(Notification),
    /// The request id was used before: the notification as it is now; nothing changed.
    Replayed(Notification),
}

/// What queueing did.
enum Enqueued {
    /// A new notification was queued.
    Created(Notification),
    /// The request id was used before: this is the first request's notification, as it is now.
    Replayed(Notification),
}

impl Notifications {
    pub fn new(
        store: Store,
        templates: Arc<Templates>,
        wake: Arc<Notify>,
        message_id_domain: String,
        counters: ActionCounters,
    ) -> Self {
        Self {
            enqueues: Shared::new(enqueues::Enqueues {
                store: store.clone(),
            }),
            store,
            templates,
            wake,
            message_id_domain,
            counters,
            closed: None,
        }
    }

    /// These use cases, refusing emails of the deleted accounts `closed` holds.
    pub fn with_deleted_accounts(self, closed: roster_runtime::SharedKeyRing) -> Self {
        Self {
            closed: Some(closed),
            ..self
        }
    }

    /// `SendEmail`: checks the request and queues the email once per caller and request id
    /// (AIP-155); the delivery workers send it.
    pub async fn send_email(
        &self,
        caller: &Caller,
        request: RawEmailRequest<'_>,
    ) -> Result<Notification, NotificationError> {
        let email = EmailRequest::parse(request).map_err(NotificationError::Invalid)?;
        caller
            .require_account(email.account_id)
            .map_err(NotificationError::AccountNotPermitted)?;
        if self.is_deleted(email.account_id) {
            return Err(NotificationError::AccountDeleted);
        }

        let id = Uuid::now_v7();
        let new = NewNotification {
            id,
            account_id: email.account_id,
            recipient: email.recipient.to_string(),
            template: email.template.name().to_owned(),
            locale: self.templates.resolve_locale(email.template, &email.locale),
            requested_locale: email.locale,
            variables: serde_json::to_string(&email.variables)?,
            account_display_name: email.account_display_name,
            message_id: format!("<{id}@{}>", self.message_id_domain),
        };
        match self.enqueue(&caller.name, &email.request_id, new).await? {
            Enqueued::Created(notification) => {
                tracing::info!(notification = %notification.id, template = %notification.template, "queued");
                self.wake.notify_one();
                Ok(notification)
            }
            Enqueued::Replayed(notification) => {
                // Request ids are scoped to the caller; a key that lost access to the account
                // since then must not learn about the notification.
                if !caller.may_access(notification.account_id) {
                    return Err(NotificationError::NotFound);
                }
                tracing::info!(notification = %notification.id, "repeated request_id; nothing queued");
                Ok(notification)
            }
        }
    }

    /// Whether identity deleted `account` (as last read; never, when not reading them).
    fn is_deleted(&self, account: Uuid) -> bool {
        self.closed
            .as_ref()
            .is_some_and(|closed| closed.closed_accounts().contains(&account))
    }

    /// `GetNotification`: another account's notification is answered exactly like one that
    /// does not exist.
    pub async fn get_notification(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<Notification, NotificationError> {
        self.store
            .find(id)
            .await?
            .filter(|notification| caller.may_access(notification.account_id))
            .ok_or(NotificationError::NotFound)
    }

    /// `ListNotifications`: a page of an account's notifications, newest first.
    pub async fn list_notifications(
        &self,
        caller: &Caller,
        query: ListQuery,
    ) -> Result<Page, NotificationError> {
        caller
            .require_account(query.account_id)
            .map_err(NotificationError::AccountNotPermitted)?;
        // One more than a page tells whether another page follows.
        let mut notifications = self
            .store
            .list(
                query.account_id,
                query.state,
                query.cursor,
                query.page_size + 1,
            )
            .await?;
        let next = if notifications.len() as u64 > query.page_size {
            notifications.truncate(query.page_size as usize);
            notifications.last().map(Notification::cursor)
        } else {
            None
        };
        Ok(Page {
            notifications,
            next,
        })
    }

    /// `RetryNotification`: queues a FAILED notification again with a new attempt budget and
    /// its Message-ID unchanged, once per caller and request id.
    pub async fn retry_notification(
        &self,
        caller: &Caller,
        id: Uuid,
        request_id: &str,
    ) -> Result<Notification, NotificationError> {
        match self.act(caller, id, request_id, Action::Retry).await? {
            Acted::Applied(notification) => {
                self.counters.retried.inc();
                tracing::info!(notification = %notification.id, "queued again");
                self.wake.notify_one();
                Ok(notification)
            }
            Acted::Replayed(notification) => {
                tracing::info!(notification = %notification.id, "repeated request_id; nothing queued");
                Ok(notification)
            }
        }
    }

    /// `CancelNotification`: cancels a notification that waits for delivery, once per caller
    /// and request id. One that a worker is sending is not cancelled.
    pub async fn cancel_notification(
        &self,
        caller: &Caller,
        id: Uuid,
        request_id: &str,
    ) -> Result<Notification, NotificationError> {
        match self.act(caller, id, request_id, Action::Cancel).await? {
            Acted::Applied(notification) => {
                self.counters.cancelled.inc();
                tracing::info!(notification = %notification.id, "cancelled");
                Ok(notification)
            }
            Acted::Replayed(notification) => {
                tracing::info!(notification = %notification.id, "repeated request_id; nothing cancelled");
                Ok(notification)
            }
        }
    }

    /// Applies `action` to notification `id` in one conditional `UPDATE` (see
    /// [`crate::store::actions`]) with its idempotency key in the same transaction. A repeated
    /// request id answers the notification as it is now and changes nothing; a refused action
    /// stores no key, so it is decided again on a repeat. The notification's account never
    /// changes, so checking the caller's access before the update is not a race.
    ///
    /// The update decides; the notification read after a refusal only names its state. A
    /// worker can move it in between (SENDING → RETRYING as an attempt ends, → FAILED as the
    /// last one does): when the state read is one the action accepts, the update is tried
    /// again, so a refusal names a state that refuses. Concurrent calls with one request id
    /// all answer as the one that applied it: each other's update waits for that one's commit,
    /// then finds its key.
    async fn act(
        &self,
        caller: &Caller,
        id: Uuid,
        request_id: &str,
        action: Action,
    ) -> Result<Acted, NotificationError> {
        const TRIES: u32 = 3;
        let request_id = parse_request_id(request_id).map_err(NotificationError::Invalid)?;
        if let Some(replayed) = self.replayed(caller, id, &request_id, action).await? {
            return Ok(Acted::Replayed(replayed));
        }
        let notification = self.get_notification(caller, id).await?;
        // A deleted account's emails are sent no more: its waiting ones are cancelled, and a
        // failed one is not queued again (an all-accounts key still reaches it).
        if action == Action::Retry && self.is_deleted(notification.account_id) {
            return Err(NotificationError::AccountDeleted);
        }

        let mut tries = 0;
        let (txn, now) = loop {
            tries += 1;
            let now = store::now();
            let txn = self.store.begin().await?;
            let applied = match action {
                Action::Retry => txn.requeue_failed(id, now).await?,
                Action::Cancel => txn.cancel_waiting(id, now).await?,
            };
            if applied {
                break (txn, now);
            }
            txn.rollback().await?;
            // A concurrent twin with the same request id may be what moved it: its update held
            // the row until it committed, with its key.
            if let Some(replayed) = self.replayed(caller, id, &request_id, action).await? {
                return Ok(Acted::Replayed(replayed));
            }
            let current = self.get_notification(caller, id).await?;
            if !accepts(action, &current) || tries == TRIES {
                return Err(refused(action, &current));
            }
        };
        if !txn
            .add_action_key(&caller.name, action, &request_id, id, now)
            .await?
        {
            // A concurrent twin with the same request id won; its result is the answer.
            txn.rollback().await?;
            return self
                .replayed(caller, id, &request_id, action)
                .await?
                .map(Acted::Replayed)
                .ok_or(NotificationError::RequestKeyVanished);
        }
        txn.commit().await?;
        self.get_notification(caller, id).await.map(Acted::Applied)
    }

    /// The notification an earlier request with this id acted on, as it is now; `None` when
    /// the request id is new. A request id already used on another notification is refused.
    async fn replayed(
        &self,
        caller: &Caller,
        id: Uuid,
        request_id: &str,
        action: Action,
    ) -> Result<Option<Notification>, NotificationError> {
        let Some(acted_on) = self
            .store
            .by_action(&caller.name, action, request_id)
            .await?
        else {
            return Ok(None);
        };
        if acted_on != id {
            return Err(NotificationError::RequestIdReused);
        }
        self.get_notification(caller, id).await.map(Some)
    }

    /// Queues `new` once per `(scope, request_id)`. A repeat, or the loser of two concurrent
    /// twins, gets the first notification back and queues nothing: the key's insert decides
    /// (see [`Store::enqueue`]), so a new request costs no lookup and a repeat one after its
    /// insert found the key held.
    async fn enqueue(
        &self,
        scope: &str,
        request_id: &str,
        new: NewNotification,
    ) -> Result<Enqueued, NotificationError> {
        let notification = Notification::queued(new, store::now());
        let (notification, queued) =
            enqueues::enqueue(&self.enqueues, notification, scope, request_id).await?;
        if queued {
            return Ok(Enqueued::Created(notification));
        }
        let kept = self
            .store
            .by_request(scope, request_id)
            .await?
            .ok_or(NotificationError::RequestKeyVanished)?;
        // The id answers only the request it was sent with: another email under it (another
        // account's, another recipient) is refused, never answered the first one.
        if !kept.answers(&notification) {
            return Err(NotificationError::RequestIdOfAnotherEmail);
        }
        Ok(Enqueued::Replayed(kept))
    }
}

/// Whether `action` would be applied to `notification` as it is.
fn accepts(action: Action, notification: &Notification) -> bool {
    match action {
        Action::Retry => {
            DeliveryState::RETRYABLE.contains(&notification.state)
                && !notification.variables_discarded()
        }
        Action::Cancel => DeliveryState::WAITING.contains(&notification.state),
    }
}

/// Why `action` is refused for `notification` as it is.
fn refused(action: Action, notification: &Notification) -> NotificationError {
    match (action, notification.state) {
        (Action::Retry, DeliveryState::Failed) => NotificationError::VariablesDiscarded,
        (Action::Retry, state) => NotificationError::NotFailed(state),
        (Action::Cancel, state) => NotificationError::NotWaiting(state),
    }
}

#[cfg(test)]
mod tests;
