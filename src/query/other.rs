//! TLS-RPT, failure reports, the inbox and domains, as the dashboard and
//! the API show them.

use serde::{Deserialize, Serialize};

use super::filter::ParsedFilter;
use super::{normalize_time, sum, Page, QueryError};
use crate::store::{Arg, Cell, Dialect, Sql, Store};

fn total(rows: &[Vec<Cell>]) -> i64 {
    rows.first().map_or(0, |row| row[0].int())
}

async fn count_of(store: &Store, inner: &Sql) -> Result<i64, QueryError> {
    let mut count = store.sql();
    count.push("SELECT count(*) FROM (");
    super::append(&mut count, inner);
    count.push(") AS counted");
    Ok(total(&store.fetch_table(count).await?))
}

/// One TLS-RPT report with its totals.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TlsReportRow {
    pub id: i64,
    pub message_id: Option<i64>,
    pub organization_name: String,
    pub report_id: String,
    pub date_begin: String,
    pub date_end: String,
    pub contact_info: Option<String>,
    /// Policy domains in the report, comma-separated.
    pub policy_domains: String,
    pub successful_sessions: i64,
    pub failed_sessions: i64,
}

impl TlsReportRow {
    pub const CSV_HEADER: &'static [&'static str] = &[
        "id",
        "message_id",
        "organization_name",
        "report_id",
        "date_begin",
        "date_end",
        "contact_info",
        "policy_domains",
        "successful_sessions",
        "failed_sessions",
    ];

    fn from_cells(cells: Vec<Cell>) -> Self {
        TlsReportRow {
            id: cells[0].int(),
            message_id: cells[1].opt_int(),
            organization_name: cells[2].text().unwrap_or_default(),
            report_id: cells[3].text().unwrap_or_default(),
            date_begin: normalize_time(cells[4].text()),
            date_end: normalize_time(cells[5].text()),
            contact_info: cells[6].text(),
            policy_domains: cells[7].text().unwrap_or_default(),
            successful_sessions: cells[8].int(),
            failed_sessions: cells[9].int(),
        }
    }

    pub fn csv_fields(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.message_id.map(|m| m.to_string()).unwrap_or_default(),
            self.organization_name.clone(),
            self.report_id.clone(),
            self.date_begin.clone(),
            self.date_end.clone(),
            self.contact_info.clone().unwrap_or_default(),
            self.policy_domains.clone(),
            self.successful_sessions.to_string(),
            self.failed_sessions.to_string(),
        ]
    }
}

/// Domain, organization and period apply to TLS reports through their policies.
fn tls_reports_sql(store: &Store, filter: &ParsedFilter) -> Sql {
    let dialect = store.dialect();
    let domains = match dialect {
        Dialect::Postgres => "string_agg(DISTINCT p.policy_domain, ',')",
        Dialect::Sqlite => "group_concat(DISTINCT p.policy_domain)",
    };
    let mut sql = store.sql();
    sql.push(&format!(
        "SELECT t.id, t.message_id, t.organization_name, t.report_id, t.date_begin, t.date_end, \
         t.contact_info, {domains}, {ok}, {failed} \
         FROM tls_reports t LEFT JOIN tls_policies p ON p.report_id = t.id WHERE 1 = 1",
        ok = sum(dialect, "p.successful_sessions"),
        failed = sum(dialect, "p.failed_sessions"),
    ));
    push_tls_filter(&mut sql, filter);
    sql.push(" GROUP BY t.id, t.message_id, t.organization_name, t.report_id, t.date_begin, t.date_end, t.contact_info");
    sql
}

fn push_tls_filter(sql: &mut Sql, filter: &ParsedFilter) {
    if let Some(domain) = &filter.domain {
        sql.push(" AND p.policy_domain = ")
            .bind_text(domain.clone());
    }
    if let Some(org) = &filter.org {
        sql.push(" AND t.organization_name = ")
            .bind_text(org.clone());
    }
    if let Some(since) = filter.since {
        sql.push(" AND t.date_begin >= ").bind(Arg::Time(since));
    }
    if let Some(until) = filter.until {
        sql.push(" AND t.date_begin < ").bind(Arg::Time(until));
    }
}

