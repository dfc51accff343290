//! What selects TLS reports: the TLS page's form and the `/api/v1/tls/*`
//! parameters (one model for both, as for DMARC's `Filter`). A TLS report
//! has policy domains, reporters, policy types and failure details (result
//! type, sending MTA, receiving MX): none of DMARC's alignment, disposition
//! or header From.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::query::filter::{self, FilterError, ParsedFilter};
use crate::scope::Scope;
use crate::store::Sql;

/// Query parameters that select TLS reports, their policies and failure
/// details. Free-text values hold no control character.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct TlsFilter {
    /// Policy domain, exact (ignoring case).
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub domain: Option<String>,
    /// Reporting organization: any whose name contains this text, ignoring
    /// case; in double quotes, the whole name.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub org: Option<String>,
    /// Policies with a failure of this result type (`certificate-expired`,
    /// `starttls-not-supported`, …), exact (ignoring case).
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub result_type: Option<String>,
    /// Policies with a failure from this sending MTA, its IP address as
    /// reported, exact.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub sending_mta: Option<String>,
    /// Policies with a failure at this receiving MX: its host name (ignoring
    /// case and a final dot) or its IP address.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub receiving_mx: Option<String>,
    /// Policy type applied: `sts`, `tlsa` or `no-policy-found`.
    #[param(pattern = "^(sts|tlsa|no-policy-found)?$")]
    pub policy_type: Option<String>,
    /// Reports beginning on or after this day (`YYYY-MM-DD`, UTC); an RFC
    /// 3339 instant is accepted too.
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub since: Option<String>,
    /// Reports beginning before the end of this day (`YYYY-MM-DD`), or
    /// before an RFC 3339 instant.
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub until: Option<String>,
}

/// The policy types RFC 8460 §4.3 names.
pub const POLICY_TYPES: [&str; 3] = ["sts", "tlsa", "no-policy-found"];

/// A TLS filter checked and normalized, ready to become SQL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedTlsFilter {
    pub domain: Option<String>,
    pub org: Option<String>,
    pub result_type: Option<String>,
    pub sending_mta: Option<String>,
    pub receiving_mx: Option<String>,
    pub policy_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The domains the caller may see (the default sees none).
    pub scope: Scope,
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl TlsFilter {
    /// The filter checked, for a caller who sees `scope`.
    pub fn parse(&self, scope: &Scope) -> Result<ParsedTlsFilter, FilterError> {
        for (parameter, value) in [
            ("domain", &self.domain),
            ("org", &self.org),
            ("result_type", &self.result_type),
            ("sending_mta", &self.sending_mta),
            ("receiving_mx", &self.receiving_mx),
            ("policy_type", &self.policy_type),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            filter::printable(parameter, value)?;
        }
        let policy_type = match nonempty(&self.policy_type).map(str::to_ascii_lowercase) {
            Some(kind) if POLICY_TYPES.contains(&kind.as_str()) => Some(kind),
            Some(other) => {
                return Err(FilterError {
                    parameter: "policy_type",
                    message: format!("expected sts, tlsa or no-policy-found, got {other:?}"),
                })
            }
            None => None,
        };
        Ok(ParsedTlsFilter {
            domain: nonempty(&self.domain).map(|d| d.trim_end_matches('.').to_lowercase()),
            org: nonempty(&self.org).map(str::to_string),
            result_type: nonempty(&self.result_type).map(str::to_ascii_lowercase),
            sending_mta: nonempty(&self.sending_mta).map(str::to_string),
            receiving_mx: nonempty(&self.receiving_mx)
                .map(|mx| mx.trim_end_matches('.').to_lowercase()),
            policy_type,
            since: nonempty(&self.since)
                .map(|v| filter::parse_time("since", v, false))
                .transpose()?,
            until: nonempty(&self.until)
                .map(|v| filter::parse_time("until", v, true))
                .transpose()?,
            scope: scope.clone(),
        })
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

impl ParsedTlsFilter {
    /// What the DMARC overview's filter says about TLS reports: its
    /// domain, reporter and period.
    pub fn from_dmarc(filter: &ParsedFilter) -> Self {
        ParsedTlsFilter {
            domain: filter.domain.clone(),
            org: filter.org.clone(),
            since: filter.since,
            until: filter.until,
            scope: filter.scope.clone(),
            ..ParsedTlsFilter::default()
        }
    }

    fn filters_details(&self) -> bool {
        self.result_type.is_some() || self.sending_mta.is_some() || self.receiving_mx.is_some()
    }

    /// ` AND …` conditions on reports `t` and policies `p`. The failure
    /// detail conditions apply to `details` (the alias of
    /// `tls_failure_details` when the query reads them), else to the
    /// policy: it has a matching failure detail.
    pub(crate) fn push_conditions(&self, sql: &mut Sql, details: Option<&str>) {
        if let Some(domain) = &self.domain {
            sql.push(" AND lower(p.policy_domain) = ").bind(domain);
        }
        self.scope.push_condition(sql, "lower(p.policy_domain)");
        if let Some(kind) = &self.policy_type {
            sql.push(" AND p.policy_type = ").bind(kind);
        }
        if let Some(org) = &self.org {
            filter::push_contains(sql, "t.organization_name", org);
        }
        if let Some(since) = self.since {
            sql.push(" AND t.date_begin >= ").bind(since);
        }
        if let Some(until) = self.until {
            sql.push(" AND t.date_begin < ").bind(until);
        }
        if !self.filters_details() {
            return;
        }
        let alias = details.unwrap_or("fd");
        if details.is_none() {
            sql.push(" AND EXISTS (SELECT 1 FROM tls_failure_details fd WHERE fd.policy_id = p.id");
        }
        if let Some(kind) = &self.result_type {
            sql.push(&format!(" AND lower({alias}.result_type) = "))
                .bind(kind);
        }
        if let Some(ip) = &self.sending_mta {
            sql.push(&format!(" AND {alias}.sending_mta_ip = "))
                .bind(ip);
        }
        if let Some(mx) = &self.receiving_mx {
            sql.push(&format!(
                " AND (rtrim(lower({alias}.receiving_mx_hostname), '.') = "
            ))
            .bind(mx)
            .push(&format!(" OR {alias}.receiving_ip = "))
            .bind(mx)
            .push(")");
        }
        if details.is_none() {
            sql.push(")");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_normalized() {
        let parsed = TlsFilter {
            domain: Some("Company-Y.example.".into()),
            result_type: Some("Certificate-Expired".into()),
            receiving_mx: Some("MX1.example.com.".into()),
            policy_type: Some("STS".into()),
            ..Default::default()
        }
        .parse(&Scope::All)
        .unwrap();
        assert_eq!(parsed.domain.as_deref(), Some("company-y.example"));
        assert_eq!(parsed.result_type.as_deref(), Some("certificate-expired"));
        assert_eq!(parsed.receiving_mx.as_deref(), Some("mx1.example.com"));
        assert_eq!(parsed.policy_type.as_deref(), Some("sts"));
        let error = TlsFilter {
            policy_type: Some("dane".into()),
            ..Default::default()
        }
        .parse(&Scope::All)
        .unwrap_err();
        assert_eq!(error.parameter, "policy_type");
        let error = TlsFilter {
            sending_mta: Some("1.2.3.4\n".into()),
            ..Default::default()
        }
        .parse(&Scope::All)
        .unwrap_err();
        assert_eq!(error.parameter, "sending_mta");
    }
}
