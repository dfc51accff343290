//! Input bytes → reports: decode the containers, then parse each payload.
//! PURE, like the two layers it joins.

use std::io::Read;

use serde::Serialize;

use crate::decode::{self, DecodeError, Limits, Payload, PayloadFormat};
use crate::report::{aggregate, failure, tlsrpt, AggregateReport, Report};

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

impl ExtractError {
    /// True when the input holds no report at all (mail to a report
    /// address is not always a report): such a message is `ignored` with
    /// this reason, not `failed`.
    pub fn is_not_a_report(&self) -> bool {
        matches!(
            self,
            ExtractError::Decode(
                DecodeError::Empty { .. }
                    | DecodeError::Unrecognised { .. }
                    | DecodeError::NoReport { .. }
                    | DecodeError::NoReportInEmail { .. }
                    | DecodeError::NoReportInArchive { .. },
            ) | ExtractError::Aggregate {
                source: aggregate::AggregateError::EmptyReport { .. },
                ..
            } | ExtractError::TlsRpt {
                source: tlsrpt::TlsRptError::NotATlsReport,
                ..
            } | ExtractError::Failure {
                source: failure::FailureError::NotDmarcFailure { .. },
                ..
            }
        )
    }
}

/// Every report in `input` (a file or a whole email). Any payload that fails
/// to parse fails the input: a message is stored whole or kept as failed.
/// A payload that is no report (a JSON file beside the report, an empty
/// report) is passed over; if nothing else is found, why is the error.
pub fn extract_reports(
    input: &mut dyn Read,
    name: &str,
    limits: &Limits,
) -> Result<Vec<ExtractedReport>, ExtractError> {
    extract(input, name, limits, None)
}

/// Takes runs of an aggregate report's records as it is parsed: the
/// report's location and the report so far (header and this run's
/// records). An error ends the extraction (`ExtractError::Aggregate` with
/// `AggregateError::Sink`).
pub type RecordRuns<'a> = dyn FnMut(&str, AggregateReport) -> Result<(), String> + 'a;

/// `extract_reports`, handing aggregate records to `runs` in runs of at
/// least `run_records` as they are parsed (see `aggregate::parse_streaming`):
/// memory stays flat however many records a report holds. The reports
/// returned hold only the records after their last run.
pub fn extract_reports_streaming(
    input: &mut dyn Read,
    name: &str,
    limits: &Limits,
    run_records: usize,
    runs: &mut RecordRuns<'_>,
) -> Result<Vec<ExtractedReport>, ExtractError> {
    extract(input, name, limits, Some((runs, run_records)))
}

fn extract(
    input: &mut dyn Read,
    name: &str,
    limits: &Limits,
    mut runs: Option<(&mut RecordRuns<'_>, usize)>,
) -> Result<Vec<ExtractedReport>, ExtractError> {
    let mut reports = Vec::new();
    let mut not_a_report = None;
    decode::visit_payloads(input, name, limits, &mut |payload: Payload<'_>| {
        let location = payload.location.clone();
        match parse_payload(payload, limits, runs.as_mut()) {
            Ok(report) => reports.push(ExtractedReport { location, report }),
            Err(error) if error.is_not_a_report() => {
                not_a_report.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
        Ok::<(), ExtractError>(())
    })?;
    match not_a_report {
        Some(error) if reports.is_empty() => Err(error),
        _ => Ok(reports),
    }
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
    payload: Payload<'_>,
    limits: &Limits,
    runs: Option<&mut (&mut RecordRuns<'_>, usize)>,
) -> Result<Report, ExtractError> {
    let location = payload.location;
    let parse_limits = limits.parse_limits();
    let reader = payload.reader;
    match payload.format {
        PayloadFormat::AggregateXml => match runs {
            Some((runs, run_records)) => {
                let mut sink = |report: AggregateReport| runs(&location, report);
                aggregate::parse_streaming(reader, &parse_limits, *run_records, &mut sink)
            }
            None => aggregate::parse_with(reader, &parse_limits),
        }
        .map(Report::Aggregate)
        .map_err(|source| ExtractError::Aggregate { location, source }),
        PayloadFormat::TlsRptJson => {
            tlsrpt::parse_with(reader, &parse_limits, payload.domain_hint.as_deref())
                .map(Report::Tlsrpt)
                .map_err(|source| ExtractError::TlsRpt { location, source })
        }
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

/// Why reports that parsed cannot be stored (a date no calendar can hold),
/// decided before anything is written: the message fails with this reason.
pub fn unstorable(reports: &[ExtractedReport]) -> Option<String> {
    reports
        .iter()
        .find_map(|extracted| match &extracted.report {
            Report::Aggregate(report) => {
                let meta = &report.metadata;
                [
                    ("date_range begin", meta.begin),
                    ("date_range end", meta.end),
                ]
                .into_iter()
                .find(|(_, seconds)| crate::report::calendar_time(*seconds).is_none())
                .map(|(what, seconds)| {
                    format!(
                        "{}: {what} {seconds} is not a usable date",
                        extracted.location
                    )
                })
            }
            _ => None,
        })
}
