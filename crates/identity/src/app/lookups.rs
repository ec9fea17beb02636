//! Registry lookups of concurrent CheckUsername calls, answered together.
//!
//! A lone call is looked up at once, as before. While [`IN_FLIGHT`] lookups are already
//! running, new calls wait in a queue, and the next lookup to start takes up to [`MAX_BATCH`]
//! of them in one registry statement ([`Store::standings`] answers each username by its
//! position, repeats included). Under load that is one statement for many calls instead of one
//! each: fewer round trips to the database and less work in it per call, and no call waits for
//! a timer — a lookup starts the moment one of the running ones ends.
//!
//! Every lookup runs as a task of its own, so a caller that goes away (its call dropped
//! mid-lookup) leaves the others' answers intact. A failed statement answers every caller it
//! carried with the error. What a call learns is what it asked: the answer for its own
//! username, as the one-call lookup gave it.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::domain::username::{Standing, Username};
use crate::store::Store;

/// How many lookups run at once; more callers wait for the next one.
const IN_FLIGHT: usize = 4;
/// The most usernames one lookup carries.
const MAX_BATCH: usize = 64;

/// A lookup's answer for one caller; a failed statement's cause is logged once, and each caller
/// carried answers with the error's text.
type Answer = Result<Option<Standing>, String>;

/// The queue of callers waiting for a lookup, shared by the callers and the running lookups.
#[derive(Clone)]
pub(crate) struct Lookups {
    store: Store,
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(Username, oneshot::Sender<Answer>)>,
    running: usize,
}

impl Lookups {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            queue: Arc::default(),
        }
    }

    /// What the registry says of `username`: `None` when it is free.
    pub(crate) async fn standing(&self, username: &Username) -> Answer {
        let (sender, answer) = oneshot::channel();
        let start = {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            queue.waiting.push((username.clone(), sender));
            let start = queue.running < IN_FLIGHT;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            let lookups = self.clone();
            tokio::spawn(async move { lookups.run().await });
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the registry lookup ended without an answer".to_owned()))
    }

    /// Looks up the waiting callers, a batch at a time, until none is left.
    async fn run(self) {
        let mut running = Running {
            lookups: &self,
            ended: false,
        };
        loop {
            let batch = {
                let mut queue = self
                    .queue
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                if queue.waiting.is_empty() {
                    queue.running -= 1;
                    running.ended = true;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            // The statement's shape depends on how many usernames it carries; rounding the
            // count up to a power of two (the last one repeated) keeps the shapes, and so the
            // prepared statements per connection, to seven.
            let mut usernames: Vec<&Username> =
                batch.iter().map(|(username, _)| username).collect();
            let padded = usernames.len().next_power_of_two();
            let last = usernames[usernames.len() - 1];
            usernames.resize(padded, last);
            match self
                .store
                .standings(self.store.connection(), &usernames)
                .await
            {
                Ok(standings) => {
                    for ((_, sender), standing) in batch.into_iter().zip(standings) {
                        let _ = sender.send(Ok(standing));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, callers = batch.len(), "a registry lookup failed");
                    let text = error.to_string();
                    for (_, sender) in batch {
                        let _ = sender.send(Err(text.clone()));
                    }
                }
            }
        }
    }
}

/// A running lookup's place among the [`IN_FLIGHT`]. Should the lookup panic, its place is given
/// back, and the callers still waiting get a lookup of their own (those it carried are answered
/// with an error by their dropped senders).
struct Running<'a> {
    lookups: &'a Lookups,
    ended: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut queue = self
            .lookups
            .queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if queue.waiting.is_empty() {
            queue.running -= 1;
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let lookups = self.lookups.clone();
            runtime.spawn(async move { lookups.run().await });
        } else {
            queue.running -= 1;
        }
    }
}
