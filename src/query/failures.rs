//! DMARC failure (forensic) reports as the dashboard and the API show them.

use serde::Serialize;
use sqlx::{Database, Decode, Type};

use super::filter::{ParsedFilter, SourceMatch};
use super::time::{MaybeTimestamp, Timestamp};
use super::{count_of, Page, QueryError, RowStream};
use crate::report::encoded_words::decode_encoded_words;
use crate::store::{Sql, Store};

/// One failure (forensic) report. Header values copied from the failed
/// message (its From and Subject) have their RFC 2047 encoded words
/// decoded (`=?utf-8?B?…?=` reads as the text it stands for).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct FailureRow {
    pub id: i64,
    pub message_id: Option<i64>,
    pub format: String,
    pub feedback_type: Option<String>,
    /// When the failed message arrived at the receiver that reported it
    /// (the report's `Arrival-Date`), if the report says.
    #[sqlx(try_from = "MaybeTimestamp")]
    pub arrival_date: Option<String>,
    pub source_ip: Option<String>,
    pub reported_domain: Option<String>,
    pub original_mail_from: Option<String>,
    #[sqlx(try_from = "HeaderText")]
    pub original_from: Option<String>,
    #[sqlx(try_from = "HeaderText")]
    pub original_subject: Option<String>,
    /// The failure type (`Auth-Failure`: `dmarc`, `spf`, `dkim`, …),
    /// comma-separated; null when the report names none.
    pub auth_failure: Option<String>,
    pub delivery_result: Option<String>,
    pub dkim_domain: Option<String>,
    pub reporting_mta: Option<String>,
    pub user_agent: Option<String>,
    /// When dmarcd received the report.
    #[sqlx(try_from = "Timestamp")]
    pub received_at: String,
}

/// A header value of the failed message as stored (as it was sent), read
/// with its encoded words decoded.
pub struct HeaderText(Option<String>);

impl From<HeaderText> for Option<String> {
    fn from(text: HeaderText) -> Self {
        text.0
            .map(|value| decode_encoded_words(&value).into_owned())
    }
}

impl<DB: Database> Type<DB> for HeaderText
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for HeaderText
where
    Option<String>: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(HeaderText(<Option<String> as Decode<'r, DB>>::decode(
            value,
        )?))
    }
}

fn failures_sql(store: &Store, filter: &ParsedFilter) -> Sql {
    let backend = store.reads().backend();
    let mut sql = store.reads().sql();
    // Lists leave as their items joined with commas.
    sql.push(&format!(
        "SELECT f.id, f.message_id, f.format, f.feedback_type, f.arrival_date, \
         {source_ip} AS source_ip, nullif({domains}, '') AS reported_domain, f.original_mail_from, \
         f.original_from, f.original_subject, nullif({auth_failure}, '') AS auth_failure, f.delivery_result, \
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
    filter
        .scope
        .push_list_condition(&mut sql, "f.reported_domain");
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
    let total = count_of(store.reads(), &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY f.id DESC");
    page.push_limit(&mut sql);
    Ok((store.reads().fetch_all(&sql).await?, total))
}

pub async fn failures_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<RowStream<FailureRow>, QueryError> {
    let mut sql = failures_sql(store, filter);
    sql.push(" ORDER BY f.id DESC");
    Ok(RowStream::new::<FailureRow>(store.reads(), sql))
}

/// One failure report, if `scope` sees a domain it names.
pub async fn failure(
    store: &Store,
    scope: &crate::scope::Scope,
    id: i64,
) -> Result<Option<FailureRow>, QueryError> {
    let filter = ParsedFilter {
        scope: scope.clone(),
        ..ParsedFilter::default()
    };
    let mut sql = failures_sql(store, &filter);
    sql.push(" AND f.id = ").bind(id);
    Ok(store.reads().fetch_optional(&sql).await?)
}
