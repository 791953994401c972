//! A moved TLS session's state, as the next generation decodes it: any
//! bytes decode or are refused, and one that decodes encodes back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gracedown::fuzzing::tls_session_state(data);
});
