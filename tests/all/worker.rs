//! The worker loop (`Worker::run`, as `dmarcd serve` runs it) through a
//! database outage, on a real PostgreSQL database that drops its
//! connections and refuses new ones for a while.
//!
//! The outage is PostgreSQL's: there it is a lost connection. SQLite has
//! no connection to lose (a file locked past its 30 s busy timeout is its
//! nearest case); on both backends, claims given back are tested below.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmarcd::inbox::Inbox;
use dmarcd::inbox::{Envelope, MessageStatus};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};
use sqlx::Connection;

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, level: &str, words: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(level) && line.contains(words))
            .count()
    }
}

/// A batch whose save the database cut off is given back when it answers
/// again, without counting as an attempt (five outages used to fail a good
/// message); meanwhile the workers back off, and the log has one error for
/// the outage and one line when it ends.
// One thread: the captured log sees every task's events.
#[tokio::test]
async fn a_batch_cut_off_by_an_outage_is_processed_once_the_database_is_back() {
    let Some((_dir, store, name)) = common::db::postgres_named().await else {
        eprintln!("NOTE: DATABASE_URL is unset: this PostgreSQL test was SKIPPED");
        return;
    };
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let report = testing::aggregate_report(20).to_xml();
    let id = Inbox::new(store.clone())
        .accept(report.as_bytes(), &Envelope::import("report.xml"))
        .await
        .unwrap()
        .id;
    // The save must be cut off after the claim: a lock on the reports
    // table holds it back (the claim touches only the inbox) until the
    // outage ends every connection, this one's included.
    let url = common::db::with_database(&std::env::var("DATABASE_URL").unwrap(), &name);
    let mut locker = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE aggregate_reports IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();

    // One attempt allowed, and a lease far longer than the test: only a
    // claim given back without counting lets the message through.
    let config = WorkerConfig {
        max_attempts: 1,
        lease_seconds: 600,
        poll_interval_ms: 20,
        max_retry_interval_ms: 200,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), Limits::default(), "outage-test", config);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(stopped).await }
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut locker)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the save never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claimed = store.message(id).await.unwrap().unwrap();
    assert_eq!(
        (claimed.status, claimed.attempts),
        (MessageStatus::Processing, 1)
    );

    common::db::allow_connections(&name, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    common::db::allow_connections(&name, true).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let message = loop {
        let message = store.message(id).await.unwrap().unwrap();
        if message.status != MessageStatus::Pending && message.status != MessageStatus::Processing {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "still {:?} after the outage",
            message.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = stop.send(true);
    running.await.unwrap();
    assert_eq!(message.status, MessageStatus::Done, "{:?}", message.error);
    assert_eq!(message.attempts, 1, "the outage counted as an attempt");
    assert_eq!(store.report_counts().await.unwrap().aggregate_records, 20);

    assert_eq!(
        log.lines_with("ERROR", "cannot reach the store"),
        1,
        "one error for the outage"
    );
    assert!(
        log.lines_with("DEBUG", "still unavailable") >= 1,
        "the polls went on"
    );
    assert_eq!(
        log.lines_with("WARN", "answers again"),
        1,
        "one line when it ends"
    );
    store.close().await;
}

/// What the worker does with a batch the database cut off, on both
/// backends: the claims go back to pending, the attempt is undone, and
/// only the claimant's own claims are touched.
#[tokio::test(flavor = "multi_thread")]
async fn claims_given_back_are_pending_again_without_an_attempt() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let mut ids = Vec::new();
        for number in 0..2 {
            let mut report = testing::aggregate_report(2);
            report.metadata.report_id = format!("given-back-{number}");
            let raw = report.to_xml();
            ids.push(
                inbox
                    .accept(raw.as_bytes(), &Envelope::import("r.xml"))
                    .await
                    .unwrap()
                    .id,
            );
        }
        let lease = Duration::from_secs(600);
        let claimed = store.claim("first", 1, u64::MAX, lease).await.unwrap();
        assert_eq!(claimed[0].id, ids[0], "{backend}");
        let other = store.claim("second", 1, u64::MAX, lease).await.unwrap();
        assert_eq!(other[0].id, ids[1], "{backend}");
        assert_eq!(
            store.release_claims("first", &ids).await.unwrap(),
            1,
            "{backend}: only its own"
        );
        let given_back = store.message(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (given_back.status, given_back.attempts),
            (MessageStatus::Pending, 0),
            "{backend}"
        );
        let kept = store.message(ids[1]).await.unwrap().unwrap();
        assert_eq!(kept.status, MessageStatus::Processing, "{backend}");
        let again = store.claim("third", 1, u64::MAX, lease).await.unwrap();
        assert_eq!((again[0].id, again[0].attempts), (ids[0], 1), "{backend}");
        store.close().await;
    }
}
