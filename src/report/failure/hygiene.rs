//! Control characters out of every text field of a failure report, with a
//! warning naming each field they were removed from.

use super::{DeliveryResult, FailureReport};
use crate::report::text::strip_controls_in_place;

pub(super) fn remove_control_characters(report: &mut FailureReport) {
    let mut cleaned: Vec<String> = Vec::new();
    let mut text = |name: &str, value: &mut String| {
        if strip_controls_in_place(value) && !cleaned.iter().any(|seen| seen == name) {
            cleaned.push(name.to_string());
        }
    };
    let optional = [
        ("feedback_type", &mut report.feedback_type),
        ("version", &mut report.version),
        ("user_agent", &mut report.user_agent),
        ("identity_alignment", &mut report.identity_alignment),
        ("arrival_date_raw", &mut report.arrival_date_raw),
        ("reporting_mta", &mut report.reporting_mta),
        ("original_envelope_id", &mut report.original_envelope_id),
        ("original_mail_from", &mut report.original_mail_from),
        ("dkim_domain", &mut report.dkim_domain),
        ("dkim_identity", &mut report.dkim_identity),
        ("dkim_selector", &mut report.dkim_selector),
        ("dkim_selector_dns", &mut report.dkim_selector_dns),
        ("report_subject", &mut report.report_subject),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            text(name, value);
        }
    }
    let lists = [
        ("auth_failure", &mut report.auth_failure),
        ("original_rcpt_to", &mut report.original_rcpt_to),
        ("reported_domain", &mut report.reported_domain),
        ("reported_uri", &mut report.reported_uri),
        ("authentication_results", &mut report.authentication_results),
        ("spf_dns", &mut report.spf_dns),
    ];
    for (name, values) in lists {
        for value in values.iter_mut() {
            text(name, value);
        }
    }
    for (field, value) in &mut report.other_fields {
        text("other_fields", field);
        text("other_fields", value);
    }
    if let Some(DeliveryResult::Unknown(raw)) = &mut report.delivery_result {
        text("delivery_result", raw);
    }
    if let Some(original) = &mut report.original {
        let headers = [
            ("original.from", &mut original.from),
            ("original.to", &mut original.to),
            ("original.subject", &mut original.subject),
            ("original.message_id", &mut original.message_id),
        ];
        for (name, value) in headers {
            if let Some(value) = value {
                text(name, value);
            }
        }
    }
    for name in cleaned {
        report
            .warnings
            .push(format!("removed control characters from {name}"));
    }
}
