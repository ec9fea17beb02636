//! Username canonicalisation never panics, and a canonical form is its own canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_identity::domain::username::Username;

fuzz_target!(|input: &str| {
    if let Ok(username) = Username::parse(input) {
        let again = Username::parse(username.canonical()).expect("a canonical form parses");
        assert_eq!(again.canonical(), username.canonical());
    }
});
