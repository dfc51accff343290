//! Input bytes → reports: decode the containers, then parse each payload.
//! PURE, like the two layers it joins.

use std::io::Read;

use serde::Serialize;

use crate::decode::{self, DecodeError, Limits, Payload, PayloadFormat};
use crate::report::{aggregate, failure, tlsrpt, Report};

/// A report and where in the input it was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractedReport {
    /// The input's name, then the container members leading to the report.
    pub location: String,
    #[serde(flatten)]
    pub report: Report,
}

/// Why an input yielded no usable report.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{location}: invalid DMARC aggregate report: {source}")]
    Aggregate {
        location: String,
        #[source]
        source: aggregate::AggregateError,
    },
    #[error("{location}: invalid SMTP TLS report: {source}")]
    TlsRpt {
        location: String,
        #[source]
        source: tlsrpt::TlsRptError,
    },
    #[error("{location}: invalid DMARC failure report: {source}")]
    Failure {
        location: String,
        #[source]
        source: failure::FailureError,
    },
    #[error("{location}: reading failed: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },
}

/// Every report in `input` (a file or a whole email). Any payload that fails
/// to parse fails the input: a message is stored whole or kept as failed.
pub fn extract_reports(
    input: &mut dyn Read,
    name: &str,
    limits: &Limits,
) -> Result<Vec<ExtractedReport>, ExtractError> {
    let mut reports = Vec::new();
    decode::visit_payloads(input, name, limits, &mut |payload: Payload<'_>| {
        let report = parse_payload(payload.format, payload.reader, &payload.location)?;
        reports.push(ExtractedReport {
            location: payload.location,
            report,
        });
        Ok::<(), ExtractError>(())
    })?;
    Ok(reports)
}

/// Every report in a byte slice.
pub fn extract_reports_from_bytes(
    input: &[u8],
    name: &str,
    limits: &Limits,
) -> Result<Vec<ExtractedReport>, ExtractError> {
    extract_reports(&mut &input[..], name, limits)
}

fn parse_payload(
    format: PayloadFormat,
    reader: &mut dyn std::io::BufRead,
    location: &str,
) -> Result<Report, ExtractError> {
    let location = location.to_string();
    match format {
        PayloadFormat::AggregateXml => aggregate::parse(reader)
            .map(Report::Aggregate)
            .map_err(|source| ExtractError::Aggregate { location, source }),
        PayloadFormat::TlsRptJson => tlsrpt::parse(reader)
            .map(Report::Tlsrpt)
            .map_err(|source| ExtractError::TlsRpt { location, source }),
        PayloadFormat::FailureEmail => {
            let mut raw = Vec::new();
            reader
                .read_to_end(&mut raw)
                .map_err(|source| ExtractError::Io {
                    location: location.clone(),
                    source,
                })?;
            failure::parse_bytes(&raw)
                .map(Report::Failure)
                .map_err(|source| ExtractError::Failure { location, source })
        }
    }
}
