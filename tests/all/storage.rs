//! The inbox, the worker and both storage backends, against real databases:
//! a SQLite file and PostgreSQL (DATABASE_URL). Every test runs on each.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dmarcd::inbox::Inbox;
use dmarcd::inbox::{Envelope, MessageStatus};
use dmarcd::store::{Outcome, Requeue, Store, StoreError};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};

fn worker(store: &Store, name: &str) -> Worker {
    Worker::new(
        store.clone(),
        Limits::default(),
        name,
        WorkerConfig::default(),
    )
}

fn corpus_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/parsedmarc");
    let mut files = Vec::new();
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

async fn import_corpus(inbox: &Inbox) -> (usize, usize) {
    let (mut new, mut old) = (0, 0);
    for path in corpus_files() {
        let raw = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let accepted = inbox.accept(&raw, &Envelope::import(name)).await.unwrap();
        if accepted.is_new {
            new += 1;
        } else {
            old += 1;
        }
    }
    (new, old)
}

#[tokio::test]
async fn the_corpus_is_stored_once_and_a_second_import_adds_nothing() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        assert_eq!(import_corpus(&inbox).await, (34, 0), "{backend}");
        let processed = worker(&store, "w1").run_until_idle().await.unwrap();
        assert_eq!(processed.len(), 34, "{backend}");

        let counts = store.report_counts().await.unwrap();
        // 24 aggregate files hold 20 distinct reports: nice-input.xml comes as
        // .xml/.gz/.zip (one report), invalid_utf_8.xml repeats the report of
        // !example.com!…xml, invalid_xml.xml that of veeam.com!…xml.
        assert_eq!(counts.aggregate_reports, 20, "{backend}");
        assert_eq!(counts.tls_reports, 4, "{backend}");
        // 5 failure files hold 4 reports: linkedin.crlf.eml is linkedin.eml
        // with CRLF line ends, stored once.
        assert_eq!(counts.failure_reports, 4, "{backend}");
        let expected_records = 2286 + 20 + 20 + 2 + 2 + 15;
        assert_eq!(counts.aggregate_records, expected_records, "{backend}");

        let statuses = store.status_counts().await.unwrap();
        assert_eq!(
            statuses.get(&MessageStatus::Done),
            Some(&28),
            "{backend}: {statuses:?}"
        );
        assert_eq!(
            statuses.get(&MessageStatus::Duplicate),
            Some(&5),
            "{backend}: {statuses:?}"
        );
        assert_eq!(
            statuses.get(&MessageStatus::Ignored),
            Some(&1),
            "{backend}: {statuses:?}"
        );
        assert_eq!(
            statuses.get(&MessageStatus::Failed),
            None,
            "{backend}: {statuses:?}"
        );

        let by_domain = store.aggregate_reports_by_domain().await.unwrap();
        let expected: BTreeMap<String, i64> = [
            ("ab.id.au", 1),
            ("borschow.com", 1),
            ("example.com", 15),
            ("example.de", 1),
            ("indemed.com", 1),
            ("twlnet.com", 1),
        ]
        .into_iter()
        .map(|(domain, count)| (domain.to_string(), count))
        .collect();
        assert_eq!(by_domain, expected, "{backend}");
        assert!(store
            .domains(&dmarcd::scope::Scope::All)
            .await
            .unwrap()
            .contains(&"cardinalhealth.ca".to_string()));

        // The same files again: every message is already in the inbox.
        assert_eq!(import_corpus(&inbox).await, (0, 34), "{backend}");
        assert!(worker(&store, "w2")
            .run_until_idle()
            .await
            .unwrap()
            .is_empty());
        // Re-running every message through the parser rebuilds the same data.
        assert_eq!(store.requeue(&Requeue::All).await.unwrap(), 34, "{backend}");
        worker(&store, "w3").run_until_idle().await.unwrap();
        assert_eq!(store.report_counts().await.unwrap(), counts, "{backend}");
        assert_eq!(store.status_counts().await.unwrap(), statuses, "{backend}");
    }
}