pub async fn tls_reports(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<(Vec<TlsReportRow>, i64), QueryError> {
    let inner = tls_reports_sql(store, filter);
    let total = count_of(store, &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY t.date_begin DESC, t.id DESC");
    page.push_limit(&mut sql);
    let rows = store.fetch_table(sql).await?;
    Ok((
        rows.into_iter().map(TlsReportRow::from_cells).collect(),
        total,
    ))
}

pub async fn tls_reports_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<super::RowStream<TlsReportRow>, QueryError> {
    let mut sql = tls_reports_sql(store, filter);
    sql.push(" ORDER BY t.date_begin DESC, t.id DESC");
    Ok(super::RowStream::new(
        store.stream_table(sql, 256),
        TlsReportRow::from_cells,
    ))
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

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TlsSummaryRow {
    pub key: Option<String>,
    /// Sessions that negotiated TLS per the policy (0 for failure groupings).
    pub successful_sessions: i64,
    pub failed_sessions: i64,
}

impl TlsSummaryRow {
    pub const CSV_HEADER: &'static [&'static str] =
        &["key", "successful_sessions", "failed_sessions"];

    pub fn csv_fields(&self) -> Vec<String> {
        vec![
            self.key.clone().unwrap_or_default(),
            self.successful_sessions.to_string(),
            self.failed_sessions.to_string(),
        ]
    }
}

pub async fn tls_summary(
    store: &Store,
    filter: &ParsedFilter,
    group_by: TlsGroupBy,
) -> Result<Vec<TlsSummaryRow>, QueryError> {
    let dialect = store.dialect();
    let day = match dialect {
        Dialect::Postgres => "to_char(t.date_begin AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        Dialect::Sqlite => "substr(t.date_begin, 1, 10)",
    };
    let mut sql = store.sql();
    if group_by.is_failure_detail() {
        let key = match group_by {
            TlsGroupBy::ResultType => "f.result_type",
            TlsGroupBy::SendingMta => "f.sending_mta_ip",
            _ => "f.receiving_mx_hostname",
        };
        sql.push(&format!(
            "SELECT {key}, 0, {failed} FROM tls_failure_details f \
             JOIN tls_policies p ON p.id = f.policy_id JOIN tls_reports t ON t.id = p.report_id \
             WHERE 1 = 1",
            failed = sum(dialect, "f.failed_sessions")
        ));
        push_tls_filter(&mut sql, filter);
        sql.push(&format!(" GROUP BY {key} ORDER BY 3 DESC, 1"));
    } else {
        let key = match group_by {
            TlsGroupBy::Domain => "p.policy_domain",
            TlsGroupBy::Org => "t.organization_name",
            _ => day,
        };
        sql.push(&format!(
            "SELECT {key}, {ok}, {failed} FROM tls_policies p JOIN tls_reports t ON t.id = p.report_id \
             WHERE 1 = 1",
            ok = sum(dialect, "p.successful_sessions"),
            failed = sum(dialect, "p.failed_sessions"),
        ));
        push_tls_filter(&mut sql, filter);
        let order = if group_by == TlsGroupBy::Day {
            "1"
        } else {
            "2 + 3 DESC, 1"
        };
        sql.push(&format!(" GROUP BY {key} ORDER BY {order}"));
    }
    let rows = store.fetch_table(sql).await?;
    Ok(rows
        .into_iter()
        .map(|cells| TlsSummaryRow {
            key: cells[0].text(),
            successful_sessions: cells[1].int(),
            failed_sessions: cells[2].int(),
        })
        .collect())
}

/// One failure (forensic) report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FailureRow {
    pub id: i64,
    pub message_id: Option<i64>,
    pub format: String,
    pub feedback_type: Option<String>,
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
    pub received_at: String,
}

impl FailureRow {
    pub const CSV_HEADER: &'static [&'static str] = &[
        "id",
        "message_id",
        "format",
        "feedback_type",
        "arrival_date",
        "source_ip",
        "reported_domain",
        "original_mail_from",
        "original_from",
        "original_subject",
        "auth_failure",
        "delivery_result",
        "dkim_domain",
        "reporting_mta",
        "user_agent",
        "received_at",
    ];

    fn from_cells(cells: Vec<Cell>) -> Self {
        let text = |i: usize| cells[i].text();
        FailureRow {
            id: cells[0].int(),
            message_id: cells[1].opt_int(),
            format: text(2).unwrap_or_default(),
            feedback_type: text(3),
            arrival_date: text(4).map(|t| normalize_time(Some(t))),
            source_ip: text(5),
            reported_domain: text(6),
            original_mail_from: text(7),
            original_from: text(8),
            original_subject: text(9),
            auth_failure: text(10),
            delivery_result: text(11),
            dkim_domain: text(12),
            reporting_mta: text(13),
            user_agent: text(14),
            received_at: normalize_time(text(15)),
        }
    }

    pub fn csv_fields(&self) -> Vec<String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            self.id.to_string(),
            self.message_id.map(|m| m.to_string()).unwrap_or_default(),
            self.format.clone(),
            o(&self.feedback_type),
            o(&self.arrival_date),
            o(&self.source_ip),
            o(&self.reported_domain),
            o(&self.original_mail_from),
            o(&self.original_from),
            o(&self.original_subject),
            o(&self.auth_failure),
            o(&self.delivery_result),
            o(&self.dkim_domain),
            o(&self.reporting_mta),
            o(&self.user_agent),
            self.received_at.clone(),
        ]
    }
}

