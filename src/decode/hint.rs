//! The domain a report was sent for, read from where it travelled: used
//! for a TLS report policy that names no `policy-domain` (large senders
//! leave it out).

/// RFC 8460 §5.3 file names: `sender!policy-domain!begin!end[!id].json[.gz]`.
/// The last member of `location` is the payload's own name.
pub(super) fn domain_from_file_name(location: &str) -> Option<String> {
    let name = location.rsplit(" › ").next()?;
    let name = name.rsplit(['/', '\\']).next()?;
    let fields: Vec<&str> = name.split('!').collect();
    if fields.len() < 4 {
        return None;
    }
    plausible_domain(fields[1])
}

/// RFC 8460 §5.3 headers: `TLS-Report-Domain: example.com`, else the
/// subject's `Report Domain: example.com Submitter: …` (RFC 8460 and
/// RFC 7489 §7.2.1.1 both suggest that wording).
pub(super) fn domain_from_headers(
    tls_report_domain: Option<&str>,
    subject: Option<&str>,
) -> Option<String> {
    if let Some(domain) = tls_report_domain.and_then(plausible_domain) {
        return Some(domain);
    }
    let subject = subject?;
    let lower = subject.to_ascii_lowercase();
    let at = lower.find("report domain:")? + "report domain:".len();
    plausible_domain(subject[at..].split_whitespace().next()?)
}

/// A host name: letters, digits, hyphens and dots, with at least one dot.
fn plausible_domain(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('.');
    let valid = text.contains('.')
        && text.len() <= 253
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'));
    valid.then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_domain_from_names_and_headers() {
        assert_eq!(
            domain_from_file_name("mail.eml › google.com!Example.COM!1!2!abc.json.gz").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_from_file_name("report.json"), None);
        assert_eq!(
            domain_from_headers(
                None,
                Some("Report Domain: example.org Submitter: google.com")
            )
            .as_deref(),
            Some("example.org")
        );
        assert_eq!(
            domain_from_headers(Some(" example.net "), Some("Report Domain: other.org")).as_deref(),
            Some("example.net")
        );
        assert_eq!(domain_from_headers(None, Some("Hello")), None);
    }
}
