//! Aggregate records with what is known about their sources.

use serde::Serialize;

use super::{push_from_where, push_from_where_in, Measures};
use crate::query::filter::ParsedFilter;
use crate::query::plan::Plan;
use crate::query::time::Timestamp;
use crate::query::{Page, QueryError, RowStream};
use crate::store::{Sql, Store};

/// One aggregate record with what is known about its source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct RecordRow {
    pub id: i64,
    /// The stored report's id (`/api/v1/aggregate/reports/{id}`).
    pub report: i64,
    pub org_name: String,
    pub policy_domain: String,
    #[sqlx(try_from = "Timestamp")]
    pub date_begin: String,
    #[sqlx(try_from = "Timestamp")]
    pub date_end: String,
    /// Null when the report carried an unparseable address (see invalid_source_ip).
    pub source_ip: Option<String>,
    pub invalid_source_ip: Option<String>,
    pub country: Option<String>,
    pub asn: Option<i64>,
    pub as_name: Option<String>,
    pub ptr: Option<String>,
    pub base_domain: Option<String>,
    pub source_name: Option<String>,
    pub source_type: Option<String>,
    /// Messages this record stands for.
    pub count: i64,
    pub disposition: Option<String>,
    pub dkim_aligned: Option<String>,
    pub spf_aligned: Option<String>,
    pub dmarc_pass: bool,
    pub header_from: Option<String>,
    pub envelope_from: Option<String>,
    pub envelope_to: Option<String>,
    /// JSON array of DKIM results (domain, selector, result).
    pub dkim_results: String,
    /// JSON array of SPF results (domain, scope, result).
    pub spf_results: String,
    /// JSON array of policy override reasons.
    pub reasons: String,
}

async fn records_sql(store: &Store, filter: &ParsedFilter) -> Result<Sql, QueryError> {
    let backend = store.db().backend();
    let mut sql = store.db().sql();
    sql.push(&format!(
        "SELECT r.id, r.report_id AS report, r.org_name, r.policy_domain, r.date_begin, r.date_end, \
         {source_ip} AS source_ip, r.invalid_source_ip, s.country, s.asn, s.as_name, s.ptr, \
         s.base_domain, s.source_name, s.source_type, r.count, r.disposition, r.dkim_aligned, \
         r.spf_aligned, r.dmarc_pass, r.header_from, r.envelope_from, r.envelope_to, \
         {dkim} AS dkim_results, {spf} AS spf_results, {reasons} AS reasons",
        source_ip = backend.ip_text("r.source_ip"),
        dkim = backend.json_text("r.dkim_results"),
        spf = backend.json_text("r.spf_results"),
        reasons = backend.json_text("r.reasons"),
    ));
    push_from_where(store, &mut sql, filter, true).await?;
    // Newest first; the id makes the order stable across pages.
    sql.push(" ORDER BY r.date_begin DESC, r.id DESC");
    Ok(sql)
}

/// Records matching the filter, newest first, one page, with the total.
pub async fn records(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<(Vec<RecordRow>, i64), QueryError> {
    let total = records_total(store, filter, true).await?;
    let mut sql = records_sql(store, filter).await?;
    page.push_limit(&mut sql);
    Ok((store.db().fetch_all(&sql).await?, total))
}

/// How many records match the filter: from a rollup when one covers it
/// (`use_rollups`), else counted.
pub async fn records_total(
    store: &Store,
    filter: &ParsedFilter,
    use_rollups: bool,
) -> Result<i64, QueryError> {
    let plan = if use_rollups {
        Plan::for_query(filter, None)
    } else {
        Plan::Records
    };
    let db = store.db();
    let mut count = db.sql();
    let records = Measures::new(plan, db.backend(), filter.result).records;
    count.push(&format!("SELECT {records}"));
    push_from_where_in(store, &mut count, filter, false, plan, None).await?;
    let (total,): (i64,) = db.fetch_one(&count).await?;
    Ok(total)
}

pub async fn records_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<RowStream<RecordRow>, QueryError> {
    let sql = records_sql(store, filter).await?;
    Ok(RowStream::new::<RecordRow>(store.db(), sql))
}