fn failures_sql(store: &Store, filter: &ParsedFilter) -> Sql {
    // Arrays are text[] on PostgreSQL and JSON text on SQLite; both leave as text.
    let columns = match store.dialect() {
        Dialect::Postgres => {
            "f.id, f.message_id, f.format, f.feedback_type, f.arrival_date, host(f.source_ip), \
             array_to_string(f.reported_domain, ','), f.original_mail_from, f.original_from, \
             f.original_subject, array_to_string(f.auth_failure, ','), f.delivery_result, \
             f.dkim_domain, f.reporting_mta, f.user_agent, f.created_at"
        }
        Dialect::Sqlite => {
            "f.id, f.message_id, f.format, f.feedback_type, f.arrival_date, f.source_ip, \
             (SELECT group_concat(value) FROM json_each(f.reported_domain)), f.original_mail_from, \
             f.original_from, f.original_subject, \
             (SELECT group_concat(value) FROM json_each(f.auth_failure)), f.delivery_result, \
             f.dkim_domain, f.reporting_mta, f.user_agent, f.created_at"
        }
    };
    let mut sql = store.sql();
    sql.push("SELECT ")
        .push(columns)
        .push(" FROM failure_reports f WHERE 1 = 1");
    if let Some(domain) = &filter.domain {
        match store.dialect() {
            Dialect::Postgres => {
                sql.push(" AND ")
                    .bind_text(domain.clone())
                    .push(" = ANY (f.reported_domain)");
            }
            Dialect::Sqlite => {
                sql.push(" AND EXISTS (SELECT 1 FROM json_each(f.reported_domain) WHERE value = ")
                    .bind_text(domain.clone())
                    .push(")");
            }
        }
    }
    if let Some(super::SourceMatch::Ip(ip)) = &filter.source {
        sql.push(" AND f.source_ip = ").bind_text(ip.to_string());
        if store.dialect() == Dialect::Postgres {
            sql.push("::inet");
        }
    }
    if let Some(since) = filter.since {
        sql.push(" AND f.created_at >= ").bind(Arg::Time(since));
    }
    if let Some(until) = filter.until {
        sql.push(" AND f.created_at < ").bind(Arg::Time(until));
    }
    sql
}

