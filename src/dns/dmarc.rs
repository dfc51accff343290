//! DMARC policy records (`_dmarc.<domain>` TXT): RFC 7489 section 6.3 and
//! the tags RFC 9989 adds (`np`, `psd`, `t`). Pure: text in, record and
//! findings out; the checker does the lookups around it.

use serde::Serialize;

use super::finding::{Finding, RecordKind};
use super::tags::{parse_tags, shorten, tag, Tag};

const KIND: RecordKind = RecordKind::Dmarc;

/// Tags RFC 7489 and RFC 9989 define; anything else is reported.
const KNOWN_TAGS: &[&str] = &[
    "v", "p", "sp", "np", "psd", "t", "pct", "adkim", "aspf", "fo", "rf", "ri", "rua", "ruf",
];

/// A `mailto:` (or other) report address from `rua=` or `ruf=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReportUri {
    /// As written, size limit included (`mailto:dmarc@example.com!10m`).
    pub uri: String,
    /// The mail address, lower-cased, for `mailto:` URIs.
    pub address: Option<String>,
    /// The address's domain (the "rua host"), lower-cased.
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DmarcRecord {
    pub policy: Option<String>,
    pub subdomain_policy: Option<String>,
    pub nonexistent_policy: Option<String>,
    pub rua: Vec<ReportUri>,
    pub ruf: Vec<ReportUri>,
}

/// Whether a TXT record is meant as a DMARC record: RFC 7489 section
/// 6.6.3 discards every record that does not start with `v=DMARC1`.
pub fn is_dmarc_record(text: &str) -> bool {
    let text = text.trim_start();
    text.strip_prefix('v')
        .map(str::trim_start)
        .and_then(|rest| rest.strip_prefix('='))
        .map(str::trim_start)
        .is_some_and(|rest| rest.starts_with("DMARC1"))
}

/// Parses one DMARC record and says what is wrong or worth knowing about
/// it. `None` when the record is unusable (receivers ignore it).
pub fn parse_dmarc(text: &str) -> (Option<DmarcRecord>, Vec<Finding>) {
    let mut findings = Vec::new();
    let tags = match parse_tags(text) {
        Ok(tags) => tags,
        Err(problem) => {
            findings.push(Finding::error(
                KIND,
                "dmarc.syntax",
                format!("The DMARC record cannot be read ({problem}), so receivers ignore it."),
            ));
            return (None, findings);
        }
    };
    if tags
        .first()
        .map(|tag| (tag.name.as_str(), tag.value.as_str()))
        != Some(("v", "DMARC1"))
    {
        findings.push(Finding::error(
            KIND,
            "dmarc.version",
            "The record does not begin with v=DMARC1, so receivers ignore it.",
        ));
        return (None, findings);
    }
    for unknown in tags
        .iter()
        .filter(|tag| !KNOWN_TAGS.contains(&tag.name.as_str()))
    {
        findings.push(Finding::warning(
            KIND,
            "dmarc.unknown_tag",
            format!(
                "The tag {} is not defined by RFC 7489 or RFC 9989; receivers skip it.",
                shorten(&unknown.name)
            ),
        ));
    }
    let policy = check_policy(&tags, "p", &mut findings);
    let subdomain_policy = check_policy(&tags, "sp", &mut findings);
    let nonexistent_policy = check_policy(&tags, "np", &mut findings);
    match policy.as_deref() {
        None => findings.push(Finding::warning(
            KIND,
            "dmarc.no_policy",
            "The record has no p= tag, so receivers treat its policy as none.",
        )),
        Some("none") => findings.push(Finding::warning(
            KIND,
            "dmarc.policy_none",
            "p=none only monitors: mail that fails DMARC is delivered as if there were no policy.",
        )),
        Some(policy) => findings.push(Finding::ok(
            KIND,
            "dmarc.policy",
            format!("p={policy}: receivers act on mail that fails DMARC."),
        )),
    }
    check_choice(&tags, "adkim", &["r", "s"], &mut findings);
    check_choice(&tags, "aspf", &["r", "s"], &mut findings);
    check_choice(&tags, "psd", &["y", "n", "u"], &mut findings);
    if check_choice(&tags, "t", &["y", "n"], &mut findings) == Some("y") {
        findings.push(Finding::warning(
            KIND,
            "dmarc.testing",
            "t=y asks receivers to apply the policy one step milder while you test (RFC 9989).",
        ));
    }
    if let Some(pct) = tag(&tags, "pct") {
        match pct.parse::<u8>() {
            Ok(100) => {}
            Ok(share) if share < 100 => findings.push(Finding::warning(
                KIND,
                "dmarc.pct",
                format!(
                    "pct={share} applies the policy to {share}% of failing mail only; RFC 9989 replaces pct with t=y."
                ),
            )),
            _ => findings.push(Finding::error(
                KIND,
                "dmarc.syntax",
                format!("pct={} is not a number from 0 to 100.", shorten(pct)),
            )),
        }
    }
    if let Some(fo) = tag(&tags, "fo") {
        if fo
            .split(':')
            .any(|option| !matches!(option.trim(), "0" | "1" | "d" | "s"))
        {
            findings.push(Finding::error(
                KIND,
                "dmarc.syntax",
                format!("fo={} is not a list of 0, 1, d and s.", shorten(fo)),
            ));
        }
    }
    let rua = report_uris(&tags, "rua", &mut findings);
    let ruf = report_uris(&tags, "ruf", &mut findings);
    if rua.is_empty() {
        findings.push(Finding::warning(
            KIND,
            "dmarc.no_rua",
            "The record has no rua= address, so nobody sends you aggregate reports.",
        ));
    }
    let record = DmarcRecord {
        policy,
        subdomain_policy,
        nonexistent_policy,
        rua,
        ruf,
    };
    (Some(record), findings)
}

