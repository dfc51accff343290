//! The one filter model: a dashboard page's query string and the matching
//! API call's are the same parameters, parsed into `Filter` and turned into
//! the same SQL here.

use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use ipnet::IpNet;

use crate::scope::Scope;
use crate::store::Sql;

/// Query parameters that select aggregate records. Free-text values hold
/// no control character (`printable`; the pattern tells API clients).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// Policy domain (the domain the report is about), exact.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub domain: Option<String>,
    /// Reporting organization: any whose name contains this text, ignoring
    /// case (`google` finds "google.com", `outlook` "Enterprise Outlook");
    /// in double quotes, the whole name (`"Outlook"`).
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub org: Option<String>,
    /// Sending source: an IP, a CIDR block, a PTR name or base domain
    /// (exact, ignoring case), or part of a source name (`amazon` finds
    /// "Amazon SES").
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub source: Option<String>,
    /// ISO country code of the source IP.
    #[param(pattern = "^([A-Za-z]{2})?$")]
    pub country: Option<String>,
    /// AS number of the source IP (`15169` or `AS15169`).
    #[param(pattern = "^((AS|as)?[0-9]{1,10})?$")]
    pub asn: Option<String>,
    /// Source type from the source map (`esp`, `mailbox_provider`, …).
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub source_type: Option<String>,
    /// DMARC result: `pass` or `fail`.
    #[param(pattern = "^(pass|fail)?$")]
    pub result: Option<String>,
    /// Applied disposition: `none`, `quarantine` or `reject`.
    #[param(pattern = "^(none|quarantine|reject)?$")]
    pub disposition: Option<String>,
    /// Aligned DKIM result: `pass` or `fail`.
    #[param(pattern = "^(pass|fail)?$")]
    pub dkim: Option<String>,
    /// Aligned SPF result: `pass` or `fail`.
    #[param(pattern = "^(pass|fail)?$")]
    pub spf: Option<String>,
    /// RFC 5322 From domain, exact (ignoring case).
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub header_from: Option<String>,
    /// Reports beginning on or after this day (`YYYY-MM-DD`, UTC); an RFC
    /// 3339 instant is accepted too.
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub since: Option<String>,
    /// Reports beginning before the end of this day (`YYYY-MM-DD`), or
    /// before an RFC 3339 instant.
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub until: Option<String>,
}

/// A parameter that cannot be understood: the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct FilterError {
    pub parameter: &'static str,
    pub message: String,
}

fn invalid(parameter: &'static str, message: impl Into<String>) -> FilterError {
    FilterError {
        parameter,
        message: message.into(),
    }
}

/// A source filter after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceMatch {
    Ip(IpAddr),
    /// A CIDR block, its host bits cleared: `192.0.2.5/24` means
    /// `192.0.2.0/24` (PostgreSQL's cidr type refuses host bits to the
    /// right of the mask).
    Network(IpNet),
    /// A PTR name, base domain or source name (case-insensitive).
    Name(String),
}

impl SourceMatch {
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let text = text.trim();
        // A drill-down quotes what it names ("Google", or an unnamed
        // source's IP).
        if let Ok(ip) = IpAddr::from_str(text.trim_matches('"')) {
            return Ok(SourceMatch::Ip(ip));
        }
        // "192.0.2.0/24" is a block; "a/b" is just a name (that matches nothing).
        if let Some((address, prefix)) = text
            .split_once('/')
            .and_then(|(address, prefix)| Some((IpAddr::from_str(address).ok()?, prefix)))
        {
            let max = if address.is_ipv4() { 32 } else { 128 };
            let network = prefix
                .parse::<u8>()
                .ok()
                .and_then(|prefix| IpNet::new(address, prefix).ok())
                .ok_or_else(|| invalid("source", format!("{text:?}: prefix must be 0–{max}")))?;
            return Ok(SourceMatch::Network(network.trunc()));
        }
        if text.is_empty() {
            return Err(invalid("source", "empty"));
        }
        Ok(SourceMatch::Name(text.to_lowercase()))
    }

    /// Whether `ip` is this address or in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            SourceMatch::Ip(one) => *one == ip,
            SourceMatch::Network(network) => network.contains(&ip),
            SourceMatch::Name(_) => false,
        }
    }
}

