//! Retention of raw messages (issue 27, item 1), on both backends and
//! through the CLI: processed messages lose their bytes after
//! `raw_days` (failure reports' after `failure_raw_days`), failed and
//! unprocessed ones never; the rows and reports stay; a pruned message
//! answers 410 and is not reprocessed.

use std::path::Path;

use chrono::{Duration, Utc};
use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::store::{Pruned, RawRetention, Requeue, Store};
use dmarcd::web::WebConfig;
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::Limits;

use crate::common;
use crate::common::http::Server;

const POLICY: RawRetention = RawRetention {
    raw_days: 90,
    failure_raw_days: 30,
    batch: 1,
};

/// Sets a message's processing time, as if it had been processed then.
async fn processed_days_ago(store: &Store, id: i64, days: i64) {
    let at = Utc::now() - Duration::days(days);
    let db = store.db();
    db.execute(&db.statement(
        "UPDATE inbox_messages SET processed_at = $1 WHERE id = $2",
        vec![at.into(), id.into()],
    ))
    .await
    .unwrap();
}

async fn accept(store: &Store, raw: &[u8], name: &str) -> i64 {
    let accepted = Inbox::new(store.clone())
        .accept(raw, &Envelope::import(name))
        .await
        .unwrap();
    accepted.id
}

#[tokio::test(flavor = "multi_thread")]
async fn processed_raw_messages_go_after_their_days_and_nothing_else_does() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let aggregate = accept(
            &store,
            &common::corpus("aggregate/example.net!example.com!1529366400!1529452799.xml"),
            "aggregate.xml",
        )
        .await;
        let failure = accept(
            &store,
            &common::corpus("failure/dmarc_ruf_report_linkedin.eml"),
            "ruf.eml",
        )
        .await;
        let broken = accept(&store, b"<feedback><report_metadata>", "broken.xml").await;
        process(&store).await;
        let pending = accept(&store, b"<feedback/>", "late.xml").await;
        let reports_before = store.report_counts().await.unwrap();

        // Everything is 40 days old: only the failure report's message is due.
        for id in [aggregate, failure, broken, pending] {
            processed_days_ago(&store, id, 40).await;
        }
        let now = Utc::now();
        let due = store.prunable_raw(&POLICY, now).await.unwrap();
        assert_eq!(due.messages, 1, "{backend}");
        // 100 days: the aggregate report's message too; never the failed or
        // pending one.
        processed_days_ago(&store, aggregate, 100).await;
        processed_days_ago(&store, broken, 100).await;
        processed_days_ago(&store, pending, 100).await;
        let due = store.prunable_raw(&POLICY, now).await.unwrap();
        assert_eq!(due.messages, 2, "{backend}");
        assert!(due.bytes > 0, "{backend}");

        // Batches of one still take everything due.
        let pruned = store.prune_raw(&POLICY, now).await.unwrap();
        assert_eq!(pruned, due, "{backend}");
        assert_eq!(
            store.prune_raw(&POLICY, now).await.unwrap(),
            Pruned::default(),
            "{backend}: a second prune finds nothing"
        );
        for id in [aggregate, failure] {
            assert_eq!(store.message_raw(id).await.unwrap(), None, "{backend} {id}");
            let message = store.message(id).await.unwrap().unwrap();
            assert!(message.raw_pruned_at.is_some(), "{backend} {id}");
        }
        for id in [broken, pending] {
            assert!(
                store.message_raw(id).await.unwrap().is_some(),
                "{backend} {id}"
            );
        }
        assert_eq!(
            store.report_counts().await.unwrap(),
            reports_before,
            "{backend}: the reports stay"
        );

        // A pruned message is not reprocessed (its reports would be lost);
        // "all" takes only the messages that still have their bytes.
        assert_eq!(
            store.requeue(&Requeue::Ids(vec![aggregate])).await.unwrap(),
            0,
            "{backend}"
        );
        assert_eq!(store.requeue(&Requeue::All).await.unwrap(), 1, "{backend}");

        // Over HTTP: 410 saying why, and the listing says when.
        let server = Server::start(store.clone(), WebConfig::default()).await;
        let token = server.state.accounts.create_token("t").await.unwrap();
        let gone = server
            .get(
                &format!("/api/v1/inbox/messages/{aggregate}/raw"),
                Some(&token),
            )
            .await;
        assert_eq!(gone.status, 410, "{backend}");
        assert!(
            gone.text().contains("deleted on"),
            "{backend}: {}",
            gone.text()
        );
        let missing = server
            .get("/api/v1/inbox/messages/999999/raw", Some(&token))
            .await;
        assert_eq!(missing.status, 404, "{backend}");
        let listing = server
            .get("/api/v1/inbox/messages?limit=10", Some(&token))
            .await
            .json();
        let pruned_rows = listing["items"]
            .as_array()
            .or_else(|| listing["rows"].as_array())
            .expect("a list of messages")
            .iter()
            .filter(|row| !row["raw_pruned_at"].is_null())
            .count();
        assert_eq!(pruned_rows, 2, "{backend}: {listing}");
        store.close().await;
    }
}

