//! SPF records (RFC 7208): the terms of one record, and what the record
//! says by itself (`+all`, `?all`, `ptr`, its length). Following includes
//! and counting lookups needs DNS and lives in `spf_tree.rs`.

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use super::finding::{Finding, RecordKind};
use super::tags::shorten;

const KIND: RecordKind = RecordKind::Spf;

/// RFC 7208 section 3.4: a record longer than this may not fit in a
/// 512-byte UDP answer with the rest of the message.
pub const SPF_MAX_RECOMMENDED_BYTES: usize = 450;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    pub fn symbol(self) -> char {
        match self {
            Qualifier::Pass => '+',
            Qualifier::Fail => '-',
            Qualifier::SoftFail => '~',
            Qualifier::Neutral => '?',
        }
    }
}

/// A mechanism or modifier of an SPF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    All(Qualifier),
    Include(Qualifier, String),
    /// `a`, `a:domain`, `a/24`, `a:domain/24//64`.
    A(Qualifier, Option<String>, Cidr),
    Mx(Qualifier, Option<String>, Cidr),
    Ptr(Qualifier, Option<String>),
    Ip4(Qualifier, Ipv4Net),
    Ip6(Qualifier, Ipv6Net),
    Exists(Qualifier, String),
    Redirect(String),
    Explanation(String),
    /// A modifier RFC 7208 does not define (ignored by receivers).
    UnknownModifier(String),
}

impl Term {
    /// Whether evaluating the term asks DNS (RFC 7208 section 4.6.4
    /// counts these against the limit of 10).
    pub fn queries_dns(&self) -> bool {
        matches!(
            self,
            Term::Include(..)
                | Term::A(..)
                | Term::Mx(..)
                | Term::Ptr(..)
                | Term::Exists(..)
                | Term::Redirect(_)
        )
    }
}

/// Prefix lengths after `a` or `mx` (`/24`, `//64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cidr {
    pub v4: Option<u8>,
    pub v6: Option<u8>,
}

/// Whether a TXT record is an SPF record: `v=spf1` then a space or the end
/// (RFC 7208 section 4.5; the version is case-insensitive).
pub fn is_spf_record(text: &str) -> bool {
    let lower = text.get(..6).map(str::to_ascii_lowercase);
    lower.as_deref() == Some("v=spf1") && text[6..].chars().next().is_none_or(|c| c == ' ')
}

/// The terms of an SPF record, or the first syntax error (which makes the
/// whole record a permerror for receivers).
pub fn parse_spf(text: &str) -> Result<Vec<Term>, String> {
    if !is_spf_record(text) {
        return Err("the record does not begin with v=spf1".to_string());
    }
    text[6..]
        .split(' ')
        .filter(|term| !term.is_empty())
        .map(parse_term)
        .collect()
}

fn parse_term(text: &str) -> Result<Term, String> {
    let bad = |why: &str| format!("\"{}\" {why}", shorten(text));
    // Modifiers: name=value (RFC 7208 section 6).
    if let Some((name, value)) = text.split_once('=') {
        if !name.contains(':') && !name.contains('/') {
            let name = name.to_ascii_lowercase();
            return match name.as_str() {
                "redirect" => domain_spec(value).map(Term::Redirect).map_err(|e| bad(&e)),
                "exp" => domain_spec(value)
                    .map(Term::Explanation)
                    .map_err(|e| bad(&e)),
                _ if is_name(&name) => Ok(Term::UnknownModifier(text.to_string())),
                _ => Err(bad("is not a mechanism or modifier")),
            };
        }
    }
    let (qualifier, rest) = match text.chars().next() {
        Some('+') => (Qualifier::Pass, &text[1..]),
        Some('-') => (Qualifier::Fail, &text[1..]),
        Some('~') => (Qualifier::SoftFail, &text[1..]),
        Some('?') => (Qualifier::Neutral, &text[1..]),
        _ => (Qualifier::Pass, text),
    };
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let name = rest[..name_end].to_ascii_lowercase();
    let argument = &rest[name_end..];
    let target = argument.strip_prefix(':');
    match name.as_str() {
        "all" if argument.is_empty() => Ok(Term::All(qualifier)),
        "include" | "exists" => {
            let domain = target.ok_or_else(|| bad("needs a domain"))?;
            let domain = domain_spec(domain).map_err(|e| bad(&e))?;
            Ok(if name == "include" {
                Term::Include(qualifier, domain)
            } else {
                Term::Exists(qualifier, domain)
            })
        }
        "a" | "mx" => {
            let (domain, cidr) = domain_and_cidr(argument).map_err(|e| bad(&e))?;
            Ok(if name == "a" {
                Term::A(qualifier, domain, cidr)
            } else {
                Term::Mx(qualifier, domain, cidr)
            })
        }
        "ptr" => {
            let domain = match target {
                Some(domain) => Some(domain_spec(domain).map_err(|e| bad(&e))?),
                None if argument.is_empty() => None,
                None => return Err(bad("takes no prefix length")),
            };
            Ok(Term::Ptr(qualifier, domain))
        }
        "ip4" => {
            let network = target.ok_or_else(|| bad("needs an address"))?;
            let parsed = if network.contains('/') {
                network.parse::<Ipv4Net>().ok()
            } else {
                network
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
                    .map(Ipv4Net::from)
            };
            parsed
                .map(|net| Term::Ip4(qualifier, net))
                .ok_or_else(|| bad("is not an IPv4 address or network"))
        }
        "ip6" => {
            let network = target.ok_or_else(|| bad("needs an address"))?;
            let parsed = if network.contains('/') {
                network.parse::<Ipv6Net>().ok()
            } else {
                network
                    .parse::<std::net::Ipv6Addr>()
                    .ok()
                    .map(Ipv6Net::from)
            };
            parsed
                .map(|net| Term::Ip6(qualifier, net))
                .ok_or_else(|| bad("is not an IPv6 address or network"))
        }
        _ => Err(bad("is not a mechanism SPF knows")),
    }
}

