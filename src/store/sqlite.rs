//! What only SQLite does: one file opened twice (a pool whose commits
//! wait for fsync, for the inbox, and one that skips it, for what can be
//! rebuilt), a claim that is one UPDATE (SQLite runs one writer at a time),
//! and records written as multi-row INSERTs.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::db::{Backend, Db, Sql};
use super::inbox::now;
use super::rows::RecordColumns;
use super::save::NewRecords;
use super::{StoreError, StoreResult};

/// SQLite's variable limit is 32766; 19 columns × 1500 rows stays below it.
const SQLITE_RECORD_BATCH: usize = 1500;

pub(super) async fn open(path: &Path) -> StoreResult<Db> {
    with_options(SqliteConnectOptions::new().filename(path)).await
}

pub(super) async fn connect_url(url: &str) -> StoreResult<Db> {
    with_options(SqliteConnectOptions::from_str(url).map_err(StoreError::Query)?).await
}

async fn with_options(options: SqliteConnectOptions) -> StoreResult<Db> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // 16 MiB of page cache (the default is 2 MiB): record inserts touch
        // several indexes; the cache stays small enough for the SMTP
        // memory budget.
        .pragma("cache_size", "-16384")
        // Statement journals (a multi-row INSERT inside a transaction keeps
        // one, to undo just that statement) stay in memory instead of
        // spilling to temporary files past 64 KiB: the record inserts of a
        // batch spent a fifth of their time writing them to disk.
        .pragma("temp_store", "memory")
        // Checkpoint the WAL every ~40 MB instead of every 4 MB: the index
        // pages a batch of records touches are the same from batch to batch,
        // and each checkpoint copied (and fsynced) them again; a tenth of an
        // import's writer time went there.
        .pragma("wal_autocheckpoint", "10000");
    // WAL with a full fsync: a committed message survives a crash or
    // power loss.
    let durable = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.clone().synchronous(SqliteSynchronous::Full))
        .await?;
    // `synchronous = NORMAL`, still crash-safe in WAL mode: a crash may
    // roll back the last commits, which dmarcd redoes from the raw message.
    let derived = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.synchronous(SqliteSynchronous::Normal))
        .await?;
    Ok(Db::Sqlite { durable, derived })
}

/// The claim of messages that are pending, or (`expired`) whose lease ran
/// out: one UPDATE, so two workers can never claim the same row (SQLite
/// runs writes one at a time).
pub(super) fn claim(
    expired: bool,
    worker: &str,
    limit: u32,
    max_bytes: u64,
    lease: Duration,
) -> Sql {
    let condition = if expired {
        "status = 'processing' AND lease_until < $3"
    } else {
        "status = 'pending' AND $3 IS NOT NULL"
    };
    let now = now();
    let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let text = format!(
        "UPDATE inbox_messages
            SET status = 'processing', attempts = attempts + 1, lease_until = $1, claimed_by = $2
          WHERE id IN (SELECT id FROM (
                           SELECT id, SUM(size) OVER (ORDER BY id) AS total,
                                  ROW_NUMBER() OVER (ORDER BY id) AS n
                             FROM (SELECT id, size FROM inbox_messages
                                    WHERE {condition}
                                    ORDER BY id LIMIT $4))
                        WHERE total <= $5 OR n = 1)
         RETURNING id, source_name, attempts"
    );
    Sql::statement(
        Backend::Sqlite,
        &text,
        vec![
            lease_until.into(),
            worker.into(),
            now.into(),
            i64::from(limit).into(),
            max_bytes.into(),
        ],
    )
}

/// A report's records, a few hundred rows per multi-row INSERT.
pub(super) async fn insert_records(
    transaction: &mut Transaction<'static, Sqlite>,
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
