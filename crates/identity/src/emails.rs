//! The emails identity asks NotificationService to send, built from the account and profile
//! they concern. They are written to the outbox in the transaction of the change that causes
//! them, and the relay hands them over later (see [`crate::relay`]).

use std::collections::BTreeMap;

use roster_runtime::telemetry::TraceContext;

use crate::domain::outbox::OutboxEmail;
use crate::store::{AccountRecord, ProfileRecord};

/// An email of `template` to `profile`'s address, in its locale (English when it has none),
/// continuing the current trace.
pub fn to_profile(
    account: &AccountRecord,
    profile: &ProfileRecord,
    template: &str,
    variables: BTreeMap<String, String>,
) -> OutboxEmail {
    OutboxEmail {
        account_id: account.id,
        account_display_name: account.display_name.clone(),
        recipient: profile.profile.email.clone(),
        template: template.to_owned(),
        locale: profile
            .profile
            .locale
            .clone()
            .unwrap_or_else(|| "en".to_owned()),
        variables,
        trace_context: TraceContext::current(),
    }
}

/// The `welcome` email of a new profile: its first name and the username it signs in with.
pub fn welcome(account: &AccountRecord, profile: &ProfileRecord) -> OutboxEmail {
    let variables = BTreeMap::from([
        ("first_name".to_owned(), profile.profile.first_name.clone()),
        ("username".to_owned(), profile.profile.username.clone()),
    ]);
    to_profile(account, profile, "welcome", variables)
}