/// The corpus's RFC 7489 example report, stored and processed; its id.
async fn one_processed_report(store: &Store) -> i64 {
    let id = accept(
        store,
        &common::corpus("aggregate/example.net!example.com!1529366400!1529452799.xml"),
        "aggregate.xml",
    )
    .await;
    process(store).await;
    id
}

async fn process(store: &Store) {
    Worker::new(
        store.clone(),
        Limits::default(),
        "w",
        WorkerConfig::default(),
    )
    .run_until_idle()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_days_keeps_every_raw_message() {
    for (_dir, store) in common::db::backends().await {
        let id = one_processed_report(&store).await;
        processed_days_ago(&store, id, 5000).await;
        let forever = RawRetention {
            raw_days: 0,
            failure_raw_days: 0,
            batch: 10,
        };
        assert_eq!(
            store.prune_raw(&forever, Utc::now()).await.unwrap(),
            Pruned::default()
        );
        assert!(store.message_raw(id).await.unwrap().is_some());
        store.close().await;
    }
}

fn dmarcd(data_dir: &Path, args: &[&str]) -> String {
    common::cli::dmarcd_ok(data_dir, args, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/fixtures/corpus/parsedmarc/aggregate/example.net!example.com!1529366400!1529452799.xml",
    );
    dmarcd(data.path(), &["import", report.to_str().unwrap()]);
    let dry = dmarcd(data.path(), &["prune", "--dry-run"]);
    assert!(dry.starts_with("would delete 0 raw messages"), "{dry}");

    // Processed 100 days ago, as the store sees it; and an audit entry
    // older than retention.audit_days (400).
    let store = Store::connect(None, data.path()).await.unwrap();
    processed_days_ago(&store, 1, 100).await;
    let old_entry = dmarcd::store::audit::NewEntry {
        at: chrono::Utc::now() - chrono::Duration::days(401),
        actor: "alice",
        address: None,
        action: "domain.add",
        target: "old.example",
        old_value: None,
        new_value: None,
    };
    dmarcd::store::audit::insert(store.db(), &old_entry)
        .await
        .unwrap();
    store.close().await;

    let dry = dmarcd(data.path(), &["prune", "--dry-run"]);
    assert!(dry.starts_with("would delete 1 raw messages"), "{dry}");
    assert!(dry.contains("retention.raw_days = 90"), "{dry}");
    assert!(
        dry.contains("would delete 1 audit log entries (retention.audit_days = 400"),
        "{dry}"
    );
    let done = dmarcd(data.path(), &["prune"]);
    assert!(done.starts_with("deleted 1 raw messages"), "{done}");
    assert!(done.contains("deleted 1 audit log entries"), "{done}");
    let again = dmarcd(data.path(), &["prune", "--dry-run"]);
    assert!(again.starts_with("would delete 0 raw messages"), "{again}");
    assert!(
        again.contains("would delete 0 audit log entries"),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_prunes_on_its_own_and_counts_it() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let id = one_processed_report(&store).await;
        processed_days_ago(&store, id, 91).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(dmarcd::retention::run(
            store.clone(),
            dmarcd::config::RetentionConfig::default(),
            stopped,
        ));
        // It prunes at start (then every interval_minutes).
        let started = std::time::Instant::now();
        while store.message_raw(id).await.unwrap().is_some() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{backend}: not pruned"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        let metrics = dmarcd::metrics::render(&[]);
        assert!(
            metrics.contains("dmarcd_retention_pruned_messages_total{data=\"raw\"}"),
            "{backend}"
        );
        store.close().await;
    }
}