#[tokio::test]
async fn a_failing_message_keeps_its_reason_and_is_reprocessed_after_the_fix() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let xml = testing::aggregate_report(500).to_xml();
        let gzipped = common::gzip(xml.as_bytes(), flate2::Compression::default());
        let id = Inbox::new(store.clone())
            .accept(&gzipped, &Envelope::import("big.xml.gz"))
            .await
            .unwrap()
            .id;

        // A limit set too low makes the report fail…
        let strict = Limits {
            max_decompressed_bytes: 64 * 1024,
            ..Limits::default()
        };
        let processed = Worker::new(store.clone(), strict, "strict", WorkerConfig::default())
            .run_until_idle()
            .await
            .unwrap();
        assert_eq!(processed.len(), 1);
        let info = store.message(id).await.unwrap().unwrap();
        assert_eq!(info.status, MessageStatus::Failed, "{backend}");
        let reason = info.error.unwrap();
        assert!(
            reason.contains("decompressed size limit"),
            "{backend}: {reason}"
        );
        assert_eq!(store.report_counts().await.unwrap().aggregate_reports, 0);

        // …and once the limit is fixed, reprocessing stores it.
        assert_eq!(store.requeue(&Requeue::Failed).await.unwrap(), 1);
        worker(&store, "fixed").run_until_idle().await.unwrap();
        let info = store.message(id).await.unwrap().unwrap();
        assert_eq!(info.status, MessageStatus::Done, "{backend}");
        assert_eq!(info.error, None);
        assert_eq!(info.attempts, 2);
        let counts = store.report_counts().await.unwrap();
        assert_eq!(
            (counts.aggregate_reports, counts.aggregate_records),
            (1, 500),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_message_left_processing_by_a_dead_worker_is_finished_by_another() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let xml = testing::aggregate_report(3).to_xml();
        let id = Inbox::new(store.clone())
            .accept(xml.as_bytes(), &Envelope::import("r.xml"))
            .await
            .unwrap()
            .id;
        // The first worker claims it with a short lease, then "dies".
        let claimed = store
            .claim("dead", 10, u64::MAX, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(
            store
                .claim("other", 10, u64::MAX, Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty(),
            "{backend}: still leased"
        );
        assert_eq!(
            store.message(id).await.unwrap().unwrap().status,
            MessageStatus::Processing
        );

        tokio::time::sleep(Duration::from_millis(2100)).await;
        let processed = worker(&store, "survivor").run_until_idle().await.unwrap();
        assert_eq!(processed.len(), 1, "{backend}");
        let info = store.message(id).await.unwrap().unwrap();
        assert_eq!(
            (info.status, info.attempts),
            (MessageStatus::Done, 2),
            "{backend}"
        );

        // The dead worker coming back cannot overwrite the result.
        let late = store
            .save_outcome(id, "dead", &Outcome::Failed("late".into()))
            .await
            .unwrap();
        assert!(!late.written, "{backend}");
        assert_eq!(
            store.message(id).await.unwrap().unwrap().status,
            MessageStatus::Done
        );
    }
}

#[tokio::test]
async fn concurrent_workers_never_process_a_message_twice() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let messages = 120;
        for index in 0..messages {
            let mut report = testing::aggregate_report(2);
            report.metadata.report_id = format!("concurrent-{index}");
            inbox
                .accept(
                    report.to_xml().as_bytes(),
                    &Envelope::import(format!("{index}.xml")),
                )
                .await
                .unwrap();
        }
        let config = WorkerConfig {
            batch_size: 3,
            ..WorkerConfig::default()
        };
        let mut tasks = Vec::new();
        for index in 0..4 {
            let worker = Worker::new(
                store.clone(),
                Limits::default(),
                format!("w{index}"),
                config.clone(),
            );
            tasks.push(tokio::spawn(async move {
                worker.run_until_idle().await.unwrap()
            }));
        }
        let mut seen = HashSet::new();
        let mut per_worker = Vec::new();
        for task in tasks {
            let processed = task.await.unwrap();
            per_worker.push(processed.len());
            for message in processed {
                assert!(message.summary.written, "{backend}");
                assert!(
                    seen.insert(message.id),
                    "{backend}: message {} processed twice",
                    message.id
                );
            }
        }
        assert_eq!(seen.len(), messages, "{backend}: {per_worker:?}");
        let counts = store.report_counts().await.unwrap();
        assert_eq!(counts.aggregate_reports, messages as i64, "{backend}");
        assert_eq!(
            store
                .status_counts()
                .await
                .unwrap()
                .get(&MessageStatus::Done),
            Some(&(messages as i64))
        );
        for id in seen {
            assert_eq!(
                store.message(id).await.unwrap().unwrap().attempts,
                1,
                "{backend}"
            );
        }
    }
}

