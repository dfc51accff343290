//! What the parsers' fidelity means once stored, on both backends (a SQLite
//! file and PostgreSQL from DATABASE_URL): failure reports are stored once
//! (issue 17 item 6), also across the migration that brought their key, and
//! text reaches the database without control characters, with the warning
//! saying so (issue 16 item 2).

use crate::common;

use dmarcd::inbox::Inbox;
use dmarcd::inbox::{Envelope, MessageStatus};
use dmarcd::store::db::TypedRow;
use dmarcd::store::{Backend, Store};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::Limits;

use common::corpus;

fn worker(store: &Store) -> Worker {
    Worker::new(
        store.clone(),
        Limits::default(),
        "test",
        WorkerConfig::default(),
    )
}

/// Runs `sql` and returns its rows, typed as the caller says.
async fn rows<T: TypedRow>(store: &Store, text: &str) -> Vec<T> {
    let db = store.db();
    db.fetch_all(&db.statement(text, Vec::new())).await.unwrap()
}

async fn status(store: &Store, id: i64) -> MessageStatus {
    store.message(id).await.unwrap().unwrap().status
}

const LINKEDIN: &str = "failure/dmarc_ruf_report_linkedin.eml";
const LINKEDIN_CRLF: &str = "failure/dmarc_ruf_report_linkedin.crlf.eml";
const NETEASE: &str = "failure/[Netease DMARC Failure Report] Rent Reminder.eml";

/// The report as received by SMTP: the same mail with a trace field added,
/// so different bytes in the inbox.
fn as_received(raw: &[u8]) -> Vec<u8> {
    let mut received =
        b"Received: from mx.example.net by dmarcd; Tue, 30 Apr 2019 02:10:00 +0000\n".to_vec();
    received.extend_from_slice(raw);
    received
}

#[tokio::test]
async fn a_failure_report_received_twice_is_stored_once() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let by_smtp = inbox
            .accept(&as_received(&corpus(LINKEDIN)), &Envelope::import("smtp"))
            .await
            .unwrap();
        let from_backup = inbox
            .accept(&corpus(LINKEDIN_CRLF), &Envelope::import("backup.mbox"))
            .await
            .unwrap();
        assert!(by_smtp.is_new && from_backup.is_new);
        let processed = worker(&store).run_until_idle().await.unwrap();
        assert_eq!(processed.len(), 2, "{backend}");
        assert_eq!(processed[1].summary.duplicates, 1, "{backend}");

        assert_eq!(
            store.report_counts().await.unwrap().failure_reports,
            1,
            "{backend}"
        );
        assert_eq!(
            status(&store, by_smtp.id).await,
            MessageStatus::Done,
            "{backend}"
        );
        assert_eq!(
            status(&store, from_backup.id).await,
            MessageStatus::Duplicate,
            "{backend}"
        );
        let keys: Vec<(Option<String>,)> =
            rows(&store, "SELECT dedupe_key FROM failure_reports").await;
        assert_eq!(
            keys[0].0.as_deref().map(str::len),
            Some(64),
            "{backend}: {keys:?}"
        );
    }
}

/// Takes migration 10 (PostgreSQL) or 8 (SQLite) back off a migrated
/// database, as if it had been made by the release before it.
async fn undo_dedupe_migration(store: &Store) {
    let version = match store.db().backend() {
        Backend::Postgres => 10,
        Backend::Sqlite => 8,
    };
    for statement in [
        "DROP INDEX failure_reports_dedupe_key".to_string(),
        "ALTER TABLE failure_reports DROP COLUMN dedupe_key".to_string(),
        "ALTER TABLE failure_reports DROP COLUMN warnings".to_string(),
        "ALTER TABLE tls_reports DROP COLUMN warnings".to_string(),
        format!("DELETE FROM schema_migrations WHERE version = {version}"),
    ] {
        let db = store.db();
        db.execute(&db.statement(&statement, Vec::new()))
            .await
            .unwrap();
    }
}

