//! PURE. The MTA-STS policy dmarcd hosts for a domain (RFC 8461): its
//! mode, MX patterns and max_age as an admin sets them, checked; the
//! policy file's text; and the policy id that changes with every change.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// RFC 8461 section 3.2: `max_age` at most a year. dmarcd asks for at
/// least a day: a shorter one protects nothing between fetches.
pub const MAX_AGE_MIN: u64 = 86_400;
pub const MAX_AGE_MAX: u64 = 31_557_600;
/// More MX patterns than any real domain needs; bounds the file and the page.
pub const MAX_MX_PATTERNS: usize = 32;

/// The policy id's layout: UTC time to the microsecond, letters and
/// digits only as section 3.1 requires (21 of the 32 allowed).
const ID_FORMAT: &str = "%Y%m%dT%H%M%S%6f";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Withdraws the policy: senders forget it after fetching this.
    None,
    /// Senders deliver as before and report TLS failures (TLS-RPT).
    Testing,
    /// Senders deliver only over verified TLS to matching MX hosts.
    Enforce,
}

impl Mode {
    pub fn key(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Testing => "testing",
            Mode::Enforce => "enforce",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "none" => Some(Mode::None),
            "testing" => Some(Mode::Testing),
            "enforce" => Some(Mode::Enforce),
            _ => None,
        }
    }

    /// The max_age an admin gets without choosing one: a day while
    /// testing (a mistake is forgotten quickly), a week once enforced.
    pub fn default_max_age(self) -> u64 {
        match self {
            Mode::Enforce => 604_800,
            Mode::Testing | Mode::None => 86_400,
        }
    }
}

/// A policy's content, checked (built only by `Policy::new`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: host names, or `*.` and a name for one left-most label.
    pub mx: Vec<String>,
    pub max_age: u64,
}

/// Why a policy cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("mx pattern {0:?} is not a host name or *. and a host name (RFC 8461 section 4.1)")]
    BadPattern(String),
    #[error("{0} mx patterns are more than the {MAX_MX_PATTERNS} allowed")]
    TooManyPatterns(usize),
    #[error("a testing or enforce policy needs at least one mx pattern")]
    NoPatterns,
    #[error("max_age {0} is outside {MAX_AGE_MIN}..={MAX_AGE_MAX} seconds (a day to a year)")]
    MaxAge(u64),
}

impl Policy {
    /// Checks and normalizes (lower case, no trailing dot, duplicates
    /// dropped) what an admin asked for; `max_age` by default from the mode.
    pub fn new(mode: Mode, mx: &[String], max_age: Option<u64>) -> Result<Policy, PolicyError> {
        if mx.len() > MAX_MX_PATTERNS {
            return Err(PolicyError::TooManyPatterns(mx.len()));
        }
        let mut patterns: Vec<String> = Vec::with_capacity(mx.len());
        for pattern in mx {
            let pattern = normalize_pattern(pattern)?;
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        if patterns.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoPatterns);
        }
        let max_age = max_age.unwrap_or(mode.default_max_age());
        if !(MAX_AGE_MIN..=MAX_AGE_MAX).contains(&max_age) {
            return Err(PolicyError::MaxAge(max_age));
        }
        Ok(Policy {
            mode,
            mx: patterns,
            max_age,
        })
    }

    /// The policy file (section 3.2), CRLF lines as the RFC's example.
    pub fn text(&self) -> String {
        let mut text = format!("version: STSv1\r\nmode: {}\r\n", self.mode.key());
        for pattern in &self.mx {
            text.push_str("mx: ");
            text.push_str(pattern);
            text.push_str("\r\n");
        }
        text.push_str(&format!("max_age: {}\r\n", self.max_age));
        text
    }

    /// The MX hosts among `hosts` that no pattern matches.
    pub fn uncovered<'a>(&self, hosts: &'a [String]) -> Vec<&'a str> {
        hosts
            .iter()
            .filter(|host| {
                !self
                    .mx
                    .iter()
                    .any(|pattern| crate::dns::mta_sts::mx_matches(pattern, host))
            })
            .map(String::as_str)
            .collect()
    }
}

/// An MX pattern in canonical form, or why it is not one.
pub fn normalize_pattern(text: &str) -> Result<String, PolicyError> {
    let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if is_pattern(&lower) {
        Ok(lower)
    } else {
        Err(PolicyError::BadPattern(shorten(text)))
    }
}

/// Whether `text` is an MX pattern as written (any case, no final dot):
/// a host name, or `*.` and one; at most 253 characters. The API's
/// schema states the same (`MX_PATTERN`).
pub fn is_pattern(text: &str) -> bool {
    text.len() <= 253 && is_host_name(text.strip_prefix("*.").unwrap_or(text))
}

