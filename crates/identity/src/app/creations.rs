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

use crate::domain::ids::AccountId;
use crate::store::AtOnce;
use crate::store::Store;

use super::shared::{Shared, Work};

/// The most creations one statement carries.
const MAX_BATCH: usize = 32;

/// How a creation came out of its statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The profile and everything with it are written.
    Yes,
    /// Nothing was written for this creation, alone in its statement: the transaction will say
    /// why.
    No,
    /// Nothing was written by a statement shared with other creations: try alone.
    NotWithOthers,
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

impl Creation {
    /// Writes `creations` of `account_id` in one statement.
    async fn write(&self, account_id: AccountId, creations: &[AtOnce]) -> Written {
        match self
            .store
            .create_profiles_at_once(account_id, creations)
            .await
        {
            Ok(true) => Written::Yes,
            Ok(false) if creations.len() == 1 => Written::No,
            Ok(false) => Written::NotWithOthers,
            Err(error) if creations.len() == 1 => Written::Failed(error.to_string()),
            Err(error) => {
                tracing::warn!(%error, creations = creations.len(), "a shared creation statement failed; each creation tries alone");
                Written::NotWithOthers
            }
        }
    }
}

impl Work for Creation {
    type Item = AtOnce;
    type Answer = Written;
    const IN_FLIGHT: usize = 4;

    /// The oldest creation, and those waiting for the same account with a kept answer as it has
    /// one or not. Their count is cut to a power of two: the statement's shape depends on it,
    /// and so each connection prepares a dozen shapes at most.
    fn pick(&self, waiting: &[AtOnce]) -> Vec<usize> {
        let first = &waiting[0];
        let mut picked: Vec<usize> = waiting
            .iter()
            .enumerate()
            .filter(|(_, new)| {
                new.profile.account_id == first.profile.account_id
                    && new.kept.is_some() == first.kept.is_some()
            })
            .map(|(index, _)| index)
            .take(MAX_BATCH)
            .collect();
        let shapes = 1 << picked.len().ilog2();
        picked.truncate(shapes);
        picked
    }

    async fn run(&self, creations: Vec<AtOnce>) -> Vec<Written> {
        let account_id = creations[0].profile.account_id;
        let written = self.write(account_id, &creations).await;
        vec![written; creations.len()]
    }

    fn lost() -> Written {
        Written::Failed("the creation's statement ended without an answer".to_owned())
    }
}

impl Creations {
    /// Writes `creation` with others when they can go together; otherwise alone. Never
    /// [`Written::NotWithOthers`].
    pub(crate) async fn write(&self, creation: AtOnce) -> Written {
        match self.call(creation.clone()).await {
            Written::NotWithOthers => {
                let account_id = creation.profile.account_id;
                self.work().write(account_id, &[creation]).await
            }
            written => written,
        }
    }
}
