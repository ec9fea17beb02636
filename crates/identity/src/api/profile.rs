//! ProfileService handlers.

use roster_proto::identity::v1::profile_service_server::ProfileService;

use crate::store::Store;

/// ProfileService over the identity store.
pub struct ProfileApi {
    store: Store,
}

impl ProfileApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl ProfileService for ProfileApi {}
