//! Approval rules as admins write them: approve or ignore the sources a
//! sender name, an IP, a CIDR block, an AS number or a PTR base domain
//! picks out. Values are checked and put in one canonical form here, so
//! that a stored rule always matches the way it reads.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::class::RuleMatch;
use super::SendersConfig;
use crate::store::approvals::Approval;

/// What a rule does to the sources it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The source is the domain's own: authorized.
    Approve,
    /// The source is known and of no concern (a test box, a spoofer
    /// already reported): shown apart, never a problem.
    Ignore,
}

impl Action {
    pub fn key(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Ignore => "ignore",
        }
    }

    pub fn parse(text: &str) -> Result<Self, RuleError> {
        match text.trim() {
            "approve" => Ok(Action::Approve),
            "ignore" => Ok(Action::Ignore),
            other => Err(RuleError(format!(
                "action: {other:?} is not approve or ignore"
            ))),
        }
    }
}

/// What a rule's value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// A sender name as the enrichment gives it (`Mailchimp`), ignoring case.
    Name,
    Ip,
    /// A CIDR block (`192.0.2.0/24`).
    Cidr,
    /// An AS number (`15169`).
    Asn,
    /// The base domain of the PTR name (`mcsv.net`).
    Ptr,
}

impl MatchKind {
    pub const ALL: [MatchKind; 5] = [
        MatchKind::Name,
        MatchKind::Ip,
        MatchKind::Cidr,
        MatchKind::Asn,
        MatchKind::Ptr,
    ];

    pub fn key(self) -> &'static str {
        match self {
            MatchKind::Name => "name",
            MatchKind::Ip => "ip",
            MatchKind::Cidr => "cidr",
            MatchKind::Asn => "asn",
            MatchKind::Ptr => "ptr",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MatchKind::Name => "sender name",
            MatchKind::Ip => "IP",
            MatchKind::Cidr => "CIDR block",
            MatchKind::Asn => "AS",
            MatchKind::Ptr => "PTR base domain",
        }
    }

    pub fn parse(text: &str) -> Result<Self, RuleError> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.key() == text.trim())
            .ok_or_else(|| {
                RuleError(format!(
                    "match_kind: {text:?} is not one of name, ip, cidr, asn, ptr"
                ))
            })
    }

    /// `value` checked and in canonical form: an address as Rust prints
    /// it, a block with its host bits cleared, an AS as its number, a
    /// domain in lower case without the final dot, a name trimmed.
    pub fn canonical(self, value: &str) -> Result<String, RuleError> {
        // A value of spaces alone is kept as given (a name of spaces
        // matches nothing; refusing it would refuse what the API
        // document allows).
        let value = match value.trim() {
            "" => value,
            trimmed => trimmed,
        };
        let bad = |why: &str| RuleError(format!("value: {value:?} {why}"));
        match self {
            MatchKind::Name => {
                if value.is_empty() || value.chars().count() > 200 {
                    return Err(bad("must be 1 to 200 characters"));
                }
                if value.chars().any(char::is_control) {
                    return Err(bad("holds a control character"));
                }
                Ok(value.to_string())
            }
            MatchKind::Ip => IpAddr::from_str(value)
                .map(|ip| ip.to_string())
                .map_err(|_| bad("is not an IP address")),
            MatchKind::Cidr => IpNet::from_str(value)
                .map(|net| net.trunc().to_string())
                .map_err(|_| bad("is not a CIDR block (192.0.2.0/24, 2001:db8::/32)")),
            MatchKind::Asn => value
                .trim_start_matches(['A', 'S', 'a', 's'])
                .parse::<u32>()
                .map(|asn| asn.to_string())
                .map_err(|_| bad("is not an AS number (15169 or AS15169)")),
            MatchKind::Ptr => {
                let domain = value.trim_end_matches('.').to_ascii_lowercase();
                if crate::domain::is_domain_name(&domain) {
                    Ok(domain)
                } else {
                    Err(bad("is not a domain name"))
                }
            }
        }
    }
}

/// A rule that cannot be stored: the message names the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// What is known about one sending IP, to match rules against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpFacts {
    pub ip: Option<IpAddr>,
    pub asn: Option<i64>,
    /// The base domain of its PTR name.
    pub base_domain: Option<String>,
}

