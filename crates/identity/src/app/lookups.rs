//! Registry lookups of concurrent CheckUsername calls, answered together
//! ([`super::shared`]): while four lookups run, the next one takes up to [`MAX_BATCH`] of the
//! waiting calls in one registry statement ([`Store::standings`] answers each username by its
//! position, repeats included). A failed statement answers every caller it carried with the
//! error. What a call learns is what it asked: the answer for its own username, as a lookup of
//! its own gave it.

use crate::domain::username::{Standing, Username};
use crate::store::Store;

use roster_runtime::shared::{Shared, Work};

/// The most usernames one lookup carries.
const MAX_BATCH: usize = 64;

/// A lookup's answer for one caller; a failed statement's cause is logged once, and each caller
/// carried answers with the error's text.
pub(crate) type Answer = Result<Option<Standing>, String>;

/// CheckUsername's registry lookups, shared by concurrent calls.
pub(crate) type Lookups = Shared<Lookup>;

pub(crate) struct Lookup {
    store: Store,
}

pub(crate) fn lookups(store: Store) -> Lookups {
    Shared::new(Lookup { store })
}

impl Work for Lookup {
    type Item = Username;
    type Answer = Answer;
    const IN_FLIGHT: usize = 4;

    fn pick<'a>(&self, waiting: impl Iterator<Item = &'a Username>) -> Vec<usize> {
        (0..waiting.count().min(MAX_BATCH)).collect()
    }

    async fn run(&self, usernames: Vec<Username>) -> Vec<Answer> {
        // The statement's shape depends on how many usernames it carries; rounding the count up
        // to a power of two (the last one repeated) keeps the shapes, and so the prepared
        // statements per connection, to seven.
        let asked = usernames.len();
        let mut carried: Vec<&Username> = usernames.iter().collect();
        carried.resize(asked.next_power_of_two(), &usernames[asked - 1]);
        match self
            .store
            .standings(self.store.connection(), &carried)
            .await
        {
            Ok(standings) => standings.into_iter().take(asked).map(Ok).collect(),
            Err(error) => {
                tracing::error!(%error, callers = asked, "a registry lookup failed");
                vec![Err(error.to_string()); asked]
            }
        }
    }

    fn lost() -> Answer {
        Err("the registry lookup ended without an answer".to_owned())
    }
}
