//! SMTP TLS reports (RFC 8460 §4): one JSON object per report.
//!
//! Read through `serde_json::Value` rather than derived structs so that every
//! error can name its JSON pointer, and so that the shapes real senders use
//! are accepted: `mx-host` as a string (the RFC's own example) or an array
//! (Google), optional fields missing or `null` (Mail.ru omits IPs and host
//! names), and result types not yet registered (kept verbatim).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::keyword::keyword_enum;

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
}

/// The sessions counted under one applied policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsPolicyResult {
    pub policy_type: PolicyType,
    pub policy_domain: String,
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
}

/// Parses a TLS report from JSON text.
pub fn parse<R: std::io::Read>(input: R) -> Result<TlsReport, TlsRptError> {
    let value: Value = serde_json::from_reader(input).map_err(|error| TlsRptError::Json {
        line: error.line(),
        column: error.column(),
        message: error.to_string(),
    })?;
    from_value(&value)
}

/// Parses a TLS report held in memory.
pub fn parse_bytes(input: &[u8]) -> Result<TlsReport, TlsRptError> {
    parse(input)
}

fn from_value(value: &Value) -> Result<TlsReport, TlsRptError> {
    let root = Object::new(value, String::new())?;
    let range = root.object("date-range")?;
    let policies = root.array("policies")?;
    let mut parsed = Vec::with_capacity(policies.len());
    for (index, policy) in policies.iter().enumerate() {
        let entry = Object::new(policy, format!("/policies/{index}"))?;
        parsed.push(policy_result(&entry)?);
    }
    Ok(TlsReport {
        organization_name: root.string("organization-name")?,
        begin: range.datetime("start-datetime")?,
        end: range.datetime("end-datetime")?,
        contact_info: root.optional_string("contact-info")?,
        report_id: root.string("report-id")?,
        policies: parsed,
    })
}

fn policy_result(entry: &Object<'_>) -> Result<TlsPolicyResult, TlsRptError> {
    let policy = entry.object("policy")?;
    let summary = entry.object("summary")?;
    let mut failure_details = Vec::new();
    if let Some(details) = entry.optional_array("failure-details")? {
        for (index, detail) in details.iter().enumerate() {
            let pointer = format!("{}/failure-details/{index}", entry.pointer);
            failure_details.push(failure_detail(&Object::new(detail, pointer)?)?);
        }
    }
    Ok(TlsPolicyResult {
        policy_type: PolicyType::parse(&policy.string("policy-type")?),
        policy_domain: policy.string("policy-domain")?,
        policy_strings: policy.string_list("policy-string")?,
        mx_hosts: policy.string_list("mx-host")?,
        successful_sessions: summary.count("total-successful-session-count")?,
        failed_sessions: summary.count("total-failure-session-count")?,
        failure_details,
    })
}

fn failure_detail(detail: &Object<'_>) -> Result<FailureDetail, TlsRptError> {
    Ok(FailureDetail {
        result_type: ResultType::parse(&detail.string("result-type")?),
        sending_mta_ip: detail.optional_string("sending-mta-ip")?,
        receiving_mx_hostname: detail.optional_string("receiving-mx-hostname")?,
        receiving_mx_helo: detail.optional_string("receiving-mx-helo")?,
        receiving_ip: detail.optional_string("receiving-ip")?,
        failed_sessions: detail.count("failed-session-count")?,
        additional_information: detail.optional_string("additional-information")?,
        failure_reason_code: detail.optional_string("failure-reason-code")?,
    })
}

/// A JSON object and the pointer it was found at, with typed accessors that
/// report errors by pointer.
struct Object<'a> {
    map: &'a Map<String, Value>,
    pointer: String,
}

impl<'a> Object<'a> {
    fn new(value: &'a Value, pointer: String) -> Result<Self, TlsRptError> {
        match value {
            Value::Object(map) => Ok(Object { map, pointer }),
            other => Err(wrong_type(&display_pointer(&pointer), "an object", other)),
        }
    }

    fn field_pointer(&self, key: &str) -> String {
        format!(
            "{}/{}",
            self.pointer,
            key.replace('~', "~0").replace('/', "~1")
        )
    }

    /// The field's value, `None` when absent or `null`.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value, TlsRptError> {
        self.get(key).ok_or_else(|| TlsRptError::Missing {
            pointer: self.field_pointer(key),
        })
    }

    fn object(&self, key: &str) -> Result<Object<'a>, TlsRptError> {
        Object::new(self.required(key)?, self.field_pointer(key))
    }

    fn array(&self, key: &str) -> Result<&'a Vec<Value>, TlsRptError> {
        match self.required(key)? {
            Value::Array(items) => Ok(items),
            other => Err(wrong_type(&self.field_pointer(key), "an array", other)),
        }
    }

    fn optional_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, TlsRptError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.array(key).map(Some),
        }
    }

    fn string(&self, key: &str) -> Result<String, TlsRptError> {
        match self.required(key)? {
            Value::String(text) => Ok(text.trim().to_string()),
            other => Err(wrong_type(&self.field_pointer(key), "a string", other)),
        }
    }

    fn optional_string(&self, key: &str) -> Result<Option<String>, TlsRptError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self
                .string(key)
                .map(|text| Some(text).filter(|t| !t.is_empty())),
        }
    }

    /// A string or an array of strings (RFC 8460's example writes `mx-host`
    /// as a string, its text and Google as an array).
    fn string_list(&self, key: &str) -> Result<Vec<String>, TlsRptError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(text)) => Ok(vec![text.trim().to_string()]),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(text) => Ok(text.trim().to_string()),
                    other => Err(wrong_type(
                        &format!("{}/{index}", self.field_pointer(key)),
                        "a string",
                        other,
                    )),
                })
                .collect(),
            Some(other) => Err(wrong_type(
                &self.field_pointer(key),
                "a string or an array of strings",
                other,
            )),
        }
    }

    fn count(&self, key: &str) -> Result<u64, TlsRptError> {
        let value = self.required(key)?;
        // Some generators quote numbers; a count is still a count.
        let parsed = match value {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| wrong_type(&self.field_pointer(key), "a non-negative integer", value))
    }

    fn datetime(&self, key: &str) -> Result<DateTime<Utc>, TlsRptError> {
        let text = self.string(key)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|parsed| parsed.with_timezone(&Utc))
            .map_err(|_| TlsRptError::BadDate {
                pointer: self.field_pointer(key),
                value: text,
            })
    }
}

fn display_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        "/".to_string()
    } else {
        pointer.to_string()
    }
}

fn wrong_type(pointer: &str, expected: &'static str, found: &Value) -> TlsRptError {
    let found = match found {
        Value::Null => "null".to_string(),
        Value::Bool(value) => format!("the boolean {value}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string {:?}", truncate(text, 60)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    };
    TlsRptError::WrongType {
        pointer: display_pointer(pointer),
        expected,
        found,
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
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
                        "policy-domain": policy.policy_domain,
                    },
                    "summary": {
                        "total-successful-session-count": policy.successful_sessions,
                        "total-failure-session-count": policy.failed_sessions,
                    },
                });
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