/// `is_pattern` as a regular expression, for the OpenAPI document.
pub const MX_PATTERN: &str = r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// At least two LDH labels of 1..=63 characters, the last beginning with
/// a letter (an IDN as A-labels).
pub fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|top| top.starts_with(|c: char| c.is_ascii_alphabetic()))
}

fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The id for a policy changed at `now`: the time, or, when the clock
/// gives no later one than the `previous` id (two changes in one
/// microsecond, or a clock set back), a microsecond after it, so that
/// every change has an id senders have not seen (section 3.1).
pub fn next_policy_id(now: DateTime<Utc>, previous: Option<&str>) -> String {
    let candidate = now.format(ID_FORMAT).to_string();
    let Some(previous) = previous else {
        return candidate;
    };
    match NaiveDateTime::parse_from_str(previous, ID_FORMAT) {
        Ok(before) if candidate.as_str() <= previous => (before + TimeDelta::microseconds(1))
            .format(ID_FORMAT)
            .to_string(),
        _ => candidate,
    }
}

/// The `_mta-sts` TXT record that announces policy `id`.
pub fn sts_record(id: &str) -> String {
    format!("v=STSv1; id={id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_policy_file_has_crlf_lines_in_the_rfc_order() {
        let policy = Policy::new(
            Mode::Enforce,
            &patterns(&["MX1.Example.com.", "*.mail.example.com"]),
            None,
        )
        .unwrap();
        assert_eq!(
            policy.text(),
            "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.com\r\nmax_age: 604800\r\n"
        );
        let parsed = crate::dns::mta_sts::parse_policy(&policy.text()).unwrap();
        assert_eq!(parsed.mx, policy.mx);
        assert_eq!(parsed.max_age, 604_800);
    }

    #[test]
    fn max_age_defaults_by_mode_and_is_bounded() {
        let mx = patterns(&["mx.example.com"]);
        assert_eq!(
            Policy::new(Mode::Testing, &mx, None).unwrap().max_age,
            86_400
        );
        assert_eq!(
            Policy::new(Mode::Enforce, &mx, Some(31_557_600))
                .unwrap()
                .max_age,
            31_557_600
        );
        assert_eq!(
            Policy::new(Mode::Enforce, &mx, Some(3600)),
            Err(PolicyError::MaxAge(3600))
        );
        assert_eq!(
            Policy::new(Mode::Enforce, &mx, Some(31_557_601)),
            Err(PolicyError::MaxAge(31_557_601))
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern_named() {
        for bad in [
            "",
            "*",
            "*.com",
            "mx..example.com",
            "mx.exa mple.com",
            "-mx.example.com",
            "mx.*.example.com",
            "**.example.com",
            "mx.example.com:25",
        ] {
            let error = Policy::new(Mode::Testing, &patterns(&[bad]), None).unwrap_err();
            assert!(
                matches!(error, PolicyError::BadPattern(_)),
                "{bad}: {error}"
            );
        }
        let long = format!("{}.example.com", "a".repeat(64));
        assert!(Policy::new(Mode::Testing, &[long], None).is_err());
        let many: Vec<String> = (0..33).map(|i| format!("mx{i}.example.com")).collect();
        assert_eq!(
            Policy::new(Mode::Testing, &many, None),
            Err(PolicyError::TooManyPatterns(33))
        );
        assert_eq!(
            Policy::new(Mode::Enforce, &[], None),
            Err(PolicyError::NoPatterns)
        );
        assert!(Policy::new(Mode::None, &[], None).is_ok());
    }

    #[test]
    fn every_change_gets_a_later_id() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T16:01:02.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = next_policy_id(now, None);
        assert_eq!(first, "20261204T160102123456");
        let second = next_policy_id(now, Some(&first));
        assert_eq!(second, "20261204T160102123457");
        let earlier = now - TimeDelta::seconds(10);
        assert_eq!(
            next_policy_id(earlier, Some(&second)),
            "20261204T160102123458"
        );
        assert!(second.len() <= 32 && second.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            crate::dns::mta_sts::parse_sts_record(&sts_record(&second)).unwrap(),
            second
        );
    }

    #[test]
    fn uncovered_hosts_are_named() {
        let policy = Policy::new(Mode::Enforce, &patterns(&["*.mx.example.com"]), None).unwrap();
        let hosts = patterns(&["a.mx.example.com", "backup.example.net"]);
        assert_eq!(policy.uncovered(&hosts), ["backup.example.net"]);
    }
}
