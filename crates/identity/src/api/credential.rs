//! CredentialService handlers.

use roster_proto::identity::v1::credential_service_server::CredentialService;

use crate::store::Store;

/// CredentialService over the identity store.
pub struct CredentialApi {
    store: Store,
}

impl CredentialApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl CredentialService for CredentialApi {}
