//! The inbox as the dashboard and the API show it: stored messages and
//! what became of them.

use serde::Serialize;

use sqlx::{Database, Decode, Type};

use super::time::{MaybeTimestamp, Timestamp};
use super::{count_of, Page, QueryError, RowStream};
use crate::scope::Scope;
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
    /// The message's Subject header, decoded (RFC 2047), when its header
    /// has one within the first 16 KiB.
    #[sqlx(try_from = "MessageHead")]
    pub subject: Option<String>,
    pub size: i64,
    /// `pending`, `processing`, `done`, `failed`, `duplicate` or `ignored`.
    pub status: String,
    /// Why it failed or was ignored.
    pub error: Option<String>,
    pub attempts: i64,
    #[sqlx(try_from = "MaybeTimestamp")]
    pub processed_at: Option<String>,
    /// When retention deleted the raw bytes (`retention.raw_days`); the
    /// row and the reports stay.
    #[sqlx(try_from = "MaybeTimestamp")]
    pub raw_pruned_at: Option<String>,
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

/// How much of a message is read to find its Subject: a header is rarely
/// longer, and a listing must not read whole 20 MB messages.
const HEAD_BYTES: i64 = 16 * 1024;

/// The first `HEAD_BYTES` of a stored message, read for its Subject.
pub struct MessageHead(Option<Vec<u8>>);

impl<DB: Database> Type<DB> for MessageHead
where
    Vec<u8>: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <Vec<u8> as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <Vec<u8> as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for MessageHead
where
    Option<Vec<u8>>: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(MessageHead(<Option<Vec<u8>> as Decode<'r, DB>>::decode(
            value,
        )?))
    }
}

impl From<MessageHead> for Option<String> {
    fn from(head: MessageHead) -> Self {
        crate::inbox::subject_of(&head.0?)
    }
}

