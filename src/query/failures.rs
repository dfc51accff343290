//! DMARC failure (forensic) reports as the dashboard and the API show them.

use serde::Serialize;

use super::filter::{ParsedFilter, SourceMatch};
use super::time::{MaybeTimestamp, Timestamp};
use super::{count_of, Page, QueryError, RowStream};
use crate::store::{Sql, Store};

/// One failure (forensic) report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct FailureRow {
    pub id: i64,
    pub message_id: Option<i64>,
    pub format: String,
    pub feedback_type: Option<String>,
    #[sqlx(try_from = "MaybeTimestamp")]
    pub arrival_date: Option<String>,
    pub source_ip: Option<String>,
    pub reported_domain: Option<String>,
    pub original_mail_from: Option<String>,
    pub original_from: Option<String>,
    pub original_subject: Option<String>,
    pub auth_failure: Option<String>,
    pub delivery_result: Option<String>,
    pub dkim_domain: Option<String>,
    pub reporting_mta: Option<String>,
    pub user_agent: Option<String>,
    #[sqlx(try_from = "Timestamp")]
    pub received_at: String,
}

fn failures_sql(store: &Store, filter: &ParsedFilter) -> Sql {
    let backend = store.db().backend();
    let mut sql = store.db().sql();
    // Lists leave as their items joined with commas.
    sql.push(&format!(
        "SELECT f.id, f.message_id, f.format, f.feedback_type, f.arrival_date, \
         {source_ip} AS source_ip, {domains} AS reported_domain, f.original_mail_from, \
         f.original_from, f.original_subject, {auth_failure} AS auth_failure, f.delivery_result, \
         f.dkim_domain, f.reporting_mta, f.user_agent, f.created_at AS received_at \
         FROM failure_reports f WHERE 1 = 1",
        source_ip = backend.ip_text("f.source_ip"),
        domains = backend.list_text("f.reported_domain"),
        auth_failure = backend.list_text("f.auth_failure"),
    ));
    if let Some(domain) = &filter.domain {
        let domain = sql.placeholder(domain);
        sql.push(" AND ")
            .push(&backend.list_contains("f.reported_domain", &domain));
    }
    if let Some(SourceMatch::Ip(ip)) = &filter.source {
        let ip = backend.inet(&sql.placeholder(ip.to_string()));
        sql.push(" AND f.source_ip = ").push(&ip);
    }
    if let Some(since) = filter.since {
        sql.push(" AND f.created_at >= ").bind(since);
    }
    if let Some(until) = filter.until {
        sql.push(" AND f.created_at < ").bind(until);
    }
    sql
}

pub async fn failures(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<(Vec<FailureRow>, i64), QueryError> {
    let inner = failures_sql(store, filter);
    let total = count_of(store.db(), &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY f.id DESC");
    page.push_limit(&mut sql);
    Ok((store.db().fetch_all(&sql).await?, total))
}

pub async fn failures_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<RowStream<FailureRow>, QueryError> {
    let mut sql = failures_sql(store, filter);
    sql.push(" ORDER BY f.id DESC");
    Ok(RowStream::new::<FailureRow>(store.db(), sql))
}

pub async fn failure(store: &Store, id: i64) -> Result<Option<FailureRow>, QueryError> {
    let mut sql = failures_sql(store, &ParsedFilter::default());
    sql.push(" AND f.id = ").bind(id);
    Ok(store.db().fetch_optional(&sql).await?)
}