/// Refuses a value holding a control character (a NUL, a newline…): no
/// name, date or address has one, and PostgreSQL refuses a NUL in text.
pub(crate) fn printable(
    parameter: &'static str,
    value: &Option<String>,
) -> Result<(), FilterError> {
    match value {
        Some(text) if text.chars().any(char::is_control) => Err(invalid(
            parameter,
            format!("{text:?} holds a control character"),
        )),
        _ => Ok(()),
    }
}

/// `pass`/`fail` parameters.
fn pass_fail(parameter: &'static str, value: &str) -> Result<bool, FilterError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "pass" => Ok(true),
        "fail" => Ok(false),
        other => Err(invalid(
            parameter,
            format!("expected pass or fail, got {other:?}"),
        )),
    }
}

/// A day (`2024-03-30`) or an instant (RFC 3339). Days are UTC.
pub(crate) fn parse_time(
    parameter: &'static str,
    value: &str,
    end_of_day: bool,
) -> Result<DateTime<Utc>, FilterError> {
    let value = value.trim();
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let start = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(if end_of_day {
            start + Duration::days(1)
        } else {
            start
        });
    }
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            invalid(
                parameter,
                format!("{value:?} is not a date (YYYY-MM-DD) or RFC 3339 time"),
            )
        })
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// A filter checked and normalized, ready to become SQL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedFilter {
    pub domain: Option<String>,
    pub org: Option<String>,
    pub source: Option<SourceMatch>,
    pub country: Option<String>,
    pub asn: Option<i64>,
    pub source_type: Option<String>,
    pub result: Option<bool>,
    pub disposition: Option<String>,
    pub dkim: Option<bool>,
    pub spf: Option<bool>,
    pub header_from: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// One stored report's records (the drill-down from a report).
    pub report: Option<i64>,
    /// Exactly one sender as the Senders list keys it (set by code, not
    /// a parameter): answered from the totals, which carry the name.
    pub sender: Option<SenderKey>,
    /// The domains the caller may see (the default sees none).
    pub scope: Scope,
}

/// A sender as the Senders list keys it: its name, or the IP of a source
/// the enrichment gives no name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderKey {
    Name(String),
    Ip(IpAddr),
}

impl SenderKey {
    pub fn of(key: &str) -> SenderKey {
        match IpAddr::from_str(key) {
            Ok(ip) => SenderKey::Ip(ip),
            Err(_) => SenderKey::Name(key.to_string()),
        }
    }

    /// ` AND <the rows are this sender's>`, the description read from
    /// `sources` (`s`, ip_sources joined, or `r`, totals that carry it).
    pub fn push_condition(&self, sql: &mut Sql, sources: &str) {
        match self {
            SenderKey::Name(name) => {
                sql.push(&format!(" AND {sources}.source_name = "))
                    .bind(name.clone());
            }
            SenderKey::Ip(ip) => {
                let address = sql.backend().inet(&sql.placeholder(ip.to_string()));
                sql.push(&format!(
                    " AND {sources}.source_name IS NULL AND r.source_ip = "
                ))
                .push(&address);
            }
        }
    }
}

