//! Brings the rollups up to date with the stored records, apart from the
//! save: a save writes the records and queues their report in
//! `rollup_pending`; the applier later takes a bounded set of queued
//! reports, sums their records once by their finest key, works out every
//! rollup's rows in memory (`delta.rs`), writes each table in one sorted
//! statement, and removes the reports from the queue, all in one
//! transaction. So each report is counted exactly once, the totals are
//! exact once the queue is empty, and storing reports costs the same
//! however many rollups there are (a 100,000-source report touches about
//! 900,000 rollup rows: that work no longer holds up intake).
//!
//! One applier runs at a time across every process sharing a database
//! (a transaction advisory lock on PostgreSQL, the single writer on
//! SQLite), and a requeue takes the same turn, so a report is never counted
//! and taken away at once.
//!
//! The derived totals (country, name) are written from the same deltas.
//! Their triggers remain only for description changes (the enrichment
//! task rewrites a source's totals rows); the applier tells them apart on
//! PostgreSQL with the transaction setting `dmarcd.applying_rollups`, and
//! SQLite's fire only on updates of the description columns.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{Postgres, Sqlite, Transaction};

use super::db::{json, Backend, ColumnType, Db, Tx};
use super::delta::{self, Description, FineRow, KeyValue, TableDelta};
use super::rollup::DESCRIPTION;
use super::StoreResult;

/// Held for its transaction by the one applier (or requeue) at work.
pub(super) const ROLLUP_APPLIER_LOCK: i64 = 7_363_012_948;
/// Held shared by the applier and exclusively by every statement that
/// changes a source's description (triggers of migration 6): rows the
/// applier adds with a copy of a description never race a change to it.
const SOURCE_DESCRIPTIONS_LOCK: i64 = 7_363_012_946;
/// Queued reports looked at per pass, at most.
const PASS_REPORTS: i64 = 10_000;

/// What one pass (or several) counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedRollups {
    pub reports: u64,
    pub records: u64,
}

impl AppliedRollups {
    pub fn add(&mut self, other: AppliedRollups) {
        self.reports += other.reports;
        self.records += other.records;
    }
}

/// Stored reports not counted in the rollups yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct RollupLag {
    pub reports: i64,
    pub records: i64,
    /// When the oldest of them was stored.
    pub oldest: Option<DateTime<Utc>>,
}

/// The first queued reports whose records together stay within
/// `max_records` (always at least one).
fn take_within(queued: Vec<(i64, i64)>, max_records: u64) -> (Vec<i64>, AppliedRollups) {
    let mut chosen = Vec::new();
    let mut applied = AppliedRollups::default();
    for (report, records) in queued {
        let records = records.max(0) as u64;
        if !chosen.is_empty() && applied.records + records > max_records {
            break;
        }
        chosen.push(report);
        applied.reports += 1;
        applied.records += records;
    }
    (chosen, applied)
}

/// The distinct source IPs of some fine rows, sorted.
fn source_ips(rows: &[FineRow]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| row.source_ip.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A source's description as `ip_sources` holds it.
#[derive(sqlx::FromRow)]
struct DescribedSource {
    ip: String,
    country: Option<String>,
    asn: Option<i64>,
    as_name: Option<String>,
    source_name: Option<String>,
    source_type: Option<String>,
}

impl From<DescribedSource> for Description {
    fn from(source: DescribedSource) -> Self {
        Description {
            country: source.country,
            asn: source.asn,
            as_name: source.as_name,
            source_name: source.source_name,
            source_type: source.source_type,
        }
    }
}

/// The columns a table's write names: key, values, and (for the totals
/// that carry it) the source's description.
fn columns(table: &TableDelta) -> Vec<&'static str> {
    let rollup = table.rollup;
    let mut columns = rollup.key_columns();
    columns.extend(rollup.value_names());
    if rollup.described {
        columns.extend(DESCRIPTION);
    }
    columns
}