/// Whether a rule of `kind` with canonical `value` matches an IP.
pub fn matches_ip(kind: MatchKind, value: &str, facts: &IpFacts) -> bool {
    match kind {
        MatchKind::Name => false,
        MatchKind::Ip => facts.ip.is_some_and(|ip| ip.to_string() == value),
        MatchKind::Cidr => match (IpNet::from_str(value), facts.ip) {
            (Ok(net), Some(ip)) => net.contains(&ip),
            _ => false,
        },
        MatchKind::Asn => facts.asn.is_some_and(|asn| asn.to_string() == value),
        MatchKind::Ptr => facts
            .base_domain
            .as_deref()
            .is_some_and(|base| base.eq_ignore_ascii_case(value)),
    }
}

/// The rules in the order they are tried: the domain's own before those
/// for every domain, the newest first within each.
pub fn ordered_rules(mut rules: Vec<Approval>) -> Vec<Approval> {
    rules.sort_by_key(|rule| (rule.domain.is_none(), std::cmp::Reverse(rule.id)));
    rules
}

/// The first rule that matches a source: a name rule by its name, an IP
/// rule (IP, CIDR, AS, PTR) by its IP, or, for a named source, by the IPs
/// that carry at least `majority_percent` of its messages.
pub fn matching_rule(
    rules: &[Approval],
    key: &str,
    is_ip: bool,
    ips: &[(IpFacts, i64)],
    messages: i64,
    config: &SendersConfig,
) -> Option<RuleMatch> {
    let rule = rules.iter().find(|rule| match rule.match_kind {
        MatchKind::Name => !is_ip && rule.value.eq_ignore_ascii_case(key),
        kind => {
            let matched: i64 = ips
                .iter()
                .filter(|(facts, _)| matches_ip(kind, &rule.value, facts))
                .map(|(_, messages)| messages)
                .sum();
            matched > 0
                && matched.saturating_mul(100)
                    >= messages.saturating_mul(i64::from(config.majority_percent))
        }
    })?;
    let verb = match rule.action {
        Action::Approve => "approved",
        Action::Ignore => "ignored",
    };
    let scope = if rule.domain.is_none() {
        " for every domain"
    } else {
        ""
    };
    let note = if rule.note.trim().is_empty() {
        String::new()
    } else {
        format!(" ({})", rule.note.trim())
    };
    Some(RuleMatch {
        id: rule.id,
        action: rule.action,
        line: format!(
            "{verb}{scope} by {} on {}: {} {}{note}",
            rule.created_by,
            rule.created_at.format("%Y-%m-%d"),
            rule.match_kind.label(),
            rule.value,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_made_canonical() {
        assert_eq!(
            MatchKind::Cidr.canonical(" 192.0.2.77/24 ").unwrap(),
            "192.0.2.0/24"
        );
        assert_eq!(
            MatchKind::Ip.canonical("2001:DB8::1").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(MatchKind::Asn.canonical("AS15169").unwrap(), "15169");
        assert_eq!(MatchKind::Ptr.canonical("MCSV.net.").unwrap(), "mcsv.net");
        assert_eq!(
            MatchKind::Name.canonical(" Mailchimp ").unwrap(),
            "Mailchimp"
        );
        for (kind, value) in [
            (MatchKind::Cidr, "192.0.2.0/33"),
            (MatchKind::Ip, "192.0.2"),
            (MatchKind::Asn, "AS-1"),
            (MatchKind::Ptr, "not a domain"),
            (MatchKind::Name, ""),
        ] {
            let error = kind.canonical(value).unwrap_err();
            assert!(error.0.starts_with("value:"), "{error}");
        }
    }

    #[test]
    fn rules_match_the_ips_they_name() {
        let facts = IpFacts {
            ip: Some("203.0.113.9".parse().unwrap()),
            asn: Some(64500),
            base_domain: Some("example.net".into()),
        };
        assert!(matches_ip(MatchKind::Cidr, "203.0.113.0/24", &facts));
        assert!(!matches_ip(MatchKind::Cidr, "203.0.114.0/24", &facts));
        assert!(matches_ip(MatchKind::Ip, "203.0.113.9", &facts));
        assert!(matches_ip(MatchKind::Asn, "64500", &facts));
        assert!(matches_ip(MatchKind::Ptr, "example.net", &facts));
        assert!(!matches_ip(MatchKind::Name, "example.net", &facts));
    }
}
