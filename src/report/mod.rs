//! Typed report parsers. PURE: bytes (or a reader over bytes) in, typed
//! reports or typed errors out. No IO beyond the reader handed in, no clock.

pub mod aggregate;
pub mod failure;
mod keyword;
pub mod tlsrpt;

pub use aggregate::AggregateReport;
pub use failure::FailureReport;
pub use tlsrpt::TlsReport;

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
