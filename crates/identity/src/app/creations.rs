//! The usual CreateProfile on PostgreSQL (not suspended, no roles, no welcome email): one
//! statement, shared by concurrent creations of one account ([`super::shared`]). While four such
//! statements run, the next one takes up to [`MAX_BATCH`] waiting creations of the oldest one's
//! account ([`Store::create_profiles_at_once`]).
//!
//! The statement is all or nothing, so anything in one creation's way (its username or request
//! id held, by another profile or by another creation of the same statement; the account
//! missing or deleted) writes nothing for any of them. Each creation of a shared statement that
//! did not write then tries alone, and a lone one that did not write takes the transaction,
//! which says why — so one caller's refusal is never another's, and every caller gets the
//! answer a statement of its own would have given.

use crate::store::AtOnce;
use crate::store::Store;

use roster_runtime::shared::{Shared, Work};

/// The most creations one statement carries.
const MAX_BATCH: usize = 32;

/// How a creation came out of its statement.
#[derive(Debug)]
pub(crate) enum Written {
    /// The profile and everything with it are written; the creation handed back.
    Yes(AtOnce),
    /// Nothing was written for this creation, alone in its statement: the transaction will say
    /// why.
    No,
    /// Nothing was written by a statement shared with other creations: the creation handed
    /// back, to try alone.
    NotWithOthers(AtOnce),
    /// The database failed (alone in its statement).
    Failed(String),
}

/// CreateProfile's shared statements.
pub(crate) type Creations = Shared<Creation>;

pub(crate) struct Creation {
    store: Store,
}

pub(crate) fn creations(store: Store) -> Creations {
    Shared::new(Creation { store })
}

impl Work for Creation {
    type Item = AtOnce;
    type Answer = Written;
    const IN_FLIGHT: usize = 4;

    /// The oldest creation, and those waiting for the same account with a kept answer as it has
    /// one or not. Their count is cut to a power of two: the statement's shape depends on it,
    /// and so each connection prepares a dozen shapes at most.
    fn pick<'a>(&self, mut waiting: impl Iterator<Item = &'a AtOnce>) -> Vec<usize> {
        let Some(first) = waiting.next() else {
            return Vec::new();
        };
        let mut picked: Vec<usize> = std::iter::once(0)
            .chain(waiting.enumerate().filter_map(|(index, new)| {
                (new.profile.account_id == first.profile.account_id
                    && new.kept.is_some() == first.kept.is_some())
                .then_some(index + 1)
            }))
            .take(MAX_BATCH)
            .collect();
        picked.truncate(1 << picked.len().ilog2());
        picked
    }

    async fn run(&self, creations: Vec<AtOnce>) -> Vec<Written> {
        let alone = creations.len() == 1;
        match self.store.create_profiles_at_once(&creations).await {
            Ok(true) => creations.into_iter().map(Written::Yes).collect(),
            Ok(false) if alone => vec![Written::No],
            Err(error) if alone => vec![Written::Failed(error.to_string())],
            Ok(false) => creations.into_iter().map(Written::NotWithOthers).collect(),
            Err(error) => {
                tracing::warn!(
                    %error,
                    creations = creations.len(),
                    "a shared creation statement failed; each creation tries alone"
                );
                creations.into_iter().map(Written::NotWithOthers).collect()
            }
        }
    }

    fn lost() -> Written {
        Written::Failed("the creation's statement ended without an answer".to_owned())
    }
}

/// Writes `creation` with others when they can go together; otherwise alone. Never
/// [`Written::NotWithOthers`].
pub(crate) async fn write(creations: &Creations, creation: AtOnce) -> Written {
    match creations.call(creation).await {
        Written::NotWithOthers(creation) => creations.work().run(vec![creation]).await.remove(0),
        written => written,
    }
}
