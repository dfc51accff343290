//! Reports turned into column values, shared by both backends.

use chrono::{DateTime, Utc};

use crate::report::aggregate::{AggregateReport, Record};

/// Unix seconds as a timestamp both databases can hold.
pub(super) fn timestamp(seconds: i64, what: &str) -> Result<DateTime<Utc>, String> {
    crate::report::calendar_time(seconds)
        .ok_or_else(|| format!("{what} {seconds} is not a usable date"))
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

fn keyword<T: std::fmt::Display>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(ToString::to_string)
}

/// The report-level values of an aggregate report.
pub(super) struct AggregateRow {
    pub begin: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub schema: String,
    pub adkim: Option<String>,
    pub aspf: Option<String>,
    pub p: Option<String>,
    pub sp: Option<String>,
    pub np: Option<String>,
    pub extensions_json: String,
    pub warnings_json: String,
    pub message_count: i64,
}

impl AggregateRow {
    pub(super) fn new(report: &AggregateReport) -> Result<Self, String> {
        let policy = &report.policy_published;
        Ok(AggregateRow {
            begin: timestamp(report.metadata.begin, "date_range begin")?,
            end: timestamp(report.metadata.end, "date_range end")?,
            schema: json(&report.schema).trim_matches('"').to_string(),
            adkim: keyword(&policy.adkim),
            aspf: keyword(&policy.aspf),
            p: keyword(&policy.p),
            sp: keyword(&policy.sp),
            np: keyword(&policy.np),
            extensions_json: json(&report.extensions),
            warnings_json: json(&report.warnings),
            message_count: i64::try_from(report.message_count()).unwrap_or(i64::MAX),
        })
    }
}

/// The records of a report, column by column (PostgreSQL binds each column
/// as one array; SQLite walks them row by row).
#[derive(Default)]
pub(super) struct RecordColumns {
    pub source_ip: Vec<Option<String>>,
    pub invalid_source_ip: Vec<Option<String>>,
    pub count: Vec<i64>,
    pub disposition: Vec<Option<String>>,
    pub dkim_aligned: Vec<Option<String>>,
    pub spf_aligned: Vec<Option<String>>,
    pub dmarc_pass: Vec<bool>,
    pub reasons: Vec<String>,
    pub header_from: Vec<Option<String>>,
    pub envelope_from: Vec<Option<String>>,
    pub envelope_to: Vec<Option<String>>,
    pub dkim_results: Vec<String>,
    pub spf_results: Vec<String>,
    pub extensions: Vec<String>,
}

impl RecordColumns {
    pub(super) fn new(records: &[Record]) -> Self {
        let mut columns = RecordColumns::default();
        for record in records {
            let evaluated = &record.policy_evaluated;
            columns
                .source_ip
                .push(record.source_ip.map(|ip| ip.to_string()));
            columns
                .invalid_source_ip
                .push(record.invalid_source_ip.as_deref().map(str::to_string));
            columns
                .count
                .push(i64::try_from(record.count).unwrap_or(i64::MAX));
            columns.disposition.push(keyword(&evaluated.disposition));
            columns.dkim_aligned.push(keyword(&evaluated.dkim));
            columns.spf_aligned.push(keyword(&evaluated.spf));
            columns.dmarc_pass.push(record.dmarc_pass());
            columns.reasons.push(json(&evaluated.reasons));
            columns.header_from.push(
                record
                    .identifiers
                    .header_from
                    .as_deref()
                    .map(str::to_string),
            );
            columns.envelope_from.push(
                record
                    .identifiers
                    .envelope_from
                    .as_deref()
                    .map(str::to_string),
            );
            columns.envelope_to.push(
                record
                    .identifiers
                    .envelope_to
                    .as_deref()
                    .map(str::to_string),
            );
            columns.dkim_results.push(json(&record.auth_results.dkim));
            columns.spf_results.push(json(&record.auth_results.spf));
            columns.extensions.push(json(&record.extensions));
        }
        columns
    }

    pub(super) fn len(&self) -> usize {
        self.count.len()
    }
}

/// Bytes per row of `inbox_raw`.
pub(super) const RAW_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Chunks in (message, seq) order → whole messages.
pub(super) fn join_chunks(chunks: Vec<(i64, Vec<u8>)>) -> std::collections::HashMap<i64, Vec<u8>> {
    let mut messages: std::collections::HashMap<i64, Vec<u8>> = std::collections::HashMap::new();
    for (id, chunk) in chunks {
        let message = messages.entry(id).or_default();
        if message.is_empty() {
            *message = chunk;
        } else {
            message.extend_from_slice(&chunk);
        }
    }
    messages
}
