//! SMTP TLS reports (RFC 8460) as the dashboard and the API show them:
//! reports with their session totals, summaries, the policies reported,
//! and one report whole (`detail`).

mod detail;
mod filter;

pub use detail::{tls_report, TlsFailureDetailRow, TlsPolicyDetail, TlsReportDetail};
pub use filter::{ParsedTlsFilter, TlsFilter, POLICY_TYPES};

use serde::{Deserialize, Serialize};

use super::json::JsonColumn;
use super::time::Timestamp;
use super::{count_of, Page, QueryError, RowStream};
use crate::store::{Sql, Store};

/// One TLS-RPT report with its totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TlsReportRow {
    pub id: i64,
    pub message_id: Option<i64>,
    pub organization_name: String,
    pub report_id: String,
    #[sqlx(try_from = "Timestamp")]
    pub date_begin: String,
    #[sqlx(try_from = "Timestamp")]
    pub date_end: String,
    pub contact_info: Option<String>,
    /// Policy domains in the report, comma-separated.
    pub policy_domains: String,
    pub successful_sessions: i64,
    pub failed_sessions: i64,
    /// The failed sessions of the failure details of the same policies,
    /// added up: when it differs from `failed_sessions`, the details
    /// overlap or leave some failures out (RFC 8460 §4.3 allows both).
    pub detailed_failed_sessions: i64,
}

/// Domain, organization and period apply to TLS reports through their policies.
fn tls_reports_sql(store: &Store, filter: &ParsedTlsFilter) -> Sql {
    let backend = store.reads().backend();
    let mut sql = store.reads().sql();
    sql.push(&format!(
        "SELECT t.id, t.message_id, t.organization_name, t.report_id, t.date_begin, t.date_end, \
         t.contact_info, coalesce({domains}, '') AS policy_domains, {ok} AS successful_sessions, \
         {failed} AS failed_sessions, {detailed} AS detailed_failed_sessions \
         FROM tls_reports t LEFT JOIN tls_policies p ON p.report_id = t.id \
         LEFT JOIN (SELECT policy_id, {detail_sum} AS failed FROM tls_failure_details \
         GROUP BY policy_id) d ON d.policy_id = p.id WHERE 1 = 1",
        domains = backend.join_distinct("p.policy_domain"),
        ok = backend.sum("p.successful_sessions"),
        failed = backend.sum("p.failed_sessions"),
        detailed = backend.sum("d.failed"),
        detail_sum = backend.sum("failed_sessions"),
    ));
    filter.push_conditions(&mut sql, None);
    sql.push(" GROUP BY t.id, t.message_id, t.organization_name, t.report_id, t.date_begin, t.date_end, t.contact_info");
    sql
}

pub async fn tls_reports(
    store: &Store,
    filter: &ParsedTlsFilter,
    page: Page,
) -> Result<(Vec<TlsReportRow>, i64), QueryError> {
    let inner = tls_reports_sql(store, filter);
    let total = count_of(store.reads(), &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY t.date_begin DESC, t.id DESC");
    page.push_limit(&mut sql);
    Ok((store.reads().fetch_all(&sql).await?, total))
}

pub async fn tls_reports_stream(
    store: &Store,
    filter: &ParsedTlsFilter,
) -> Result<RowStream<TlsReportRow>, QueryError> {
    let mut sql = tls_reports_sql(store, filter);
    sql.push(" ORDER BY t.date_begin DESC, t.id DESC");
    Ok(RowStream::new::<TlsReportRow>(store.reads(), sql))
}

/// What a TLS summary groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsGroupBy {
    /// Policy domain: successful and failed sessions.
    #[default]
    Domain,
    /// Day the report period began: successful and failed sessions.
    Day,
    /// Reporting organization.
    Org,
    /// Failure result type (`certificate-expired`, `starttls-not-supported`, …): failed sessions.
    ResultType,
    /// Sending MTA IP: failed sessions.
    SendingMta,
    /// Receiving MX host name: failed sessions.
    ReceivingMx,
}

