//! DMARC failure (forensic, "ruf") reports: ARF (RFC 5965) with the
//! auth-failure extension (RFC 6591) and the DMARC fields of RFC 7489 §7.3 /
//! RFC 9991, plus the plain-text variant some Exim/cPanel gateways send
//! instead of an ARF part.
//!
//! A failure report is any message with a `message/feedback-report` part,
//! whatever the enclosing multipart type or transfer encoding (NetEase sends
//! it base64-encoded inside `multipart/mixed`), or the Exim text pattern.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::Serialize;

use super::keyword::keyword_enum;

mod hygiene;
mod key;
mod redact;

pub use key::dedupe_key;
pub use redact::{redact_addresses, REDACTED};

keyword_enum!(
    /// `Delivery-Result` (RFC 6591 §3.2). Non-standard values such as
    /// Symantec's `smg-policy-action` are kept as sent.
    DeliveryResult {
        Delivered => "delivered", Spam => "spam", Policy => "policy",
        Reject => "reject", Other => "other",
    }
);

/// How the report was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureFormat {
    /// A `message/feedback-report` part (RFC 5965).
    Arf,
    /// Exim-style plain text: "A message claiming to be from you has failed…".
    PlainText,
}

/// One failure report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureReport {
    pub format: FailureFormat,
    pub feedback_type: Option<String>,
    pub version: Option<String>,
    pub user_agent: Option<String>,
    /// `Auth-Failure` values, lower-cased, comments removed (`dmarc`, `spf`…).
    pub auth_failure: Vec<String>,
    /// `Identity-Alignment` as written (its meaning differs between RFC 7489
    /// and RFC 9991, so it is not interpreted).
    pub identity_alignment: Option<String>,
    pub delivery_result: Option<DeliveryResult>,
    /// `Arrival-Date` (or its historic alias `Received-Date`) in UTC.
    pub arrival_date: Option<DateTime<Utc>>,
    pub arrival_date_raw: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub source_port: Option<u16>,
    pub reporting_mta: Option<String>,
    pub original_envelope_id: Option<String>,
    pub original_mail_from: Option<String>,
    pub original_rcpt_to: Vec<String>,
    pub reported_domain: Vec<String>,
    pub reported_uri: Vec<String>,
    pub authentication_results: Vec<String>,
    pub incidents: Option<u32>,
    pub dkim_domain: Option<String>,
    pub dkim_identity: Option<String>,
    pub dkim_selector: Option<String>,
    pub dkim_selector_dns: Option<String>,
    pub spf_dns: Vec<String>,
    /// Every other field of the report part, in order, as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_fields: Vec<(String, String)>,
    /// The subject of the report message itself.
    pub report_subject: Option<String>,
    /// The failed message (or its headers), when the report includes it.
    pub original: Option<OriginalMessage>,
    /// What the parser had to tolerate (control characters…). Empty for a
    /// clean report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Whether `redact` took the local parts of its addresses away
    /// (`retention.redact_failure_reports`): the store then keeps no raw
    /// copy of the message either.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// Headers of the message that failed DMARC.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OriginalMessage {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub date: Option<DateTime<Utc>>,
    /// True when only the header block was included (`text/rfc822-headers`
    /// or the Exim header copy).
    pub headers_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FailureError {
    #[error("not an email message: no header fields found")]
    NotAnEmail,
    #[error("not a DMARC failure report: no message/feedback-report part and no recognised plain-text report")]
    NoFeedbackReport,
    /// An ARF report of another kind (RFC 5965 `abuse`, `fraud`, …) that
    /// says nothing a DMARC failure report would: no source IP, no domain.
    #[error("not a DMARC failure report: an ARF report of feedback type {feedback_type:?} that names no source IP and no reported domain")]
    NotDmarcFailure { feedback_type: String },
}

/// Parses a failure report from the raw bytes of the report email.
pub fn parse_bytes(raw: &[u8]) -> Result<FailureReport, FailureError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(FailureError::NotAnEmail)?;
    parse_message(&message)
}

