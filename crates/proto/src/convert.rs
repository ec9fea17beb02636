//! The one set of conversions between identity's protobuf enums and the domain's types, used by
//! identity's handlers, bulk-import's identity client and the CLI alike.

use roster_identity_domain::assignment::{ExtensionKind, Role};
use roster_identity_domain::error::Refusal;
use roster_identity_domain::profile::ProfileStatus;

use crate::identity::v1 as pb;

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::AccountAdministrator => pb::Role::AccountAdministrator,
            Role::ContactCenterAgent => pb::Role::ContactCenterAgent,
            Role::ContactCenterSupervisor => pb::Role::ContactCenterSupervisor,
            Role::StandardUser => pb::Role::StandardUser,
        }
    }
}

/// The domain role of a protobuf role; `None` for UNSPECIFIED.
pub fn role(role: pb::Role) -> Option<Role> {
    match role {
        pb::Role::Unspecified => None,
        pb::Role::AccountAdministrator => Some(Role::AccountAdministrator),
        pb::Role::ContactCenterAgent => Some(Role::ContactCenterAgent),
        pb::Role::ContactCenterSupervisor => Some(Role::ContactCenterSupervisor),
        pb::Role::StandardUser => Some(Role::StandardUser),
    }
}

/// Each role value of a message: the role, or the value when it names none.
pub fn role_values(values: &[i32]) -> Vec<Result<Role, i32>> {
    values
        .iter()
        .map(|value| pb::Role::try_from(*value).ok().and_then(role).ok_or(*value))
        .collect()
}

impl From<ExtensionKind> for pb::ExtensionKind {
    fn from(kind: ExtensionKind) -> Self {
        match kind {
            ExtensionKind::Physical => pb::ExtensionKind::Physical,
            ExtensionKind::Virtual => pb::ExtensionKind::Virtual,
        }
    }
}

/// The domain kind of a protobuf extension kind; `None` for UNSPECIFIED or an unknown value.
pub fn extension_kind(kind: i32) -> Option<ExtensionKind> {
    match pb::ExtensionKind::try_from(kind) {
        Ok(pb::ExtensionKind::Physical) => Some(ExtensionKind::Physical),
        Ok(pb::ExtensionKind::Virtual) => Some(ExtensionKind::Virtual),
        Ok(pb::ExtensionKind::Unspecified) | Err(_) => None,
    }
}

impl From<ProfileStatus> for pb::ProfileStatus {
    fn from(status: ProfileStatus) -> Self {
        match status {
            ProfileStatus::Active => pb::ProfileStatus::Active,
            ProfileStatus::Suspended => pb::ProfileStatus::Suspended,
            ProfileStatus::Deleted => pb::ProfileStatus::Deleted,
        }
    }
}

/// The domain status of a protobuf status; `None` for UNSPECIFIED.
pub fn profile_status(status: pb::ProfileStatus) -> Option<ProfileStatus> {
    match status {
        pb::ProfileStatus::Unspecified => None,
        pb::ProfileStatus::Active => Some(ProfileStatus::Active),
        pb::ProfileStatus::Suspended => Some(ProfileStatus::Suspended),
        pb::ProfileStatus::Deleted => Some(ProfileStatus::Deleted),
    }
}

/// The protobuf refusal of a username; UNSPECIFIED when it is free.
pub fn refusal(refusal: Option<Refusal>) -> pb::UsernameRefusal {
    match refusal {
        None => pb::UsernameRefusal::Unspecified,
        Some(Refusal::Taken) => pb::UsernameRefusal::Taken,
        Some(Refusal::Retired) => pb::UsernameRefusal::Retired,
        Some(Refusal::Confusable) => pb::UsernameRefusal::Confusable,
        Some(Refusal::Invalid) => pb::UsernameRefusal::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_and_kind_round_trips() {
        for role in Role::ALL {
            assert_eq!(super::role(pb::Role::from(role)), Some(role));
        }
        for kind in [ExtensionKind::Physical, ExtensionKind::Virtual] {
            assert_eq!(
                extension_kind(pb::ExtensionKind::from(kind) as i32),
                Some(kind)
            );
        }
        for status in [
            ProfileStatus::Active,
            ProfileStatus::Suspended,
            ProfileStatus::Deleted,
        ] {
            assert_eq!(
                profile_status(pb::ProfileStatus::from(status)),
                Some(status)
            );
        }
        assert_eq!(
            role_values(&[1, 99]),
            vec![Ok(Role::AccountAdministrator), Err(99)]
        );
    }
}
