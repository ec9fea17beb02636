//! Statements that concurrent calls share: under load, many calls' work in one statement.
//!
//! A lone call's work starts at once, as its own statement. While [`Work::IN_FLIGHT`] statements
//! are already running, new calls wait in a queue, and the next statement to start takes those
//! of them that [`Work::pick`] says can go together. Under load that is one statement for many
//! calls instead of one each: fewer round trips, and less per-statement work in the database and
//! the service. No call waits for a timer: a statement starts the moment a running one ends.
//!
//! Every statement runs as a task of its own, so a caller that goes away (its call dropped)
//! leaves the others' answers intact. Its own work is left out when its statement has not
//! started yet, and done when it has, as a statement of its own already sent would be. Should
//! a statement's task panic, its callers are answered [`Work::lost`] and its place is given
//! back.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What calls share: how their work is grouped and done.
pub trait Work: Send + Sync + 'static {
    /// One call's work.
    type Item: Send + 'static;
    /// One call's answer.
    type Answer: Send + 'static;
    /// How many statements run at once.
    const IN_FLIGHT: usize;

    /// Which of the waiting items (oldest first, never none) the next statement takes: their
    /// indexes, ascending, the first one always among them.
    fn pick<'a>(&self, waiting: impl Iterator<Item = &'a Self::Item>) -> Vec<usize>
    where
        Self::Item: 'a;

    /// Does `items` in one statement: one answer per item, in their order.
    fn run(&self, items: Vec<Self::Item>) -> impl Future<Output = Vec<Self::Answer>> + Send;

    /// The answer of a call whose statement ended without answering it.
    fn lost() -> Self::Answer;
}

/// The calls waiting for a statement of `W`, shared by the callers and the running statements.
pub struct Shared<W: Work> {
    work: Arc<W>,
    queue: Arc<Mutex<Queue<W>>>,
}

impl<W: Work> Clone for Shared<W> {
    fn clone(&self) -> Self {
        Self {
            work: self.work.clone(),
            queue: self.queue.clone(),
        }
    }
}

struct Queue<W: Work> {
    /// The waiting calls, oldest first: each one's work and where its answer goes.
    waiting: Vec<(W::Item, oneshot::Sender<W::Answer>)>,
    running: usize,
}

impl<W: Work> Shared<W> {
    pub fn new(work: W) -> Self {
        Self {
            work: Arc::new(work),
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                running: 0,
            })),
        }
    }

    /// The work the calls share, to do one alone.
    pub fn work(&self) -> &W {
        &self.work
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<W>> {
        self.queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Does `item`, alone or with others, and answers it.
    pub async fn call(&self, item: W::Item) -> W::Answer {
        let (sender, answer) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.waiting.push((item, sender));
            let start = queue.running < W::IN_FLIGHT;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            let shared = self.clone();
            tokio::spawn(async move { shared.run().await });
        }
        answer.await.unwrap_or_else(|_| W::lost())
    }

    /// Runs statements for the waiting calls until none is left.
    async fn run(self) {
        let mut running = Running {
            shared: &self,
            ended: false,
        };
        loop {
            let (items, answers) = {
                let mut queue = self.lock();
                // A call whose caller went away before its statement started is dropped, as a
                // call dropped before it sent its own statement always was.
                queue.waiting.retain(|(_, answer)| !answer.is_closed());
                if queue.waiting.is_empty() {
                    queue.running -= 1;
                    running.ended = true;
                    return;
                }
                let picked = self.work.pick(queue.waiting.iter().map(|(item, _)| item));
                // Highest index first, so that the lower ones stay where they are.
                let mut taken: Vec<_> = picked
                    .iter()
                    .rev()
                    .map(|&index| queue.waiting.remove(index))
                    .collect();
                taken.reverse();
                taken.into_iter().unzip::<_, _, Vec<_>, Vec<_>>()
            };
            let results = self.work.run(items).await;
            for (sender, answer) in answers.into_iter().zip(results) {
                let _ = sender.send(answer);
            }
        }
    }
}

/// A running statement's place among the [`Work::IN_FLIGHT`]. Should its task panic, the place
/// is given back, and the calls still waiting get a statement of their own (those it carried
/// are answered [`Work::lost`] by their dropped senders).
struct Running<'a, W: Work> {
    shared: &'a Shared<W>,
    ended: bool,
}

impl<W: Work> Drop for Running<'_, W> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut queue = self.shared.lock();
        if queue.waiting.is_empty() {
            queue.running -= 1;
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { shared.run().await });
        } else {
            queue.running -= 1;
        }
    }
}
