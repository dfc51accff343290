//! What only PostgreSQL does: its connection settings, the claim with
//! `FOR UPDATE SKIP LOCKED` (several dmarcd processes may share one
//! database), and records written by binary COPY or as arrays.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Postgres, Transaction};

use super::copy::{self, RECORD_COLUMNS};
use super::db::{Backend, Db, Sql};
use super::rows::RecordColumns;
use super::save::NewRecords;
use super::StoreResult;

pub(super) async fn connect(url: &str) -> StoreResult<Db> {
    let pool = pool_options().connect_with(session_options(url)?).await?;
    Ok(Db::Postgres(pool))
}

/// A read replica's pool: connected on first use, so that a standby that
/// is down when dmarcd starts only keeps reads on the primary.
pub(super) fn connect_lazy(url: &str) -> StoreResult<Db> {
    Ok(Db::Postgres(
        pool_options().connect_lazy_with(session_options(url)?),
    ))
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
}

fn session_options(url: &str) -> StoreResult<sqlx::postgres::PgConnectOptions> {
    Ok(url
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
        ]))
}

/// The claim of messages that are pending, or (`expired`) whose lease
/// ran out. SKIP LOCKED: concurrent workers, in this process or another
/// node, each take different rows and never wait on each other. Leases
/// are set and compared with the database's clock, so nodes whose clocks
/// disagree cannot take each other's work early.
pub(super) fn claim(
    expired: bool,
    worker: &str,
    limit: u32,
    max_bytes: u64,
    lease: Duration,
) -> Sql {
    let condition = if expired {
        "status = 'processing' AND lease_until < now()"
    } else {
        "status = 'pending'"
    };
    let text = format!(
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
    Sql::statement(
        Backend::Postgres,
        &text,
        vec![
            lease.as_secs_f64().into(),
            worker.into(),
            i64::from(limit).into(),
            max_bytes.into(),
        ],
    )
}

/// Writes a batch's records: COPY for many, arrays for a few.
pub(super) async fn insert_records(
    transaction: &mut Transaction<'static, Postgres>,
    records: &[NewRecords<'_>],
) -> StoreResult<()> {
    let total: usize = records.iter().map(|r| r.aggregate.records.len()).sum();
    // COPY has a fixed cost per use; it pays off only for many records.
    if total >= COPY_FROM_RECORDS {
        copy_records(transaction, records).await
    } else {
        for new in records {
            insert_report_records(transaction, new).await?;
        }
        Ok(())
    }
}

/// Records in a batch at or above which they are sent with COPY.
const COPY_FROM_RECORDS: usize = 2000;
/// Rows per INSERT … SELECT FROM UNNEST statement.
const UNNEST_BATCH: usize = 5000;

/// A few records: one statement per report, each column bound as an array.
async fn insert_report_records(
    transaction: &mut Transaction<'static, Postgres>,
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
    transaction: &mut Transaction<'static, Postgres>,
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
