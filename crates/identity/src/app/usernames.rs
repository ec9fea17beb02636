//! Usernames: whether one is free (one or a batch at once), and the free usernames to offer
//! with a refusal: the candidates of [`domain::suggestions`] that the registry holds neither as
//! a name nor as a look-alike, for one refusal or a batch's at once.
//!
//! [`domain::suggestions`]: crate::domain::suggestions

use roster_runtime::Caller;

use super::Identity;
use crate::domain::error::{IdentityError, Refusal};
use crate::domain::ids::ProfileId;
use crate::domain::suggestions::{MAX_SUGGESTIONS, Seeds, candidates};
use crate::domain::username::{MAX_INPUT_BYTES, Username};
use crate::store::Store;

/// What the registry says of one username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsernameCheck {
    /// The username as asked, empty when it was too long to echo.
    pub username: String,
    /// Its canonical form; empty when it is not a valid username.
    pub canonical: String,
    /// Why it cannot be taken; `None` when it is free.
    pub refusal: Option<Refusal>,
    /// What is wrong with an invalid username, or the refusal's sentence.
    pub message: String,
    /// The profile holding it, when the caller may see that profile.
    pub holder: Option<ProfileId>,
    /// Free usernames to offer instead.
    pub suggestions: Vec<String>,
}

/// Names and email that seed the suggestions of a check, as the caller gave them.
#[derive(Clone, Debug, Default)]
pub struct SeedText {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
}

impl Identity {
    /// Whether `raw` is free, with suggestions from `seeds` when it is not.
    pub async fn check_username(
        &self,
        raw: &str,
        seeds: &SeedText,
    ) -> Result<UsernameCheck, IdentityError> {
        let parsed = Username::parse(raw);
        let standing = match &parsed {
            Ok(username) => self
                .lookups
                .call(username.clone())
                .await
                .map_err(|error| IdentityError::Storage(error.into()))?,
            Err(_) => None,
        };
        let refused = parsed.as_ref().ok().filter(|_| standing.is_some());
        let suggestions = if parsed.is_err() || standing.is_some() {
            let seeds = Seeds {
                first_name: &seeds.first_name,
                last_name: &seeds.last_name,
                email: &seeds.email,
                refused,
            };
            free_usernames(&self.store, &[seeds])
                .await?
                .pop()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(match parsed {
            Err(error) => UsernameCheck {
                username: raw.to_owned(),
                canonical: String::new(),
                refusal: Some(Refusal::Invalid),
                message: error.description(),
                holder: None,
                suggestions,
            },
            Ok(username) => UsernameCheck {
                username: raw.to_owned(),
                canonical: username.canonical().to_owned(),
                refusal: standing.map(|standing| standing.refusal),
                message: standing
                    .map(|standing| standing.refusal.message().to_owned())
                    .unwrap_or_default(),
                holder: None,
                suggestions,
            },
        })
    }

    /// Whether each of `usernames` is free, in one registry lookup, with suggestions for each
    /// refused (not invalid) username that came with seeds (`seeds[i]` seeds `usernames[i]`).
    /// The holder of a taken username is named only when the caller may see it.
    pub async fn check_usernames(
        &self,
        caller: &Caller,
        usernames: Vec<String>,
        seeds: &[SeedText],
    ) -> Result<Vec<UsernameCheck>, IdentityError> {
        let parsed: Vec<_> = roster_runtime::work::cpu_bound(|| {
            usernames.iter().map(|raw| Username::parse(raw)).collect()
        });
        let valid: Vec<&Username> = parsed
            .iter()
            .filter_map(|result| result.as_ref().ok())
            .collect();
        let mut standings = self
            .store
            .standings(self.store.connection(), &valid)
            .await?
            .into_iter();
        let mut checks: Vec<UsernameCheck> = usernames
            .into_iter()
            .zip(parsed.iter())
            .map(|(raw, parsed)| match parsed {
                Err(error) => UsernameCheck {
                    username: if raw.len() > MAX_INPUT_BYTES {
                        String::new()
                    } else {
                        raw
                    },
                    canonical: String::new(),
                    refusal: Some(Refusal::Invalid),
                    message: error.description(),
                    holder: None,
                    suggestions: Vec::new(),
                },
                Ok(username) => {
                    let standing = standings.next().flatten();
                    UsernameCheck {
                        username: raw,
                        canonical: username.canonical().to_owned(),
                        refusal: standing.map(|standing| standing.refusal),
                        message: standing
                            .map(|standing| standing.refusal.message().to_owned())
                            .unwrap_or_default(),
                        holder: standing
                            .and_then(|standing| standing.holder)
                            .filter(|(_, account)| caller.may_access(account.0))
                            .map(|(profile, _)| profile),
                        suggestions: Vec::new(),
                    }
                }
            })
            .collect();
        // Suggestions for every refused username that came with seeds: one lookup for all.
        let wanted: Vec<(usize, Seeds)> = seeds
            .iter()
            .enumerate()
            .filter(|(index, _)| {
                matches!(checks[*index].refusal, Some(refusal) if refusal != Refusal::Invalid)
            })
            .map(|(index, seed)| {
                (
                    index,
                    Seeds {
                        first_name: &seed.first_name,
                        last_name: &seed.last_name,
                        email: &seed.email,
                        refused: parsed[index].as_ref().ok(),
                    },
                )
            })
            .collect();
        if !wanted.is_empty() {
            let all: Vec<Seeds> = wanted.iter().map(|(_, seeds)| *seeds).collect();
            let lists = free_usernames(&self.store, &all).await?;
            for ((index, _), suggestions) in wanted.iter().zip(lists) {
                checks[*index].suggestions = suggestions;
            }
        }
        Ok(checks)
    }

    /// `error` with free suggestions when it refuses a username (see [`with_suggestions`]).
    pub(crate) async fn with_suggestions(
        &self,
        error: IdentityError,
        seeds: Seeds<'_>,
    ) -> IdentityError {
        with_suggestions(&self.store, error, seeds).await
    }
}

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
