//! CredentialService handlers. Its RPCs answer UNIMPLEMENTED until passwords land.

use roster_proto::identity::v1::credential_service_server::CredentialService;

/// CredentialService.
pub struct CredentialApi;

impl CredentialService for CredentialApi {}
