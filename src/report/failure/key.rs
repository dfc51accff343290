//! The key under which a failure report is stored once. PURE, so that
//! both storage backends store the same value for the same report.

use super::FailureReport;

/// A SHA-256 (hex) of what identifies one failure: the reported domain,
/// the source IP, the arrival date and the original message's Message-ID.
/// Without a Message-ID, a hash of the original's headers and the ARF
/// fields that describe the failed delivery stand in for it.
///
/// The same report received twice (by SMTP, then imported from a mailbox
/// backup, where the transport headers differ) gives the same key; so do
/// the CRLF and LF copies of one report.
pub fn dedupe_key(report: &FailureReport) -> String {
    let mut domains: Vec<String> = report
        .reported_domain
        .iter()
        .map(|domain| domain.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    domains.sort();
    domains.dedup();
    let source_ip = report
        .source_ip
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let arrival = match (report.arrival_date, &report.arrival_date_raw) {
        (Some(date), _) => date.timestamp().to_string(),
        (None, Some(raw)) => raw.trim().to_string(),
        (None, None) => String::new(),
    };
    let message_id = report
        .original
        .as_ref()
        .and_then(|original| original.message_id.as_deref())
        .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|id| !id.is_empty());
    let original = match message_id {
        Some(id) => format!("message-id {id}"),
        None => format!("headers {}", hex_sha256(&stand_in_for_message_id(report))),
    };
    let material = format!(
        "failure-report v1\n{}\n{source_ip}\n{arrival}\n{original}",
        domains.join(",")
    );
    hex_sha256(&material)
}

fn stand_in_for_message_id(report: &FailureReport) -> String {
    let mut lines = Vec::new();
    if let Some(original) = &report.original {
        for value in [&original.from, &original.to, &original.subject] {
            lines.push(value.as_deref().unwrap_or_default().trim().to_string());
        }
        lines.push(
            original
                .date
                .map(|d| d.timestamp().to_string())
                .unwrap_or_default(),
        );
    }
    for value in [&report.original_mail_from, &report.original_envelope_id] {
        lines.push(value.as_deref().unwrap_or_default().trim().to_string());
    }
    lines.push(report.original_rcpt_to.join(","));
    lines.push(report.authentication_results.join("\n"));
    lines.join("\n")
}

fn hex_sha256(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
