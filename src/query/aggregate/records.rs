//! Aggregate records with what is known about their sources.

use serde::{Deserialize, Serialize};

use super::{push_from_where, push_from_where_in, Measures};
use crate::query::filter::ParsedFilter;
use crate::query::json::JsonColumn;
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
    /// The DKIM signatures the receiver checked, as it reported them.
    #[sqlx(try_from = "JsonColumn")]
    pub dkim_results: Vec<DkimCheck>,
    /// The SPF checks the receiver ran, as it reported them.
    #[sqlx(try_from = "JsonColumn")]
    pub spf_results: Vec<SpfCheck>,
    /// Why the receiver applied another disposition than the policy's
    /// (`policy_evaluated/reason`), as it reported them.
    #[sqlx(try_from = "JsonColumn")]
    pub reasons: Vec<PolicyOverride>,
}

/// One policy override reason of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyOverride {
    /// `forwarded`, `sampled_out`, `trusted_forwarder`, `mailing_list`,
    /// `local_policy`, `other`, or another value as written.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub comment: Option<String>,
}

impl PolicyOverride {
    /// `type` or `type: comment` (the CSV form).
    pub fn compact(&self) -> String {
        let kind = self.kind.as_deref().unwrap_or("?");
        match self.comment.as_deref().filter(|c| !c.is_empty()) {
            Some(comment) => format!("{kind}: {comment}"),
            None => kind.to_string(),
        }
    }
}

/// One DKIM signature of a record (`auth_results/dkim`). Values are as
/// the reporter wrote them; a reporter may leave any of them out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DkimCheck {
    /// The signing domain (`d=`).
    pub domain: Option<String>,
    /// The selector (`s=`).
    pub selector: Option<String>,
    /// `pass`, `fail`, `none`, `neutral`, `policy`, `temperror`, `permerror`.
    pub result: Option<String>,
    pub human_result: Option<String>,
}

/// One SPF check of a record (`auth_results/spf`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpfCheck {
    /// The domain checked.
    pub domain: Option<String>,
    /// `mfrom` (the envelope sender) or `helo`.
    pub scope: Option<String>,
    /// `pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`, `permerror`.
    pub result: Option<String>,
    pub human_result: Option<String>,
}

impl DkimCheck {
    /// `domain:selector=result` (the CSV form): the selector left out when
    /// there is none, `?` for a missing domain or result.
    pub fn compact(&self) -> String {
        compact(&self.domain, &self.selector, &self.result)
    }
}

impl SpfCheck {
    /// `domain:scope=result` (the CSV form).
    pub fn compact(&self) -> String {
        compact(&self.domain, &self.scope, &self.result)
    }
}

fn compact(domain: &Option<String>, middle: &Option<String>, result: &Option<String>) -> String {
    let domain = domain.as_deref().unwrap_or("?");
    let result = result.as_deref().unwrap_or("?");
    match middle.as_deref().filter(|m| !m.is_empty()) {
        Some(middle) => format!("{domain}:{middle}={result}"),
        None => format!("{domain}={result}"),
    }
}

/// A record as a CSV line: the columns of `RecordRow`, with the DKIM and
/// SPF results in their compact form, `; ` between results
/// (`example.com:s1=pass; example.net:s2=fail`), and the override reasons
/// as `type` or `type: comment`, `; ` between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordCsvRow {
    pub id: i64,
    pub report: i64,
    pub org_name: String,
    pub policy_domain: String,
    pub date_begin: String,
    pub date_end: String,
    pub source_ip: Option<String>,
    pub invalid_source_ip: Option<String>,
    pub country: Option<String>,
    pub asn: Option<i64>,
    pub as_name: Option<String>,
    pub ptr: Option<String>,
    pub base_domain: Option<String>,
    pub source_name: Option<String>,
    pub source_type: Option<String>,
    pub count: i64,
    pub disposition: Option<String>,
    pub dkim_aligned: Option<String>,
    pub spf_aligned: Option<String>,
    pub dmarc_pass: bool,
    pub header_from: Option<String>,
    pub envelope_from: Option<String>,
    pub envelope_to: Option<String>,
    pub dkim_results: String,
    pub spf_results: String,
    pub reasons: String,
}

impl From<RecordRow> for RecordCsvRow {
    fn from(row: RecordRow) -> Self {
        let joined = |items: Vec<String>| items.join("; ");
        RecordCsvRow {
            dkim_results: joined(row.dkim_results.iter().map(DkimCheck::compact).collect()),
            spf_results: joined(row.spf_results.iter().map(SpfCheck::compact).collect()),
            id: row.id,
            report: row.report,
            org_name: row.org_name,
            policy_domain: row.policy_domain,
            date_begin: row.date_begin,
            date_end: row.date_end,
            source_ip: row.source_ip,
            invalid_source_ip: row.invalid_source_ip,
            country: row.country,
            asn: row.asn,
            as_name: row.as_name,
            ptr: row.ptr,
            base_domain: row.base_domain,
            source_name: row.source_name,
            source_type: row.source_type,
            count: row.count,
            disposition: row.disposition,
            dkim_aligned: row.dkim_aligned,
            spf_aligned: row.spf_aligned,
            dmarc_pass: row.dmarc_pass,
            header_from: row.header_from,
            envelope_from: row.envelope_from,
            envelope_to: row.envelope_to,
            reasons: joined(row.reasons.iter().map(PolicyOverride::compact).collect()),
        }
    }
}

async fn records_sql(store: &Store, filter: &ParsedFilter) -> Result<Sql, QueryError> {
    let backend = store.reads().backend();
    let mut sql = store.reads().sql();
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
    Ok((store.reads().fetch_all(&sql).await?, total))
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
    let db = store.reads();
    let mut count = db.sql();
    let records = Measures::new(plan, db.backend(), filter.result).records;
    count.push(&format!("SELECT {records}"));
    push_from_where_in(store, &mut count, filter, false, plan, None).await?;
    let (total,): (i64,) = db.fetch_one(&count).await?;
    Ok(total)
}

/// Every record matching the filter, as CSV lines.
pub async fn records_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<RowStream<RecordCsvRow>, QueryError> {
    let sql = records_sql(store, filter).await?;
    Ok(RowStream::new::<RecordRow>(store.reads(), sql))
}
