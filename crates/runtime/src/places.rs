//! A bounded number of places per key (a caller, an account), each given back when dropped:
//! what keeps one key from holding more than its share of something every key shares.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// How many places each key holds, and how many one may hold.
pub struct Places<K: Hash + Eq + Clone> {
    held: Mutex<HashMap<K, usize>>,
    limit: usize,
}

/// One place of a key, given back when dropped.
pub struct Place<K: Hash + Eq + Clone> {
    places: Arc<Places<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Places<K> {
    /// At most `limit` places per key (at least one).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            held: Mutex::new(HashMap::new()),
            limit: limit.max(1),
        })
    }

    /// A place for `key`, unless it holds all of its places already.
    pub fn take(self: &Arc<Self>, key: &K) -> Option<Place<K>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.clone()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Place {
            places: self.clone(),
            key: key.clone(),
        })
    }
}

impl<K: Hash + Eq + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        let mut held = self
            .places
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_places_and_gets_them_back() {
        let places = Places::new(2);
        let first = places.take(&"a").unwrap();
        let _second = places.take(&"a").unwrap();
        assert!(places.take(&"a").is_none());
        assert!(places.take(&"b").is_some(), "another key has its own");
        drop(first);
        assert!(places.take(&"a").is_some());
    }
}