impl TlsGroupBy {
    pub const ALL: [TlsGroupBy; 6] = [
        TlsGroupBy::Domain,
        TlsGroupBy::Day,
        TlsGroupBy::Org,
        TlsGroupBy::ResultType,
        TlsGroupBy::SendingMta,
        TlsGroupBy::ReceivingMx,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsGroupBy::Domain => "domain",
            TlsGroupBy::Day => "day",
            TlsGroupBy::Org => "org",
            TlsGroupBy::ResultType => "result_type",
            TlsGroupBy::SendingMta => "sending_mta",
            TlsGroupBy::ReceivingMx => "receiving_mx",
        }
    }

    pub fn parse(text: &str) -> Result<Self, QueryError> {
        Self::ALL
            .into_iter()
            .find(|group| group.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|g| g.as_str()).collect();
                QueryError::Invalid(format!(
                    "group_by: {text:?} is not one of {}",
                    known.join(", ")
                ))
            })
    }

    fn is_failure_detail(self) -> bool {
        matches!(
            self,
            TlsGroupBy::ResultType | TlsGroupBy::SendingMta | TlsGroupBy::ReceivingMx
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TlsSummaryRow {
    pub key: Option<String>,
    /// Sessions that negotiated TLS per the policy (0 for failure groupings).
    pub successful_sessions: i64,
    pub failed_sessions: i64,
}

/// The groups of a TLS summary, unpaged, and the ORDER BY that sorts them:
/// days in order; other groups busiest first, then by name.
fn tls_summary_sql(store: &Store, filter: &ParsedTlsFilter, group_by: TlsGroupBy) -> (Sql, String) {
    let backend = store.reads().backend();
    let mut sql = store.reads().sql();
    if group_by.is_failure_detail() {
        let key = match group_by {
            TlsGroupBy::ResultType => "f.result_type",
            TlsGroupBy::SendingMta => "f.sending_mta_ip",
            _ => "f.receiving_mx_hostname",
        };
        sql.push(&format!(
            "SELECT {key} AS key, CAST(0 AS BIGINT) AS successful_sessions, \
             {failed} AS failed_sessions FROM tls_failure_details f \
             JOIN tls_policies p ON p.id = f.policy_id JOIN tls_reports t ON t.id = p.report_id \
             WHERE 1 = 1",
            failed = backend.sum("f.failed_sessions")
        ));
        filter.push_conditions(&mut sql, Some("f"));
        sql.push(&format!(" GROUP BY {key}"));
        (sql, " ORDER BY 3 DESC, 1".to_string())
    } else {
        let day = backend.day_text("t.date_begin");
        let key = match group_by {
            TlsGroupBy::Domain => "p.policy_domain",
            TlsGroupBy::Org => "t.organization_name",
            _ => day.as_str(),
        };
        sql.push(&format!(
            "SELECT {key} AS key, {ok} AS successful_sessions, {failed} AS failed_sessions \
             FROM tls_policies p JOIN tls_reports t ON t.id = p.report_id WHERE 1 = 1",
            ok = backend.sum("p.successful_sessions"),
            failed = backend.sum("p.failed_sessions"),
        ));
        filter.push_conditions(&mut sql, None);
        sql.push(&format!(" GROUP BY {key}"));
        // A position inside an expression is a number, not a column:
        // the sums are written out.
        let order = match group_by {
            TlsGroupBy::Day => " ORDER BY 1".to_string(),
            _ => format!(
                " ORDER BY {} + {} DESC, 1",
                backend.sum("p.successful_sessions"),
                backend.sum("p.failed_sessions")
            ),
        };
        (sql, order)
    }
}

/// Every group of a TLS summary (the pages show them all).
pub async fn tls_summary(
    store: &Store,
    filter: &ParsedTlsFilter,
    group_by: TlsGroupBy,
) -> Result<Vec<TlsSummaryRow>, QueryError> {
    let (mut sql, order) = tls_summary_sql(store, filter, group_by);
    sql.push(&order);
    Ok(store.reads().fetch_all(&sql).await?)
}

/// One page of a TLS summary, with the number of groups.
pub async fn tls_summary_page(
    store: &Store,
    filter: &ParsedTlsFilter,
    group_by: TlsGroupBy,
    page: Page,
) -> Result<(Vec<TlsSummaryRow>, i64), QueryError> {
    let (inner, order) = tls_summary_sql(store, filter, group_by);
    let total = count_of(store.reads(), &inner).await?;
    let mut sql = inner;
    sql.push(&order);
    page.push_limit(&mut sql);
    Ok((store.reads().fetch_all(&sql).await?, total))
}

pub async fn tls_summary_stream(
    store: &Store,
    filter: &ParsedTlsFilter,
    group_by: TlsGroupBy,
) -> Result<RowStream<TlsSummaryRow>, QueryError> {
    let (mut sql, order) = tls_summary_sql(store, filter, group_by);
    sql.push(&order);
    Ok(RowStream::new::<TlsSummaryRow>(store.reads(), sql))
}

/// One TLS policy as reported, with its session counts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TlsPolicyRow {
    pub report: i64,
    pub organization_name: String,
    #[sqlx(try_from = "Timestamp")]
    pub date_begin: String,
    pub policy_type: String,
    pub policy_domain: String,
    /// The policy as the reporter saw it, line by line.
    #[sqlx(try_from = "JsonColumn")]
    pub policy_strings: Vec<String>,
    /// MX host patterns of the policy.
    #[sqlx(try_from = "JsonColumn")]
    pub mx_hosts: Vec<String>,
    pub successful_sessions: i64,
    pub failed_sessions: i64,
}

/// The newest policies matching the filter.
pub async fn tls_policies(
    store: &Store,
    filter: &ParsedTlsFilter,
    page: Page,
) -> Result<Vec<TlsPolicyRow>, QueryError> {
    let backend = store.reads().backend();
    let mut sql = store.reads().sql();
    sql.push(&format!(
        "SELECT t.id AS report, t.organization_name, t.date_begin, p.policy_type, p.policy_domain, \
         {strings} AS policy_strings, {hosts} AS mx_hosts, p.successful_sessions, p.failed_sessions \
         FROM tls_policies p JOIN tls_reports t ON t.id = p.report_id WHERE 1 = 1",
        strings = backend.list_as_json("p.policy_strings"),
        hosts = backend.list_as_json("p.mx_hosts"),
    ));
    filter.push_conditions(&mut sql, None);
    sql.push(" ORDER BY t.date_begin DESC, p.id DESC");
    page.push_limit(&mut sql);
    Ok(store.reads().fetch_all(&sql).await?)
}

/// Values the TLS filter form offers as suggestions: what the stored
/// reports hold, at most `SUGGESTIONS` of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsKnownValues {
    pub domains: Vec<String>,
    pub reporters: Vec<String>,
    pub result_types: Vec<String>,
    pub sending_mtas: Vec<String>,
    pub receiving_mxs: Vec<String>,
}

