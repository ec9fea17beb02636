//! gRPC handlers of identity: transport only. Each decodes its request, calls one use case of
//! [`crate::app`] and encodes the answer; [`convert`] holds the protobuf conversions and the
//! one map from [`crate::domain::error::IdentityError`] to a gRPC status.

mod accounts;
mod convert;
mod credentials;
pub mod events;
mod profiles;

pub use accounts::AccountApi;
pub use credentials::CredentialApi;
pub use events::EventApi;
pub use profiles::ProfileApi;