#[tokio::test]
async fn an_unavailable_database_is_a_clear_error_and_writes_nothing() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let before = store.status_counts().await.unwrap();
        store.close().await;
        let error = Inbox::new(store.clone())
            .accept(b"Subject: x\r\n\r\nhello", &Envelope::import("x.eml"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Unavailable(_)),
            "{backend}: {error}"
        );
        assert!(
            error.to_string().starts_with("the database is unavailable"),
            "{error}"
        );
        let _ = before;
    }
    // A server that is not there at all.
    let error = Store::connect(Some("postgres://dmarcd@127.0.0.1:1/none"), Path::new("."))
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
}

#[tokio::test]
async fn a_report_that_cannot_be_stored_fails_its_whole_message() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let good = testing::aggregate_report(50).to_xml();
        let mut bad = testing::aggregate_report(5);
        bad.metadata.report_id = "far-future".into();
        bad.metadata.begin = 99_999_999_999_999;
        let archive = common::zip(&[
            ("good.xml", good.as_bytes()),
            ("bad.xml", bad.to_xml().as_bytes()),
        ]);
        let id = Inbox::new(store.clone())
            .accept(&archive, &Envelope::import("two.zip"))
            .await
            .unwrap()
            .id;
        worker(&store, "w").run_until_idle().await.unwrap();
        let info = store.message(id).await.unwrap().unwrap();
        assert_eq!(info.status, MessageStatus::Failed, "{backend}");
        assert!(
            info.error.unwrap().contains("is not a usable date"),
            "{backend}"
        );
        // The good report written before the bad one was rolled back with it.
        let counts = store.report_counts().await.unwrap();
        assert_eq!(
            (counts.aggregate_reports, counts.aggregate_records),
            (0, 0),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_large_report_is_stored_whole() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let xml = testing::aggregate_report(12_345).to_xml();
        Inbox::new(store.clone())
            .accept(xml.as_bytes(), &Envelope::import("large.xml"))
            .await
            .unwrap();
        let processed = worker(&store, "w").run_until_idle().await.unwrap();
        assert_eq!(processed[0].summary.records, 12_345, "{backend}");
        assert_eq!(
            store.report_counts().await.unwrap().aggregate_records,
            12_345,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn claims_stop_at_the_byte_budget_but_always_take_one() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        for index in 0..4u8 {
            inbox
                .accept(&[b'a' + index; 100], &Envelope::import(format!("{index}")))
                .await
                .unwrap();
        }
        let lease = Duration::from_secs(60);
        assert_eq!(
            store.claim("w", 10, 250, lease).await.unwrap().len(),
            2,
            "{backend}"
        );
        assert_eq!(
            store.claim("w", 10, 50, lease).await.unwrap().len(),
            1,
            "{backend}: at least one"
        );
        assert_eq!(
            store.claim("w", 10, u64::MAX, lease).await.unwrap().len(),
            1,
            "{backend}: the rest"
        );
        assert!(
            store
                .claim("w", 10, u64::MAX, lease)
                .await
                .unwrap()
                .is_empty(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_message_that_never_finishes_is_claimed_alone_then_given_up() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let poison = inbox
            .accept(b"Subject: poison\r\n\r\nx", &Envelope::import("poison"))
            .await
            .unwrap()
            .id;
        let other = inbox
            .accept(b"Subject: other\r\n\r\ny", &Envelope::import("other"))
            .await
            .unwrap()
            .id;
        let short = Duration::from_secs(1);
        // A worker claims both, then dies.
        assert_eq!(
            store
                .claim("dead", 10, u64::MAX, short)
                .await
                .unwrap()
                .len(),
            2
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        // Expired messages come back one at a time.
        let alone = store
            .claim("dead-again", 10, u64::MAX, short)
            .await
            .unwrap();
        assert_eq!(
            alone.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![poison],
            "{backend}"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        // Past max_attempts, the next worker fails it without parsing; the
        // other message is processed normally.
        let config = WorkerConfig {
            max_attempts: 2,
            ..WorkerConfig::default()
        };
        let worker = Worker::new(store.clone(), Limits::default(), "survivor", config);
        worker.run_until_idle().await.unwrap();
        let info = store.message(poison).await.unwrap().unwrap();
        assert_eq!(info.status, MessageStatus::Failed, "{backend}");
        assert!(
            info.error.unwrap().starts_with("gave up after 2 attempts"),
            "{backend}"
        );
        let other = store.message(other).await.unwrap().unwrap();
        assert_eq!(
            other.status,
            MessageStatus::Ignored,
            "{backend}: not a report, but processed"
        );
    }
}

/// Every field of every record reads back as it was parsed, whichever way
/// the records were written (one statement for a few, the bulk COPY for
/// thousands): addresses of both families, invalid ones, unknown keywords,
/// text that needs escaping, override reasons, extensions.
#[tokio::test]
async fn records_read_back_as_parsed_on_the_small_and_the_bulk_path() {
    use dmarcd::query::{self, Filter, Page};
    use dmarcd::report::aggregate::{DmarcResult, OverrideReason, OverrideType};
    for records in [5, 2_500] {
        for (_dir, store) in common::db::backends().await {
            let backend = store.backend();
            let mut report = testing::aggregate_report(records);
            report.records[0].source_ip = Some("2001:db8::7".parse().unwrap());
            report.records[1].source_ip = None;
            report.records[1].invalid_source_ip = Some("not\tan\\address\n".into());
            report.records[2].policy_evaluated.dkim = Some(DmarcResult::parse("Temperror-ish"));
            report.records[2].policy_evaluated.reasons = vec![OverrideReason {
                kind: Some(OverrideType::parse("forwarded")),
                comment: Some("via a \"list\" ☃".into()),
            }];
            report.records[3].identifiers.envelope_from = Some("ünïcode.example".into());
            report.records[4].extensions = vec!["<ext:x a=\"1\">y</ext:x>".into()];
            let xml = report.to_xml();
            // What the records must read back as: the parser's reading.
            let report = dmarcd::report::aggregate::parse_bytes(xml.as_bytes()).unwrap();
            Inbox::new(store.clone())
                .accept(xml.as_bytes(), &Envelope::import("r.xml"))
                .await
                .unwrap();
            worker(&store, "w").run_until_idle().await.unwrap();
            let filter = Filter::default().parse(&dmarcd::scope::Scope::All).unwrap();
            let mut rows = Vec::new();
            while rows.len() < records {
                let page = Page::new(Some(1000), Some(rows.len() as i64), 1000).unwrap();
                let (more, total) = query::aggregate::records(&store, &filter, page)
                    .await
                    .unwrap();
                assert_eq!(total as usize, records, "{backend}");
                assert!(!more.is_empty(), "{backend}");
                rows.extend(more);
            }
            let by_ip: BTreeMap<Option<String>, _> = rows
                .iter()
                .map(|row| {
                    (
                        row.source_ip
                            .clone()
                            .or_else(|| row.invalid_source_ip.clone()),
                        row,
                    )
                })
                .collect();
            for record in &report.records {
                let key = record
                    .source_ip
                    .map(|ip| ip.to_string())
                    .or_else(|| record.invalid_source_ip.as_deref().map(str::to_string));
                let row = by_ip[&key];
                let context = format!("{backend}, {records} records, {key:?}");
                let evaluated = &record.policy_evaluated;
                assert_eq!(row.count as u64, record.count, "{context}");
                assert_eq!(
                    row.disposition,
                    evaluated.disposition.as_ref().map(|d| d.to_string()),
                    "{context}"
                );
                assert_eq!(
                    row.dkim_aligned,
                    evaluated.dkim.as_ref().map(|d| d.to_string()),
                    "{context}"
                );
                assert_eq!(row.dmarc_pass, record.dmarc_pass(), "{context}");
                assert_eq!(
                    row.envelope_from.as_deref(),
                    record.identifiers.envelope_from.as_deref(),
                    "{context}"
                );
                // The API's arrays hold what the report said, field for field.
                assert_eq!(
                    serde_json::to_value(&row.dkim_results).unwrap(),
                    serde_json::to_value(&record.auth_results.dkim).unwrap(),
                    "{context}"
                );
                assert_eq!(
                    serde_json::to_value(&row.spf_results).unwrap(),
                    serde_json::to_value(&record.auth_results.spf).unwrap(),
                    "{context}"
                );
                assert_eq!(
                    serde_json::to_value(&row.reasons).unwrap(),
                    serde_json::to_value(&evaluated.reasons).unwrap(),
                    "{context}"
                );
                // 1711756800: 2024-03-30T00:00:00Z.
                assert!(
                    row.date_begin.starts_with("2024-03-30"),
                    "{context}: {}",
                    row.date_begin
                );
            }
            store.close().await;
        }
    }
}

/// An import rides out a database that drops its connections and refuses
/// new ones for a while (a restart, a failover): it waits, carries on, and
/// stores every message once.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_rides_out_a_database_outage() {
    use dmarcd::import::{run_import, ImportSource};
    let Some((_dir, store, name)) = common::db::postgres_named().await else {
        eprintln!("NOTE: DATABASE_URL is unset: this PostgreSQL test was SKIPPED");
        return;
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        for index in 0..300 {
            let raw = testing::realistic_report(index, 50).to_xml().into_bytes();
            let name = format!("{index}.xml");
            sender.send(ImportSource { name, raw }).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let outage = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        common::db::allow_connections(&name, false).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        common::db::allow_connections(&name, true).await;
    });
    // The default lease (5 minutes): what the outage interrupted must be
    // given back, not left to expire.
    let config = WorkerConfig {
        batch_size: 8,
        ..WorkerConfig::default()
    };
    let outcome = run_import(
        store.clone(),
        Limits::default(),
        config,
        "w",
        receiver,
        std::sync::Arc::new(|_| {}),
    )
    .await
    .expect("the import carries on through the outage");
    feeder.await.unwrap();
    outage.await.unwrap();
    let counts = store.status_counts().await.unwrap();
    assert_eq!(
        counts.get(&MessageStatus::Done).copied(),
        Some(300),
        "{counts:?} ({} processed)",
        outcome.processed.len()
    );
    assert_eq!(store.report_counts().await.unwrap().aggregate_reports, 300);
    for processed in &outcome.processed {
        let message = store.message(processed.id).await.unwrap().unwrap();
        assert_eq!(message.attempts, 1, "an outage is not an attempt");
    }
    store.close().await;
}

/// A report too large to hold in memory is stored while it is parsed, in
/// runs of records (worker/streamed.rs): all of it, once; a copy of it is a
/// duplicate; one cut short keeps nothing but its reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_stored_while_it_is_parsed_is_whole_once_or_not_at_all() {
    use dmarcd::query::{self, Filter};
    // Three windows of the parser (4 MB each): two runs, then the rest.
    let records = 12_000;
    let mut report = testing::aggregate_report(records);
    report.records[records - 1].source_ip = Some("2001:db8::99".parse().unwrap());
    let xml = report.to_xml();
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        inbox
            .accept(xml.as_bytes(), &Envelope::import("large.xml"))
            .await
            .unwrap();
        // The same report again, in another message (other bytes).
        let mut copy = xml.clone().into_bytes();
        copy.extend_from_slice(b"\n");
        inbox
            .accept(&copy, &Envelope::import("copy.xml"))
            .await
            .unwrap();
        // And one cut short in the middle of its records.
        let mut other = testing::aggregate_report(records);
        other.metadata.report_id = "cut-short".into();
        let mut cut = other.to_xml().into_bytes();
        cut.truncate(cut.len() * 2 / 3);
        inbox
            .accept(&cut, &Envelope::import("cut.xml"))
            .await
            .unwrap();
        let config = WorkerConfig {
            stream_from_bytes: 100_000,
            stream_run_records: 1_000,
            ..WorkerConfig::default()
        };
        let processed = Worker::new(store.clone(), Limits::default(), "w", config)
            .run_until_idle()
            .await
            .unwrap();
        let statuses: Vec<_> = processed
            .iter()
            .map(|p| (p.source_name.clone().unwrap(), p.summary.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("large.xml".to_string(), Some(MessageStatus::Done)),
                ("copy.xml".to_string(), Some(MessageStatus::Duplicate)),
                ("cut.xml".to_string(), Some(MessageStatus::Failed)),
            ],
            "{backend}"
        );
        assert_eq!(processed[0].summary.records, records as u64, "{backend}");
        assert!(
            processed[2]
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("truncated"),
            "{backend}: {:?}",
            processed[2].reason
        );
        let counts = store.report_counts().await.unwrap();
        assert_eq!(counts.aggregate_reports, 1, "{backend}");
        assert_eq!(counts.aggregate_records, records as i64, "{backend}");
        // The report row has the final counts, and the last run's records.
        let filter: Filter = serde_urlencoded::from_str("source=2001:db8::99").unwrap();
        let (rows, total) = query::aggregate::records(
            &store,
            &filter.parse(&dmarcd::scope::Scope::All).unwrap(),
            query::Page::new(Some(10), None, 10).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!((rows.len(), total), (1, 1), "{backend}");
        let (reports, _) = query::aggregate::reports(
            &store,
            &Filter::default().parse(&dmarcd::scope::Scope::All).unwrap(),
            query::Page::new(Some(10), None, 10).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(reports.len(), 1, "{backend}");
        assert_eq!(reports[0].record_count, records as i64, "{backend}");
        assert_eq!(
            reports[0].message_count,
            report.message_count() as i64,
            "{backend}"
        );
        store.close().await;
    }
}