/// Parses a failure report from an already parsed email.
pub fn parse_message(message: &Message<'_>) -> Result<FailureReport, FailureError> {
    let subject = message.subject().map(str::to_string);
    let mut report = if let Some(fields) = feedback_part(message) {
        let mut report = from_arf_fields(&parse_fields(fields));
        report.original = original_message(message);
        if !is_dmarc_failure(&report) {
            return Err(FailureError::NotDmarcFailure {
                feedback_type: report.feedback_type.unwrap_or_default(),
            });
        }
        report
    } else if let Some(text) = plain_text_report(message) {
        from_plain_text(&text)
    } else {
        return Err(FailureError::NoFeedbackReport);
    };
    report.report_subject = subject;
    hygiene::remove_control_characters(&mut report);
    Ok(report)
}

/// RFC 6591 `auth-failure` (and the `dmarc` some reporters write) is a
/// failure report; another feedback type still is when it names what a
/// failure report names (a source IP or a reported domain). An `abuse`
/// complaint that names neither is mail to the wrong address.
fn is_dmarc_failure(report: &FailureReport) -> bool {
    let failure_type = matches!(
        report.feedback_type.as_deref(),
        None | Some("auth-failure" | "dmarc")
    );
    failure_type || report.source_ip.is_some() || !report.reported_domain.is_empty()
}

/// True when the message carries a failure report in either form.
pub fn is_failure_report(message: &Message<'_>) -> bool {
    feedback_part(message).is_some() || plain_text_report(message).is_some()
}

fn is_type(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|content_type| {
        content_type.ctype().eq_ignore_ascii_case(ctype)
            && content_type
                .subtype()
                .is_some_and(|subtype| subtypes.iter().any(|s| subtype.eq_ignore_ascii_case(s)))
    })
}

fn feedback_part<'a>(message: &'a Message<'_>) -> Option<&'a [u8]> {
    message
        .parts
        .iter()
        .find(|part| is_type(part, "message", &["feedback-report"]))
        .map(|part| part.contents())
}

/// The Exim/cPanel text, recognised by its fixed wording and fields.
fn plain_text_report(message: &Message<'_>) -> Option<String> {
    message.parts.iter().find_map(|part| match &part.body {
        PartType::Text(text)
            if text.contains("failed the published DMARC policy")
                && text.contains("Sender IP Address:") =>
        {
            Some(text.to_string())
        }
        _ => None,
    })
}

/// Header-style `Name: value` fields with folded lines joined, in order.
fn parse_fields(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                fields.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
    fields
}

fn from_arf_fields(fields: &[(String, String)]) -> FailureReport {
    let mut report = empty_report(FailureFormat::Arf);
    for (name, value) in fields {
        let value_opt = (!value.is_empty()).then(|| value.clone());
        match name.to_ascii_lowercase().as_str() {
            "feedback-type" => report.feedback_type = value_opt.map(|v| v.to_ascii_lowercase()),
            "version" => report.version = value_opt,
            "user-agent" => report.user_agent = value_opt,
            "auth-failure" => report.auth_failure.extend(auth_failure_values(value)),
            "identity-alignment" => report.identity_alignment = value_opt,
            "delivery-result" => {
                report.delivery_result = value_opt.map(|v| DeliveryResult::parse(&v))
            }
            "arrival-date" | "received-date" => {
                report.arrival_date = parse_date(value);
                report.arrival_date_raw = value_opt;
            }
            // parsedmarc and others take the first token: some reporters
            // append text after the address.
            "source-ip" => {
                report.source_ip = value
                    .split_whitespace()
                    .next()
                    .and_then(|ip| ip.parse().ok())
            }
            "source-port" => report.source_port = value.parse().ok(),
            "reporting-mta" => report.reporting_mta = value_opt,
            "original-envelope-id" => report.original_envelope_id = value_opt,
            "original-mail-from" => report.original_mail_from = value_opt,
            "original-rcpt-to" => report.original_rcpt_to.extend(value_opt),
            "reported-domain" => report.reported_domain.extend(value_opt),
            "reported-uri" => report.reported_uri.extend(value_opt),
            "authentication-results" => report.authentication_results.extend(value_opt),
            "incidents" => report.incidents = value.parse().ok(),
            "dkim-domain" => report.dkim_domain = value_opt,
            "dkim-identity" => report.dkim_identity = value_opt,
            "dkim-selector" => report.dkim_selector = value_opt,
            "dkim-selector-dns" => report.dkim_selector_dns = value_opt,
            "spf-dns" => report.spf_dns.extend(value_opt),
            _ => report.other_fields.push((name.clone(), value.clone())),
        }
    }
    report
}

