//! Identity's domain: the pure rules of user profiles, from the `roster-identity-domain` crate
//! (shared with bulk-import and the CLI), and this service's own outbox email.

pub use roster_identity_domain::*;

pub mod outbox;
