//! SMTP TLS reports (RFC 8460 §4): one JSON object per report.
//!
//! Streamed (`read.rs`) so that memory follows what is kept, within the
//! limits, whatever the document holds; every error names its JSON pointer.
//! The shapes real senders use are accepted: `mx-host` and `policy-string`
//! as a string (the RFC's own example) or an array (Google), optional
//! fields missing or `null` (Mail.ru omits IPs and host names), counts
//! quoted as strings, a UTF-8 byte order mark, counts and `policy-domain`
//! left out (read as 0 and as the domain the report was sent for, with a
//! warning), and result types not yet registered (kept verbatim).

mod convert;
mod guard;
mod read;

use std::io::Read;

use chrono::{DateTime, Utc};
use serde::de::DeserializeSeed;
use serde::Serialize;
use serde_json::{Map, Value};

use super::keyword::keyword_enum;
use crate::report::ParseLimits;

keyword_enum!(
    /// `policy-type`: which policy the sender applied.
    PolicyType { Sts => "sts", Tlsa => "tlsa", NoPolicyFound => "no-policy-found" }
);

keyword_enum!(
    /// `result-type` (IANA "STARTTLS Validation Result Types").
    ResultType {
        StarttlsNotSupported => "starttls-not-supported",
        CertificateHostMismatch => "certificate-host-mismatch",
        CertificateExpired => "certificate-expired",
        CertificateNotTrusted => "certificate-not-trusted",
        ValidationFailure => "validation-failure",
        TlsaInvalid => "tlsa-invalid",
        DnssecInvalid => "dnssec-invalid",
        DaneRequired => "dane-required",
        StsPolicyFetchError => "sts-policy-fetch-error",
        StsPolicyInvalid => "sts-policy-invalid",
        StsWebpkiInvalid => "sts-webpki-invalid",
    }
);

/// One SMTP TLS report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsReport {
    pub organization_name: String,
    pub begin: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub contact_info: Option<String>,
    pub report_id: String,
    pub policies: Vec<TlsPolicyResult>,
    /// What the parser had to tolerate (missing counts, a missing policy
    /// domain, control characters…). Empty for a clean report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The sessions counted under one applied policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsPolicyResult {
    pub policy_type: PolicyType,
    /// `None` when the report names none and the domain it was sent for is
    /// not known either.
    pub policy_domain: Option<String>,
    pub policy_strings: Vec<String>,
    pub mx_hosts: Vec<String>,
    pub successful_sessions: u64,
    pub failed_sessions: u64,
    pub failure_details: Vec<FailureDetail>,
}

/// One kind of failure. Failure kinds overlap, so their counts may add up to
/// more than `failed_sessions` (RFC 8460 §4.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureDetail {
    pub result_type: ResultType,
    pub sending_mta_ip: Option<String>,
    pub receiving_mx_hostname: Option<String>,
    pub receiving_mx_helo: Option<String>,
    pub receiving_ip: Option<String>,
    pub failed_sessions: u64,
    pub additional_information: Option<String>,
    pub failure_reason_code: Option<String>,
}

/// What is wrong with a TLS report, and where (a JSON pointer).
#[derive(Debug, thiserror::Error)]
pub enum TlsRptError {
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON, but none of `organization-name`, `report-id`,
    /// `date-range` and `policies`: some other JSON file, not a report.
    #[error("not a TLS report: the JSON has none of organization-name, report-id, date-range and policies")]
    NotATlsReport,
    #[error("{pointer}: missing required field")]
    Missing { pointer: String },
    #[error("{pointer}: expected {expected}, found {found}")]
    WrongType {
        pointer: String,
        expected: &'static str,
        found: String,
    },
    #[error("{pointer}: {value:?} is not an RFC 3339 date-time")]
    BadDate { pointer: String, value: String },
    #[error("{pointer}: more than {limit} {what} (limit {setting})")]
    TooMany {
        pointer: String,
        what: &'static str,
        limit: u64,
        setting: &'static str,
    },
    #[error("a JSON string longer than {limit} bytes at byte {position} (limit decode.max_json_string_bytes)")]
    StringTooLong { limit: u64, position: u64 },
    #[error("the JSON document is larger than {limit} bytes (limit decode.max_tlsrpt_json_bytes)")]
    TooLarge { limit: u64 },
}

/// Parses a TLS report from JSON text, with the default limits.
pub fn parse<R: Read>(input: R) -> Result<TlsReport, TlsRptError> {
    parse_with(input, &ParseLimits::default(), None)
}