fn is_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `[:domain][/v4][//v6]` after `a` or `mx`.
fn domain_and_cidr(argument: &str) -> Result<(Option<String>, Cidr), String> {
    let (domain, lengths) = match argument.strip_prefix(':') {
        Some(rest) => match rest.find('/') {
            Some(slash) => (Some(&rest[..slash]), &rest[slash..]),
            None => (Some(rest), ""),
        },
        None => (None, argument),
    };
    let domain = domain.map(domain_spec).transpose()?;
    let mut cidr = Cidr::default();
    if !lengths.is_empty() {
        let (v4, v6) = match lengths.strip_prefix("//") {
            Some(v6) => (None, Some(v6)),
            None => {
                let rest = &lengths[1..];
                match rest.split_once("//") {
                    Some((v4, v6)) => (Some(v4), Some(v6)),
                    None => (Some(rest), None),
                }
            }
        };
        if let Some(v4) = v4 {
            cidr.v4 = Some(
                v4.parse()
                    .ok()
                    .filter(|len| *len <= 32)
                    .ok_or("has a bad /prefix")?,
            );
        }
        if let Some(v6) = v6 {
            cidr.v6 = Some(
                v6.parse()
                    .ok()
                    .filter(|len| *len <= 128)
                    .ok_or("has a bad //prefix")?,
            );
        }
    }
    Ok((domain, cidr))
}

/// A domain-spec (RFC 7208 section 7.1): a name, possibly with macros.
fn domain_spec(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("has an empty domain".to_string());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has a domain with spaces".to_string());
    }
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        match after.chars().next() {
            Some('{') => {
                let end = after.find('}').ok_or("has an unclosed macro")?;
                let letter = after[1..end].chars().next().map(|c| c.to_ascii_lowercase());
                if !matches!(
                    letter,
                    Some('s' | 'l' | 'o' | 'd' | 'i' | 'p' | 'h' | 'c' | 'r' | 't' | 'v')
                ) {
                    return Err("has an unknown macro".to_string());
                }
                rest = &after[end + 1..];
            }
            Some('%' | '_' | '-') => rest = &after[1..],
            _ => return Err("has a lone %".to_string()),
        }
    }
    Ok(text.trim_end_matches('.').to_ascii_lowercase())
}

/// A domain-spec with `%{d}`/`%{o}` replaced by `domain`, or `None` when
/// it depends on the sender (its IP, address or HELO name), which a
/// posture check does not have.
pub fn expand_domain_spec(spec: &str, domain: &str) -> Option<String> {
    if !spec.contains('%') {
        return Some(spec.to_string());
    }
    let mut expanded = String::new();
    let mut rest = spec;
    while let Some(start) = rest.find('%') {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.chars().next() {
            Some('{') => {
                let end = after.find('}')?;
                let body = &after[1..end];
                if body.eq_ignore_ascii_case("d") || body.eq_ignore_ascii_case("o") {
                    expanded.push_str(domain);
                } else {
                    return None;
                }
                rest = &after[end + 1..];
            }
            Some('%') => {
                expanded.push('%');
                rest = &after[1..];
            }
            Some('_') => {
                expanded.push(' ');
                rest = &after[1..];
            }
            Some('-') => {
                expanded.push_str("%20");
                rest = &after[1..];
            }
            _ => return None,
        }
    }
    expanded.push_str(rest);
    Some(expanded)
}

