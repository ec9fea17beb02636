//! gRPC handlers of identity: decode the request, check the caller, call the store, map the
//! result. Thin by design.

mod account;
mod batch;
mod convert;
mod credential;
mod profile;

pub use account::AccountApi;
pub use credential::CredentialApi;
pub use profile::ProfileApi;
