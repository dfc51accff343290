//! Retention of aggregate records and of the day grain of the totals
//! (issue 27): the records of reports older than `aggregate_days` are
//! deleted, and the day rows of the totals older than `day_rollup_days`,
//! in small batches (one short transaction each) so that ingestion never
//! waits long behind a prune.
//!
//! **The rollups are the long-term memory.** Deleting records takes
//! nothing from any rollup: no trigger fires on a delete of records or of
//! totals rows (the only triggers on the totals fire on updates of a
//! source's description, derived.rs), and this module never calls the
//! applier's `count_reports`. So once retention has run, the records are
//! a window of the last `aggregate_days` and the rollups keep the whole
//! history: "the rollups equal the records summed" (tests/all/rollups.rs)
//! holds only where retention is off, by design.
//!
//! What is kept for ever:
//! - the month and all-time totals (per source, per domain and source, per
//!   country, per source name), so long-term charts and the all-time
//!   summaries show the same numbers after a prune;
//! - the rollups that exist only at day grain: per domain and results
//!   (`rollup_domain_day`), per domain, reporter and results
//!   (`rollup_org_day`, `totals_org_day`). They are the only history of the
//!   per-domain and per-reporter views and are small (one row per domain,
//!   reporter, combination of results and day, not per source), so
//!   `day_rollup_days` leaves them alone;
//! - the report rows themselves, marked `records_pruned_at`. A report row
//!   is what recognises the same report sent again (its unique key), so an
//!   old report re-sent by its reporter is still a duplicate and is never
//!   counted twice into the month and all-time totals; and a message with
//!   such a report is never reprocessed (store/requeue.rs), since taking
//!   its counts away would find no records.
//!
//! A report is pruned whole, in one transaction, with the applier's turn
//! (so a requeue never sees half a report) and only once the applier has
//! counted it (a report still in `rollup_pending` keeps its records until
//! its counts are in the rollups).

use chrono::{DateTime, Duration, Utc};

use super::db::{json, Backend, Db};
use super::derived;
use super::rollup::{self, Rollup};
use super::{applier, StoreResult};

/// How long aggregate records and day rollups are kept; zero days keeps
/// them for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRetention {
    /// Days of aggregate records, by their report's begin date.
    pub aggregate_days: u32,
    /// Days of the day rows of the totals that also have a month and an
    /// all-time grain.
    pub day_rollup_days: u32,
    /// Records (or rollup rows) per transaction, at most; a report with
    /// more records than that is still pruned whole.
    pub batch: u32,
}

/// What a prune of records did, or (dry run) would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRecords {
    /// Reports whose records went (their rows stay).
    pub reports: u64,
    pub records: u64,
    /// Day rows of the totals.
    pub day_rollup_rows: u64,
}

/// The day rollups `day_rollup_days` prunes: the day grain of every family
/// of totals that also has a month and an all-time grain.
pub const PRUNED_DAY_ROLLUPS: [&Rollup; 4] = [
    rollup::SOURCE_TOTALS.day,
    rollup::DOMAIN_SOURCE_TOTALS.day,
    derived::COUNTRY_TOTALS.day,
    derived::NAME_TOTALS.day,
];

/// The start of the UTC day `days` days before `now`'s, or `None` for
/// "keep for ever". Whole days, so that every record still stored has its
/// day rows whenever `day_rollup_days >= aggregate_days` (config.rs makes
/// sure), which is what a reprocess takes its counts from.
pub fn cutoff(days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if days == 0 {
        return None;
    }
    let today = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    Some(today - Duration::days(i64::from(days)))
}

/// Reports whose records a prune takes, with `$1` the cutoff.
const PRUNABLE: &str = "r.records_pruned_at IS NULL AND r.date_begin < $1 \
     AND NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.report_id = r.id)";

/// Counts what a prune at `now` would take.
pub(super) async fn count_prunable(
    db: &Db,
    policy: &RecordRetention,
    now: DateTime<Utc>,
) -> StoreResult<PrunedRecords> {
    let mut counted = PrunedRecords::default();
    if let Some(before) = cutoff(policy.aggregate_days, now) {
        let (reports, records): (i64, Option<i64>) = db
            .fetch_one(&db.statement(
                &format!(
                    "SELECT count(*), CAST(sum(r.record_count) AS BIGINT) \
                     FROM aggregate_reports r WHERE {PRUNABLE}"
                ),
                vec![before.into()],
            ))
            .await?;
        counted.reports = reports as u64;
        counted.records = records.unwrap_or(0) as u64;
    }
    if let Some(before) = cutoff(policy.day_rollup_days, now) {
        for table in PRUNED_DAY_ROLLUPS {
            let (rows,): (i64,) = db
                .fetch_one(&db.statement(
                    &format!("SELECT count(*) FROM {} WHERE date_begin < $1", table.table),
                    vec![before.into()],
                ))
                .await?;
            counted.day_rollup_rows += rows as u64;
        }
    }
    Ok(counted)
}