/// What a record says by itself: its `all`, `ptr`, its length.
pub fn record_findings(domain: &str, text: &str, terms: &[Term]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let all = terms.iter().find_map(|term| match term {
        Term::All(qualifier) => Some(*qualifier),
        _ => None,
    });
    let redirect = terms.iter().any(|term| matches!(term, Term::Redirect(_)));
    let record_name = domain;
    match all {
        Some(Qualifier::Pass) => findings.push(
            Finding::error(
                KIND,
                "spf.pass_all",
                "+all lets every server on the internet pass SPF for this domain.",
            )
            .with_fix(record_name, "TXT", with_all(text, "~all")),
        ),
        Some(Qualifier::Neutral) => findings.push(
            Finding::warning(
                KIND,
                "spf.neutral_all",
                "?all says nothing about servers not listed, so SPF protects nothing.",
            )
            .with_fix(record_name, "TXT", with_all(text, "~all")),
        ),
        Some(Qualifier::SoftFail | Qualifier::Fail) => findings.push(Finding::ok(
            KIND,
            "spf.all",
            "Servers not listed fail SPF.",
        )),
        None if !redirect => findings.push(
            Finding::warning(
                KIND,
                "spf.no_all",
                "The record ends without an all mechanism, so servers not listed get a neutral result.",
            )
            .with_fix(record_name, "TXT", with_all(text, "~all")),
        ),
        None => {}
    }
    if terms.iter().any(|term| matches!(term, Term::Ptr(..))) {
        findings.push(Finding::warning(
            KIND,
            "spf.ptr",
            "The ptr mechanism is slow and unreliable; RFC 7208 says not to use it and some receivers skip it.",
        ));
    }
    if text.len() > SPF_MAX_RECOMMENDED_BYTES {
        findings.push(Finding::warning(
            KIND,
            "spf.long_record",
            format!(
                "The record is {} bytes, over the {SPF_MAX_RECOMMENDED_BYTES} RFC 7208 advises, so its answer may not fit in one UDP datagram.",
                text.len()
            ),
        ));
    }
    findings
}

/// `text` with its `all` term replaced by (or extended with) `all`.
fn with_all(text: &str, all: &str) -> String {
    let mut terms: Vec<&str> = text
        .split(' ')
        .filter(|term| !term.is_empty())
        .filter(|term| {
            let bare = term.trim_start_matches(['+', '-', '~', '?']);
            !bare.eq_ignore_ascii_case("all")
        })
        .collect();
    terms.push(all);
    terms.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_term_kind_is_read() {
        let terms = parse_spf(
            "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 ip6:2001:db8::/32 a a:mail.example.com/28 \
             mx//64 -ptr exists:%{i}._spf.%{d} include:_spf.example.net redirect=_spf.example.org \
             exp=explain.%{d} foo=bar ~all",
        )
        .unwrap();
        assert_eq!(terms.len(), 13);
        assert_eq!(
            terms[0],
            Term::Ip4(Qualifier::Pass, "192.0.2.0/24".parse().unwrap())
        );
        assert_eq!(
            terms[1],
            Term::Ip4(Qualifier::Pass, "198.51.100.7/32".parse().unwrap())
        );
        assert_eq!(
            terms[4],
            Term::A(
                Qualifier::Pass,
                Some("mail.example.com".into()),
                Cidr {
                    v4: Some(28),
                    v6: None
                }
            )
        );
        assert_eq!(
            terms[5],
            Term::Mx(
                Qualifier::Pass,
                None,
                Cidr {
                    v4: None,
                    v6: Some(64)
                }
            )
        );
        assert_eq!(terms[6], Term::Ptr(Qualifier::Fail, None));
        assert_eq!(terms[12], Term::All(Qualifier::SoftFail));
        assert_eq!(terms.iter().filter(|t| t.queries_dns()).count(), 7);
    }

    #[test]
    fn syntax_errors_name_the_term() {
        for (record, term) in [
            ("v=spf1 ip4:300.1.1.1 -all", "ip4:300.1.1.1"),
            ("v=spf1 include -all", "include"),
            ("v=spf1 a/33 -all", "a/33"),
            ("v=spf1 foo:bar -all", "foo:bar"),
            ("v=spf1 exists:%{z}.x -all", "exists:%{z}.x"),
        ] {
            let error = parse_spf(record).unwrap_err();
            assert!(error.contains(term), "{record}: {error}");
        }
        assert!(!is_spf_record("v=spf10 -all"));
        assert!(is_spf_record("V=SPF1"));
    }

    #[test]
    fn risky_records_say_why_and_how_to_fix() {
        let text = "v=spf1 ip4:192.0.2.1 +all";
        let findings = record_findings("example.com", text, &parse_spf(text).unwrap());
        assert_eq!(findings[0].code, "spf.pass_all");
        assert_eq!(
            findings[0].fix.as_ref().unwrap().value,
            "v=spf1 ip4:192.0.2.1 ~all"
        );
        let text = "v=spf1 ptr ?all";
        let codes: Vec<String> = record_findings("example.com", text, &parse_spf(text).unwrap())
            .into_iter()
            .map(|f| f.code)
            .collect();
        assert_eq!(codes, ["spf.neutral_all", "spf.ptr"]);
    }

    #[test]
    fn macros_that_need_the_sender_are_not_expanded() {
        assert_eq!(
            expand_domain_spec("_spf.%{d}", "example.com").as_deref(),
            Some("_spf.example.com")
        );
        assert_eq!(expand_domain_spec("%{i}._spf.%{d}", "example.com"), None);
    }
}