/// Writes into one table: `c = t.c + x.c` for every value column.
fn added(table: &str, rollup: &TableDelta, alias: &str) -> String {
    rollup
        .rollup
        .value_names()
        .iter()
        .map(|c| format!("{c} = {table}.{c} + {alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// When and with which dashboard address a pass evaluates the alert
/// rules that watch batches (`store::alerts::on_batch`).
#[derive(Debug, Clone, Copy)]
pub(super) struct AlertClock<'a> {
    pub now: DateTime<Utc>,
    pub dashboard_url: &'a str,
    pub senders: &'a crate::senders::SendersConfig,
}

/// One pass; `None` when another applier (another process) is at work.
pub(super) async fn apply(
    transaction: &mut Tx,
    max_records: u64,
    alerts: Option<AlertClock<'_>>,
) -> StoreResult<Option<AppliedRollups>> {
    if let Tx::Postgres(pg) = transaction {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ROLLUP_APPLIER_LOCK)
            .fetch_one(&mut **pg)
            .await?;
        if !locked {
            return Ok(None);
        }
    }
    let queued: Vec<(i64, i64)> = transaction
        .fetch_all(&transaction.statement(
            "SELECT report_id, records FROM rollup_pending ORDER BY report_id LIMIT $1",
            vec![PASS_REPORTS.into()],
        ))
        .await?;
    let (reports, applied) = take_within(queued, max_records);
    if reports.is_empty() {
        return Ok(Some(applied));
    }
    count_reports(transaction, &reports, 1, alerts).await?;
    let delete = format!(
        "DELETE FROM rollup_pending WHERE {}",
        transaction.backend().in_int_list("report_id", "$1")
    );
    let delete = transaction.statement(&delete, vec![json(&reports)]);
    transaction.execute(&delete).await?;
    Ok(Some(applied))
}

/// Waits for the applier's turn, for a requeue: until the transaction
/// ends, no pass counts reports (PostgreSQL: the applier's lock; SQLite:
/// the transaction already holds the one write lock).
pub(super) async fn take_turn(transaction: &mut Tx) -> StoreResult<()> {
    if let Tx::Postgres(pg) = transaction {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ROLLUP_APPLIER_LOCK)
            .execute(&mut **pg)
            .await?;
    }
    Ok(())
}

/// Adds (`sign` 1) or takes away (-1) the records of `reports` in every
/// rollup, evaluating the batch alert rules on what is added when given
/// `alerts`. The caller has the applier's turn.
pub(super) async fn count_reports(
    transaction: &mut Tx,
    reports: &[i64],
    sign: i64,
    alerts: Option<AlertClock<'_>>,
) -> StoreResult<()> {
    if let Tx::Postgres(pg) = transaction {
        // Descriptions cannot change until this transaction ends, so the
        // rows written here carry the ones the derived totals are keyed by.
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(SOURCE_DESCRIPTIONS_LOCK)
            .execute(&mut **pg)
            .await?;
        // The derived totals' trigger leaves this transaction's changes to
        // the totals alone: they are written here (derived.rs).
        sqlx::query("SELECT set_config('dmarcd.applying_rollups', 'on', true)")
            .execute(&mut **pg)
            .await?;
    }
    let backend = transaction.backend();
    let fine = format!(
        "SELECT {day} AS day, policy_domain, org_name, {ip} AS source_ip, invalid_source_ip, disposition,
                dkim_aligned, spf_aligned, dmarc_pass, {count} AS count, count(*) AS records
           FROM aggregate_records WHERE {reports}
          GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9",
        day = match backend {
            Backend::Postgres => "date_trunc('day', date_begin, 'UTC')",
            Backend::Sqlite => "substr(date_begin, 1, 10) || 'T00:00:00+00:00'",
        },
        ip = backend.ip_text("source_ip"),
        count = backend.sum("count"),
        reports = backend.in_int_list("report_id", "$1"),
    );
    let rows: Vec<FineRow> = transaction
        .fetch_all(&transaction.statement(&fine, vec![json(&reports)]))
        .await?;
    let ips = source_ips(&rows);
    // New sources are those the rollups do not hold yet: read before
    // this batch is counted in them.
    let new_sources = match alerts {
        Some(_) if sign > 0 => super::alerts::new_sources(transaction, &rows).await?,
        _ => Vec::new(),
    };
    if sign > 0 {
        // New sources wait to be described (enrich/). Sorted: two writers
        // inserting the same new IPs meet in one order.
        let insert = format!(
            "INSERT INTO ip_sources (ip, dns_due_at)
             SELECT {ip}, $2 FROM {list} ORDER BY 1
             ON CONFLICT (ip) DO NOTHING",
            ip = backend.inet("u.ip"),
            list = backend.json_rows("$1", "u", &[("ip", ColumnType::Text)]),
        );
        let listed: Vec<serde_json::Value> =
            ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
        let new = transaction
            .execute(
                &transaction.statement(&insert, vec![json(&listed), super::inbox::now().into()]),
            )
            .await?;
        super::sources::count_sources(ips.len(), new);
    }
    let described = format!(
        "SELECT {ip} AS ip, country, asn, as_name, source_name, source_type
           FROM ip_sources WHERE {list}",
        ip = backend.ip_text("ip"),
        list = match backend {
            Backend::Postgres =>
                "ip IN (SELECT CAST(value AS inet) FROM json_array_elements_text(CAST($1 AS json)))"
                    .to_string(),
            Backend::Sqlite => backend.in_text_list("ip", "$1"),
        },
    );
    let described: Vec<DescribedSource> = transaction
        .fetch_all(&transaction.statement(&described, vec![json(&ips)]))
        .await?;
    let descriptions: HashMap<String, Description> = described
        .into_iter()
        .map(|source| (source.ip.clone(), source.into()))
        .collect();
    for table in delta::deltas(&rows, &descriptions, sign) {
        if table.rows.is_empty() {
            continue;
        }
        match transaction {
            Tx::Postgres(pg) => write_postgres(pg, &table, &descriptions).await?,
            Tx::Sqlite(lite) => write_sqlite(lite, &table, &descriptions).await?,
        }
        if sign < 0 {
            let prune = format!("DELETE FROM {} WHERE records <= 0", table.rollup.table);
            transaction
                .execute(&transaction.statement(&prune, Vec::new()))
                .await?;
        }
    }
    if let Some(clock) = alerts.filter(|_| sign > 0) {
        super::alerts::on_batch(
            transaction,
            &rows,
            &new_sources,
            clock.now,
            clock.dashboard_url,
            clock.senders,
        )
        .await?;
    }
    Ok(())
}

