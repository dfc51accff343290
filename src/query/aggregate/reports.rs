//! Stored aggregate reports: their metadata and published policy.

use crate::scope::Scope;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::query::filter::ParsedFilter;
use crate::query::json::JsonColumn;
use crate::query::time::{MaybeTimestamp, Timestamp};
use crate::query::{count_of, Page, QueryError, RowStream};
use crate::store::{Sql, Store};

/// One stored aggregate report's metadata and published policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ReportRow {
    pub id: i64,
    /// The inbox message it came in (`/api/v1/inbox/messages/{id}`).
    pub message_id: Option<i64>,
    pub org_name: String,
    pub email: Option<String>,
    pub report_id: String,
    pub policy_domain: String,
    #[sqlx(try_from = "Timestamp")]
    pub date_begin: String,
    #[sqlx(try_from = "Timestamp")]
    pub date_end: String,
    pub schema: String,
    pub adkim: Option<String>,
    pub aspf: Option<String>,
    pub p: Option<String>,
    pub sp: Option<String>,
    pub np: Option<String>,
    pub pct: Option<i64>,
    pub fo: Option<String>,
    pub record_count: i64,
    pub message_count: i64,
    /// When dmarcd received the report.
    #[sqlx(try_from = "Timestamp")]
    pub received_at: String,
    /// What is odd about the report: what the parser had to tolerate, and
    /// dates that cannot be right (a period before 2010, or ending after
    /// the report arrived).
    #[sqlx(try_from = "JsonColumn")]
    pub warnings: Vec<String>,
    /// When retention deleted the report's records
    /// (`retention.aggregate_days`): the report stays, and the dashboard's
    /// totals keep its counts.
    #[sqlx(try_from = "MaybeTimestamp")]
    pub records_pruned_at: Option<String>,
}

/// No DMARC report can be older: the specification appeared in 2012.
fn first_plausible_day() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2010, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
        .unwrap_or_default()
}

/// Slack for reporters' clocks and time zones before a period that ends
/// after its report arrived counts as in the future.
const CLOCK_SLACK: Duration = Duration::days(1);

/// Why a report's period cannot be right, if it cannot: it begins before
/// 2010 (a reporter's clock at zero, a time in milliseconds read as
/// seconds), or it ends after dmarcd received the report.
pub fn implausible_dates(
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
    received: DateTime<Utc>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if begin < first_plausible_day() {
        warnings.push(format!(
            "implausible date: the period begins {}, before 2010; the reporter's dates are \
             probably wrong",
            begin.format("%Y-%m-%d")
        ));
    }
    if end > received + CLOCK_SLACK {
        warnings.push(format!(
            "implausible date: the period ends {}, after the report was received ({}); \
             the reporter's dates are in the future",
            end.format("%Y-%m-%d"),
            received.format("%Y-%m-%d")
        ));
    }
    warnings
}

impl ReportRow {
    /// The row with its date warnings added.
    fn checked(mut self) -> Self {
        let time = |text: &str| DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc());
        if let (Some(begin), Some(end), Some(received)) = (
            time(&self.date_begin),
            time(&self.date_end),
            time(&self.received_at),
        ) {
            self.warnings
                .extend(implausible_dates(begin, end, received));
        }
        self
    }
}

/// A report as a CSV line: the columns of `ReportRow`, its warnings
/// joined with `; `.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportCsvRow {
    pub id: i64,
    pub message_id: Option<i64>,
    pub org_name: String,
    pub email: Option<String>,
    pub report_id: String,
    pub policy_domain: String,
    pub date_begin: String,
    pub date_end: String,
    pub schema: String,
    pub adkim: Option<String>,
    pub aspf: Option<String>,
    pub p: Option<String>,
    pub sp: Option<String>,
    pub np: Option<String>,
    pub pct: Option<i64>,
    pub fo: Option<String>,
    pub record_count: i64,
    pub message_count: i64,
    pub received_at: String,
    pub warnings: String,
    pub records_pruned_at: Option<String>,
}

impl From<ReportRow> for ReportCsvRow {
    fn from(row: ReportRow) -> Self {
        let row = row.checked();
        ReportCsvRow {
            warnings: row.warnings.join("; "),
            id: row.id,
            message_id: row.message_id,
            org_name: row.org_name,
            email: row.email,
            report_id: row.report_id,
            policy_domain: row.policy_domain,
            date_begin: row.date_begin,
            date_end: row.date_end,
            schema: row.schema,
            adkim: row.adkim,
            aspf: row.aspf,
            p: row.p,
            sp: row.sp,
            np: row.np,
            pct: row.pct,
            fo: row.fo,
            record_count: row.record_count,
            message_count: row.message_count,
            received_at: row.received_at,
            records_pruned_at: row.records_pruned_at,
        }
    }
}