/// A failure report row as the release before stored it (no key).
async fn insert_old_failure_row(store: &Store, message_id: i64, domain: &str, original_id: &str) {
    let db = store.db();
    let domains = match db.backend() {
        Backend::Postgres => format!("ARRAY['{domain}']"),
        Backend::Sqlite => format!("'[\"{domain}\"]'"),
    };
    let arrival: chrono::DateTime<chrono::Utc> = "2019-04-30T02:09:00Z".parse().unwrap();
    db.execute(&db.statement(
        &format!(
            "INSERT INTO failure_reports (message_id, format, feedback_type, reported_domain, \
             source_ip, arrival_date, original_message_id) \
             VALUES ($1, 'arf', 'auth-failure', {domains}, '10.10.10.10', $2, $3)"
        ),
        vec![message_id.into(), arrival.into(), original_id.into()],
    ))
    .await
    .unwrap();
    db.execute(&db.statement(
        "UPDATE inbox_messages SET status = 'done' WHERE id = $1",
        vec![message_id.into()],
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn the_dedupe_migration_keeps_the_oldest_copy_and_keys_the_rows_already_stored() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let aggregate = inbox
            .accept(
                &corpus("aggregate/twilight.eml"),
                &Envelope::import("twilight.eml"),
            )
            .await
            .unwrap();
        worker(&store).run_until_idle().await.unwrap();
        undo_dedupe_migration(&store).await;

        // Stored by the previous release: one report twice, another once.
        let original_id = "<01010101010101010101010101010101@ABAB01MS0016.someserver.loc>";
        let mut ids = Vec::new();
        for (relative, domain, original) in [
            (LINKEDIN, "example.com", original_id),
            (LINKEDIN_CRLF, "example.com", original_id),
            (NETEASE, "netease-example.com", "<other@example.net>"),
        ] {
            let accepted = inbox
                .accept(&corpus(relative), &Envelope::import(relative))
                .await
                .unwrap();
            insert_old_failure_row(&store, accepted.id, domain, original).await;
            ids.push(accepted.id);
        }
        let (oldest, copy, other) = (ids[0], ids[1], ids[2]);

        let applied = store.migrate().await.unwrap();
        assert_eq!(applied.len(), 1, "{backend}");
        assert_eq!(
            status(&store, copy).await,
            MessageStatus::Duplicate,
            "{backend}"
        );
        assert_eq!(
            status(&store, oldest).await,
            MessageStatus::Pending,
            "{backend}"
        );
        assert_eq!(
            status(&store, other).await,
            MessageStatus::Pending,
            "{backend}"
        );
        assert_eq!(
            status(&store, aggregate.id).await,
            MessageStatus::Done,
            "{backend}"
        );

        // The workers read them again and store each with its key.
        worker(&store).run_until_idle().await.unwrap();
        assert_eq!(
            status(&store, oldest).await,
            MessageStatus::Done,
            "{backend}"
        );
        assert_eq!(
            status(&store, other).await,
            MessageStatus::Done,
            "{backend}"
        );
        let stored: Vec<(Option<i64>, Option<String>)> = rows(
            &store,
            "SELECT message_id, dedupe_key FROM failure_reports ORDER BY message_id",
        )
        .await;
        assert_eq!(stored.len(), 2, "{backend}: {stored:?}");
        assert_eq!(stored[0].0, Some(oldest), "{backend}");
        assert!(
            stored.iter().all(|row| row.1.is_some()),
            "{backend}: {stored:?}"
        );

        // And a copy arriving after the upgrade is a duplicate.
        let late = inbox
            .accept(&as_received(&corpus(LINKEDIN)), &Envelope::import("late"))
            .await
            .unwrap();
        worker(&store).run_until_idle().await.unwrap();
        assert_eq!(
            status(&store, late.id).await,
            MessageStatus::Duplicate,
            "{backend}"
        );
        assert_eq!(
            store.report_counts().await.unwrap().failure_reports,
            2,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn control_characters_never_reach_the_database_and_the_warning_is_stored() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        let mut report = dmarcd::testing::aggregate_report(2);
        report.metadata.report_id = "nul\0report-id".to_string();
        report.metadata.org_name = "Org\u{1}Name".to_string();
        report.records[0].identifiers.header_from = Some("nul\0-from.example".into());
        let aggregate = inbox
            .accept(report.to_xml().as_bytes(), &Envelope::import("nul.xml"))
            .await
            .unwrap();
        let tls = String::from_utf8(corpus("smtp_tls/rfc8460.json"))
            .unwrap()
            .replace("\"Company-X\"", "\"Company\\u0000-X\"");
        let tls = inbox
            .accept(tls.as_bytes(), &Envelope::import("nul.json"))
            .await
            .unwrap();
        let arf = String::from_utf8(corpus(LINKEDIN)).unwrap().replace(
            "Reported-Domain: example.com",
            "Reported-Domain: exa\0mple.com",
        );
        let failure = inbox
            .accept(arf.as_bytes(), &Envelope::import("nul.eml"))
            .await
            .unwrap();
        worker(&store).run_until_idle().await.unwrap();
        for id in [aggregate.id, tls.id, failure.id] {
            let info = store.message(id).await.unwrap().unwrap();
            assert_eq!(info.status, MessageStatus::Done, "{backend}: {info:?}");
        }

        let stored: Vec<(String, String, String)> = rows(
            &store,
            "SELECT report_id, org_name, CAST(warnings AS TEXT) FROM aggregate_reports",
        )
        .await;
        assert_eq!(stored[0].0, "nulreport-id", "{backend}");
        assert_eq!(stored[0].1, "OrgName", "{backend}");
        let warnings = stored[0].2.clone();
        assert!(
            warnings
                .contains("removed control characters from /feedback/report_metadata/report_id"),
            "{backend}: {warnings}"
        );
        let header_from: Vec<(Option<String>,)> = rows(
            &store,
            "SELECT header_from FROM aggregate_records WHERE header_from LIKE 'nul%'",
        )
        .await;
        assert_eq!(
            header_from,
            vec![(Some("nul-from.example".to_string()),)],
            "{backend}"
        );

        let tls: Vec<(String, String)> = rows(
            &store,
            "SELECT organization_name, CAST(warnings AS TEXT) FROM tls_reports",
        )
        .await;
        assert_eq!(tls[0].0, "Company-X", "{backend}");
        assert!(
            tls[0].1.contains("/organization-name"),
            "{backend}: {tls:?}"
        );

        let failure: Vec<(String,)> =
            rows(&store, "SELECT CAST(warnings AS TEXT) FROM failure_reports").await;
        assert!(
            failure[0].0.contains("reported_domain"),
            "{backend}: {failure:?}"
        );
        let listed = dmarcd::query::failures::failures(
            &store,
            &dmarcd::query::ParsedFilter {
                scope: dmarcd::scope::Scope::All,
                ..Default::default()
            },
            dmarcd::query::Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            listed.0[0].reported_domain.as_deref(),
            Some("example.com"),
            "{backend}"
        );
    }
}
