//! The report tables: aggregate reports and their records, TLS reports,
//! failure reports, and the monitored domains they name.

use crate::scope::Scope;
use std::collections::BTreeMap;

use super::db::{json, Backend, Db, Tx, Value};
use super::inbox::now;
use super::rows::AggregateRow;
use super::save::NewRecords;
use super::{ReportCounts, StoreResult};
use crate::report::{failure, AggregateReport, FailureReport, TlsReport};

/// Which of `ids` are still claimed by `worker` (locked until commit).
pub(super) async fn held(transaction: &mut Tx, worker: &str, ids: &[i64]) -> StoreResult<Vec<i64>> {
    let mut select = transaction.sql();
    select
        .push("SELECT id FROM inbox_messages WHERE status = 'processing' AND claimed_by = ")
        .bind(worker);
    let list = select.placeholder(json(&ids));
    let lock = match select.backend() {
        // A requeue or another save cannot change them until this commits.
        Backend::Postgres => " ORDER BY id FOR UPDATE",
        // The transaction holds SQLite's one write lock already.
        Backend::Sqlite => " ORDER BY id",
    };
    select.push(&format!(
        " AND {}{lock}",
        select.backend().in_int_list("id", &list)
    ));
    let rows: Vec<(i64,)> = transaction.fetch_all(&select).await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// How a column's parameter is written into the statement.
#[derive(Clone, Copy)]
enum Bind {
    Plain,
    /// A JSON list of text, kept as an array (PostgreSQL) or JSON text.
    TextList,
    /// JSON, kept as jsonb (PostgreSQL) or JSON text.
    Json,
}

impl Bind {
    fn placeholder(self, backend: Backend, number: usize) -> String {
        let parameter = format!("${number}");
        match self {
            Bind::Plain => parameter,
            Bind::TextList => backend.text_list(&parameter),
            Bind::Json => backend.jsonb(&parameter),
        }
    }
}

/// The columns of a report's row beside its identity: what a save inserts
/// with the row and what a streamed save fills in once every record is
/// parsed, in one list so that both statements write the same values.
fn report_details(
    report: &AggregateReport,
    row: &AggregateRow,
    records: i64,
    messages: i64,
) -> Vec<(&'static str, Bind, Value)> {
    let meta = &report.metadata;
    let policy = &report.policy_published;
    vec![
        ("email", Bind::Plain, meta.email.as_deref().into()),
        (
            "extra_contact_info",
            Bind::Plain,
            meta.extra_contact_info.as_deref().into(),
        ),
        ("errors", Bind::TextList, json(&meta.errors)),
        ("generator", Bind::Plain, meta.generator.as_deref().into()),
        ("schema", Bind::Plain, row.schema.as_str().into()),
        ("version", Bind::Plain, report.version.as_deref().into()),
        ("namespace", Bind::Plain, report.namespace.as_deref().into()),
        ("adkim", Bind::Plain, row.adkim.as_deref().into()),
        ("aspf", Bind::Plain, row.aspf.as_deref().into()),
        ("p", Bind::Plain, row.p.as_deref().into()),
        ("sp", Bind::Plain, row.sp.as_deref().into()),
        ("np", Bind::Plain, row.np.as_deref().into()),
        ("pct", Bind::Plain, policy.pct.map(i64::from).into()),
        ("fo", Bind::Plain, policy.fo.as_deref().into()),
        ("testing", Bind::Plain, policy.testing.as_deref().into()),
        (
            "discovery_method",
            Bind::Plain,
            policy.discovery_method.as_deref().into(),
        ),
        (
            "extensions",
            Bind::Json,
            row.extensions_json.as_str().into(),
        ),
        ("warnings", Bind::Json, row.warnings_json.as_str().into()),
        ("record_count", Bind::Plain, records.into()),
        ("message_count", Bind::Plain, messages.into()),
    ]
}

/// The new report's id, or `None` when the same report is stored already.
pub(super) async fn insert_aggregate(
    transaction: &mut Tx,
    message_id: i64,
    location: &str,
    report: &AggregateReport,
    row: &AggregateRow,
) -> StoreResult<Option<i64>> {
    let backend = transaction.backend();
    let meta = &report.metadata;
    let identity: Vec<(&'static str, Bind, Value)> = vec![
        ("message_id", Bind::Plain, message_id.into()),
        ("location", Bind::Plain, location.into()),
        ("org_name", Bind::Plain, meta.org_name.as_str().into()),
        ("report_id", Bind::Plain, meta.report_id.as_str().into()),
        ("date_begin", Bind::Plain, row.begin.into()),
        ("date_end", Bind::Plain, row.end.into()),
        (
            "policy_domain",
            Bind::Plain,
            report.policy_published.domain.as_str().into(),
        ),
        ("created_at", Bind::Plain, now().into()),
    ];
    let records = report.records.len() as i64;
    let columns =
        identity
            .into_iter()
            .chain(report_details(report, row, records, row.message_count));
    let (mut names, mut placeholders, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (number, (name, bind, value)) in columns.enumerate() {
        names.push(name);
        placeholders.push(bind.placeholder(backend, number + 1));
        values.push(value);
    }
    let text = format!(
        "INSERT INTO aggregate_reports ({}) VALUES ({})
         ON CONFLICT (org_name, report_id, policy_domain, date_begin) DO NOTHING
         RETURNING id",
        names.join(", "),
        placeholders.join(", "),
    );
    let inserted: Option<(i64,)> = transaction
        .fetch_optional(&transaction.statement(&text, values))
        .await?;
    Ok(inserted.map(|(id,)| id))
}

/// The rest of a report whose row was written before its records were all
/// parsed (`StreamedSave`): everything read after the first records
/// (report-level extensions, warnings) and the final counts.
pub(super) async fn complete_aggregate(
    transaction: &mut Tx,
    id: i64,
    report: &AggregateReport,
    row: &AggregateRow,
    records: u64,
    messages: u64,
) -> StoreResult<()> {
    let backend = transaction.backend();
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut sets = Vec::new();
    let mut values: Vec<Value> = vec![id.into()];
    for (name, bind, value) in report_details(report, row, count(records), count(messages)) {
        sets.push(format!(
            "{name} = {}",
            bind.placeholder(backend, values.len() + 1)
        ));
        values.push(value);
    }
    let text = format!(
        "UPDATE aggregate_reports SET {} WHERE id = $1",
        sets.join(", ")
    );
    transaction
        .execute(&transaction.statement(&text, values))
        .await?;
    Ok(())
}

/// A batch's records. The bulk paths differ by backend: PostgreSQL's
/// binary COPY and arrays, SQLite's multi-row INSERTs.
pub(super) async fn insert_records(
    transaction: &mut Tx,
    records: &[NewRecords<'_>],
) -> StoreResult<()> {
    match transaction {
        Tx::Postgres(transaction) => super::postgres::insert_records(transaction, records).await,
        Tx::Sqlite(transaction) => {
            for new in records {
                super::sqlite::insert_records(transaction, new).await?;
            }
            Ok(())
        }
    }
}

/// Whether the report was new.
pub(super) async fn insert_tls(
    transaction: &mut Tx,
    message_id: i64,
    location: &str,
    report: &TlsReport,
) -> StoreResult<bool> {
    let backend = transaction.backend();
    let text = format!(
        "INSERT INTO tls_reports
            (message_id, location, organization_name, report_id, date_begin, date_end, contact_info,
             created_at, warnings)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {warnings})
         ON CONFLICT (organization_name, report_id) DO NOTHING
         RETURNING id",
        warnings = backend.jsonb("$9"),
    );
    let inserted: Option<(i64,)> = transaction
        .fetch_optional(&transaction.statement(
            &text,
            vec![
                message_id.into(),
                location.into(),
                report.organization_name.as_str().into(),
                report.report_id.as_str().into(),
                report.begin.into(),
                report.end.into(),
                report.contact_info.as_deref().into(),
                now().into(),
                json(&report.warnings),
            ],
        ))
        .await?;
    let Some((report_row,)) = inserted else {
        return Ok(false);
    };
    let insert_policy = format!(
        "INSERT INTO tls_policies
            (report_id, policy_type, policy_domain, policy_strings, mx_hosts, successful_sessions,
             failed_sessions)
         VALUES ($1, $2, $3, {strings}, {hosts}, $6, $7) RETURNING id",
        strings = backend.text_list("$4"),
        hosts = backend.text_list("$5"),
    );
    for policy in &report.policies {
        let (policy_row,): (i64,) = transaction
            .fetch_one(&transaction.statement(
                &insert_policy,
                vec![
                    report_row.into(),
                    policy.policy_type.as_str().into(),
                    // Unknown (the report and its email name none): '' in the NOT NULL column.
                    policy.policy_domain.as_deref().unwrap_or_default().into(),
                    json(&policy.policy_strings),
                    json(&policy.mx_hosts),
                    policy.successful_sessions.into(),
                    policy.failed_sessions.into(),
                ],
            ))
            .await?;
        for detail in &policy.failure_details {
            let insert = transaction.statement(
                "INSERT INTO tls_failure_details
                    (policy_id, result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo,
                     receiving_ip, failed_sessions, additional_information, failure_reason_code)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    policy_row.into(),
                    detail.result_type.as_str().into(),
                    detail.sending_mta_ip.as_deref().into(),
                    detail.receiving_mx_hostname.as_deref().into(),
                    detail.receiving_mx_helo.as_deref().into(),
                    detail.receiving_ip.as_deref().into(),
                    detail.failed_sessions.into(),
                    detail.additional_information.as_deref().into(),
                    detail.failure_reason_code.as_deref().into(),
                ],
            );
            transaction.execute(&insert).await?;
        }
    }
    Ok(true)
}

/// Whether the report was new. Stored once: the same report received
/// twice (by SMTP, then imported from a mailbox backup) is a duplicate,
/// like an aggregate report.
pub(super) async fn insert_failure(
    transaction: &mut Tx,
    message_id: i64,
    location: &str,
    report: &FailureReport,
) -> StoreResult<bool> {
    let backend = transaction.backend();
    let original = report.original.clone().unwrap_or_default();
    let text = format!(
        "INSERT INTO failure_reports
            (message_id, location, format, feedback_type, version, user_agent, auth_failure, identity_alignment,
             delivery_result, arrival_date, arrival_date_raw, source_ip, source_port, reporting_mta,
             original_envelope_id, original_mail_from, original_rcpt_to, reported_domain, reported_uri,
             authentication_results, incidents, dkim_domain, dkim_identity, dkim_selector, dkim_selector_dns,
             spf_dns, other_fields, report_subject, original_from, original_to, original_subject,
             original_message_id, original_date, original_headers_only, created_at, dedupe_key, warnings)
         VALUES ($1, $2, $3, $4, $5, $6, {auth_failure}, $8, $9, $10, $11, {source_ip}, $13, $14, $15, $16,
                 {rcpt_to}, {domains}, {uris}, {results}, $21, $22, $23, $24, $25, {spf_dns}, {other}, $28,
                 $29, $30, $31, $32, $33, $34, $35, $36, {warnings})
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
        auth_failure = backend.text_list("$7"),
        source_ip = backend.inet("$12"),
        rcpt_to = backend.text_list("$17"),
        domains = backend.text_list("$18"),
        uris = backend.text_list("$19"),
        results = backend.text_list("$20"),
        spf_dns = backend.text_list("$26"),
        other = backend.jsonb("$27"),
        warnings = backend.jsonb("$37"),
    );
    let format = serde_json::to_value(report.format)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default();
    let inserted: Option<(i64,)> = transaction
        .fetch_optional(&transaction.statement(
            &text,
            vec![
                message_id.into(),
                location.into(),
                format.into(),
                report.feedback_type.as_deref().into(),
                report.version.as_deref().into(),
                report.user_agent.as_deref().into(),
                json(&report.auth_failure),
                report.identity_alignment.as_deref().into(),
                report
                    .delivery_result
                    .as_ref()
                    .map(|d| d.as_str().to_string())
                    .into(),
                report.arrival_date.into(),
                report.arrival_date_raw.as_deref().into(),
                report.source_ip.into(),
                report.source_port.map(i64::from).into(),
                report.reporting_mta.as_deref().into(),
                report.original_envelope_id.as_deref().into(),
                report.original_mail_from.as_deref().into(),
                json(&report.original_rcpt_to),
                json(&report.reported_domain),
                json(&report.reported_uri),
                json(&report.authentication_results),
                report.incidents.map(i64::from).into(),
                report.dkim_domain.as_deref().into(),
                report.dkim_identity.as_deref().into(),
                report.dkim_selector.as_deref().into(),
                report.dkim_selector_dns.as_deref().into(),
                json(&report.spf_dns),
                json(&report.other_fields),
                report.report_subject.as_deref().into(),
                original.from.as_deref().into(),
                original.to.as_deref().into(),
                original.subject.as_deref().into(),
                original.message_id.as_deref().into(),
                original.date.into(),
                report.original.as_ref().map(|o| o.headers_only).into(),
                now().into(),
                failure::dedupe_key(report).into(),
                json(&report.warnings),
            ],
        ))
        .await?;
    Ok(inserted.is_some())
}

/// Queues new aggregate reports (id, records) for the rollup applier.
pub(super) async fn queue_rollups(transaction: &mut Tx, reports: &[(i64, i64)]) -> StoreResult<()> {
    let mut insert = transaction.sql();
    let rows: Vec<serde_json::Value> = reports
        .iter()
        .map(|(report, records)| serde_json::json!({"report_id": report, "records": records}))
        .collect();
    let parameter = insert.placeholder(json(&rows));
    let queued_at = insert.placeholder(now());
    insert.push(&format!(
        "INSERT INTO rollup_pending (report_id, records, queued_at) SELECT q.report_id, q.records, {queued_at} FROM {}",
        insert.backend().json_rows(
            &parameter,
            "q",
            &[
                ("report_id", super::db::ColumnType::Int),
                ("records", super::db::ColumnType::Int)
            ]
        )
    ));
    transaction.execute(&insert).await?;
    Ok(())
}

/// Adds monitored domains (sorted, lower case) that are not there yet, in
/// one statement: concurrent saves lock them in one order.
pub(super) async fn add_domains(transaction: &mut Tx, names: &[String]) -> StoreResult<()> {
    let mut insert = transaction.sql();
    let list = insert.placeholder(json(&names));
    let created_at = insert.placeholder(now());
    let source = match insert.backend() {
        Backend::Postgres => format!(
            "SELECT value, 'report', {created_at} FROM json_array_elements_text(CAST({list} AS json)) ORDER BY 1"
        ),
        // `WHERE true`: SQLite's grammar needs it before an upsert clause.
        Backend::Sqlite => {
            format!("SELECT value, 'report', {created_at} FROM json_each({list}) WHERE true")
        }
    };
    insert.push(&format!(
        "INSERT INTO domains (name, origin, created_at) {source} ON CONFLICT (name) DO NOTHING"
    ));
    transaction.execute(&insert).await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Counts {
    aggregate_reports: i64,
    aggregate_records: i64,
    tls_reports: i64,
    failure_reports: i64,
}

/// Totals of the derived data.
pub(super) async fn counts(db: &Db) -> StoreResult<ReportCounts> {
    let counts: Counts = db
        .fetch_one(&db.statement(
            "SELECT (SELECT count(*) FROM aggregate_reports) AS aggregate_reports,
                    (SELECT count(*) FROM aggregate_records) AS aggregate_records,
                    (SELECT count(*) FROM tls_reports) AS tls_reports,
                    (SELECT count(*) FROM failure_reports) AS failure_reports",
            Vec::new(),
        ))
        .await?;
    Ok(ReportCounts {
        aggregate_reports: counts.aggregate_reports,
        aggregate_records: counts.aggregate_records,
        tls_reports: counts.tls_reports,
        failure_reports: counts.failure_reports,
    })
}

/// Aggregate reports per policy domain.
pub(super) async fn aggregate_reports_by_domain(db: &Db) -> StoreResult<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = db
        .fetch_all(&db.statement(
            "SELECT policy_domain, count(*) FROM aggregate_reports GROUP BY policy_domain",
            Vec::new(),
        ))
        .await?;
    Ok(rows.into_iter().collect())
}

/// The reporting organizations (DMARC and TLS-RPT) and the source names
/// seen, at most `limit` of each, for the filter form to offer. Read from
/// the totals, which hold one row per name and domain (per day for
/// reporters), not from the records.
/// A caller limited to some domains is offered the names of theirs.
pub(super) async fn known_names(db: &Db, scope: &Scope, limit: i64) -> StoreResult<KnownNames> {
    let mut reporters = db.sql();
    reporters.push("SELECT org_name FROM totals_org_day WHERE 1 = 1");
    scope.push_condition(&mut reporters, "policy_domain");
    reporters.push(
        " UNION SELECT t.organization_name FROM tls_reports t \
         JOIN tls_policies p ON p.report_id = t.id WHERE 1 = 1",
    );
    scope.push_condition(&mut reporters, "lower(p.policy_domain)");
    reporters.push(" ORDER BY 1 LIMIT ").bind(limit);
    let reporters: Vec<(String,)> = db.fetch_all(&reporters).await?;
    let mut sources = db.sql();
    sources.push("SELECT DISTINCT source_name FROM totals_name_all WHERE source_name IS NOT NULL");
    scope.push_condition(&mut sources, "policy_domain");
    sources.push(" ORDER BY 1 LIMIT ").bind(limit);
    let sources: Vec<(String,)> = db.fetch_all(&sources).await?;
    let strings = |rows: Vec<(String,)>| rows.into_iter().map(|(name,)| name).collect();
    Ok(KnownNames {
        reporters: strings(reporters),
        source_names: strings(sources),
    })
}

/// Names the filter form offers (`known_names`).
#[derive(Debug, Clone, Default)]
pub struct KnownNames {
    pub reporters: Vec<String>,
    pub source_names: Vec<String>,
}

/// The monitored domains `scope` sees.
pub(super) async fn domains(db: &Db, scope: &Scope) -> StoreResult<Vec<String>> {
    let mut sql = db.sql();
    sql.push("SELECT name FROM domains WHERE 1 = 1");
    scope.push_condition(&mut sql, "name");
    sql.push(" ORDER BY name");
    let rows: Vec<(String,)> = db.fetch_all(&sql).await?;
    Ok(rows.into_iter().map(|(name,)| name).collect())
}