impl Filter {
    /// The filter checked, for a caller who sees `scope`: no query made
    /// from it returns a record of a domain outside it.
    pub fn parse(&self, scope: &Scope) -> Result<ParsedFilter, FilterError> {
        for (parameter, value) in [
            ("domain", &self.domain),
            ("org", &self.org),
            ("source", &self.source),
            ("country", &self.country),
            ("asn", &self.asn),
            ("source_type", &self.source_type),
            ("result", &self.result),
            ("disposition", &self.disposition),
            ("dkim", &self.dkim),
            ("spf", &self.spf),
            ("header_from", &self.header_from),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            printable(parameter, value)?;
        }
        let disposition = match nonempty(&self.disposition).map(str::to_ascii_lowercase) {
            Some(d) if ["none", "quarantine", "reject"].contains(&d.as_str()) => Some(d),
            Some(other) => {
                return Err(invalid(
                    "disposition",
                    format!("expected none, quarantine or reject, got {other:?}"),
                ))
            }
            None => None,
        };
        let asn = match nonempty(&self.asn) {
            Some(text) => Some(
                text.trim_start_matches(['A', 'S', 'a', 's'])
                    .parse::<i64>()
                    .map_err(|_| invalid("asn", format!("{text:?} is not an AS number")))?,
            ),
            None => None,
        };
        let country = match nonempty(&self.country) {
            Some(code) if code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(code.to_ascii_uppercase())
            }
            Some(other) => {
                return Err(invalid(
                    "country",
                    format!("{other:?} is not a two-letter country code"),
                ))
            }
            None => None,
        };
        let parsed = ParsedFilter {
            domain: nonempty(&self.domain).map(|d| d.trim_end_matches('.').to_lowercase()),
            org: nonempty(&self.org).map(str::to_string),
            source: nonempty(&self.source).map(SourceMatch::parse).transpose()?,
            country,
            asn,
            source_type: nonempty(&self.source_type).map(str::to_ascii_lowercase),
            result: nonempty(&self.result)
                .map(|v| pass_fail("result", v))
                .transpose()?,
            disposition,
            dkim: nonempty(&self.dkim)
                .map(|v| pass_fail("dkim", v))
                .transpose()?,
            spf: nonempty(&self.spf)
                .map(|v| pass_fail("spf", v))
                .transpose()?,
            header_from: nonempty(&self.header_from).map(str::to_lowercase),
            since: nonempty(&self.since)
                .map(|v| parse_time("since", v, false))
                .transpose()?,
            until: nonempty(&self.until)
                .map(|v| parse_time("until", v, true))
                .transpose()?,
            report: None,
            sender: None,
            scope: scope.clone(),
        };
        // since ≥ until is an empty period: it selects nothing.
        Ok(parsed)
    }

    /// The parameters that are set, for links that keep the filter.
    pub fn query_string(&self) -> String {
        serde_urlencoded::to_string(self)
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.ends_with('='))
            .collect::<Vec<_>>()
            .join("&")
    }
}

impl ParsedFilter {
    /// Whether the filter needs the `ip_sources` join.
    pub fn uses_sources(&self) -> bool {
        matches!(self.source, Some(SourceMatch::Name(_)))
            || self.country.is_some()
            || self.asn.is_some()
            || self.source_type.is_some()
    }

    /// ` AND …` conditions on `aggregate_records r` (and `ip_sources s`
    /// when `uses_sources`). A CIDR block's condition is worked out by the
    /// caller (`Db::in_network`, which may read the database) and given
    /// as `network`.
    pub fn push_conditions(&self, sql: &mut Sql, network: Option<&str>) {
        let backend = sql.backend();
        let text_eq = |sql: &mut Sql, column: &str, value: &str| {
            sql.push(" AND ").push(column).push(" = ").bind(value);
        };
        if let Some(domain) = &self.domain {
            text_eq(sql, "r.policy_domain", domain);
        }
        self.scope.push_condition(sql, "r.policy_domain");
        if let Some(org) = &self.org {
            push_contains(sql, "r.org_name", org);
        }
        if let Some(report) = self.report {
            sql.push(" AND r.report_id = ").bind(report);
        }
        match &self.source {
            None => {}
            Some(SourceMatch::Ip(ip)) => {
                let address = backend.inet(&sql.placeholder(ip.to_string()));
                sql.push(" AND r.source_ip = ").push(&address);
            }
            Some(SourceMatch::Network(_)) => {
                if let Some(condition) = network {
                    sql.push(" AND ").push(condition);
                }
            }
            Some(SourceMatch::Name(name)) => {
                let bare = name.trim_matches('"');
                sql.push(" AND (s.ptr = ").bind(bare);
                sql.push(" OR s.base_domain = ").bind(bare);
                sql.push(" OR ");
                push_contains_condition(sql, "s.source_name", name);
                sql.push(")");
            }
        }
        if let Some(country) = &self.country {
            text_eq(sql, "s.country", country);
        }
        if let Some(asn) = self.asn {
            sql.push(" AND s.asn = ").bind(asn);
        }
        if let Some(kind) = &self.source_type {
            text_eq(sql, "s.source_type", kind);
        }
        if let Some(pass) = self.result {
            sql.push(" AND ").push(&match pass {
                true => backend.is_true("r.dmarc_pass"),
                false => backend.is_false("r.dmarc_pass"),
            });
        }
        if let Some(disposition) = &self.disposition {
            text_eq(sql, "r.disposition", disposition);
        }
        if let Some(pass) = self.dkim {
            text_eq(sql, "r.dkim_aligned", if pass { "pass" } else { "fail" });
        }
        if let Some(pass) = self.spf {
            text_eq(sql, "r.spf_aligned", if pass { "pass" } else { "fail" });
        }
        if let Some(from) = &self.header_from {
            // Reports carry the From domain as the mail had it ("Example.COM").
            sql.push(" AND lower(r.header_from) = ").bind(from);
        }
        if let Some(since) = self.since {
            sql.push(" AND r.date_begin >= ").bind(since);
        }
        if let Some(until) = self.until {
            sql.push(" AND r.date_begin < ").bind(until);
        }
    }
}

