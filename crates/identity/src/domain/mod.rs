//! Pure types and rules of identity: no gRPC, no SQL.

pub mod account;
pub mod assignment;
pub mod batch;
pub mod email;
pub mod error;
pub mod fields;
pub mod ids;
pub mod outbox;
pub mod policy;
pub mod profile;
pub mod suggestions;
pub mod username;