pub async fn failures(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<(Vec<FailureRow>, i64), QueryError> {
    let inner = failures_sql(store, filter);
    let total = count_of(store, &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY f.id DESC");
    page.push_limit(&mut sql);
    Ok((
        store
            .fetch_table(sql)
            .await?
            .into_iter()
            .map(FailureRow::from_cells)
            .collect(),
        total,
    ))
}

pub async fn failures_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<super::RowStream<FailureRow>, QueryError> {
    let mut sql = failures_sql(store, filter);
    sql.push(" ORDER BY f.id DESC");
    Ok(super::RowStream::new(
        store.stream_table(sql, 256),
        FailureRow::from_cells,
    ))
}

pub async fn failure(store: &Store, id: i64) -> Result<Option<FailureRow>, QueryError> {
    let mut sql = failures_sql(store, &ParsedFilter::default());
    sql.push(" AND f.id = ").bind(Arg::Int(id));
    Ok(store
        .fetch_table(sql)
        .await?
        .into_iter()
        .next()
        .map(FailureRow::from_cells))
}

/// One inbox message (without its bytes).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InboxRow {
    pub id: i64,
    pub received_at: String,
    /// `smtp`, `http` or `import`.
    pub intake: String,
    pub source_name: Option<String>,
    pub peer_ip: Option<String>,
    pub mail_from: Option<String>,
    pub size: i64,
    /// `pending`, `processing`, `done`, `failed`, `duplicate` or `ignored`.
    pub status: String,
    /// Why it failed or was ignored.
    pub error: Option<String>,
    pub attempts: i64,
    pub processed_at: Option<String>,
}

impl InboxRow {
    pub const CSV_HEADER: &'static [&'static str] = &[
        "id",
        "received_at",
        "intake",
        "source_name",
        "peer_ip",
        "mail_from",
        "size",
        "status",
        "error",
        "attempts",
        "processed_at",
    ];

    fn from_cells(cells: Vec<Cell>) -> Self {
        let text = |i: usize| cells[i].text();
        InboxRow {
            id: cells[0].int(),
            received_at: normalize_time(text(1)),
            intake: text(2).unwrap_or_default(),
            source_name: text(3),
            peer_ip: text(4),
            mail_from: text(5),
            size: cells[6].int(),
            status: text(7).unwrap_or_default(),
            error: text(8),
            attempts: cells[9].int(),
            processed_at: text(10).map(|t| normalize_time(Some(t))),
        }
    }

    pub fn csv_fields(&self) -> Vec<String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            self.id.to_string(),
            self.received_at.clone(),
            self.intake.clone(),
            o(&self.source_name),
            o(&self.peer_ip),
            o(&self.mail_from),
            self.size.to_string(),
            self.status.clone(),
            o(&self.error),
            self.attempts.to_string(),
            o(&self.processed_at),
        ]
    }
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
    let peer = match store.dialect() {
        Dialect::Postgres => "host(m.peer_ip)",
        Dialect::Sqlite => "m.peer_ip",
    };
    let mut sql = store.sql();
    sql.push(&format!(
        "SELECT m.id, m.received_at, m.intake, m.source_name, {peer}, m.mail_from, m.size, m.status, \
         m.error, m.attempts, m.processed_at FROM inbox_messages m WHERE 1 = 1"
    ));
    if let Some(status) = status.filter(|s| !s.is_empty()) {
        if !INBOX_STATUSES.contains(&status) {
            return Err(QueryError::Invalid(format!(
                "status: {status:?} is not one of {}",
                INBOX_STATUSES.join(", ")
            )));
        }
        sql.push(" AND m.status = ").bind_text(status);
    }
    Ok(sql)
}

pub async fn inbox(
    store: &Store,
    status: Option<&str>,
    page: Page,
) -> Result<(Vec<InboxRow>, i64), QueryError> {
    let inner = inbox_sql(store, status)?;
    let total = count_of(store, &inner).await?;
    let mut sql = inner;
    sql.push(" ORDER BY m.id DESC");
    page.push_limit(&mut sql);
    Ok((
        store
            .fetch_table(sql)
            .await?
            .into_iter()
            .map(InboxRow::from_cells)
            .collect(),
        total,
    ))
}

pub async fn inbox_stream(
    store: &Store,
    status: Option<&str>,
) -> Result<super::RowStream<InboxRow>, QueryError> {
    let mut sql = inbox_sql(store, status)?;
    sql.push(" ORDER BY m.id DESC");
    Ok(super::RowStream::new(
        store.stream_table(sql, 256),
        InboxRow::from_cells,
    ))
}

pub async fn inbox_message(store: &Store, id: i64) -> Result<Option<InboxRow>, QueryError> {
    let mut sql = inbox_sql(store, None)?;
    sql.push(" AND m.id = ").bind(Arg::Int(id));
    Ok(store
        .fetch_table(sql)
        .await?
        .into_iter()
        .next()
        .map(InboxRow::from_cells))
}

