//! How many long-lived server streams (watches) each caller key may hold open at once on one
//! replica. A watch costs the server a task that looks at the database a few times a second
//! for as long as it is open, so without a bound per key one caller could make everyone's
//! database work wait on its watches.

use std::sync::Arc;

use crate::ApiError;
use crate::places::{Place, Places};

/// The streams open on this replica, by key name, each key holding at most `per_key`.
#[derive(Clone)]
pub struct OpenStreams {
    places: Arc<Places<String>>,
    per_key: usize,
    /// What the streams are called in a refusal ("WatchEvents streams").
    what: &'static str,
}

impl OpenStreams {
    pub fn new(per_key: usize, what: &'static str) -> Self {
        Self {
            places: Places::new(per_key),
            per_key: per_key.max(1),
            what,
        }
    }

    /// A place for one more stream of `key`, held until the place is dropped (when the stream
    /// ends, however it ends); RESOURCE_EXHAUSTED (`TOO_MANY_WATCHES`) when the key holds all
    /// of its places.
    pub fn take(&self, key: &str) -> Result<StreamPlace, ApiError> {
        self.places
            .take(&key.to_owned())
            .map(|place| StreamPlace { _place: place })
            .ok_or_else(|| ApiError::ResourceExhausted {
                reason: "TOO_MANY_WATCHES",
                message: format!(
                    "this key has {} {} open on this server already, the most one key may have; \
                     close one, or narrow one watch instead of opening several",
                    self.per_key, self.what
                ),
                retry_after: None,
            })
    }
}

/// One open stream's place; given back when it is dropped.
pub struct StreamPlace {
    _place: Place<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_its_places_and_gets_them_back() {
        let streams = OpenStreams::new(2, "watches");
        let first = streams.take("a").unwrap();
        let _second = streams.take("a").unwrap();
        let Err(refused) = streams.take("a") else {
            panic!("a third place for key a");
        };
        assert!(refused.to_string().contains("2 watches"), "{refused}");
        let _other = streams.take("b").unwrap();
        drop(first);
        let _again = streams.take("a").unwrap();
        assert!(streams.take("a").is_err());
    }
}