/// ` AND <column> contains <text>`, ignoring case.
pub fn push_contains(sql: &mut Sql, column: &str, text: &str) {
    sql.push(" AND ");
    push_contains_condition(sql, column, text);
}

/// `<column> contains <text>`, ignoring case: `lower(column) LIKE '%text%'`
/// with LIKE's own characters (`%`, `_`, `\`) in the text taken literally;
/// a text in double quotes is the whole value (a drill-down from a row of
/// a summary must count what the row counted).
/// (SQLite's lower() folds ASCII only; reporters' names are ASCII.)
fn push_contains_condition(sql: &mut Sql, column: &str, text: &str) {
    if let Some(whole) = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        sql.push("lower(")
            .push(column)
            .push(") = ")
            .bind(whole.to_lowercase());
        return;
    }
    sql.push("lower(")
        .push(column)
        .push(") LIKE ")
        .bind(like_pattern(text))
        .push(" ESCAPE '\\'");
}

fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_with_messages_that_name_them() {
        let bad = |filter: Filter| filter.parse(&Scope::All).unwrap_err().to_string();
        assert!(bad(Filter {
            result: Some("maybe".into()),
            ..Default::default()
        })
        .starts_with("result:"));
        assert!(bad(Filter {
            since: Some("yesterday".into()),
            ..Default::default()
        })
        .starts_with("since:"));
        assert!(bad(Filter {
            source: Some("10.0.0.0/33".into()),
            ..Default::default()
        })
        .starts_with("source:"));
        assert!(bad(Filter {
            country: Some("USA".into()),
            ..Default::default()
        })
        .starts_with("country:"));
        let parsed = Filter {
            domain: Some("Example.COM.".into()),
            asn: Some("AS15169".into()),
            since: Some("2024-03-30".into()),
            until: Some("2024-03-30".into()),
            ..Default::default()
        }
        .parse(&Scope::All)
        .unwrap();
        assert_eq!(parsed.domain.as_deref(), Some("example.com"));
        assert_eq!(parsed.asn, Some(15169));
        assert_eq!(
            parsed.until.unwrap() - parsed.since.unwrap(),
            Duration::days(1)
        );
    }

    #[test]
    fn like_patterns_take_the_text_literally() {
        assert_eq!(like_pattern("Outlook"), "%outlook%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = SourceMatch::parse("203.0.113.0/25").unwrap();
        assert!(net.contains("203.0.113.127".parse().unwrap()));
        assert!(!net.contains("203.0.113.128".parse().unwrap()));
        let v6 = SourceMatch::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("203.0.113.1".parse().unwrap()));
        assert!(SourceMatch::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn host_bits_of_a_block_are_cleared() {
        let network = |text: &str| match SourceMatch::parse(text).unwrap() {
            SourceMatch::Network(network) => network.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(network("192.0.2.5/24"), "192.0.2.0/24");
        assert_eq!(network("192.0.2.5/1"), "128.0.0.0/1");
        assert_eq!(network("192.0.2.5/32"), "192.0.2.5/32");
        assert_eq!(network("2001:db8::1/0"), "::/0");
    }

    #[test]
    fn control_characters_are_refused_in_every_parameter() {
        let error = Filter {
            org: Some("google\0.com".into()),
            ..Default::default()
        }
        .parse(&Scope::All)
        .unwrap_err();
        assert_eq!(error.parameter, "org");
    }
}
