//! Any bytes, as a file or an email: decoding and parsing must never panic,
//! hang or exceed the (small, for fuzzing) limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = dmarcd::Limits {
        max_decompressed_bytes: 8 * 1024 * 1024,
        max_container_bytes: 8 * 1024 * 1024,
        ..dmarcd::Limits::default()
    };
    let _ = dmarcd::extract_reports_from_bytes(data, "fuzz", &limits);
});