/// The first reports whose records together stay within `budget` (always
/// at least one).
fn take_within(candidates: &[(i64, i64)], budget: u64) -> (Vec<i64>, u64) {
    let mut chosen = Vec::new();
    let mut records = 0u64;
    for (report, count) in candidates {
        let count = (*count).max(0) as u64;
        if !chosen.is_empty() && records + count > budget {
            break;
        }
        chosen.push(*report);
        records += count;
    }
    (chosen, records)
}

/// Deletes the records of one batch of prunable reports (whole reports,
/// about `batch` records) and marks the reports; returns how many reports
/// it took (none: nothing is left).
pub(super) async fn prune_records_batch(
    db: &Db,
    policy: &RecordRetention,
    now: DateTime<Utc>,
) -> StoreResult<PrunedRecords> {
    let Some(before) = cutoff(policy.aggregate_days, now) else {
        return Ok(PrunedRecords::default());
    };
    let mut transaction = db.begin_derived().await?;
    // The applier's turn: a requeue (which takes a report's counts away
    // by reading its records) never runs beside this.
    applier::take_turn(&mut transaction).await?;
    let budget = u64::from(policy.batch.max(1));
    let candidates: Vec<(i64, i64)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT r.id, CAST(r.record_count AS BIGINT) FROM aggregate_reports r \
                 WHERE {PRUNABLE} ORDER BY r.date_begin, r.id LIMIT $2"
            ),
            vec![before.into(), (budget as i64).into()],
        ))
        .await?;
    if candidates.is_empty() {
        transaction.commit().await?;
        return Ok(PrunedRecords::default());
    }
    let (reports, _) = take_within(&candidates, budget);
    let backend = transaction.backend();
    // Through the report index on PostgreSQL too (`in_int_list` says why):
    // 5 ms per batch at 10^6 records, where a table scan took 240 ms.
    let of_reports = backend.in_int_list("report_id", "$1");
    let records = transaction
        .execute(&transaction.statement(
            &format!("DELETE FROM aggregate_records WHERE {of_reports}"),
            vec![json(&reports)],
        ))
        .await?;
    transaction
        .execute(&transaction.statement(
            &format!(
                "UPDATE aggregate_reports SET records_pruned_at = $2 WHERE {}",
                backend.in_int_list("id", "$1")
            ),
            vec![json(&reports), now.into()],
        ))
        .await?;
    transaction.commit().await?;
    Ok(PrunedRecords {
        reports: reports.len() as u64,
        records,
        day_rollup_rows: 0,
    })
}

/// Deletes up to `batch` day rows of `table` older than the cutoff;
/// returns how many.
pub(super) async fn prune_day_rollup_batch(
    db: &Db,
    table: &Rollup,
    policy: &RecordRetention,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let Some(before) = cutoff(policy.day_rollup_days, now) else {
        return Ok(0);
    };
    let mut transaction = db.begin_derived().await?;
    // Beside the applier and requeues, never in the middle of one.
    applier::take_turn(&mut transaction).await?;
    // The tables have no id column: each engine's own row address.
    let row = match transaction.backend() {
        Backend::Postgres => "ctid",
        Backend::Sqlite => "rowid",
    };
    let deleted = transaction
        .execute(&transaction.statement(
            &format!(
                "DELETE FROM {table} WHERE {row} IN \
                 (SELECT {row} FROM {table} WHERE date_begin < $1 LIMIT $2)",
                table = table.table
            ),
            vec![before.into(), i64::from(policy.batch.max(1)).into()],
        ))
        .await?;
    transaction.commit().await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_whole_days_and_zero_keeps_for_ever() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T15:30:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(cutoff(0, now), None);
        assert_eq!(
            cutoff(30, now).unwrap(),
            DateTime::parse_from_rfc3339("2026-11-04T00:00:00Z")
                .unwrap()
                .to_utc()
        );
    }

    #[test]
    fn a_batch_is_whole_reports_within_the_budget_or_one_big_report() {
        let candidates = [(1, 300), (2, 150), (3, 100), (4, 1)];
        assert_eq!(take_within(&candidates, 500), (vec![1, 2], 450));
        assert_eq!(take_within(&[(7, 9000), (8, 1)], 500), (vec![7], 9000));
        assert_eq!(take_within(&[], 500), (vec![], 0));
    }

    #[test]
    fn only_day_grains_with_coarser_grains_are_pruned() {
        for table in PRUNED_DAY_ROLLUPS {
            assert_eq!(table.grain, rollup::Grain::Day, "{}", table.table);
        }
        let names: Vec<&str> = PRUNED_DAY_ROLLUPS.iter().map(|t| t.table).collect();
        for kept in ["rollup_domain_day", "rollup_org_day", "totals_org_day"] {
            assert!(!names.contains(&kept), "{kept}");
        }
    }
}
