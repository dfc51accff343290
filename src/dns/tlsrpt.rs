//! TLS-RPT records (`_smtp._tls.<domain>` TXT, RFC 8460 section 3) and
//! BIMI records (`default._bimi.<domain>` TXT, the BIMI draft).

use super::finding::{Finding, RecordKind};
use super::tags::{parse_tags, shorten, tag};

/// Whether a `_smtp._tls` TXT record is meant as TLS-RPT (section 3).
pub fn is_tlsrpt_record(text: &str) -> bool {
    text.trim_start().starts_with("v=TLSRPTv1")
}

/// The `rua=` targets of a TLS-RPT record (`mailto:` or `https:` URIs),
/// or an error finding.
pub fn parse_tlsrpt(text: &str) -> Result<Vec<String>, Finding> {
    const KIND: RecordKind = RecordKind::TlsRpt;
    let broken = |why: String| {
        Finding::error(
            KIND,
            "tls_rpt.syntax",
            format!("The TLS-RPT record {why}, so no TLS report is sent."),
        )
    };
    let tags = parse_tags(text).map_err(|problem| broken(format!("cannot be read ({problem})")))?;
    if tags.first().map(|t| (t.name.as_str(), t.value.as_str())) != Some(("v", "TLSRPTv1")) {
        return Err(broken("does not begin with v=TLSRPTv1".to_string()));
    }
    let rua = tag(&tags, "rua").ok_or_else(|| broken("has no rua=".to_string()))?;
    let targets: Vec<String> = rua
        .split(',')
        .map(str::trim)
        .filter(|uri| !uri.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = targets.iter().find(|uri| {
        let lower = uri.to_ascii_lowercase();
        !(lower.starts_with("mailto:") && uri.contains('@') || lower.starts_with("https://"))
    }) {
        return Err(broken(format!(
            "has rua target {}, which is neither mailto: nor https:",
            shorten(bad)
        )));
    }
    if targets.is_empty() {
        return Err(broken("has an empty rua=".to_string()));
    }
    Ok(targets)
}

/// Whether a `default._bimi` TXT record is meant as BIMI.
pub fn is_bimi_record(text: &str) -> bool {
    text.trim_start().starts_with("v=BIMI1")
}

/// Findings for a BIMI record: syntax, and that its logo and evidence
/// URLs are HTTPS (mailbox providers fetch nothing else).
pub fn bimi_findings(text: &str) -> Vec<Finding> {
    const KIND: RecordKind = RecordKind::Bimi;
    let tags = match parse_tags(text) {
        Ok(tags) => tags,
        Err(problem) => {
            return vec![Finding::error(
                KIND,
                "bimi.syntax",
                format!("The BIMI record cannot be read ({problem}), so no logo is shown."),
            )]
        }
    };
    if tags.first().map(|t| (t.name.as_str(), t.value.as_str())) != Some(("v", "BIMI1")) {
        return vec![Finding::error(
            KIND,
            "bimi.syntax",
            "The BIMI record does not begin with v=BIMI1, so no logo is shown.",
        )];
    }
    let mut findings = Vec::new();
    match tag(&tags, "l") {
        None | Some("") => findings.push(Finding::ok(
            KIND,
            "bimi.declined",
            "The record declines BIMI (no logo URL).",
        )),
        Some(logo) if logo.to_ascii_lowercase().starts_with("https://") => {
            findings.push(Finding::ok(
                KIND,
                "bimi.logo",
                format!("The logo is published at {}.", shorten(logo)),
            ))
        }
        Some(logo) => findings.push(Finding::error(
            KIND,
            "bimi.logo_not_https",
            format!(
                "The logo URL {} is not HTTPS, so mailbox providers do not fetch it.",
                shorten(logo)
            ),
        )),
    }
    if let Some(evidence) = tag(&tags, "a").filter(|a| !a.is_empty()) {
        if !evidence.to_ascii_lowercase().starts_with("https://") {
            findings.push(Finding::error(
                KIND,
                "bimi.evidence_not_https",
                format!("The certificate URL {} is not HTTPS.", shorten(evidence)),
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlsrpt_targets_are_read() {
        assert_eq!(
            parse_tlsrpt("v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example/tlsrpt")
                .unwrap(),
            ["mailto:tls@example.com", "https://r.example/tlsrpt"]
        );
        assert!(parse_tlsrpt("v=TLSRPTv1;").is_err());
        assert!(parse_tlsrpt("v=TLSRPTv1; rua=ftp://x").is_err());
    }

    #[test]
    fn bimi_logos_must_be_https() {
        assert_eq!(
            bimi_findings("v=BIMI1; l=https://x.example/logo.svg")[0].code,
            "bimi.logo"
        );
        assert_eq!(
            bimi_findings("v=BIMI1; l=http://x.example/l.svg")[0].code,
            "bimi.logo_not_https"
        );
        assert_eq!(bimi_findings("v=BIMI1; l=;")[0].code, "bimi.declined");
    }
}
