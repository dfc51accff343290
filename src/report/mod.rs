//! Typed report parsers. PURE: bytes (or a reader over bytes) in, typed
//! reports or typed errors out. No IO beyond the reader handed in, no clock.

pub mod aggregate;
pub mod encoded_words;
pub mod failure;
mod keyword;
mod text;
pub mod tlsrpt;

pub use aggregate::AggregateReport;
pub use failure::FailureReport;
pub use tlsrpt::TlsReport;

pub(crate) use text::strip_controls;

use serde::Serialize;

/// Any report dmarcd understands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Aggregate(AggregateReport),
    Tlsrpt(TlsReport),
    Failure(FailureReport),
}

impl Report {
    /// The short name used in JSON output, logs and the database.
    pub fn kind(&self) -> &'static str {
        match self {
            Report::Aggregate(_) => "aggregate",
            Report::Tlsrpt(_) => "tlsrpt",
            Report::Failure(_) => "failure",
        }
    }
}

/// Bounds on what one report may hold, so that a hostile report fails with
/// an error naming the limit instead of taking the memory of the process.
/// Configured in `[decode]` (see `decode::Limits`, which carries the same
/// fields and their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Records in one aggregate report.
    pub max_aggregate_records: u64,
    /// Policies in one TLS report.
    pub max_tls_policies: u64,
    /// Failure details under one policy of a TLS report.
    pub max_tls_failure_details: u64,
    /// Bytes of one JSON string (as written, escapes included).
    pub max_json_string_bytes: u64,
    /// Bytes of one TLS report's JSON document.
    pub max_tlsrpt_json_bytes: u64,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_aggregate_records: 2_000_000,
            max_tls_policies: 1_000,
            max_tls_failure_details: 100_000,
            max_json_string_bytes: 64 * 1024,
            max_tlsrpt_json_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Unix seconds as a time a calendar (and every database) can hold: from
/// 1970 to the end of year 9999. Anything else in a report is a typo or an
/// attack, and cannot be stored.
pub fn calendar_time(seconds: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(seconds, 0).filter(|time| time.timestamp() < 253_402_300_800)
}
