//! The pure types and rules of Roster's user profiles: ids, profiles and their patches,
//! accounts and password policies, usernames (canonical forms, skeletons, the registry's
//! decision), emails, names, roles and extensions, the plan of a batch of upserts, the SCIM
//! tokens identity providers provision with, and the errors of all of them. No gRPC, no SQL,
//! no I/O: identity builds its use cases on it, and bulk-import checks rows with the same rules
//! before it asks identity.

pub mod account;
pub mod assignment;
pub mod batch;
pub mod email;
pub mod error;
pub mod event;
pub mod fields;
pub mod ids;
pub mod policy;
pub mod profile;
pub mod query;
pub mod scim_token;
pub mod suggestions;
pub mod username;
