//! Identity's transports: the gRPC handlers and the SCIM endpoint ([`scim`]). Each decodes its
//! request, calls one use case of [`crate::app`] and encodes the answer; [`convert`] holds the
//! protobuf conversions and the one map from [`crate::domain::error::IdentityError`] to a gRPC
//! status.

mod accounts;
mod convert;
mod credentials;
pub mod events;
mod profiles;
pub mod scim;

pub use accounts::AccountApi;
pub use credentials::CredentialApi;
pub use events::EventApi;
pub use profiles::ProfileApi;
