//! The inbox as the dashboard and the API show it: stored messages and
//! what became of them.

use serde::Serialize;

use super::time::{MaybeTimestamp, Timestamp};
use super::{count_of, Page, QueryError, RowStream};
use crate::store::{Sql, Store};

/// One inbox message (without its bytes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct InboxRow {
    pub id: i64,
    #[sqlx(try_from = "Timestamp")]
    pub received_at: String,
    /// `smtp`, `http` or `import`.
    pub intake: String,
    pub source_name: Option<String>,
    pub peer_ip: Option<String>,
    /// The SMTP envelope sender (MAIL FROM), not the From header.
    pub mail_from: Option<String>,
    pub size: i64,
    /// `pending`, `processing`, `done`, `failed`, `duplicate` or `ignored`.
    pub status: String,
    /// Why it failed or was ignored.
    pub error: Option<String>,
    pub attempts: i64,
    #[sqlx(try_from = "MaybeTimestamp")]
    pub processed_at: Option<String>,
    /// The reports this message produced, by kind (a message may hold
    /// several), and the first aggregate report's id (`/reports/{id}`).
    pub aggregate_reports: i64,
    pub first_aggregate_report: Option<i64>,
    pub tls_reports: i64,
    pub failure_reports: i64,
}

pub const INBOX_STATUSES: [&str; 6] = [
    "pending",
    "processing",
    "done",
    "failed",
    "duplicate",
    "ignored",
];

fn inbox_sql(store: &Store, status: Option<&str>) -> Result<Sql, QueryError> {
    let mut sql = store.db().sql();
    // PostgreSQL keeps attempts in an int4.
    sql.push(&format!(
        "SELECT m.id, m.received_at, m.intake, m.source_name, {peer} AS peer_ip, m.mail_from, \
         m.size, m.status, m.error, CAST(m.attempts AS BIGINT) AS attempts, m.processed_at, \
         (SELECT COUNT(*) FROM aggregate_reports a WHERE a.message_id = m.id) AS aggregate_reports, \
         (SELECT MIN(a.id) FROM aggregate_reports a WHERE a.message_id = m.id) AS first_aggregate_report, \
         (SELECT COUNT(*) FROM tls_reports t WHERE t.message_id = m.id) AS tls_reports, \
         (SELECT COUNT(*) FROM failure_reports f WHERE f.message_id = m.id) AS failure_reports \
         FROM inbox_messages m WHERE 1 = 1",
        peer = store.db().backend().ip_text("m.peer_ip"),
    ));
    if let Some(status) = status.filter(|s| !s.is_empty()) {
        if !INBOX_STATUSES.contains(&status) {
            return Err(QueryError::Invalid(format!(
                "status: {status:?} is not one of {}",
                INBOX_STATUSES.join(", ")
            )));
        }
        sql.push(" AND m.status = ").bind(status);
    }
    Ok(sql)
}

pub async fn inbox(
    store: &Store,
    status: Option<&str>,
    page: Page,
) -> Result<(Vec<InboxRow>, i64), QueryError> {
    let inner = inbox_sql(store, status)?;
    let total = count_of(store.db(), &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY m.id DESC");
    page.push_limit(&mut sql);
    Ok((store.db().fetch_all(&sql).await?, total))
}

pub async fn inbox_stream(
    store: &Store,
    status: Option<&str>,
) -> Result<RowStream<InboxRow>, QueryError> {
    let mut sql = inbox_sql(store, status)?;
    sql.push(" ORDER BY m.id DESC");
    Ok(RowStream::new::<InboxRow>(store.db(), sql))
}

pub async fn inbox_message(store: &Store, id: i64) -> Result<Option<InboxRow>, QueryError> {
    let mut sql = inbox_sql(store, None)?;
    sql.push(" AND m.id = ").bind(id);
    Ok(store.db().fetch_optional(&sql).await?)
}
