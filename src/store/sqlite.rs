//! The SQLite backend: one file, no server. WAL journal with full fsync, so
//! a committed message survives a crash or power loss.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use super::rows::{self, unstorable, AggregateRow, RecordColumns};
use super::*;
use crate::report::{AggregateReport, FailureReport, Report, TlsReport};

#[derive(Clone)]
pub struct SqliteStore {
    /// Commits wait for fsync: used for the inbox, which must be durable.
    pub(super) pool: SqlitePool,
    /// Commits skip the fsync (`synchronous = NORMAL`, still crash-safe in
    /// WAL mode): used for claims and derived data, which a crash may roll
    /// back but `dmarcd` redoes from the raw message.
    pub(super) derived: SqlitePool,
}

/// SQLite's variable limit is 32766; 19 columns × 1500 rows stays below it.
const SQLITE_RECORD_BATCH: usize = 1500;

/// Claim conditions; both use the current time parameter so that the
/// statement binds the same values.
const EXPIRED: &str = "status = 'processing' AND lease_until < ?3";
const PENDING: &str = "status = 'pending' AND ?3 IS NOT NULL";

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

impl SqliteStore {
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::with_options(options).await
    }

    pub async fn connect_url(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url).map_err(StoreError::Query)?;
        Self::with_options(options).await
    }

    async fn with_options(options: SqliteConnectOptions) -> StoreResult<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // 16 MiB of page cache (the default is 2 MiB): record inserts touch
            // several indexes; the cache stays small enough for the SMTP
            // memory budget.
            .pragma("cache_size", "-16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone().synchronous(SqliteSynchronous::Full))
            .await?;
        let derived = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await?;
        Ok(SqliteStore { pool, derived })
    }

    pub(super) async fn migrate(&self) -> StoreResult<Vec<Migration>> {
        migrate::sqlite(&self.pool).await
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
        self.derived.close().await;
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Stores messages in one transaction (one commit, one fsync, for all
    /// of them); returns once they are committed. Bytes already in the inbox
    /// are not stored again: their existing id is returned.
    pub(super) async fn insert_messages(
        &self,
        messages: &[(&[u8], &Envelope)],
    ) -> StoreResult<Vec<Accepted>> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut accepted = Vec::with_capacity(messages.len());
        for (raw, envelope) in messages {
            let digest = sha256(raw).to_vec();
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO inbox_messages
                (sha256, size, received_at, intake, source_name, peer_ip, helo, mail_from, rcpt_to, tls)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (sha256) DO NOTHING
             RETURNING id",
            )
            .bind(&digest)
        .bind(raw.len() as i64)
        .bind(now())
        .bind(envelope.intake.as_str())
        .bind(envelope.source_name.as_deref())
        .bind(envelope.peer_ip.map(|ip| ip.to_string()))
        .bind(envelope.helo.as_deref())
        .bind(envelope.mail_from.as_deref())
        .bind(rows::json_text(&envelope.rcpt_to))
        .bind(envelope.tls)
        .fetch_optional(&mut *transaction)
            .await?;
            if let Some(id) = inserted {
                for (seq, chunk) in raw.chunks(rows::RAW_CHUNK_BYTES).enumerate() {
                    sqlx::query("INSERT INTO inbox_raw (message_id, seq, raw) VALUES (?, ?, ?)")
                        .bind(id)
                        .bind(seq as i32)
                        .bind(chunk)
                        .execute(&mut *transaction)
                        .await?;
                }
                if raw.is_empty() {
                    sqlx::query("INSERT INTO inbox_raw (message_id, seq, raw) VALUES (?, 0, ?)")
                        .bind(id)
                        .bind(&[][..] as &[u8])
                        .execute(&mut *transaction)
                        .await?;
                }
                accepted.push(Accepted { id, is_new: true });
            } else {
                let id: i64 = sqlx::query_scalar("SELECT id FROM inbox_messages WHERE sha256 = ?")
                    .bind(&digest)
                    .fetch_one(&mut *transaction)
                    .await?;
                accepted.push(Accepted { id, is_new: false });
            }
        }
        transaction.commit().await?;
        Ok(accepted)
    }

    /// Claims messages: first any one whose lease expired, alone (its
    /// worker stopped or crashed; if the message itself crashes the
    /// process, it must not take a batch down with it again), else a batch
    /// of pending ones.
    pub(super) async fn claim(
        &self,
        worker: &str,
        batch: u32,
        max_bytes: u64,
        lease: Duration,
    ) -> StoreResult<Vec<Claimed>> {
        let expired = self
            .claim_where(EXPIRED, worker, 1, max_bytes, lease)
            .await?;
        if !expired.is_empty() {
            return Ok(expired);
        }
        self.claim_where(PENDING, worker, batch, max_bytes, lease)
            .await
    }

    async fn claim_where(
        &self,
        condition: &str,
        worker: &str,
        batch: u32,
        max_bytes: u64,
        lease: Duration,
    ) -> StoreResult<Vec<Claimed>> {
        let now = now();
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        // One UPDATE: SQLite runs writes one at a time, so two workers can
        // never claim the same row.
        let sql = format!(
            "UPDATE inbox_messages
                SET status = 'processing', attempts = attempts + 1, lease_until = ?1, claimed_by = ?2
              WHERE id IN (SELECT id FROM (
                               SELECT id, SUM(size) OVER (ORDER BY id) AS total,
                                      ROW_NUMBER() OVER (ORDER BY id) AS n
                                 FROM (SELECT id, size FROM inbox_messages
                                        WHERE {condition}
                                        ORDER BY id LIMIT ?4))
                            WHERE total <= ?5 OR n = 1)
             RETURNING id, source_name, attempts"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease_until)
            .bind(worker)
            .bind(now)
            .bind(i64::from(batch))
            .bind(i64::try_from(max_bytes).unwrap_or(i64::MAX))
            .fetch_all(&self.derived)
            .await?;
        let mut raws = std::collections::HashMap::new();
        if !rows.is_empty() {
            let mut select = QueryBuilder::<Sqlite>::new(
                "SELECT message_id, raw FROM inbox_raw WHERE message_id IN (",
            );
            let mut list = select.separated(", ");
            for row in &rows {
                list.push_bind(row.get::<i64, _>("id"));
            }
            list.push_unseparated(") ORDER BY message_id, seq");
            let found: Vec<(i64, Vec<u8>)> =
                select.build_query_as().fetch_all(&self.derived).await?;
            raws = rows::join_chunks(found);
        }
        let mut claimed: Vec<Claimed> = rows
            .into_iter()
            .map(|row| {
                let id: i64 = row.get("id");
                Claimed {
                    id,
                    raw: raws.remove(&id).unwrap_or_default(),
                    source_name: row.get("source_name"),
                    attempts: row.get("attempts"),
                }
            })
            .collect();
        claimed.sort_by_key(|message| message.id);
        Ok(claimed)
    }

    /// Saves the outcomes of a batch of messages in one transaction (one
    /// commit for the batch). If the database refuses the batch, each
    /// message is retried alone, and one that is refused alone is kept as
    /// failed with the database's reason: a message is never lost and never
    /// blocks the queue.
    pub(super) async fn save_outcomes(
        &self,
        worker: &str,
        items: &[(i64, &Outcome)],
    ) -> StoreResult<Vec<SaveSummary>> {
        match self.save_batch(worker, items).await {
            Ok(summaries) => Ok(summaries),
            Err(StoreError::Unavailable(error)) => Err(StoreError::Unavailable(error)),
            Err(error) => {
                tracing::warn!(%error, messages = items.len(), "a batch was refused; saving its messages one by one");
                let mut summaries = Vec::with_capacity(items.len());
                for item in items {
                    let summary = match self.save_batch(worker, std::slice::from_ref(item)).await {
                        Ok(mut one) => one.pop().unwrap_or_default(),
                        Err(StoreError::Unavailable(error)) => {
                            return Err(StoreError::Unavailable(error))
                        }
                        Err(error) => {
                            let failed = Outcome::Failed(format!(
                                "the database refused this message's reports: {error}"
                            ));
                            self.save_batch(worker, &[(item.0, &failed)])
                                .await?
                                .pop()
                                .unwrap_or_default()
                        }
                    };
                    summaries.push(summary);
                }
                Ok(summaries)
            }
        }
    }

    async fn save_batch(
        &self,
        worker: &str,
        items: &[(i64, &Outcome)],
    ) -> StoreResult<Vec<SaveSummary>> {
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        let mut held = QueryBuilder::<Sqlite>::new(
            "SELECT id FROM inbox_messages WHERE status = 'processing' AND claimed_by = ",
        );
        held.push_bind(worker).push(" AND id IN (");
        let mut list = held.separated(", ");
        for (id, _) in items {
            list.push_bind(*id);
        }
        list.push_unseparated(")");
        let held: Vec<i64> = held
            .build_query_scalar()
            .fetch_all(&mut *transaction)
            .await?;

        let mut summaries = Vec::with_capacity(items.len());
        let mut statuses = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for (id, outcome) in items {
            if !held.contains(id) {
                summaries.push(SaveSummary::default());
                continue;
            }
            let mut summary = SaveSummary {
                written: true,
                ..SaveSummary::default()
            };
            let (status, error) = match outcome {
                Outcome::Reports(reports) => match unstorable(reports) {
                    Some(reason) => (MessageStatus::Failed, Some(reason)),
                    None => {
                        if let Err(invalid) =
                            write_reports(&mut transaction, &mut seen, *id, reports, &mut summary)
                                .await?
                        {
                            return Err(StoreError::Invalid(invalid));
                        }
                        if summary.stored.is_empty() && summary.duplicates > 0 {
                            (MessageStatus::Duplicate, None)
                        } else {
                            (MessageStatus::Done, None)
                        }
                    }
                },
                Outcome::Failed(reason) => (MessageStatus::Failed, Some(reason.clone())),
                Outcome::Ignored(reason) => (MessageStatus::Ignored, Some(reason.clone())),
            };
            summary.status = Some(status);
            summaries.push(summary);
            statuses.push((*id, status, error));
        }
        let stored = serde_json::to_string(
            &statuses
                .iter()
                .filter(|(_, status, _)| *status == MessageStatus::Done)
                .map(|(id, _, _)| *id)
                .collect::<Vec<i64>>(),
        )
        .expect("ids serialize");
        // The rollups take this batch's new records in one pass.
        for rollup in super::rollup::ALL {
            for statement in rollup.add_sql(super::Dialect::Sqlite) {
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .bind(&stored)
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        set_statuses(&mut transaction, &statuses).await?;
        transaction.commit().await?;
        Ok(summaries)
    }

    pub(super) async fn requeue(&self, selection: &Requeue) -> StoreResult<u64> {
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT id FROM inbox_messages WHERE status NOT IN ('pending', 'processing')",
        );
        match selection {
            Requeue::Failed => {
                select.push(" AND status = 'failed'");
            }
            Requeue::All => {}
            Requeue::Ids(ids) => {
                select.push(" AND id IN (");
                let mut list = select.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                list.push_unseparated(")");
                if ids.is_empty() {
                    return Ok(0);
                }
            }
        }
        let ids: Vec<i64> = select
            .build_query_scalar()
            .fetch_all(&mut *transaction)
            .await?;
        for id in &ids {
            // The rollups lose this message's records before they go.
            for rollup in super::rollup::ALL {
                sqlx::query(sqlx::AssertSqlSafe(
                    rollup.subtract_sql(super::Dialect::Sqlite),
                ))
                .bind(id)
                .execute(&mut *transaction)
                .await?;
                sqlx::query(sqlx::AssertSqlSafe(rollup.prune_sql()))
                    .execute(&mut *transaction)
                    .await?;
            }
            for table in ["aggregate_reports", "tls_reports", "failure_reports"] {
                let sql = format!("DELETE FROM {table} WHERE message_id = ?");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .execute(&mut *transaction)
                    .await?;
            }
            sqlx::query(
                "UPDATE inbox_messages
                    SET status = 'pending', error = NULL, processed_at = NULL, lease_until = NULL, claimed_by = NULL
                  WHERE id = ?",
            )
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(ids.len() as u64)
    }

    pub(super) async fn message(&self, id: i64) -> StoreResult<Option<MessageInfo>> {
        let row = sqlx::query(
            "SELECT id, status, error, attempts, source_name FROM inbox_messages WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| MessageInfo {
            id: row.get("id"),
            status: MessageStatus::parse(row.get("status")).unwrap_or(MessageStatus::Failed),
            error: row.get("error"),
            attempts: row.get("attempts"),
            source_name: row.get("source_name"),
        }))
    }

    pub(super) async fn status_counts(&self) -> StoreResult<BTreeMap<MessageStatus, i64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM inbox_messages GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(status, count)| MessageStatus::parse(&status).map(|s| (s, count)))
            .collect())
    }

    pub(super) async fn report_counts(&self) -> StoreResult<ReportCounts> {
        let (aggregate_reports, aggregate_records, tls_reports, failure_reports): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM aggregate_reports), (SELECT COUNT(*) FROM aggregate_records),
                    (SELECT COUNT(*) FROM tls_reports), (SELECT COUNT(*) FROM failure_reports)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ReportCounts {
            aggregate_reports,
            aggregate_records,
            tls_reports,
            failure_reports,
        })
    }

    pub(super) async fn aggregate_reports_by_domain(&self) -> StoreResult<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT policy_domain, COUNT(*) FROM aggregate_reports GROUP BY policy_domain",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub(super) async fn domains(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM domains ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }
}