/// Stored reports not counted yet.
pub(super) async fn lag(db: &Db) -> StoreResult<RollupLag> {
    let lag: RollupLag = db
        .fetch_one(&db.statement(
            &format!(
                "SELECT count(*) AS reports, {} AS records, min(queued_at) AS oldest FROM rollup_pending",
                db.backend().sum("records")
            ),
            Vec::new(),
        ))
        .await?;
    Ok(lag)
}

/// One column of a table's delta, as the array PostgreSQL binds.
enum Array {
    Times(Vec<DateTime<Utc>>),
    Texts(Vec<Option<String>>),
    Bools(Vec<bool>),
    Ints(Vec<i64>),
    OptionalInts(Vec<Option<i64>>),
}

impl Array {
    fn sql_type(&self) -> &'static str {
        match self {
            Array::Times(_) => "timestamptz[]",
            Array::Texts(_) => "text[]",
            Array::Bools(_) => "bool[]",
            Array::Ints(_) | Array::OptionalInts(_) => "int8[]",
        }
    }
}

/// Merges a table's delta in one `INSERT … SELECT FROM UNNEST … ON
/// CONFLICT DO UPDATE`, rows in key order. Existing rows keep their
/// description: the triggers on ip_sources own it.
async fn write_postgres(
    transaction: &mut Transaction<'static, Postgres>,
    table: &TableDelta,
    descriptions: &HashMap<String, Description>,
) -> StoreResult<()> {
    let rollup = table.rollup;
    let keys = rollup.key_columns();
    let values = rollup.value_names();
    let mut arrays: Vec<Array> = keys
        .iter()
        .map(|column| match *column {
            "date_begin" => Array::Times(Vec::new()),
            "dmarc_pass" => Array::Bools(Vec::new()),
            _ => Array::Texts(Vec::new()),
        })
        .collect();
    arrays.extend(values.iter().map(|_| Array::Ints(Vec::new())));
    if rollup.described {
        arrays.extend(DESCRIPTION.iter().map(|column| match *column {
            "asn" => Array::OptionalInts(Vec::new()),
            _ => Array::Texts(Vec::new()),
        }));
    }
    let undescribed = Description::default();
    for (key, sums) in &table.rows {
        for (array, value) in arrays.iter_mut().zip(key) {
            match (array, value) {
                (Array::Times(a), KeyValue::Time(v)) => a.push(*v),
                (Array::Texts(a), KeyValue::Text(v)) => a.push(v.clone()),
                (Array::Bools(a), KeyValue::Bool(v)) => a.push(*v),
                _ => unreachable!("key columns and values agree"),
            }
        }
        for (array, sum) in arrays[keys.len()..].iter_mut().zip(sums) {
            if let Array::Ints(a) = array {
                a.push(*sum);
            }
        }
        if rollup.described {
            let description = table
                .source_ip(key)
                .and_then(|ip| descriptions.get(ip))
                .unwrap_or(&undescribed);
            let tail = &mut arrays[keys.len() + values.len()..];
            if let [Array::Texts(country), Array::OptionalInts(asn), Array::Texts(as_name), Array::Texts(name), Array::Texts(kind)] =
                tail
            {
                country.push(description.country.clone());
                asn.push(description.asn);
                as_name.push(description.as_name.clone());
                name.push(description.source_name.clone());
                kind.push(description.source_type.clone());
            }
        }
    }
    let columns = columns(table);
    let select = columns
        .iter()
        .map(|c| match *c {
            "source_ip" => "x.source_ip::inet".to_string(),
            other => format!("x.{other}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let parameters = arrays
        .iter()
        .enumerate()
        .map(|(i, a)| format!("${}::{}", i + 1, a.sql_type()))
        .collect::<Vec<_>>()
        .join(", ");
    let name = rollup.table;
    let sql = format!(
        "INSERT INTO {name} ({list}) SELECT {select} FROM UNNEST({parameters}) AS x({list}) \
         ON CONFLICT ({keys}) DO UPDATE SET {set}",
        list = columns.join(", "),
        keys = keys.join(", "),
        set = added(name, table, "excluded"),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for array in arrays {
        query = match array {
            Array::Times(a) => query.bind(a),
            Array::Texts(a) => query.bind(a),
            Array::Bools(a) => query.bind(a),
            Array::Ints(a) => query.bind(a),
            Array::OptionalInts(a) => query.bind(a),
        };
    }
    query.execute(&mut **transaction).await?;
    Ok(())
}

/// Merges a table's delta: the rows that exist are updated, then the
/// rest inserted (SQLite's unique keys treat NULLs as distinct, so
/// there is no upsert over these keys). The rows travel as one JSON
/// array of arrays.
async fn write_sqlite(
    transaction: &mut Transaction<'static, Sqlite>,
    table: &TableDelta,
    descriptions: &HashMap<String, Description>,
) -> StoreResult<()> {
    let rollup = table.rollup;
    let keys = rollup.key_columns();
    let undescribed = Description::default();
    let rows: Vec<Vec<serde_json::Value>> = table
        .rows
        .iter()
        .map(|(key, sums)| {
            let mut row: Vec<serde_json::Value> = key
                .iter()
                .map(|value| match value {
                    KeyValue::Time(time) => {
                        // The text form the records' dates are stored in.
                        time.to_rfc3339_opts(SecondsFormat::AutoSi, false).into()
                    }
                    KeyValue::Text(text) => text.clone().into(),
                    KeyValue::Bool(flag) => i64::from(*flag).into(),
                })
                .collect();
            row.extend(sums.iter().map(|sum| serde_json::Value::from(*sum)));
            if rollup.described {
                let d = table
                    .source_ip(key)
                    .and_then(|ip| descriptions.get(ip))
                    .unwrap_or(&undescribed);
                row.extend([
                    d.country.clone().into(),
                    d.asn.into(),
                    d.as_name.clone().into(),
                    d.source_name.clone().into(),
                    d.source_type.clone().into(),
                ]);
            }
            row
        })
        .collect();
    let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_string());
    let columns = columns(table);
    let extract = |i: usize| format!("j.value ->> {i}");
    let fields = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} AS {c}", extract(i)))
        .collect::<Vec<_>>()
        .join(", ");
    let name = rollup.table;
    let matches = |row: &str| {
        keys.iter()
            .map(|k| format!("t.{k} IS {row}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let update = format!(
        "UPDATE {name} AS t SET {set} FROM (SELECT {fields} FROM json_each(?1) AS j) AS x WHERE {on}",
        set = added("t", table, "x"),
        on = matches("x"),
    );
    let insert = format!(
        "INSERT INTO {name} ({list}) SELECT * FROM (SELECT {fields} FROM json_each(?1) AS j) AS x \
         WHERE NOT EXISTS (SELECT 1 FROM {name} AS t WHERE {on})",
        list = columns.join(", "),
        on = matches("x"),
    );
    for statement in [update, insert] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(&json)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_takes_reports_up_to_the_record_budget_but_at_least_one() {
        let (ids, applied) = take_within(vec![(1, 500), (2, 400), (3, 200)], 1000);
        assert_eq!(ids, [1, 2]);
        assert_eq!(
            applied,
            AppliedRollups {
                reports: 2,
                records: 900
            }
        );
        let (ids, _) = take_within(vec![(7, 5000), (8, 1)], 1000);
        assert_eq!(ids, [7], "a report larger than the budget goes alone");
    }
}