/// Parses a TLS report held in memory.
pub fn parse_bytes(input: &[u8]) -> Result<TlsReport, TlsRptError> {
    parse(input)
}

/// Parses a TLS report from JSON text. `domain_hint` is the domain the
/// report was sent for (from its email or file name), used for a policy
/// that names no `policy-domain`.
pub fn parse_with<R: Read>(
    mut input: R,
    limits: &ParseLimits,
    domain_hint: Option<&str>,
) -> Result<TlsReport, TlsRptError> {
    // JSON has no byte order mark (RFC 8259 §8.1), but some senders write one.
    let mut head = Vec::with_capacity(3);
    (&mut input)
        .take(3)
        .read_to_end(&mut head)
        .map_err(|error| io_error(&error))?;
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head).to_vec();
    let guard = guard::JsonGuard::new(std::io::Cursor::new(head).chain(input), limits);
    let stopped = std::rc::Rc::clone(&guard.failure);
    let mut deserializer = serde_json::Deserializer::from_reader(std::io::BufReader::new(guard));
    let mut ctx = read::Ctx::new(limits, domain_hint);
    let root = read::RootSeed { ctx: &mut ctx }
        .deserialize(&mut deserializer)
        .and_then(|root| deserializer.end().map(|()| root));
    let root = match root {
        Ok(root) => root,
        Err(error) => {
            let limit = stopped.borrow_mut().take();
            return Err(limit
                .or(ctx.failure.take())
                .unwrap_or_else(|| json_error(&error)));
        }
    };
    match root {
        read::Root::Object(root) if root.named_fields > 0 => convert::report(&mut ctx, root),
        _ => Err(TlsRptError::NotATlsReport),
    }
}

fn json_error(error: &serde_json::Error) -> TlsRptError {
    TlsRptError::Json {
        line: error.line(),
        column: error.column(),
        message: error.to_string(),
    }
}

fn io_error(error: &std::io::Error) -> TlsRptError {
    TlsRptError::Json {
        line: 1,
        column: 0,
        message: format!("reading failed: {error}"),
    }
}

impl TlsReport {
    /// The report as RFC 8460 JSON (used by tests and benchmarks).
    pub fn to_json(&self) -> Value {
        let policies: Vec<Value> = self
            .policies
            .iter()
            .map(|policy| {
                let mut entry = serde_json::json!({
                    "policy": {
                        "policy-type": policy.policy_type.as_str(),
                    },
                    "summary": {
                        "total-successful-session-count": policy.successful_sessions,
                        "total-failure-session-count": policy.failed_sessions,
                    },
                });
                if let Some(domain) = &policy.policy_domain {
                    entry["policy"]["policy-domain"] = Value::String(domain.clone());
                }
                if !policy.policy_strings.is_empty() {
                    entry["policy"]["policy-string"] = serde_json::json!(policy.policy_strings);
                }
                if !policy.mx_hosts.is_empty() {
                    entry["policy"]["mx-host"] = serde_json::json!(policy.mx_hosts);
                }
                if !policy.failure_details.is_empty() {
                    let details: Vec<Value> = policy
                        .failure_details
                        .iter()
                        .map(FailureDetail::to_json)
                        .collect();
                    entry["failure-details"] = Value::Array(details);
                }
                entry
            })
            .collect();
        let mut report = serde_json::json!({
            "organization-name": self.organization_name,
            "date-range": {
                "start-datetime": self.begin.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "end-datetime": self.end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            },
            "report-id": self.report_id,
            "policies": policies,
        });
        if let Some(contact) = &self.contact_info {
            report["contact-info"] = Value::String(contact.clone());
        }
        report
    }
}

impl FailureDetail {
    fn to_json(&self) -> Value {
        let mut detail = Map::new();
        detail.insert("result-type".into(), self.result_type.as_str().into());
        let optional = [
            ("sending-mta-ip", &self.sending_mta_ip),
            ("receiving-mx-hostname", &self.receiving_mx_hostname),
            ("receiving-mx-helo", &self.receiving_mx_helo),
            ("receiving-ip", &self.receiving_ip),
            ("additional-information", &self.additional_information),
            ("failure-reason-code", &self.failure_reason_code),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                detail.insert(key.into(), value.clone().into());
            }
        }
        detail.insert("failed-session-count".into(), self.failed_sessions.into());
        Value::Object(detail)
    }
}
