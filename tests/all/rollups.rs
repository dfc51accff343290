//! The daily rollups agree with the records they summarise, on both
//! backends, after storing, reprocessing and requeueing.

use crate::common;

use dmarcd::query::aggregate::{records_total, rollup_for, summary_from, top_groups};
use dmarcd::query::{Filter, GroupBy, Page, SummarySort};
use dmarcd::store::{Requeue, Store};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::Limits;

const FILTERS: &[&str] = &[
    "",
    "result=fail",
    "dkim=pass&spf=fail",
    "disposition=quarantine",
    "domain=example.com",
    "country=DE",
    "source=11.0.1.0/24",
    "source=11.0.0.7",
    "asn=64500&result=pass",
    "org=google.com",
    "since=2024-03-30&until=2024-03-30",
    "since=2018-01-01&domain=example.com",
    // Periods tiled by whole months and ragged days.
    "since=2018-06-20",
    "since=2018-06-01&until=2018-10-04",
    "until=2024-03-30&result=fail",
    "since=2018-09-05&country=US&result=pass",
    "since=2024-01-01&domain=example.com&result=fail",
    "since=2018-10-02&until=2018-10-05",
    // Months with the days outside the period taken away (October 1st's
    // records, March 31st's), groups that sum to nothing left out.
    "since=2018-10-03&until=2018-10-28",
    "since=2018-10-02&result=fail",
    "since=2018-10-03&country=US",
    "since=2024-03-03&until=2024-03-30&domain=example.com",
    // The mixed report of May 10th, 2024: ranked pages by source.
    "since=2024-05-03&until=2024-05-20",
    "since=2024-04-20&result=fail",
    "since=2024-05-10&until=2024-06-01&result=pass",
    // The realistic set of the concurrency test.
    "domain=domain-3.example&result=fail",
    "org=Yahoo&since=2024-04-02",
    // Reporters in part and ignoring case, or whole in quotes.
    "org=OUTLOOK&result=fail",
    "org=%22yahoo%22&since=2024-04-02",
];

/// A report whose records tell DKIM from SPF and dispositions apart, some
/// with an address that is not one (the null source): every sum of a
/// summary by source differs from the others somewhere.
fn mixed_report() -> Vec<u8> {
    use dmarcd::report::aggregate::{Disposition, DmarcResult};
    let mut report = dmarcd::testing::aggregate_report(60);
    report.metadata.report_id = "mixed-results".into();
    report.metadata.begin = 1_715_299_200; // 2024-05-10
    report.metadata.end = 1_715_385_599;
    for (index, record) in report.records.iter_mut().enumerate() {
        let evaluated = &mut record.policy_evaluated;
        match index % 4 {
            1 => evaluated.spf = Some(DmarcResult::Fail),
            2 => evaluated.dkim = Some(DmarcResult::Fail),
            _ => {}
        }
        if index % 6 == 3 {
            evaluated.disposition = Some(Disposition::Reject);
        }
        if index % 5 == 2 {
            record.source_ip = None;
            record.invalid_source_ip = Some(format!("not-an-address-{}", index % 2).into());
        }
    }
    report.to_xml().into_bytes()
}

/// What the enrichment would save for `ip`: country, AS number and name,
/// and a source name.
fn described(
    ip: &str,
    network: Option<(&str, u32, &str)>,
    name: Option<&str>,
) -> dmarcd::enrich::SourceInfo {
    dmarcd::enrich::SourceInfo {
        ip: ip.parse().unwrap(),
        country: network.map(|(country, _, _)| country.into()),
        asn: network.map(|(_, asn, _)| asn),
        as_name: network.map(|(_, _, name)| name.into()),
        as_domain: None,
        ptr: None,
        base_domain: None,
        source_name: name.map(Into::into),
        source_type: name.map(|_| "esp".into()),
    }
}

