//! The emails identity asks NotificationService to send, built from the account and profile
//! they concern. They are written to the outbox in the transaction of the change that causes
//! them, and the relay hands them over later (see [`crate::relay`]).

use std::collections::BTreeMap;

use roster_runtime::telemetry::TraceContext;

use crate::domain::account::Account;
use crate::domain::outbox::OutboxEmail;
use crate::domain::profile::Profile;

/// An email of `template` to `profile`'s address, in its locale (English when it has none),
/// continuing the current trace.
pub fn to_profile(
    account: &Account,
    profile: &Profile,
    template: &str,
    variables: BTreeMap<String, String>,
) -> OutboxEmail {
    OutboxEmail {
        account_id: account.id.0,
        account_display_name: account.display_name.clone(),
        recipient: profile.email.clone(),
        template: template.to_owned(),
        locale: profile.locale.clone().unwrap_or_else(|| "en".to_owned()),
        variables,
        trace_context: TraceContext::current(),
    }
}

/// The `welcome` email of a new profile: its first name and the username it signs in with.
pub fn welcome(account: &Account, profile: &Profile) -> OutboxEmail {
    let variables = BTreeMap::from([
        ("first_name".to_owned(), profile.first_name.clone()),
        ("username".to_owned(), profile.username.clone()),
    ]);
    to_profile(account, profile, "welcome", variables)
}
