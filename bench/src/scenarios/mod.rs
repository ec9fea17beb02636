//! The benchmark scenarios of issues 9 and 17, each starting its own services on fresh
//! databases and measuring Roster and its baseline one after the other in the same run.

pub mod bulk_import;
pub mod check_username;
pub mod create_profile;
pub mod create_profile_events;
pub mod notification;
pub mod verify_password;