/// Every grouping under every filter, and the number of records: from the
/// rollup the query would use, and from the records; they must be identical.
async fn assert_rollups_match(store: &Store, context: &str) {
    let page = Page::new(Some(1000), None, 1000).unwrap();
    let mut via_rollup = 0;
    for query in FILTERS {
        let filter: Filter = serde_urlencoded::from_str(query).unwrap();
        let parsed = filter.parse(&dmarcd::scope::Scope::All).unwrap();
        assert_eq!(
            records_total(store, &parsed, true).await.unwrap(),
            records_total(store, &parsed, false).await.unwrap(),
            "{context}: {} records matching {query:?}",
            store.backend()
        );
        for group_by in GroupBy::ALL {
            if rollup_for(&parsed, Some(group_by)).is_some() {
                via_rollup += 1;
            }
            let fast = summary_from(store, &parsed, group_by, SummarySort::Key, page, true)
                .await
                .unwrap();
            let exact = summary_from(store, &parsed, group_by, SummarySort::Key, page, false)
                .await
                .unwrap();
            assert_eq!(
                fast,
                exact,
                "{context}: {} {query:?} by {group_by:?}",
                store.backend()
            );
            // The overview's top tables: the first page, uncounted.
            let first = Page::new(Some(3), None, 3).unwrap();
            let (page_rows, _) = summary_from(
                store,
                &parsed,
                group_by,
                SummarySort::Failures,
                first,
                false,
            )
            .await
            .unwrap();
            let top = top_groups(store, &parsed, group_by, SummarySort::Failures, 3)
                .await
                .unwrap();
            assert_eq!(
                top,
                page_rows,
                "{context}: {} {query:?} top by {group_by:?}",
                store.backend()
            );
        }
    }
    assert!(
        via_rollup > 50,
        "most of these queries use a rollup ({via_rollup})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_equal_the_records_through_reprocessing() {
    for (_dir, store) in common::db::backends().await {
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        // The whole corpus too: NULL dispositions, invalid IPs, many days.
        let inbox = dmarcd::inbox::Inbox::new(store.clone());
        inbox
            .accept(
                &mixed_report(),
                &dmarcd::inbox::Envelope::import("mixed.xml"),
            )
            .await
            .unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/corpus/parsedmarc/aggregate");
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            let raw = std::fs::read(&path).unwrap();
            inbox
                .accept(
                    &raw,
                    &dmarcd::inbox::Envelope::import(path.display().to_string()),
                )
                .await
                .unwrap();
        }
        let worker = Worker::new(
            store.clone(),
            Limits::default(),
            "w",
            WorkerConfig::default(),
        );
        worker.run_until_idle().await.unwrap();
        assert_rollups_match(&store, "after import").await;

        // Sources described anew (a new GeoIP database, a changed map):
        // the totals that carry descriptions follow.
        store
            .save_descriptions(&[
                described(
                    "11.0.0.7",
                    Some(("FR", 64999, "Changed Transit")),
                    Some("Changed"),
                ),
                described("11.0.1.3", None, None),
            ])
            .await
            .unwrap();
        assert_rollups_match(&store, "after a description change").await;

        // Requeued messages leave the rollups with their records…
        store.requeue(&Requeue::Ids(vec![1, 2, 3])).await.unwrap();
        assert_rollups_match(&store, "after requeue").await;
        // …and come back with them.
        worker.run_until_idle().await.unwrap();
        assert_rollups_match(&store, "after reprocessing").await;
        store.requeue(&Requeue::All).await.unwrap();
        assert_rollups_match(&store, "everything requeued").await;
        let empty = summary_from(
            &store,
            &Filter::default().parse(&dmarcd::scope::Scope::All).unwrap(),
            GroupBy::Domain,
            SummarySort::Key,
            Page::new(Some(10), None, 10).unwrap(),
            true,
        )
        .await
        .unwrap();
        assert_eq!(
            empty.1,
            0,
            "{}: nothing left in the rollups",
            store.backend()
        );
        worker.run_until_idle().await.unwrap();
        assert_rollups_match(&store, "everything reprocessed").await;
        store.close().await;
    }
}

/// Writers that share sources neither deadlock nor count anything twice:
/// 1,000 reports for 20 domains from 5 reporters whose sources come from
/// one pool, stored by 4 concurrent workers while the rollup applier runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_sharing_sources_store_every_report_once() {
    use dmarcd::import::{run_import, ImportSource};
    use dmarcd::worker::RollupApplier;
    use std::sync::Arc;

    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let applier = RollupApplier::new(
            store.clone(),
            &WorkerConfig {
                poll_interval_ms: 10,
                ..WorkerConfig::default()
            },
        );
        let applying = tokio::spawn(async move { applier.run(stopped).await });
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let feeder = tokio::spawn(async move {
            for index in 0..1000 {
                let raw = dmarcd::testing::realistic_report(index, 20)
                    .to_xml()
                    .into_bytes();
                let name = format!("{index}.xml");
                sender.send(ImportSource { name, raw }).await.unwrap();
            }
        });
        let config = WorkerConfig {
            concurrency: 4,
            batch_size: 16,
            ..WorkerConfig::default()
        };
        let outcome = run_import(
            store.clone(),
            Limits::default(),
            config,
            "w",
            receiver,
            Arc::new(|_| {}),
        )
        .await
        .unwrap_or_else(|error| panic!("{backend}: {error}"));
        feeder.await.unwrap();
        stop.send(true).unwrap();
        applying.await.unwrap();
        assert_eq!(outcome.processed.len(), 1000, "{backend}");
        assert!(
            outcome
                .processed
                .iter()
                .all(|p| p.summary.status == Some(dmarcd::inbox::MessageStatus::Done)),
            "{backend}: every message stored"
        );
        let counts = store.report_counts().await.unwrap();
        assert_eq!(counts.aggregate_reports, 1000, "{backend}");
        assert_eq!(counts.aggregate_records, 20_000, "{backend}");
        store.apply_rollups_until_idle().await.unwrap();
        assert_rollups_match(&store, "after four concurrent workers").await;
        store.close().await;
    }
}