const SUGGESTIONS: i64 = 200;

/// Suggestions for a caller who sees `scope`: read from the policies of
/// the domains it sees (reports, details and all).
pub async fn tls_known_values(
    store: &Store,
    scope: &crate::scope::Scope,
) -> Result<TlsKnownValues, QueryError> {
    let db = store.reads();
    let distinct = |column: &str| {
        let mut sql = db.sql();
        let details = if column.starts_with("f.") {
            " JOIN tls_failure_details f ON f.policy_id = p.id"
        } else {
            ""
        };
        sql.push(&format!(
            "SELECT DISTINCT {column} FROM tls_policies p JOIN tls_reports t ON t.id = p.report_id\
             {details} WHERE {column} IS NOT NULL"
        ));
        scope.push_condition(&mut sql, "lower(p.policy_domain)");
        sql.push(" ORDER BY 1 LIMIT ").bind(SUGGESTIONS);
        sql
    };
    let texts = |rows: Vec<(String,)>| rows.into_iter().map(|(text,)| text).collect();
    Ok(TlsKnownValues {
        domains: texts(db.fetch_all(&distinct("p.policy_domain")).await?),
        reporters: texts(db.fetch_all(&distinct("t.organization_name")).await?),
        result_types: texts(db.fetch_all(&distinct("f.result_type")).await?),
        sending_mtas: texts(db.fetch_all(&distinct("f.sending_mta_ip")).await?),
        receiving_mxs: texts(db.fetch_all(&distinct("f.receiving_mx_hostname")).await?),
    })
}
