//! Any bytes as aggregate report XML.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dmarcd::report::aggregate::parse_bytes(data);
});
