//! One TLS report whole: its metadata, each policy with the sessions
//! counted under it, and each policy's failure details as reported
//! (RFC 8460 §4.3), with what their counts add up to.

use crate::scope::Scope;
use serde::Serialize;

use crate::query::json::JsonColumn;
use crate::query::time::Timestamp;
use crate::query::QueryError;
use crate::store::Store;

/// A TLS report with its policies and their failure details.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TlsReportDetail {
    pub id: i64,
    /// The inbox message it came in (`/api/v1/inbox/messages/{id}`).
    pub message_id: Option<i64>,
    pub organization_name: String,
    pub report_id: String,
    pub date_begin: String,
    pub date_end: String,
    pub contact_info: Option<String>,
    /// When dmarcd received the report.
    pub received_at: String,
    /// What the parser had to tolerate (a missing count, a missing policy
    /// domain…).
    pub warnings: Vec<String>,
    /// Over all policies.
    pub successful_sessions: i64,
    pub failed_sessions: i64,
    pub policies: Vec<TlsPolicyDetail>,
}

/// One policy of a report and the sessions counted under it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TlsPolicyDetail {
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    pub policy_domain: String,
    /// The policy as the reporter saw it, line by line.
    pub policy_strings: Vec<String>,
    /// MX host patterns of the policy.
    pub mx_hosts: Vec<String>,
    pub successful_sessions: i64,
    pub failed_sessions: i64,
    /// The failed sessions of the failure details added up. RFC 8460 lets
    /// details overlap (more than `failed_sessions`) and reporters leave
    /// some out (fewer): when the two differ, neither is wrong, but the
    /// details do not tell the whole story.
    pub detailed_failed_sessions: i64,
    pub failure_details: Vec<TlsFailureDetailRow>,
}

/// One failure detail: what failed, between which hosts, how often.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TlsFailureDetailRow {
    /// `certificate-expired`, `starttls-not-supported`, … (kept as sent
    /// when not registered).
    pub result_type: String,
    pub sending_mta_ip: Option<String>,
    pub receiving_mx_hostname: Option<String>,
    pub receiving_mx_helo: Option<String>,
    pub receiving_ip: Option<String>,
    pub failed_sessions: i64,
    /// The reporter's own words (`additional-information`, often a URI).
    pub additional_information: Option<String>,
    /// `failure-reason-code`: the reporter's code for the failure.
    pub failure_reason_code: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ReportHead {
    id: i64,
    message_id: Option<i64>,
    organization_name: String,
    report_id: String,
    #[sqlx(try_from = "Timestamp")]
    date_begin: String,
    #[sqlx(try_from = "Timestamp")]
    date_end: String,
    contact_info: Option<String>,
    #[sqlx(try_from = "Timestamp")]
    received_at: String,
    #[sqlx(try_from = "JsonColumn")]
    warnings: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    id: i64,
    policy_type: String,
    policy_domain: String,
    #[sqlx(try_from = "JsonColumn")]
    policy_strings: Vec<String>,
    #[sqlx(try_from = "JsonColumn")]
    mx_hosts: Vec<String>,
    successful_sessions: i64,
    failed_sessions: i64,
}

#[derive(sqlx::FromRow)]
struct DetailRow {
    policy_id: i64,
    #[sqlx(flatten)]
    detail: TlsFailureDetailRow,
}

/// The TLS report stored as `id`, whole; `None` when there is none.
/// The TLS report stored as `id`, with the policies `scope` sees; `None`
/// when there is none or it names no domain `scope` sees.
pub async fn tls_report(
    store: &Store,
    scope: &Scope,
    id: i64,
) -> Result<Option<TlsReportDetail>, QueryError> {
    let db = store.reads();
    let backend = db.backend();
    let mut sql = db.sql();
    sql.push(&format!(
        "SELECT t.id, t.message_id, t.organization_name, t.report_id, t.date_begin, t.date_end, \
         t.contact_info, t.created_at AS received_at, {warnings} AS warnings \
         FROM tls_reports t WHERE t.id = ",
        warnings = backend.json_text("t.warnings")
    ))
    .bind(id);
    if !scope.is_all() {
        sql.push(" AND EXISTS (SELECT 1 FROM tls_policies p WHERE p.report_id = t.id");
        scope.push_condition(&mut sql, "lower(p.policy_domain)");
        sql.push(")");
    }
    let Some(head): Option<ReportHead> = db.fetch_optional(&sql).await? else {
        return Ok(None);
    };
    let mut sql = db.sql();
    sql.push(&format!(
        "SELECT p.id, p.policy_type, p.policy_domain, {strings} AS policy_strings, \
         {hosts} AS mx_hosts, p.successful_sessions, p.failed_sessions \
         FROM tls_policies p WHERE p.report_id = ",
        strings = backend.list_as_json("p.policy_strings"),
        hosts = backend.list_as_json("p.mx_hosts"),
    ))
    .bind(id);
    scope.push_condition(&mut sql, "lower(p.policy_domain)");
    sql.push(" ORDER BY p.id");
    let policies: Vec<PolicyRow> = db.fetch_all(&sql).await?;
    let mut sql = db.sql();
    sql.push(
        "SELECT f.policy_id, f.result_type, f.sending_mta_ip, f.receiving_mx_hostname, \
         f.receiving_mx_helo, f.receiving_ip, f.failed_sessions, f.additional_information, \
         f.failure_reason_code FROM tls_failure_details f \
         JOIN tls_policies p ON p.id = f.policy_id WHERE p.report_id = ",
    )
    .bind(id);
    scope.push_condition(&mut sql, "lower(p.policy_domain)");
    sql.push(" ORDER BY f.id");
    let mut details: Vec<DetailRow> = db.fetch_all(&sql).await?;
    let policies: Vec<TlsPolicyDetail> = policies
        .into_iter()
        .map(|policy| {
            let failure_details: Vec<TlsFailureDetailRow> = details
                .iter_mut()
                .filter(|row| row.policy_id == policy.id)
                .map(|row| std::mem::take(&mut row.detail))
                .collect();
            TlsPolicyDetail {
                detailed_failed_sessions: failure_details.iter().map(|d| d.failed_sessions).sum(),
                policy_type: policy.policy_type,
                policy_domain: policy.policy_domain,
                policy_strings: policy.policy_strings,
                mx_hosts: policy.mx_hosts,
                successful_sessions: policy.successful_sessions,
                failed_sessions: policy.failed_sessions,
                failure_details,
            }
        })
        .collect();
    Ok(Some(TlsReportDetail {
        successful_sessions: policies.iter().map(|p| p.successful_sessions).sum(),
        failed_sessions: policies.iter().map(|p| p.failed_sessions).sum(),
        id: head.id,
        message_id: head.message_id,
        organization_name: head.organization_name,
        report_id: head.report_id,
        date_begin: head.date_begin,
        date_end: head.date_end,
        contact_info: head.contact_info,
        received_at: head.received_at,
        warnings: head.warnings,
        policies,
    }))
}
