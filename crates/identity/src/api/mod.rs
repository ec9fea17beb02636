//! Identity's transports: the gRPC handlers and the SCIM endpoint ([`scim`]). Each decodes its
//! request, calls one use case of [`crate::app`] and encodes the answer; [`convert`] holds the
//! protobuf conversions and the one map from [`crate::domain::error::IdentityError`] to a gRPC
//! status.

mod accounts;
mod convert;
mod credentials;
mod digest;
pub mod events;
mod profiles;
pub mod scim;

pub use accounts::AccountApi;
pub use credentials::CredentialApi;
pub use events::EventApi;
pub use profiles::ProfileApi;

/// The request id `id` of `request`, with the digest of what the server acts on in it (its
/// [`digest::Canonical`] form, in its wire encoding), so that a repeat is answered only when it
/// is the same request.
pub(crate) fn request_key<'a>(
    request: &impl digest::Canonical,
    id: &'a str,
) -> crate::app::RequestId<'a> {
    if id.is_empty() {
        return crate::app::RequestId::NONE;
    }
    crate::app::RequestId::new(id, &request.canonical_bytes())
}
