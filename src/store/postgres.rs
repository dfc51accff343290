//! The PostgreSQL backend: the production store. Several dmarcd processes
//! may share one database: workers claim messages with `FOR UPDATE SKIP
//! LOCKED`, and report uniqueness is enforced by the database.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Transaction};

use super::copy::{self, RECORD_COLUMNS};
use super::rows::{self, AggregateRow, RecordColumns};
use super::save::NewRecords;
use super::*;
use crate::report::{failure, AggregateReport, FailureReport, TlsReport};

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

/// Claim conditions. Leases are set and compared with the database's clock,
/// so nodes whose clocks disagree cannot take each other's work early.
const EXPIRED: &str = "status = 'processing' AND lease_until < now()";
const PENDING: &str = "status = 'pending'";

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = url
            .parse::<sqlx::postgres::PgConnectOptions>()?
            // JIT compilation adds a second or more to every large
            // aggregate and pays off only for much longer queries. A summary
            // over tens of thousands of sources hashes ~10 MB of groups: the
            // 4 MB default would spill it to disk. Prepared statements are
            // planned for their values: a generic plan cannot see whether a
            // date bound leaves a day or a year of rollup rows. Parallel
            // workers pay off only on an idle machine: a dashboard's pages
            // run several queries at once, and on a small server the extra
            // processes only compete with them (measured with web_load).
            .options([
                ("jit", "off"),
                ("max_parallel_workers_per_gather", "0"),
                ("work_mem", "32MB"),
                ("plan_cache_mode", "force_custom_plan"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }

    /// A transaction that writes only what can be rebuilt from the inbox
    /// (reports, message status, claims). It commits without waiting for
    /// the WAL flush: after a crash, anything lost is redone from the raw
    /// message, whose own insert (`insert_message`) always waits.
    async fn derived_transaction(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *transaction)
            .await?;
        Ok(transaction)
    }

    pub(super) async fn migrate(&self) -> StoreResult<Vec<Migration>> {
        migrate::postgres(&self.pool).await
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
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
        let mut transaction = self.pool.begin().await?;
        let mut accepted = Vec::with_capacity(messages.len());
        for (raw, envelope) in messages {
            let digest = sha256(raw).to_vec();
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO inbox_messages
                (sha256, size, received_at, intake, source_name, peer_ip, helo, mail_from, rcpt_to, tls)
             VALUES ($1, $2, $3, $4, $5, $6::inet, $7, $8, $9, $10)
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
        .bind(&envelope.rcpt_to)
        .bind(envelope.tls)
        .fetch_optional(&mut *transaction)
            .await?;
            if let Some(id) = inserted {
                for (seq, chunk) in raw.chunks(rows::RAW_CHUNK_BYTES).enumerate() {
                    sqlx::query("INSERT INTO inbox_raw (message_id, seq, raw) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(seq as i32)
                        .bind(chunk)
                        .execute(&mut *transaction)
                        .await?;
                }
                if raw.is_empty() {
                    sqlx::query("INSERT INTO inbox_raw (message_id, seq, raw) VALUES ($1, 0, $2)")
                        .bind(id)
                        .bind(&[][..] as &[u8])
                        .execute(&mut *transaction)
                        .await?;
                }
                accepted.push(Accepted { id, is_new: true });
            } else {
                let id: i64 = sqlx::query_scalar("SELECT id FROM inbox_messages WHERE sha256 = $1")
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
        let mut transaction = self.derived_transaction().await?;
        // SKIP LOCKED: concurrent workers (in this process or another node)
        // each take different rows and never wait on each other.
        let sql = format!(
            "WITH candidates AS (
                 SELECT id, size FROM inbox_messages
                  WHERE {condition}
                  ORDER BY id LIMIT $3
                  FOR UPDATE SKIP LOCKED),
             running AS (
                 SELECT id, SUM(size) OVER (ORDER BY id) AS total, ROW_NUMBER() OVER (ORDER BY id) AS n
                   FROM candidates)
             UPDATE inbox_messages
                SET status = 'processing', attempts = attempts + 1,
                    lease_until = now() + make_interval(secs => $1), claimed_by = $2
              WHERE id IN (SELECT id FROM running WHERE total <= $4 OR n = 1)
             RETURNING id, source_name, attempts"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease.as_secs_f64())
            .bind(worker)
            .bind(i64::from(batch))
            .bind(i64::try_from(max_bytes).unwrap_or(i64::MAX))
            .fetch_all(&mut *transaction)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.get("id")).collect();
        let raws: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT message_id, raw FROM inbox_raw WHERE message_id = ANY($1) ORDER BY message_id, seq")
                .bind(&ids)
                .fetch_all(&mut *transaction)
                .await?;
        transaction.commit().await?;
        let mut raws = rows::join_chunks(raws);
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

    /// Writes a batch's outcomes in one transaction (`save.rs`).
    pub(super) async fn save_batch(
        &self,
        worker: &str,
        items: &[(i64, &Outcome)],
    ) -> StoreResult<Vec<SaveSummary>> {
        let mut transaction = self.derived_transaction().await?;
        let summaries = super::save::save_batch(&mut transaction, worker, items).await?;
        transaction.commit().await?;
        Ok(summaries)
    }

    pub(super) async fn requeue(&self, selection: &Requeue) -> StoreResult<u64> {
        let mut transaction = self.pool.begin().await?;
        // The applier's turn: the reports it has not counted yet are only
        // taken off its queue; the others are taken away from the rollups.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(super::applier::ROLLUP_APPLIER_LOCK)
            .execute(&mut *transaction)
            .await?;
        let ids: Vec<i64> = match selection {
            Requeue::Ids(ids) if ids.is_empty() => return Ok(0),
            Requeue::Ids(ids) => sqlx::query_scalar(
                "SELECT id FROM inbox_messages
                  WHERE status NOT IN ('pending', 'processing') AND id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .bind(ids),
            Requeue::Failed => sqlx::query_scalar(
                "SELECT id FROM inbox_messages WHERE status = 'failed' ORDER BY id FOR UPDATE",
            ),
            Requeue::All => sqlx::query_scalar(
                "SELECT id FROM inbox_messages
                  WHERE status NOT IN ('pending', 'processing') ORDER BY id FOR UPDATE",
            ),
        }
        .fetch_all(&mut *transaction)
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let counted: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM aggregate_reports r
              WHERE r.message_id = ANY($1)
                AND NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.report_id = r.id)",
        )
        .bind(&ids)
        .fetch_all(&mut *transaction)
        .await?;
        if !counted.is_empty() {
            super::applier::postgres::count_reports(&mut transaction, &counted, -1).await?;
        }
        for statement in [
            "DELETE FROM rollup_pending WHERE report_id IN (SELECT id FROM aggregate_reports WHERE message_id = ANY($1))",
            "DELETE FROM aggregate_records WHERE report_id IN (SELECT id FROM aggregate_reports WHERE message_id = ANY($1))",
            "DELETE FROM aggregate_reports WHERE message_id = ANY($1)",
            "DELETE FROM tls_reports WHERE message_id = ANY($1)",
            "DELETE FROM failure_reports WHERE message_id = ANY($1)",
            "UPDATE inbox_messages
                SET status = 'pending', error = NULL, processed_at = NULL, lease_until = NULL, claimed_by = NULL
              WHERE id = ANY($1)",
        ] {
            sqlx::query(statement)
                .bind(&ids)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(ids.len() as u64)
    }

    pub(super) async fn release_claims(&self, worker: &str, ids: &[i64]) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE inbox_messages
                SET status = 'pending', attempts = GREATEST(attempts - 1, 0), lease_until = NULL,
                    claimed_by = NULL
              WHERE status = 'processing' AND claimed_by = $1 AND id = ANY($2)",
        )
        .bind(worker)
        .bind(ids)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// One pass of the rollup applier (`applier.rs`); `None` when another
    /// process's applier is at work.
    pub(super) async fn apply_rollups(
        &self,
        max_records: u64,
    ) -> StoreResult<Option<super::AppliedRollups>> {
        let mut transaction = self.derived_transaction().await?;
        let applied = super::applier::postgres::apply(&mut transaction, max_records).await?;
        transaction.commit().await?;
        Ok(applied)
    }

    pub(super) async fn rollup_lag(&self) -> StoreResult<super::RollupLag> {
        super::applier::postgres::lag(&self.pool).await
    }

    pub(super) async fn message(&self, id: i64) -> StoreResult<Option<MessageInfo>> {
        let row = sqlx::query(
            "SELECT id, status, error, attempts, source_name FROM inbox_messages WHERE id = $1",
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
            sqlx::query_as("SELECT status, COUNT(*)::int8 FROM inbox_messages GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(status, count)| MessageStatus::parse(&status).map(|s| (s, count)))
            .collect())
    }

    pub(super) async fn report_counts(&self) -> StoreResult<ReportCounts> {
        let (aggregate_reports, aggregate_records, tls_reports, failure_reports): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM aggregate_reports)::int8, (SELECT COUNT(*) FROM aggregate_records)::int8,
                    (SELECT COUNT(*) FROM tls_reports)::int8, (SELECT COUNT(*) FROM failure_reports)::int8",
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
            "SELECT policy_domain, COUNT(*)::int8 FROM aggregate_reports GROUP BY policy_domain",
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

/// The statements of a save (`save.rs`) on PostgreSQL.
impl super::save::BatchWriter for Transaction<'_, Postgres> {
    async fn held(&mut self, worker: &str, ids: &[i64]) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM inbox_messages
              WHERE status = 'processing' AND claimed_by = $1 AND id = ANY($2)
              ORDER BY id FOR UPDATE",
        )
        .bind(worker)
        .bind(ids)
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                 $22, $23, $24::jsonb, $25::jsonb, $26, $27, $28)
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
    .bind(&meta.errors)
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
    .bind(policy.pct.map(i16::from))
    .bind(policy.fo.as_deref())
    .bind(policy.testing.as_deref())
    .bind(policy.discovery_method.as_deref())
    .bind(&row.extensions_json)
    .bind(&row.warnings_json)
    .bind(i32::try_from(report.records.len()).unwrap_or(i32::MAX))
    .bind(row.message_count)
    .bind(now())
    .fetch_optional(&mut **transaction)
    .await?;
        Ok(inserted)
    }

    async fn insert_records(&mut self, records: &[NewRecords<'_>]) -> StoreResult<()> {
        let total: usize = records.iter().map(|r| r.aggregate.records.len()).sum();
        // COPY has a fixed cost per use; it pays off only for many records.
        if total >= COPY_FROM_RECORDS {
            copy_records(self, records).await
        } else {
            for new in records {
                insert_records(self, new).await?;
            }
            Ok(())
        }
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
        let (ids, records): (Vec<i64>, Vec<i64>) = reports.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO rollup_pending (report_id, records)
             SELECT * FROM UNNEST($1::int8[], $2::int8[])",
        )
        .bind(&ids)
        .bind(&records)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn add_domains(&mut self, names: &[String]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO domains (name, origin, created_at)
             SELECT name, 'report', $2 FROM UNNEST($1::text[]) AS u(name) ORDER BY name
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(names)
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

async fn write_tls(
    transaction: &mut Transaction<'_, Postgres>,
    message_id: i64,
    location: &str,
    report: &TlsReport,
) -> StoreResult<bool> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tls_reports
            (message_id, location, organization_name, report_id, date_begin, date_end, contact_info, created_at, warnings)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(report_row)
        .bind(policy.policy_type.as_str())
        // Unknown (the report and its email name none): '' in the NOT NULL column.
        .bind(policy.policy_domain.as_deref().unwrap_or_default())
        .bind(&policy.policy_strings)
        .bind(&policy.mx_hosts)
        .bind(policy.successful_sessions as i64)
        .bind(policy.failed_sessions as i64)
        .fetch_one(&mut **transaction)
        .await?;
        for detail in &policy.failure_details {
            sqlx::query(
                "INSERT INTO tls_failure_details
                    (policy_id, result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo,
                     receiving_ip, failed_sessions, additional_information, failure_reason_code)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
    transaction: &mut Transaction<'_, Postgres>,
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::inet, $13, $14, $15, $16, $17, $18, $19, $20,
                 $21, $22, $23, $24, $25, $26, $27::jsonb, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37::jsonb)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(message_id)
    .bind(location)
    .bind(rows::json_text(&report.format).trim_matches('"').to_string())
    .bind(report.feedback_type.as_deref())
    .bind(report.version.as_deref())
    .bind(report.user_agent.as_deref())
    .bind(&report.auth_failure)
    .bind(report.identity_alignment.as_deref())
    .bind(report.delivery_result.as_ref().map(|d| d.as_str().to_string()))
    .bind(report.arrival_date)
    .bind(report.arrival_date_raw.as_deref())
    .bind(report.source_ip.map(|ip| ip.to_string()))
    .bind(report.source_port.map(i32::from))
    .bind(report.reporting_mta.as_deref())
    .bind(report.original_envelope_id.as_deref())
    .bind(report.original_mail_from.as_deref())
    .bind(&report.original_rcpt_to)
    .bind(&report.reported_domain)
    .bind(&report.reported_uri)
    .bind(&report.authentication_results)
    .bind(report.incidents.and_then(|n| i32::try_from(n).ok()))
    .bind(report.dkim_domain.as_deref())
    .bind(report.dkim_identity.as_deref())
    .bind(report.dkim_selector.as_deref())
    .bind(report.dkim_selector_dns.as_deref())
    .bind(&report.spf_dns)
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

/// Records in a batch at or above which they are sent with COPY.
const COPY_FROM_RECORDS: usize = 2000;
/// Rows per INSERT … SELECT FROM UNNEST statement.
const UNNEST_BATCH: usize = 5000;

/// A few records: one statement per report, each column bound as an array.
async fn insert_records(
    transaction: &mut Transaction<'_, Postgres>,
    new: &NewRecords<'_>,
) -> StoreResult<()> {
    let columns = RecordColumns::new(&new.aggregate.records);
    let mut start = 0;
    while start < columns.len() {
        let end = (start + UNNEST_BATCH).min(columns.len());
        let sql = format!(
            "INSERT INTO aggregate_records ({RECORD_COLUMNS})
             SELECT $1, $2, $3, $4, $5, r.ip::inet, r.bad_ip, r.count, r.disposition, r.dkim, r.spf, r.pass,
                    r.reasons::json, r.header_from, r.envelope_from, r.envelope_to, r.dkim_results::json,
                    r.spf_results::json, r.extensions::json
               FROM UNNEST($6::text[], $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[],
                           $12::bool[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                           $18::text[], $19::text[])
                 AS r(ip, bad_ip, count, disposition, dkim, spf, pass, reasons, header_from, envelope_from,
                      envelope_to, dkim_results, spf_results, extensions)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new.report)
            .bind(&new.aggregate.policy_published.domain)
            .bind(&new.aggregate.metadata.org_name)
            .bind(new.row.begin)
            .bind(new.row.end)
            .bind(&columns.source_ip[start..end])
            .bind(&columns.invalid_source_ip[start..end])
            .bind(&columns.count[start..end])
            .bind(&columns.disposition[start..end])
            .bind(&columns.dkim_aligned[start..end])
            .bind(&columns.spf_aligned[start..end])
            .bind(&columns.dmarc_pass[start..end])
            .bind(&columns.reasons[start..end])
            .bind(&columns.header_from[start..end])
            .bind(&columns.envelope_from[start..end])
            .bind(&columns.envelope_to[start..end])
            .bind(&columns.dkim_results[start..end])
            .bind(&columns.spf_results[start..end])
            .bind(&columns.extensions[start..end])
            .execute(&mut **transaction)
            .await?;
        start = end;
    }
    Ok(())
}

/// Many records: COPY, PostgreSQL's bulk path, one stream for every
/// report of the batch (one round trip per megabyte, not per statement),
/// in the binary format (`copy.rs`).
async fn copy_records(
    transaction: &mut Transaction<'_, Postgres>,
    records: &[NewRecords<'_>],
) -> StoreResult<()> {
    let mut copy = transaction
        .copy_in_raw(&format!(
            "COPY aggregate_records ({RECORD_COLUMNS}) FROM STDIN WITH (FORMAT binary)"
        ))
        .await?;
    let mut buffer = Vec::with_capacity(1 << 20);
    copy::header(&mut buffer);
    for new in records {
        let shared = copy::SharedFields::new(new.report, new.aggregate, new.row.begin, new.row.end);
        for record in &new.aggregate.records {
            copy::record(&mut buffer, &shared, record);
            if buffer.len() >= 1 << 20 {
                copy.send(std::mem::take(&mut buffer)).await?;
                buffer.reserve(1 << 20);
            }
        }
    }
    copy::trailer(&mut buffer);
    copy.send(buffer).await?;
    copy.finish().await?;
    Ok(())
}

/// Marks processed messages: one statement per status for the messages
/// without an error text, one per message with one.
async fn set_statuses(
    transaction: &mut Transaction<'_, Postgres>,
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
        let mut update = QueryBuilder::<Postgres>::new("UPDATE inbox_messages SET status = ");
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
                SET status = $1, error = $2, processed_at = $3, lease_until = NULL, claimed_by = NULL
              WHERE id = $4",
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
