//! Any bytes as a failure-report email.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dmarcd::report::failure::parse_bytes(data);
});