/// The columns of `ReportRow`; PostgreSQL keeps `pct` and `record_count`
/// in smaller integers.
fn report_columns(store: &Store) -> String {
    format!(
        "a.id, a.message_id, a.org_name, a.email, a.report_id, a.policy_domain, \
         a.date_begin, a.date_end, a.schema, a.adkim, a.aspf, a.p, a.sp, a.np, \
         CAST(a.pct AS BIGINT) AS pct, a.fo, CAST(a.record_count AS BIGINT) AS record_count, \
         a.message_count, a.created_at AS received_at, {warnings} AS warnings, \
         a.records_pruned_at",
        warnings = store.reads().backend().json_text("a.warnings")
    )
}

/// Reports filter on what a report has: domain, organization, period.
fn reports_sql(store: &Store, filter: &ParsedFilter) -> Sql {
    let mut sql = store.reads().sql();
    sql.push("SELECT ")
        .push(&report_columns(store))
        .push(" FROM aggregate_reports a WHERE 1 = 1");
    if let Some(domain) = &filter.domain {
        sql.push(" AND a.policy_domain = ").bind(domain);
    }
    filter.scope.push_condition(&mut sql, "a.policy_domain");
    if let Some(org) = &filter.org {
        crate::query::filter::push_contains(&mut sql, "a.org_name", org);
    }
    if let Some(since) = filter.since {
        sql.push(" AND a.date_begin >= ").bind(since);
    }
    if let Some(until) = filter.until {
        sql.push(" AND a.date_begin < ").bind(until);
    }
    sql
}

pub async fn reports(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<(Vec<ReportRow>, i64), QueryError> {
    let inner = reports_sql(store, filter);
    let total = count_of(store.reads(), &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY a.date_begin DESC, a.id DESC");
    page.push_limit(&mut sql);
    let rows: Vec<ReportRow> = store.reads().fetch_all(&sql).await?;
    Ok((rows.into_iter().map(ReportRow::checked).collect(), total))
}

/// Every report matching the filter, as CSV lines.
pub async fn reports_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<RowStream<ReportCsvRow>, QueryError> {
    let mut sql = reports_sql(store, filter);
    sql.push(" ORDER BY a.date_begin DESC, a.id DESC");
    Ok(RowStream::new::<ReportRow>(store.reads(), sql))
}

/// One report, if `scope` sees its domain.
pub async fn report(
    store: &Store,
    scope: &Scope,
    id: i64,
) -> Result<Option<ReportRow>, QueryError> {
    let mut sql = store.reads().sql();
    sql.push("SELECT ")
        .push(&report_columns(store))
        .push(" FROM aggregate_reports a WHERE a.id = ")
        .bind(id);
    scope.push_condition(&mut sql, "a.policy_domain");
    let row: Option<ReportRow> = store.reads().fetch_optional(&sql).await?;
    Ok(row.map(ReportRow::checked))
}

/// Where in its message a report was found (`message 12 › report.zip ›
/// report.xml`), to find it there again; `None` for an unknown report or
/// one stored without it.
pub async fn report_location(
    store: &Store,
    scope: &Scope,
    id: i64,
) -> Result<Option<String>, QueryError> {
    let mut sql = store.reads().sql();
    sql.push("SELECT location FROM aggregate_reports WHERE id = ")
        .bind(id);
    scope.push_condition(&mut sql, "policy_domain");
    let row: Option<(Option<String>,)> = store.reads().fetch_optional(&sql).await?;
    Ok(row.and_then(|(location,)| location))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn dates_before_2010_or_after_arrival_are_implausible() {
        let received = time("2025-03-02T08:00:00Z");
        assert!(implausible_dates(
            time("2025-03-01T00:00:00Z"),
            time("2025-03-01T23:59:59Z"),
            received
        )
        .is_empty());
        // A day of slack for time zones.
        assert!(implausible_dates(
            time("2025-03-02T00:00:00Z"),
            time("2025-03-02T23:59:59Z"),
            received
        )
        .is_empty());
        let old = implausible_dates(
            time("1979-06-15T00:00:00Z"),
            time("1979-06-16T00:00:00Z"),
            received,
        );
        assert_eq!(old.len(), 1);
        assert!(old[0].contains("1979-06-15, before 2010"), "{old:?}");
        let future = implausible_dates(
            time("2031-01-01T00:00:00Z"),
            time("2031-01-02T00:00:00Z"),
            received,
        );
        assert_eq!(future.len(), 1);
        assert!(future[0].contains("ends 2031-01-02, after the report was received (2025-03-02)"));
    }
}
