//! Retention of aggregate records and day rollups (issue 27, item 1), on
//! both backends and through the CLI: old reports lose their records and
//! old days of the totals go, recent ones stay; the month and all-time
//! totals, and every page that reads them, show the same numbers after the
//! prune; a dry run deletes nothing; an old report sent again is still a
//! duplicate; a message whose records went is not reprocessed.

use std::path::Path;

use chrono::{Duration, Utc};
use dmarcd::query::aggregate::{records_total, rollup_for, summary_from};
use dmarcd::query::{Filter, GroupBy, Page, SummarySort};
use dmarcd::store::{PrunedRecords, RecordRetention, Requeue, Store, PRUNED_DAY_ROLLUPS};

use crate::common;

const POLICY: RecordRetention = RecordRetention {
    aggregate_days: 30,
    day_rollup_days: 30,
    // Smaller than either old report: each goes whole, in its own batch.
    batch: 7,
};

/// A synthetic report of `records` records from `begin` (a Unix time),
/// named `id`, as XML; `padding` changes its bytes, not its content.
fn report(id: &str, records: usize, begin: i64, padding: &str) -> Vec<u8> {
    let mut report = dmarcd::testing::aggregate_report(records);
    report.metadata.report_id = id.into();
    report.metadata.begin = begin;
    report.metadata.end = begin + 86_399;
    let mut xml = report.to_xml();
    xml.push_str(padding);
    xml.into_bytes()
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    let db = store.db();
    let (value,): (i64,) = db.fetch_one(&db.statement(sql, vec![])).await.unwrap();
    value
}

/// Everything the pages read from rollups that retention keeps: for each
/// filter, every grouping a rollup answers, except by day from the day
/// rows of the totals that `day_rollup_days` prunes.
async fn kept_views(store: &Store) -> Vec<String> {
    let page = Page::new(Some(1000), None, 1000).unwrap();
    let pruned: Vec<&str> = PRUNED_DAY_ROLLUPS.iter().map(|t| t.table).collect();
    let mut views = Vec::new();
    for query in [
        "",
        "result=fail",
        "domain=example.com",
        "disposition=quarantine",
        // Whole months: read from the month rows.
        "since=2024-05-01&until=2024-06-30",
        "since=2024-05-01&until=2024-05-31&result=pass",
    ] {
        let filter: Filter = serde_urlencoded::from_str(query).unwrap();
        let parsed = filter.parse(&dmarcd::scope::Scope::All).unwrap();
        views.push(format!(
            "{query}: {} records",
            records_total(store, &parsed, true).await.unwrap()
        ));
        for group_by in GroupBy::ALL {
            let Some(table) = rollup_for(&parsed, Some(group_by)) else {
                continue;
            };
            if group_by == GroupBy::Day && pruned.contains(&table) {
                continue;
            }
            let summary = summary_from(store, &parsed, group_by, SummarySort::Key, page, true)
                .await
                .unwrap();
            views.push(format!("{query} by {group_by:?}: {summary:?}"));
        }
    }
    views
}

/// The sums of every month and all-time total and of the day-only rollups.
async fn kept_sums(store: &Store) -> Vec<(String, i64)> {
    let mut sums = Vec::new();
    for table in [
        "totals_source_month",
        "totals_source_all",
        "totals_domain_source_month",
        "totals_domain_source_all",
        "totals_country_month",
        "totals_country_all",
        "totals_name_month",
        "totals_name_all",
        "rollup_domain_day",
        "rollup_org_day",
        "totals_org_day",
    ] {
        let sql = format!("SELECT CAST(COALESCE(sum(count), 0) AS BIGINT) FROM {table}");
        sums.push((table.to_string(), scalar(store, &sql).await));
    }
    sums
}