/// `Auth-Failure: adsp (not signed)` → `["adsp"]`; a list is split on commas.
fn auth_failure_values(value: &str) -> Vec<String> {
    let without_comments = strip_comments(value);
    without_comments
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

fn strip_comments(value: &str) -> String {
    let mut depth = 0usize;
    value
        .chars()
        .filter(|&character| match character {
            '(' => {
                depth += 1;
                false
            }
            ')' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

/// An RFC 5322 date, read as leniently as mail clients read them.
fn parse_date(value: &str) -> Option<DateTime<Utc>> {
    let header = format!("Date: {}\r\n\r\n", value.trim());
    let message = MessageParser::default().parse_headers(header.as_bytes())?;
    let timestamp = message.date()?.to_timestamp();
    DateTime::from_timestamp(timestamp, 0)
}

fn original_message(message: &Message<'_>) -> Option<OriginalMessage> {
    for part in &message.parts {
        if let PartType::Message(original) = &part.body {
            return Some(headers_of(original, false));
        }
        let headers_only = is_type(
            part,
            "text",
            &["rfc822-headers", "rfc-822-headers", "rfc822", "rfc-822"],
        ) || is_type(
            part,
            "message",
            &["rfc822-headers", "rfc-822", "rfc-822-headers"],
        );
        if headers_only {
            let parsed = MessageParser::default().parse_headers(part.contents())?;
            return Some(headers_of(&parsed, true));
        }
    }
    None
}

fn headers_of(message: &Message<'_>, headers_only: bool) -> OriginalMessage {
    OriginalMessage {
        from: message.header_raw("From").map(|v| v.trim().to_string()),
        to: message.header_raw("To").map(|v| v.trim().to_string()),
        subject: message.subject().map(str::to_string),
        message_id: message.message_id().map(str::to_string),
        date: message
            .date()
            .and_then(|date| DateTime::from_timestamp(date.to_timestamp(), 0)),
        headers_only,
    }
}

/// The Exim text: a few `Name: value` lines, then "This is a copy of the
/// headers…" and the original message's header block.
fn from_plain_text(text: &str) -> FailureReport {
    let mut report = empty_report(FailureFormat::PlainText);
    report.feedback_type = Some("auth-failure".to_string());
    report.auth_failure = vec!["dmarc".to_string()];
    let (summary, copied_headers) = match text.find("This is a copy of the headers") {
        Some(position) => {
            let rest = &text[position..];
            let headers = rest.split_once('\n').map_or("", |(_, headers)| headers);
            (
                &text[..position],
                Some(headers.trim_start_matches(['\r', '\n'])),
            )
        }
        None => (text, None),
    };
    for line in summary.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "sender domain" => report.reported_domain.push(value.to_string()),
            "sender ip address" => report.source_ip = value.parse().ok(),
            "received date" => {
                report.arrival_date = parse_date(value);
                report.arrival_date_raw = Some(value.to_string());
            }
            _ => report
                .other_fields
                .push((name.trim().to_string(), value.to_string())),
        }
    }
    if let Some(headers) = copied_headers {
        if let Some(parsed) = MessageParser::default().parse_headers(headers.as_bytes()) {
            report.original = Some(headers_of(&parsed, true));
        }
    }
    report
}

fn empty_report(format: FailureFormat) -> FailureReport {
    FailureReport {
        format,
        feedback_type: None,
        version: None,
        user_agent: None,
        auth_failure: Vec::new(),
        identity_alignment: None,
        delivery_result: None,
        arrival_date: None,
        arrival_date_raw: None,
        source_ip: None,
        source_port: None,
        reporting_mta: None,
        original_envelope_id: None,
        original_mail_from: None,
        original_rcpt_to: Vec::new(),
        reported_domain: Vec::new(),
        reported_uri: Vec::new(),
        authentication_results: Vec::new(),
        incidents: None,
        dkim_domain: None,
        dkim_identity: None,
        dkim_selector: None,
        dkim_selector_dns: None,
        spf_dns: Vec::new(),
        other_fields: Vec::new(),
        report_subject: None,
        original: None,
        warnings: Vec::new(),
        redacted: false,
    }
}
