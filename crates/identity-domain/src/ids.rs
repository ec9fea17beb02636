//! Identifiers of identity's resources: distinct types, so an account id can never be passed
//! where a profile id is meant.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new id, ordered by creation time (UUIDv7).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID behind the id.
            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A customer account.
    AccountId
);
id_type!(
    /// A user profile.
    ProfileId
);
id_type!(
    /// A SCIM token of an account.
    ScimTokenId
);