async fn count_old_day_rows(store: &Store) -> i64 {
    let cutoff = dmarcd::store::record_cutoff(POLICY.day_rollup_days, Utc::now()).unwrap();
    let db = store.db();
    let mut rows = 0;
    for table in PRUNED_DAY_ROLLUPS {
        let (count,): (i64,) = db
            .fetch_one(&db.statement(
                &format!("SELECT count(*) FROM {} WHERE date_begin < $1", table.table),
                vec![cutoff.into()],
            ))
            .await
            .unwrap();
        rows += count;
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn old_records_and_day_rollups_go_and_the_long_term_totals_stay() {
    let yesterday = (Utc::now() - Duration::days(1)).timestamp();
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        common::data::ingest(&store, "may.xml", &report("old-may", 40, 1_715_299_200, "")).await;
        common::data::ingest(
            &store,
            "june.xml",
            &report("old-june", 12, 1_718_841_600, ""),
        )
        .await;
        common::data::ingest(&store, "recent.xml", &report("recent", 5, yesterday, "")).await;
        let reports_before = store.report_counts().await.unwrap();
        assert_eq!(reports_before.aggregate_records, 57, "{backend}");
        let views_before = kept_views(&store).await;
        let sums_before = kept_sums(&store).await;
        let old_day_rows = count_old_day_rows(&store).await;
        assert!(old_day_rows > 0, "{backend}");

        // A dry run counts and deletes nothing.
        let now = Utc::now();
        let due = store.prunable_records(&POLICY, now).await.unwrap();
        assert_eq!(
            due,
            PrunedRecords {
                reports: 2,
                records: 52,
                day_rollup_rows: old_day_rows as u64,
            },
            "{backend}"
        );
        assert_eq!(store.report_counts().await.unwrap(), reports_before);
        assert_eq!(count_old_day_rows(&store).await, old_day_rows);

        // Keeping for ever (the default) deletes nothing either.
        let forever = RecordRetention {
            aggregate_days: 0,
            day_rollup_days: 0,
            batch: 7,
        };
        assert_eq!(
            store.prune_records(&forever, now).await.unwrap(),
            PrunedRecords::default()
        );

        let pruned = store.prune_records(&POLICY, now).await.unwrap();
        assert_eq!(pruned, due, "{backend}");
        assert_eq!(
            store.prune_records(&POLICY, now).await.unwrap(),
            PrunedRecords::default(),
            "{backend}: a second prune finds nothing"
        );
        let after = store.report_counts().await.unwrap();
        assert_eq!(
            after.aggregate_records, 5,
            "{backend}: the recent records stay"
        );
        assert_eq!(
            after.aggregate_reports, reports_before.aggregate_reports,
            "{backend}: the report rows stay"
        );
        assert_eq!(
            scalar(
                &store,
                "SELECT count(*) FROM aggregate_reports WHERE records_pruned_at IS NOT NULL"
            )
            .await,
            2,
            "{backend}"
        );
        assert_eq!(count_old_day_rows(&store).await, 0, "{backend}");
        let recent_day_rows = scalar(&store, "SELECT count(*) FROM totals_source_day").await;
        assert_eq!(recent_day_rows, 5, "{backend}: yesterday's day rows stay");
        assert_eq!(kept_sums(&store).await, sums_before, "{backend}");
        assert_eq!(kept_views(&store).await, views_before, "{backend}");

        // The old report sent again (other bytes, same report) is still
        // recognised: nothing is counted twice.
        common::data::ingest(
            &store,
            "may-again.xml",
            &report("old-may", 40, 1_715_299_200, "\n \n"),
        )
        .await;
        assert_eq!(store.report_counts().await.unwrap(), after, "{backend}");
        assert_eq!(kept_sums(&store).await, sums_before, "{backend}");

        // A message whose records went is not reprocessed (its counts
        // could not be taken away); the others are, and count the same.
        let may_message = scalar(
            &store,
            "SELECT message_id FROM aggregate_reports WHERE report_id = 'old-may'",
        )
        .await;
        assert_eq!(
            store
                .requeue(&Requeue::Ids(vec![may_message]))
                .await
                .unwrap(),
            0,
            "{backend}"
        );
        // The recent report's message and the duplicate's.
        assert_eq!(store.requeue(&Requeue::All).await.unwrap(), 2, "{backend}");
        common::data::process_all(&store).await;
        assert_eq!(store.report_counts().await.unwrap(), after, "{backend}");
        assert_eq!(kept_sums(&store).await, sums_before, "{backend}");
        assert_eq!(kept_views(&store).await, views_before, "{backend}");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_not_yet_counted_in_the_rollups_are_kept() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        // Stored, not yet counted: the rollup applier has not run.
        dmarcd::inbox::Inbox::new(store.clone())
            .accept(
                &report("old", 3, 1_715_299_200, ""),
                &dmarcd::inbox::Envelope::import("old.xml"),
            )
            .await
            .unwrap();
        dmarcd::worker::Worker::new(
            store.clone(),
            dmarcd::Limits::default(),
            "w",
            dmarcd::worker::WorkerConfig::default(),
        )
        .run_batch()
        .await
        .unwrap();
        let now = Utc::now();
        assert_eq!(
            store.prune_records(&POLICY, now).await.unwrap(),
            PrunedRecords::default(),
            "{backend}"
        );
        store.apply_rollups_until_idle().await.unwrap();
        let pruned = store.prune_records(&POLICY, now).await.unwrap();
        assert_eq!((pruned.reports, pruned.records), (1, 3), "{backend}");
        assert_eq!(
            scalar(
                &store,
                "SELECT CAST(sum(count) AS BIGINT) FROM totals_source_all"
            )
            .await,
            scalar(
                &store,
                "SELECT CAST(sum(message_count) AS BIGINT) FROM aggregate_reports"
            )
            .await,
            "{backend}: counted once, kept"
        );
        store.close().await;
    }
}

fn dmarcd(data_dir: &Path, args: &[&str]) -> String {
    let keep = [
        ("DMARCD_RETENTION_AGGREGATE_DAYS", "30"),
        ("DMARCD_RETENTION_DAY_ROLLUP_DAYS", "30"),
    ];
    common::cli::dmarcd_ok(data_dir, args, &keep)
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_records_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    // The RFC 7489 example report of June 2018: two records.
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/fixtures/corpus/parsedmarc/aggregate/example.net!example.com!1529366400!1529452799.xml",
    );
    dmarcd(data.path(), &["import", report.to_str().unwrap()]);
    // `import` leaves the rollups to serve; count them as serve would.
    let store = Store::connect(None, data.path()).await.unwrap();
    store.apply_rollups_until_idle().await.unwrap();
    let records = store.report_counts().await.unwrap().aggregate_records;
    assert!(records > 0);
    store.close().await;

    let dry = dmarcd(data.path(), &["prune", "--dry-run"]);
    assert!(
        dry.contains(&format!(
            "would delete {records} aggregate records of 1 reports"
        )),
        "{dry}"
    );
    assert!(dry.contains("retention.aggregate_days = 30"), "{dry}");
    let done = dmarcd(data.path(), &["prune"]);
    assert!(
        done.contains(&format!("deleted {records} aggregate records of 1 reports")),
        "{done}"
    );
    let again = dmarcd(data.path(), &["prune", "--dry-run"]);
    assert!(
        again.contains("would delete 0 aggregate records of 0 reports and 0 day rollup rows"),
        "{again}"
    );
    let store = Store::connect(None, data.path()).await.unwrap();
    let counts = store.report_counts().await.unwrap();
    assert_eq!((counts.aggregate_reports, counts.aggregate_records), (1, 0));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_prunes_records_on_its_own_and_counts_them() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        common::data::ingest(&store, "may.xml", &report("old-may", 4, 1_715_299_200, "")).await;
        let config = dmarcd::config::RetentionConfig {
            aggregate_days: 30,
            day_rollup_days: 30,
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(dmarcd::retention::run(store.clone(), config, stopped));
        let started = std::time::Instant::now();
        while store.report_counts().await.unwrap().aggregate_records > 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{backend}: not pruned"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        let metrics = dmarcd::metrics::render(&[]);
        for line in [
            "dmarcd_retention_pruned_records_total{data=\"aggregate\"}",
            "dmarcd_retention_pruned_records_total{data=\"day_rollups\"}",
            "dmarcd_retention_pruned_reports_total{data=\"aggregate\"}",
        ] {
            assert!(metrics.contains(line), "{backend}: {line}");
        }
        store.close().await;
    }
}