/// A monitored domain with its report volume.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DomainRow {
    pub name: String,
    /// `report` (seen in a report) or `user` (added by hand).
    pub origin: String,
    pub aggregate_reports: i64,
    pub created_at: String,
}

pub async fn domains(store: &Store) -> Result<Vec<DomainRow>, QueryError> {
    let mut sql = store.sql();
    sql.push(
        "SELECT d.name, d.origin, \
         (SELECT count(*) FROM aggregate_reports a WHERE a.policy_domain = d.name), \
         d.created_at FROM domains d ORDER BY d.name",
    );
    Ok(store
        .fetch_table(sql)
        .await?
        .into_iter()
        .map(|cells| DomainRow {
            name: cells[0].text().unwrap_or_default(),
            origin: cells[1].text().unwrap_or_default(),
            aggregate_reports: cells[2].int(),
            created_at: normalize_time(cells[3].text()),
        })
        .collect())
}

/// Adds a domain by hand; false if it was already there.
pub async fn add_domain(store: &Store, name: &str) -> Result<bool, QueryError> {
    let name = name.trim().trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&name) {
        return Err(QueryError::Invalid(format!(
            "{name:?} is not a domain name"
        )));
    }
    let mut sql = store.sql();
    sql.push("INSERT INTO domains (name, origin, created_at) VALUES (")
        .bind_text(name)
        .push(", 'user', ")
        .bind(Arg::Time(chrono::Utc::now()))
        .push(") ON CONFLICT (name) DO NOTHING");
    Ok(store.execute_sql(sql).await? > 0)
}

/// Stops monitoring a domain (its reports stay); false if it was not there.
pub async fn remove_domain(store: &Store, name: &str) -> Result<bool, QueryError> {
    let name = name.trim().trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&name) {
        return Ok(false);
    }
    let mut sql = store.sql();
    sql.push("DELETE FROM domains WHERE name = ")
        .bind_text(name);
    Ok(store.execute_sql(sql).await? > 0)
}

/// One TLS policy as reported, with its session counts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TlsPolicyRow {
    pub report: i64,
    pub organization_name: String,
    pub date_begin: String,
    pub policy_type: String,
    pub policy_domain: String,
    /// The policy as the reporter saw it (JSON array of lines).
    pub policy_strings: String,
    /// MX host patterns (JSON array).
    pub mx_hosts: String,
    pub successful_sessions: i64,
    pub failed_sessions: i64,
}

/// The newest policies matching the filter.
pub async fn tls_policies(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<Vec<TlsPolicyRow>, QueryError> {
    let arrays = match store.dialect() {
        Dialect::Postgres => {
            "array_to_json(p.policy_strings)::text, array_to_json(p.mx_hosts)::text"
        }
        Dialect::Sqlite => "p.policy_strings, p.mx_hosts",
    };
    let mut sql = store.sql();
    sql.push(&format!(
        "SELECT t.id, t.organization_name, t.date_begin, p.policy_type, p.policy_domain, {arrays}, \
         p.successful_sessions, p.failed_sessions \
         FROM tls_policies p JOIN tls_reports t ON t.id = p.report_id WHERE 1 = 1"
    ));
    push_tls_filter(&mut sql, filter);
    sql.push(" ORDER BY t.date_begin DESC, p.id DESC");
    page.push_limit(&mut sql);
    Ok(store
        .fetch_table(sql)
        .await?
        .into_iter()
        .map(|cells| TlsPolicyRow {
            report: cells[0].int(),
            organization_name: cells[1].text().unwrap_or_default(),
            date_begin: normalize_time(cells[2].text()),
            policy_type: cells[3].text().unwrap_or_default(),
            policy_domain: cells[4].text().unwrap_or_default(),
            policy_strings: cells[5].text().unwrap_or_else(|| "[]".into()),
            mx_hosts: cells[6].text().unwrap_or_else(|| "[]".into()),
            successful_sessions: cells[7].int(),
            failed_sessions: cells[8].int(),
        })
        .collect())
}
