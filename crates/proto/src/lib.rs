//! Roster's protobuf contract as Rust: prost messages, tonic clients and servers, and the
//! encoded file descriptor set that server reflection serves.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod codec;
pub mod convert;

/// The encoded `FileDescriptorSet` of every Roster `.proto` file (well-known types included).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/roster_descriptor.bin"));

/// `roster.identity.v1`: accounts, profiles, usernames and credentials.
pub mod identity {
    pub mod v1 {
        tonic::include_proto!("roster.identity.v1");
    }
}

/// `roster.imports.v1`: the spreadsheet import workflow.
pub mod imports {
    pub mod v1 {
        tonic::include_proto!("roster.imports.v1");
    }
}

/// `roster.notification.v1`: durable email delivery.
pub mod notification {
    pub mod v1 {
        tonic::include_proto!("roster.notification.v1");
    }
}
