//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file, and
//! whether every MX host is covered by the policy's `mx:` patterns.

use serde::Serialize;

use super::finding::{Finding, RecordKind};
use super::tags::{parse_tags, shorten, tag};

const KIND: RecordKind = RecordKind::MtaSts;

/// RFC 8461 section 3.2: `max_age` is at most 31557600 (a year).
const MAX_AGE_LIMIT: u64 = 31_557_600;

/// Whether a `_mta-sts` TXT record is meant as one (section 3.1).
pub fn is_sts_record(text: &str) -> bool {
    text.trim_start().starts_with("v=STSv1")
}

/// The policy `id` of a `_mta-sts` record, or an error finding.
pub fn parse_sts_record(text: &str) -> Result<String, Finding> {
    let broken = |why: String| {
        Finding::error(
            KIND,
            "mta_sts.record_syntax",
            format!("The _mta-sts record {why}, so senders ignore the policy."),
        )
    };
    let tags = parse_tags(text).map_err(|problem| broken(format!("cannot be read ({problem})")))?;
    if tag(&tags, "v") != Some("STSv1") {
        return Err(broken("does not begin with v=STSv1".to_string()));
    }
    let id = tag(&tags, "id").ok_or_else(|| broken("has no id=".to_string()))?;
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(broken(format!(
            "has id={}, where 1 to 32 letters and digits are allowed",
            shorten(id)
        )));
    }
    Ok(id.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StsPolicy {
    /// `enforce`, `testing` or `none`.
    pub mode: String,
    pub mx: Vec<String>,
    pub max_age: u64,
}

/// Reads a policy file (section 3.2: `key: value` lines, CRLF or LF).
pub fn parse_policy(text: &str) -> Result<StsPolicy, String> {
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("the line \"{}\" is not key: value", shorten(line)));
        };
        let value = value.trim();
        match key.trim() {
            "version" => version = Some(value.to_string()),
            "mode" => mode = Some(value.to_string()),
            "max_age" => {
                max_age = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|age| *age <= MAX_AGE_LIMIT)
                        .ok_or_else(|| {
                            format!(
                                "max_age {} is not a number up to {MAX_AGE_LIMIT}",
                                shorten(value)
                            )
                        })?,
                )
            }
            "mx" => mx.push(value.to_ascii_lowercase().trim_end_matches('.').to_string()),
            // Section 3.2: unknown fields are ignored.
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("it has no \"version: STSv1\" line".to_string());
    }
    let mode = mode.ok_or("it has no mode line")?;
    if !matches!(mode.as_str(), "enforce" | "testing" | "none") {
        return Err(format!(
            "mode {} is not enforce, testing or none",
            shorten(&mode)
        ));
    }
    let max_age = max_age.ok_or("it has no max_age line")?;
    if mx.is_empty() && mode != "none" {
        return Err("it has no mx line".to_string());
    }
    Ok(StsPolicy { mode, mx, max_age })
}

/// Whether MX host `host` matches policy pattern `pattern`: exactly, or a
/// `*.` wildcard standing for one left-most label (section 4.1).
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => host == pattern,
    }
}

/// Findings about a fetched policy against the domain's MX hosts.
pub fn policy_findings(policy: &StsPolicy, mx_hosts: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    match policy.mode.as_str() {
        "enforce" => findings.push(Finding::ok(
            KIND,
            "mta_sts.enforce",
            "The policy is enforced: senders deliver only over verified TLS to the listed MX hosts.",
        )),
        "testing" => findings.push(Finding::warning(
            KIND,
            "mta_sts.testing",
            "mode: testing only asks for TLS-RPT reports; senders still deliver without verified TLS.",
        )),
        _ => findings.push(Finding::warning(
            KIND,
            "mta_sts.none",
            "mode: none withdraws the policy, so senders fall back to opportunistic TLS.",
        )),
    }
    if policy.max_age < 86_400 && policy.mode != "none" {
        findings.push(Finding::warning(
            KIND,
            "mta_sts.short_max_age",
            format!(
                "max_age {} is under a day, so senders forget the policy before it protects much (RFC 8461 advises weeks).",
                policy.max_age
            ),
        ));
    }
    if policy.mode != "none" {
        for host in mx_hosts {
            if !policy.mx.iter().any(|pattern| mx_matches(pattern, host)) {
                findings.push(Finding::error(
                    KIND,
                    "mta_sts.mx_not_covered",
                    format!(
                        "The MX host {host} matches no mx: line of the policy, so senders enforcing it refuse to deliver there."
                    ),
                ));
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_is_read() {
        let policy = parse_policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.com\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(policy.mode, "enforce");
        assert_eq!(policy.mx, ["mx1.example.com", "*.mail.example.com"]);
        assert_eq!(policy.max_age, 604_800);
        assert!(
            parse_policy("version: STSv1\nmode: enforce\nmax_age: 86400\n")
                .unwrap_err()
                .contains("mx")
        );
        assert!(parse_policy("mode: enforce\nmx: a.example\nmax_age: 1\n").is_err());
        assert!(parse_policy("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n").is_err());
    }

    #[test]
    fn wildcards_stand_for_one_label() {
        assert!(mx_matches("*.example.com", "mx1.example.com."));
        assert!(!mx_matches("*.example.com", "a.b.example.com"));
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(mx_matches("mx.example.com", "MX.example.com"));
    }

    #[test]
    fn the_record_needs_a_version_and_an_id() {
        assert_eq!(
            parse_sts_record("v=STSv1; id=20240101T000000;").unwrap(),
            "20240101T000000"
        );
        assert!(parse_sts_record("v=STSv1;").is_err());
        assert!(parse_sts_record("v=STSv1; id=has-dash").is_err());
    }
}
