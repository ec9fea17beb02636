//! How many long-lived server streams (watches) each caller key may hold open at once on one
//! replica. A watch costs the server a task that looks at the database a few times a second
//! for as long as it is open, so without a bound per key one caller could make everyone's
//! database work wait on its watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::ApiError;

/// The streams open on this replica, by key name, each key holding at most `per_key`.
#[derive(Clone, Debug)]
pub struct OpenStreams {
    open: Arc<Mutex<HashMap<String, usize>>>,
    per_key: usize,
    /// What the streams are called in a refusal ("WatchEvents streams").
    what: &'static str,
}

impl OpenStreams {
    pub fn new(per_key: usize, what: &'static str) -> Self {
        Self {
            open: Arc::default(),
            per_key,
            what,
        }
    }

    /// A place for one more stream of `key`, held until the place is dropped (when the stream
    /// ends, however it ends); RESOURCE_EXHAUSTED (`TOO_MANY_WATCHES`) when the key holds all
    /// of its places.
    pub fn take(&self, key: &str) -> Result<StreamPlace, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key.to_owned()).or_default();
        if *count >= self.per_key {
            return Err(ApiError::ResourceExhausted {
                reason: "TOO_MANY_WATCHES",
                message: format!(
                    "this key has {} {} open on this server already, the most one key may have; \
                     close one, or narrow one watch instead of opening several",
                    self.per_key, self.what
                ),
                retry_after: None,
            });
        }
        *count += 1;
        Ok(StreamPlace {
            streams: self.clone(),
            key: key.to_owned(),
        })
    }
}

/// One open stream's place; given back when it is dropped.
#[derive(Debug)]
pub struct StreamPlace {
    streams: OpenStreams,
    key: String,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_its_places_and_gets_them_back() {
        let streams = OpenStreams::new(2, "watches");
        let first = streams.take("a").unwrap();
        let _second = streams.take("a").unwrap();
        let refused = streams.take("a").unwrap_err();
        assert!(refused.to_string().contains("2 watches"), "{refused}");
        let _other = streams.take("b").unwrap();
        drop(first);
        let _again = streams.take("a").unwrap();
        assert!(streams.take("a").is_err());
    }
}
