//! Stored aggregate reports: their metadata and published policy.

use serde::Serialize;

use crate::query::filter::ParsedFilter;
use crate::query::time::Timestamp;
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
    #[sqlx(try_from = "Timestamp")]
    pub received_at: String,
}

/// The columns of `ReportRow`; PostgreSQL keeps `pct` and `record_count`
/// in smaller integers.
const REPORT_COLUMNS: &str =
    "a.id, a.message_id, a.org_name, a.email, a.report_id, a.policy_domain, \
     a.date_begin, a.date_end, a.schema, a.adkim, a.aspf, a.p, a.sp, a.np, \
     CAST(a.pct AS BIGINT) AS pct, a.fo, CAST(a.record_count AS BIGINT) AS record_count, \
     a.message_count, a.created_at AS received_at";

/// Reports filter on what a report has: domain, organization, period.
fn reports_sql(store: &Store, filter: &ParsedFilter) -> Sql {
    let mut sql = store.db().sql();
    sql.push("SELECT ")
        .push(REPORT_COLUMNS)
        .push(" FROM aggregate_reports a WHERE 1 = 1");
    if let Some(domain) = &filter.domain {
        sql.push(" AND a.policy_domain = ").bind(domain);
    }
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
    let total = count_of(store.db(), &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY a.date_begin DESC, a.id DESC");
    page.push_limit(&mut sql);
    Ok((store.db().fetch_all(&sql).await?, total))
}

pub async fn reports_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<RowStream<ReportRow>, QueryError> {
    let mut sql = reports_sql(store, filter);
    sql.push(" ORDER BY a.date_begin DESC, a.id DESC");
    Ok(RowStream::new::<ReportRow>(store.db(), sql))
}

pub async fn report(store: &Store, id: i64) -> Result<Option<ReportRow>, QueryError> {
    let mut sql = store.db().sql();
    sql.push("SELECT ")
        .push(REPORT_COLUMNS)
        .push(" FROM aggregate_reports a WHERE a.id = ")
        .bind(id);
    Ok(store.db().fetch_optional(&sql).await?)
}

/// Where in its message a report was found (`message 12 › report.zip ›
/// report.xml`), to find it there again; `None` for an unknown report or
/// one stored without it.
pub async fn report_location(store: &Store, id: i64) -> Result<Option<String>, QueryError> {
    let mut sql = store.db().sql();
    sql.push("SELECT location FROM aggregate_reports WHERE id = ")
        .bind(id);
    let row: Option<(Option<String>,)> = store.db().fetch_optional(&sql).await?;
    Ok(row.and_then(|(location,)| location))
}