fn inbox_sql(store: &Store, scope: &Scope, status: Option<&str>) -> Result<Sql, QueryError> {
    let mut sql = store.reads().sql();
    // The Subject stored at intake, as a header line; for a message stored
    // before subjects were (and before compression: its chunks are as
    // received), the head of its bytes.
    let (stored, head) = match store.reads().backend() {
        crate::store::Backend::Postgres => (
            "convert_to('Subject: ' || m.subject || E'\\r\\n\\r\\n', 'UTF8')",
            "substring(raw from 1 for {n})",
        ),
        crate::store::Backend::Sqlite => (
            "CAST('Subject: ' || m.subject || char(13, 10, 13, 10) AS BLOB)",
            "substr(raw, 1, {n})",
        ),
    };
    let head = head.replace("{n}", &HEAD_BYTES.to_string());
    // PostgreSQL keeps attempts in an int4.
    sql.push(&format!(
        "SELECT m.id, m.received_at, m.intake, m.source_name, {peer} AS peer_ip, m.mail_from, \
         COALESCE({stored}, (SELECT {head} FROM inbox_raw r \
          WHERE r.message_id = m.id AND r.seq = 0 AND r.compression = 'none')) AS subject, \
         m.size, m.status, m.error, CAST(m.attempts AS BIGINT) AS attempts, m.processed_at, m.raw_pruned_at, \
         (SELECT COUNT(*) FROM aggregate_reports a WHERE a.message_id = m.id) AS aggregate_reports, \
         (SELECT MIN(a.id) FROM aggregate_reports a WHERE a.message_id = m.id) AS first_aggregate_report, \
         (SELECT COUNT(*) FROM tls_reports t WHERE t.message_id = m.id) AS tls_reports, \
         (SELECT COUNT(*) FROM failure_reports f WHERE f.message_id = m.id) AS failure_reports \
         FROM inbox_messages m WHERE 1 = 1",
        peer = store.reads().backend().ip_text("m.peer_ip"),
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
    push_scope(&mut sql, scope);
    Ok(sql)
}

/// A caller limited to some domains sees a message when it produced a
/// report of one of them and none of a domain they do not see (the raw
/// message holds every report in it). Messages that produced no report
/// (failed, pending, ignored) belong to no domain: only those who see
/// every domain see them.
fn push_scope(sql: &mut Sql, scope: &Scope) {
    if scope.is_all() {
        return;
    }
    sql.push(" AND (EXISTS (SELECT 1 FROM aggregate_reports a WHERE a.message_id = m.id");
    scope.push_condition(sql, "a.policy_domain");
    sql.push(
        ") OR EXISTS (SELECT 1 FROM tls_reports t JOIN tls_policies p ON p.report_id = t.id \
              WHERE t.message_id = m.id",
    );
    scope.push_condition(sql, "lower(p.policy_domain)");
    sql.push(") OR EXISTS (SELECT 1 FROM failure_reports f WHERE f.message_id = m.id");
    scope.push_list_condition(sql, "f.reported_domain");
    sql.push("))");
    sql.push(" AND NOT EXISTS (SELECT 1 FROM aggregate_reports a WHERE a.message_id = m.id");
    scope.push_outside_condition(sql, "a.policy_domain");
    sql.push(
        ") AND NOT EXISTS (SELECT 1 FROM tls_reports t JOIN tls_policies p ON p.report_id = t.id \
              WHERE t.message_id = m.id",
    );
    scope.push_outside_condition(sql, "lower(p.policy_domain)");
    // A failure report in it must be one the caller sees whole (it names
    // no other group's domain): `push_list_condition`.
    sql.push(
        ") AND NOT EXISTS (SELECT 1 FROM failure_reports f WHERE f.message_id = m.id \
              AND NOT (1 = 1",
    );
    scope.push_list_condition(sql, "f.reported_domain");
    sql.push("))");
}

pub async fn inbox(
    store: &Store,
    scope: &Scope,
    status: Option<&str>,
    page: Page,
) -> Result<(Vec<InboxRow>, i64), QueryError> {
    let inner = inbox_sql(store, scope, status)?;
    let total = count_of(store.reads(), &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY m.id DESC");
    page.push_limit(&mut sql);
    Ok((store.reads().fetch_all(&sql).await?, total))
}

pub async fn inbox_stream(
    store: &Store,
    scope: &Scope,
    status: Option<&str>,
) -> Result<RowStream<InboxRow>, QueryError> {
    let mut sql = inbox_sql(store, scope, status)?;
    sql.push(" ORDER BY m.id DESC");
    Ok(RowStream::new::<InboxRow>(store.reads(), sql))
}

/// One message, if `scope` sees it (`push_scope`): also what decides
/// whether its raw bytes may be downloaded or it may be reprocessed.
pub async fn inbox_message(
    store: &Store,
    scope: &Scope,
    id: i64,
) -> Result<Option<InboxRow>, QueryError> {
    let mut sql = inbox_sql(store, scope, None)?;
    sql.push(" AND m.id = ").bind(id);
    Ok(store.reads().fetch_optional(&sql).await?)
}

/// A message's bytes as received, if `scope` sees the message and
/// retention has not deleted them.
pub async fn message_raw(
    store: &Store,
    scope: &Scope,
    id: i64,
) -> Result<Option<Vec<u8>>, QueryError> {
    if !scope.is_all() && inbox_message(store, scope, id).await?.is_none() {
        return Ok(None);
    }
    Ok(store.message_raw(id).await?)
}

/// The domains of the reports a message produced (lower case).
async fn message_domains(store: &Store, id: i64) -> Result<Vec<String>, QueryError> {
    let db = store.reads();
    let rows: Vec<(String,)> = db
        .fetch_all(&db.statement(
            "SELECT lower(policy_domain) FROM aggregate_reports WHERE message_id = $1 \
             UNION SELECT lower(p.policy_domain) FROM tls_reports t \
             JOIN tls_policies p ON p.report_id = t.id WHERE t.message_id = $1",
            vec![id.into()],
        ))
        .await?;
    Ok(rows.into_iter().map(|(domain,)| domain).collect())
}

/// Whether `scope` may run message `id` through the parser again: every
/// domain's analysts may, for a message they see whose reports are all of
/// domains they analyse; only those who see every domain may for a message
/// of no domain (one that failed).
pub async fn may_reprocess(store: &Store, scope: &Scope, id: i64) -> Result<bool, QueryError> {
    if scope.is_all() {
        return Ok(true);
    }
    if inbox_message(store, scope, id).await?.is_none() {
        return Ok(false);
    }
    let domains = message_domains(store, id).await?;
    Ok(!domains.is_empty()
        && domains
            .iter()
            .all(|domain| scope.may(domain, crate::scope::GroupRole::Analyst)))
}

#[cfg(test)]
mod tests {
    use crate::inbox::subject_of;

    #[test]
    fn subjects_are_decoded_and_may_be_cut_short() {
        let head =
            b"From: a@b\r\nSubject: =?utf-8?B?UmVwb3J0IERvbWFpbjo=?=\r\n example.com\r\n\r\nbody";
        assert_eq!(
            subject_of(head).as_deref(),
            Some("Report Domain: example.com")
        );
        // Cut off inside the header, after the Subject.
        let cut = b"Subject: Report Domain: example.org\r\nX-Long: aaaa";
        assert_eq!(
            subject_of(cut).as_deref(),
            Some("Report Domain: example.org")
        );
        assert_eq!(subject_of(b"From: a@b\r\n\r\n"), None);
    }
}
