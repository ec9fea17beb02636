//! Password policy evaluation never panics, whatever the candidate and the personal data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_identity::domain::policy::{PasswordPolicy, Personal, Preset};

fuzz_target!(|input: (&str, &str, &str, bool)| {
    let (password, username, name, nist) = input;
    let policy = PasswordPolicy::from_preset(if nist { Preset::Nist } else { Preset::Default });
    let personal = Personal {
        username,
        first_name: name,
        last_name: name,
        email: username,
    };
    let _ = policy.check(password, personal);
});
