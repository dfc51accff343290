//! The SQLite backend: one file, no server. WAL journal with full fsync, so
//! a committed message survives a crash or power loss.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use super::applier;
use super::rows::{self, AggregateRow, RecordColumns};
use super::save::NewRecords;
use super::*;
use crate::report::{failure, AggregateReport, FailureReport, TlsReport};

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
    /// Writes a batch's outcomes in one transaction (`save.rs`).
    pub(super) async fn save_batch(
        &self,
        worker: &str,
        items: &[(i64, &Outcome)],
    ) -> StoreResult<Vec<SaveSummary>> {
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        let summaries = super::save::save_batch(&mut transaction, worker, items).await?;
        transaction.commit().await?;
        Ok(summaries)
    }

    pub(super) async fn requeue(&self, selection: &Requeue) -> StoreResult<u64> {
        // BEGIN IMMEDIATE: the only writer until it ends, so no applier
        // pass runs meanwhile (see postgres.rs).
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<i64> = match selection {
            Requeue::Ids(ids) if ids.is_empty() => return Ok(0),
            Requeue::Ids(ids) => sqlx::query_scalar(
                "SELECT id FROM inbox_messages
                  WHERE status NOT IN ('pending', 'processing')
                    AND id IN (SELECT value FROM json_each(?1)) ORDER BY id",
            )
            .bind(applier::sqlite::json_list(ids)),
            Requeue::Failed => sqlx::query_scalar(
                "SELECT id FROM inbox_messages WHERE status = 'failed' AND ?1 IS NOT NULL ORDER BY id",
            )
            .bind(""),
            Requeue::All => sqlx::query_scalar(
                "SELECT id FROM inbox_messages
                  WHERE status NOT IN ('pending', 'processing') AND ?1 IS NOT NULL ORDER BY id",
            )
            .bind(""),
        }
        .fetch_all(&mut *transaction)
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let messages = applier::sqlite::json_list(&ids);
        let counted: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM aggregate_reports r
              WHERE r.message_id IN (SELECT value FROM json_each(?1))
                AND NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.report_id = r.id)",
        )
        .bind(&messages)
        .fetch_all(&mut *transaction)
        .await?;
        if !counted.is_empty() {
            applier::sqlite::count_reports(
                &mut transaction,
                &applier::sqlite::json_list(&counted),
                -1,
            )
            .await?;
        }
        for statement in [
            "DELETE FROM rollup_pending WHERE report_id IN
                (SELECT id FROM aggregate_reports WHERE message_id IN (SELECT value FROM json_each(?1)))",
            "DELETE FROM aggregate_records WHERE report_id IN
                (SELECT id FROM aggregate_reports WHERE message_id IN (SELECT value FROM json_each(?1)))",
            "DELETE FROM aggregate_reports WHERE message_id IN (SELECT value FROM json_each(?1))",
            "DELETE FROM tls_reports WHERE message_id IN (SELECT value FROM json_each(?1))",
            "DELETE FROM failure_reports WHERE message_id IN (SELECT value FROM json_each(?1))",
            "UPDATE inbox_messages
                SET status = 'pending', error = NULL, processed_at = NULL, lease_until = NULL, claimed_by = NULL
              WHERE id IN (SELECT value FROM json_each(?1))",
        ] {
            sqlx::query(statement)
                .bind(&messages)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(ids.len() as u64)
    }

    pub(super) async fn release_claims(&self, worker: &str, ids: &[i64]) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE inbox_messages
                SET status = 'pending', attempts = max(attempts - 1, 0), lease_until = NULL,
                    claimed_by = NULL
              WHERE status = 'processing' AND claimed_by = ?1
                AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(worker)
        .bind(applier::sqlite::json_list(ids))
        .execute(&self.derived)
        .await?
        .rows_affected())
    }

    /// One pass of the rollup applier (`applier.rs`).
    pub(super) async fn apply_rollups(
        &self,
        max_records: u64,
    ) -> StoreResult<Option<super::AppliedRollups>> {
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        let applied = applier::sqlite::apply(&mut transaction, max_records).await?;
        transaction.commit().await?;
        Ok(Some(applied))
    }

    pub(super) async fn rollup_lag(&self) -> StoreResult<super::RollupLag> {
        applier::sqlite::lag(&self.pool).await
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

/// The statements of a save (`save.rs`) on SQLite.
impl super::save::BatchWriter for Transaction<'_, Sqlite> {
    async fn held(&mut self, worker: &str, ids: &[i64]) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM inbox_messages
              WHERE status = 'processing' AND claimed_by = ?1
                AND id IN (SELECT value FROM json_each(?2)) ORDER BY id",
        )
        .bind(worker)
        .bind(applier::sqlite::json_list(ids))
        .fetch_all(&mut **self)
        .await?)
    }

    async fn insert_aggregate(
        &mut self,
        message_id: i64,
        location: &str,
        report: &AggregateReport,
        row: &AggregateRow,
    ) -> StoreResult<Option<i64>> {
        let transaction = self;
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
        Ok(inserted)
    }

    async fn insert_records(&mut self, records: &[NewRecords<'_>]) -> StoreResult<()> {
        for new in records {
            insert_records(self, new).await?;
        }
        Ok(())
    }

    async fn insert_tls(
        &mut self,
        message_id: i64,
        location: &str,
        report: &TlsReport,
    ) -> StoreResult<bool> {
        write_tls(self, message_id, location, report).await
    }

    async fn insert_failure(
        &mut self,
        message_id: i64,
        location: &str,
        report: &FailureReport,
    ) -> StoreResult<bool> {
        write_failure(self, message_id, location, report).await
    }

    async fn queue_rollups(&mut self, reports: &[(i64, i64)]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO rollup_pending (report_id, records, queued_at)
             SELECT value ->> 0, value ->> 1, ?2 FROM json_each(?1)",
        )
        .bind(applier::sqlite::json_list(reports))
        .bind(now())
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn add_domains(&mut self, names: &[String]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO domains (name, origin, created_at)
             SELECT value, 'report', ?2 FROM json_each(?1) WHERE true
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(applier::sqlite::json_list(names))
        .bind(now())
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn set_statuses(
        &mut self,
        statuses: &[(i64, MessageStatus, Option<String>)],
    ) -> StoreResult<()> {
        set_statuses(self, statuses).await
    }
}

/// A report's records, a few hundred rows per multi-row INSERT.
async fn insert_records(
    transaction: &mut Transaction<'_, Sqlite>,
    new: &NewRecords<'_>,
) -> StoreResult<()> {
    let columns = RecordColumns::new(&new.aggregate.records);
    let report_row = new.report;
    let policy = &new.aggregate.policy_published;
    let meta = &new.aggregate.metadata;
    let row = new.row;
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
    Ok(())
}

async fn write_tls(
    transaction: &mut Transaction<'_, Sqlite>,
    message_id: i64,
    location: &str,
    report: &TlsReport,
) -> StoreResult<bool> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tls_reports
            (message_id, location, organization_name, report_id, date_begin, date_end, contact_info, created_at, warnings)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
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
    .bind(rows::json_text(&report.warnings))
    .fetch_optional(&mut **transaction)
    .await?;
    let Some(report_row) = inserted else {
        return Ok(false);
    };
    for policy in &report.policies {
        let policy_row: i64 = sqlx::query_scalar(
            "INSERT INTO tls_policies
                (report_id, policy_type, policy_domain, policy_strings, mx_hosts, successful_sessions, failed_sessions)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(report_row)
        .bind(policy.policy_type.as_str())
        // Unknown (the report and its email name none): '' in the NOT NULL column.
        .bind(policy.policy_domain.as_deref().unwrap_or_default())
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
    Ok(true)
}

async fn write_failure(
    transaction: &mut Transaction<'_, Sqlite>,
    message_id: i64,
    location: &str,
    report: &FailureReport,
) -> StoreResult<bool> {
    let original = report.original.clone().unwrap_or_default();
    // Stored once: the same report received twice (by SMTP, then imported
    // from a mailbox backup) is a duplicate, like an aggregate report.
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO failure_reports
            (message_id, location, format, feedback_type, version, user_agent, auth_failure, identity_alignment,
             delivery_result, arrival_date, arrival_date_raw, source_ip, source_port, reporting_mta,
             original_envelope_id, original_mail_from, original_rcpt_to, reported_domain, reported_uri,
             authentication_results, incidents, dkim_domain, dkim_identity, dkim_selector, dkim_selector_dns,
             spf_dns, other_fields, report_subject, original_from, original_to, original_subject,
             original_message_id, original_date, original_headers_only, created_at, dedupe_key, warnings)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
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
    .bind(failure::dedupe_key(report))
    .bind(rows::json_text(&report.warnings))
    .fetch_optional(&mut **transaction)
    .await?;
    Ok(inserted.is_some())
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