/// Writes every report of a message. The inner error is a report that
/// cannot be stored (e.g. a date out of range): the message fails with it.
async fn write_reports(
    transaction: &mut Transaction<'_, Sqlite>,
    seen: &mut HashSet<String>,
    message_id: i64,
    reports: &[ExtractedReport],
    summary: &mut SaveSummary,
) -> StoreResult<Result<(), String>> {
    for extracted in reports {
        let location = extracted.location.as_str();
        let written = match &extracted.report {
            Report::Aggregate(report) => {
                write_aggregate(transaction, seen, message_id, location, report).await?
            }
            Report::Tlsrpt(report) => {
                write_tls(transaction, seen, message_id, location, report).await?
            }
            Report::Failure(report) => {
                write_failure(transaction, seen, message_id, location, report).await?
            }
        };
        match written {
            Ok(Some(records)) => {
                *summary.stored.entry(extracted.report.kind()).or_default() += 1;
                summary.records += records;
            }
            Ok(None) => summary.duplicates += 1,
            Err(invalid) => return Ok(Err(format!("{location}: {invalid}"))),
        }
    }
    Ok(Ok(()))
}

async fn add_domain(
    transaction: &mut Transaction<'_, Sqlite>,
    seen: &mut HashSet<String>,
    name: &str,
) -> StoreResult<()> {
    // Once per batch is enough: a batch often holds many reports for one domain.
    // Only a domain name is listed: a report's text could be anything.
    if !seen.insert(name.to_ascii_lowercase())
        || !crate::domain::is_domain_name(&name.to_ascii_lowercase())
    {
        return Ok(());
    }
    sqlx::query("INSERT INTO domains (name, origin, created_at) VALUES (?, 'report', ?) ON CONFLICT (name) DO NOTHING")
        .bind(name.to_ascii_lowercase())
        .bind(now())
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// `Ok(Some(records))` when stored, `Ok(None)` when already there.
async fn write_aggregate(
    transaction: &mut Transaction<'_, Sqlite>,
    seen: &mut HashSet<String>,
    message_id: i64,
    location: &str,
    report: &AggregateReport,
) -> StoreResult<Result<Option<u64>, String>> {
    let row = match AggregateRow::new(report) {
        Ok(row) => row,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let meta = &report.metadata;
    let policy = &report.policy_published;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO aggregate_reports
            (message_id, location, org_name, email, extra_contact_info, report_id, date_begin, date_end,
             errors, generator, schema, version, namespace, policy_domain, adkim, aspf, p, sp, np, pct, fo,
             testing, discovery_method, extensions, warnings, record_count, message_count, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (org_name, report_id, policy_domain, date_begin) DO NOTHING
         RETURNING id",
    )
    .bind(message_id)
    .bind(location)
    .bind(&meta.org_name)
    .bind(meta.email.as_deref())
    .bind(meta.extra_contact_info.as_deref())
    .bind(&meta.report_id)
    .bind(row.begin)
    .bind(row.end)
    .bind(&row.errors_json)
    .bind(meta.generator.as_deref())
    .bind(&row.schema)
    .bind(report.version.as_deref())
    .bind(report.namespace.as_deref())
    .bind(&policy.domain)
    .bind(row.adkim.as_deref())
    .bind(row.aspf.as_deref())
    .bind(row.p.as_deref())
    .bind(row.sp.as_deref())
    .bind(row.np.as_deref())
    .bind(policy.pct.map(i64::from))
    .bind(policy.fo.as_deref())
    .bind(policy.testing.as_deref())
    .bind(policy.discovery_method.as_deref())
    .bind(&row.extensions_json)
    .bind(&row.warnings_json)
    .bind(report.records.len() as i64)
    .bind(row.message_count)
    .bind(now())
    .fetch_optional(&mut **transaction)
    .await?;
    let Some(report_row) = inserted else {
        return Ok(Ok(None));
    };
    add_domain(transaction, seen, &policy.domain).await?;

    let columns = RecordColumns::new(&report.records);
    let mut start = 0;
    while start < columns.len() {
        let end = (start + SQLITE_RECORD_BATCH).min(columns.len());
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO aggregate_records
                (report_id, policy_domain, org_name, date_begin, date_end, source_ip, invalid_source_ip, count,
                 disposition, dkim_aligned, spf_aligned, dmarc_pass, reasons, header_from, envelope_from,
                 envelope_to, dkim_results, spf_results, extensions) ",
        );
        insert.push_values(start..end, |mut values, i| {
            values
                .push_bind(report_row)
                .push_bind(&policy.domain)
                .push_bind(&meta.org_name)
                .push_bind(row.begin)
                .push_bind(row.end)
                .push_bind(&columns.source_ip[i])
                .push_bind(&columns.invalid_source_ip[i])
                .push_bind(columns.count[i])
                .push_bind(&columns.disposition[i])
                .push_bind(&columns.dkim_aligned[i])
                .push_bind(&columns.spf_aligned[i])
                .push_bind(columns.dmarc_pass[i])
                .push_bind(&columns.reasons[i])
                .push_bind(&columns.header_from[i])
                .push_bind(&columns.envelope_from[i])
                .push_bind(&columns.envelope_to[i])
                .push_bind(&columns.dkim_results[i])
                .push_bind(&columns.spf_results[i])
                .push_bind(&columns.extensions[i]);
        });
        insert.build().execute(&mut **transaction).await?;
        start = end;
    }
    let distinct = columns
        .source_ip
        .iter()
        .flatten()
        .collect::<HashSet<_>>()
        .len();
    super::sqlite_sources::note_report_ips(transaction, report_row, distinct).await?;
    Ok(Ok(Some(report.records.len() as u64)))
}

async fn write_tls(
    transaction: &mut Transaction<'_, Sqlite>,
    seen: &mut HashSet<String>,
    message_id: i64,
    location: &str,
    report: &TlsReport,
) -> StoreResult<Result<Option<u64>, String>> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tls_reports
            (message_id, location, organization_name, report_id, date_begin, date_end, contact_info, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (organization_name, report_id) DO NOTHING
         RETURNING id",
    )
    .bind(message_id)
    .bind(location)
    .bind(&report.organization_name)
    .bind(&report.report_id)
    .bind(report.begin)
    .bind(report.end)
    .bind(report.contact_info.as_deref())
    .bind(now())
    .fetch_optional(&mut **transaction)
    .await?;
    let Some(report_row) = inserted else {
        return Ok(Ok(None));
    };
    for policy in &report.policies {
        add_domain(transaction, seen, &policy.policy_domain).await?;
        let policy_row: i64 = sqlx::query_scalar(
            "INSERT INTO tls_policies
                (report_id, policy_type, policy_domain, policy_strings, mx_hosts, successful_sessions, failed_sessions)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(report_row)
        .bind(policy.policy_type.as_str())
        .bind(&policy.policy_domain)
        .bind(rows::json_text(&policy.policy_strings))
        .bind(rows::json_text(&policy.mx_hosts))
        .bind(policy.successful_sessions as i64)
        .bind(policy.failed_sessions as i64)
        .fetch_one(&mut **transaction)
        .await?;
        for detail in &policy.failure_details {
            sqlx::query(
                "INSERT INTO tls_failure_details
                    (policy_id, result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo,
                     receiving_ip, failed_sessions, additional_information, failure_reason_code)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(policy_row)
            .bind(detail.result_type.as_str())
            .bind(detail.sending_mta_ip.as_deref())
            .bind(detail.receiving_mx_hostname.as_deref())
            .bind(detail.receiving_mx_helo.as_deref())
            .bind(detail.receiving_ip.as_deref())
            .bind(detail.failed_sessions as i64)
            .bind(detail.additional_information.as_deref())
            .bind(detail.failure_reason_code.as_deref())
            .execute(&mut **transaction)
            .await?;
        }
    }
    Ok(Ok(Some(0)))
}

async fn write_failure(
    transaction: &mut Transaction<'_, Sqlite>,
    seen: &mut HashSet<String>,
    message_id: i64,
    location: &str,
    report: &FailureReport,
) -> StoreResult<Result<Option<u64>, String>> {
    let original = report.original.clone().unwrap_or_default();
    sqlx::query(
        "INSERT INTO failure_reports
            (message_id, location, format, feedback_type, version, user_agent, auth_failure, identity_alignment,
             delivery_result, arrival_date, arrival_date_raw, source_ip, source_port, reporting_mta,
             original_envelope_id, original_mail_from, original_rcpt_to, reported_domain, reported_uri,
             authentication_results, incidents, dkim_domain, dkim_identity, dkim_selector, dkim_selector_dns,
             spf_dns, other_fields, report_subject, original_from, original_to, original_subject,
             original_message_id, original_date, original_headers_only, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(message_id)
    .bind(location)
    .bind(rows::json_text(&report.format).trim_matches('"').to_string())
    .bind(report.feedback_type.as_deref())
    .bind(report.version.as_deref())
    .bind(report.user_agent.as_deref())
    .bind(rows::json_text(&report.auth_failure))
    .bind(report.identity_alignment.as_deref())
    .bind(report.delivery_result.as_ref().map(|d| d.as_str().to_string()))
    .bind(report.arrival_date)
    .bind(report.arrival_date_raw.as_deref())
    .bind(report.source_ip.map(|ip| ip.to_string()))
    .bind(report.source_port.map(i64::from))
    .bind(report.reporting_mta.as_deref())
    .bind(report.original_envelope_id.as_deref())
    .bind(report.original_mail_from.as_deref())
    .bind(rows::json_text(&report.original_rcpt_to))
    .bind(rows::json_text(&report.reported_domain))
    .bind(rows::json_text(&report.reported_uri))
    .bind(rows::json_text(&report.authentication_results))
    .bind(report.incidents.map(i64::from))
    .bind(report.dkim_domain.as_deref())
    .bind(report.dkim_identity.as_deref())
    .bind(report.dkim_selector.as_deref())
    .bind(report.dkim_selector_dns.as_deref())
    .bind(rows::json_text(&report.spf_dns))
    .bind(rows::json_text(&report.other_fields))
    .bind(report.report_subject.as_deref())
    .bind(original.from.as_deref())
    .bind(original.to.as_deref())
    .bind(original.subject.as_deref())
    .bind(original.message_id.as_deref())
    .bind(original.date)
    .bind(report.original.as_ref().map(|o| o.headers_only))
    .bind(now())
    .execute(&mut **transaction)
    .await?;
    for domain in &report.reported_domain {
        add_domain(transaction, seen, domain).await?;
    }
    Ok(Ok(Some(0)))
}

/// Marks processed messages: one statement per status for the messages
/// without an error text, one per message with one.
async fn set_statuses(
    transaction: &mut Transaction<'_, Sqlite>,
    statuses: &[(i64, MessageStatus, Option<String>)],
) -> StoreResult<()> {
    let finished = now();
    for status in [MessageStatus::Done, MessageStatus::Duplicate] {
        let ids: Vec<i64> = statuses
            .iter()
            .filter(|(_, s, error)| *s == status && error.is_none())
            .map(|(id, _, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let mut update = QueryBuilder::<Sqlite>::new("UPDATE inbox_messages SET status = ");
        update
            .push_bind(status.as_str())
            .push(", error = NULL, lease_until = NULL, claimed_by = NULL, processed_at = ")
            .push_bind(finished)
            .push(" WHERE id IN (");
        let mut list = update.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        list.push_unseparated(")");
        update.build().execute(&mut **transaction).await?;
    }
    for (id, status, error) in statuses {
        if error.is_none() && matches!(status, MessageStatus::Done | MessageStatus::Duplicate) {
            continue;
        }
        sqlx::query(
            "UPDATE inbox_messages
                SET status = ?, error = ?, processed_at = ?, lease_until = NULL, claimed_by = NULL
              WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(error.as_deref())
        .bind(finished)
        .bind(*id)
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}
