//! Email parsing never panics, and a parsed address parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_identity::domain::email::EmailAddress;

fuzz_target!(|input: &str| {
    if let Ok(email) = EmailAddress::parse(input) {
        let again = EmailAddress::parse(email.as_str()).expect("a parsed address parses");
        assert_eq!(again.as_str(), email.as_str());
    }
});