/// A `p`/`sp`/`np` value, checked.
fn check_policy(tags: &[Tag], name: &str, findings: &mut Vec<Finding>) -> Option<String> {
    check_choice(tags, name, &["none", "quarantine", "reject"], findings).map(str::to_string)
}

/// The value of `name` if it is one of `allowed` (an error finding if not).
fn check_choice<'a>(
    tags: &'a [Tag],
    name: &str,
    allowed: &[&str],
    findings: &mut Vec<Finding>,
) -> Option<&'a str> {
    let value = tag(tags, name)?;
    if allowed.contains(&value) {
        Some(value)
    } else {
        findings.push(Finding::error(
            KIND,
            "dmarc.syntax",
            format!(
                "{name}={} is not one of {}, so receivers ignore the tag.",
                shorten(value),
                allowed.join(", ")
            ),
        ));
        None
    }
}

/// The URIs of `rua=` or `ruf=` (comma-separated, RFC 7489 section 6.4).
fn report_uris(tags: &[Tag], name: &str, findings: &mut Vec<Finding>) -> Vec<ReportUri> {
    let Some(value) = tag(tags, name) else {
        return Vec::new();
    };
    let mut uris = Vec::new();
    for uri in value
        .split(',')
        .map(str::trim)
        .filter(|uri| !uri.is_empty())
    {
        let Some(mailbox) = uri
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
            .map(|_| &uri[7..])
        else {
            findings.push(Finding::warning(
                KIND,
                "dmarc.uri_scheme",
                format!(
                    "{name}={} is not a mailto: URI; receivers only send reports by mail.",
                    shorten(uri)
                ),
            ));
            continue;
        };
        // A size limit may follow the address: mailto:a@example.com!10m.
        let address = mailbox.split('!').next().unwrap_or_default();
        let address = percent_decode(address).to_ascii_lowercase();
        let host = address
            .rsplit_once('@')
            .map(|(_, host)| host.trim_end_matches('.').to_string())
            .filter(|host| crate::domain::is_domain_name(host));
        if host.is_none() {
            findings.push(Finding::error(
                KIND,
                "dmarc.uri_address",
                format!(
                    "{name}={} has no valid mail address, so no report can be sent to it.",
                    shorten(uri)
                ),
            ));
        }
        uris.push(ReportUri {
            uri: uri.to_string(),
            address: host.is_some().then_some(address),
            host,
        });
    }
    uris
}

/// `%40` and friends in a mailto URI (RFC 6068), as far as addresses use them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |byte: u8| (byte as char).to_digit(16);
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[index + 1]), hex(bytes[index + 2])) {
                decoded.push((high * 16 + low) as u8);
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::finding::Severity;

    fn codes(findings: &[Finding]) -> Vec<&str> {
        findings
            .iter()
            .map(|finding| finding.code.as_str())
            .collect()
    }

    #[test]
    fn a_full_record_is_read() {
        let (record, findings) = parse_dmarc(
            "v=DMARC1; p=reject; sp=quarantine; np=reject; psd=n; t=n; adkim=s; aspf=r; fo=1:d; \
             rua=mailto:dmarc@reports.example.net!10m,mailto:Other%40example.com; ruf=mailto:f@example.com",
        );
        let record = record.unwrap();
        assert_eq!(record.policy.as_deref(), Some("reject"));
        assert_eq!(record.subdomain_policy.as_deref(), Some("quarantine"));
        assert_eq!(record.nonexistent_policy.as_deref(), Some("reject"));
        assert_eq!(record.rua.len(), 2);
        assert_eq!(
            record.rua[0].address.as_deref(),
            Some("dmarc@reports.example.net")
        );
        assert_eq!(record.rua[0].host.as_deref(), Some("reports.example.net"));
        assert_eq!(record.rua[1].address.as_deref(), Some("other@example.com"));
        assert_eq!(codes(&findings), ["dmarc.policy"]);
        assert!(findings.iter().all(|f| f.severity == Severity::Ok));
    }

    #[test]
    fn weak_and_broken_records_are_named() {
        let (_, findings) = parse_dmarc("v=DMARC1; p=none; pct=50; t=y; foo=bar");
        let found = codes(&findings);
        for code in [
            "dmarc.policy_none",
            "dmarc.pct",
            "dmarc.testing",
            "dmarc.unknown_tag",
            "dmarc.no_rua",
        ] {
            assert!(found.contains(&code), "{code} in {found:?}");
        }
        let (record, findings) = parse_dmarc("v=DMARC1; p=block; rua=https://x.example/");
        assert!(record.unwrap().rua.is_empty());
        assert!(codes(&findings).contains(&"dmarc.syntax"));
        assert!(codes(&findings).contains(&"dmarc.uri_scheme"));
        let (record, findings) = parse_dmarc("p=reject; v=DMARC1");
        assert!(record.is_none());
        assert_eq!(codes(&findings), ["dmarc.version"]);
        let (record, _) = parse_dmarc("v=DMARC1; p");
        assert!(record.is_none());
    }

    #[test]
    fn only_records_that_begin_with_the_version_count() {
        assert!(is_dmarc_record("v=DMARC1; p=none"));
        assert!(is_dmarc_record("v = DMARC1;"));
        assert!(!is_dmarc_record("v=spf1 -all"));
        assert!(!is_dmarc_record("p=none; v=DMARC1"));
    }
}
