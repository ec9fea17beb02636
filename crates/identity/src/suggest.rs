//! Free usernames to offer with a refusal: the candidates of [`domain::suggestions`] that the
//! registry holds neither as a name nor as a look-alike, for one refusal or a batch's at once.
//!
//! [`domain::suggestions`]: crate::domain::suggestions

use crate::domain::error::{IdentityError, Refusal};
use crate::domain::suggestions::{MAX_SUGGESTIONS, Seeds, candidates};
use crate::domain::username::Username;
use crate::store::Store;

/// Candidates looked up in one registry query.
const LOOKUP_CHUNK: usize = 500;

/// Up to [`MAX_SUGGESTIONS`] free usernames for each of `seeds`, in the same order.
pub async fn free_usernames(
    store: &Store,
    seeds: &[Seeds<'_>],
) -> Result<Vec<Vec<String>>, IdentityError> {
    let proposals: Vec<Vec<Username>> =
        roster_runtime::work::cpu_bound(|| seeds.iter().map(|seeds| candidates(*seeds)).collect());
    let all: Vec<&Username> = proposals.iter().flatten().collect();
    let mut free = Vec::with_capacity(all.len());
    for chunk in all.chunks(LOOKUP_CHUNK) {
        free.extend(
            store
                .standings(store.connection(), chunk)
                .await?
                .into_iter()
                .map(|standing| standing.is_none()),
        );
    }
    let mut free = free.into_iter();
    Ok(proposals
        .iter()
        .map(|usernames| {
            // Every flag of this list is taken from `free`, so the next list starts at its own.
            let flags: Vec<bool> = free.by_ref().take(usernames.len()).collect();
            usernames
                .iter()
                .zip(flags)
                .filter(|(_, free)| *free)
                .map(|(username, _)| username.as_str().to_owned())
                .take(MAX_SUGGESTIONS)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// `error` with free suggestions when it refuses a username as taken, retired or confusable;
/// any other error as it is. The lookup failing loses the suggestions, never the refusal.
pub async fn with_suggestions(
    store: &Store,
    error: IdentityError,
    seeds: Seeds<'_>,
) -> IdentityError {
    match error {
        IdentityError::UsernameRefused {
            refusal, defaulted, ..
        } if refusal != Refusal::Invalid => {
            let suggestions = match free_usernames(store, &[seeds]).await {
                Ok(mut lists) => lists.pop().unwrap_or_default(),
                Err(lookup) => {
                    tracing::warn!(error = %lookup, "username suggestions unavailable");
                    Vec::new()
                }
            };
            IdentityError::UsernameRefused {
                refusal,
                defaulted,
                suggestions,
            }
        }
        other => other,
    }
}
