//! Any bytes as TLS-RPT JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dmarcd::report::tlsrpt::parse_bytes(data);
});
