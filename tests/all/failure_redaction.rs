//! Failure reports redacted on arrival (`retention.redact_failure_reports`,
//! issue 27 item 1), on both backends: the corpus's failure reports are
//! stored with every address's local part replaced and their domains kept,
//! the raw messages (which hold the original mail's headers and body) are
//! gone once processed, and neither the database, the API nor the pages
//! show a local part or a line of the original body. Off (the default),
//! everything is kept as received.

use std::path::Path;

use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::report::failure::redact_addresses;
use dmarcd::store::{Backend, Store};
use dmarcd::web::WebConfig;
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::Limits;

use crate::common;
use crate::common::http::Server;
use crate::dashboard::{sign_in, PASSWORD};

/// Addresses of the people in the corpus's failure reports (senders and
/// recipients of the reported mail), and lines of its bodies.
const PRIVATE: &[&str] = &[
    "recipient@linkedin.com",
    "sender@example.com",
    "peter.pan@domain.de",
    "sharepoint@domain.de",
    "info@cardinal.com",
    "user@example.com",
    "HTML Text",
];

/// Stores every failure report of the corpus (under neutral names: a file
/// name may hold an address) and processes them; their message ids.
async fn store_corpus(store: &Store, redact: bool) -> Vec<i64> {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/parsedmarc/failure");
    let mut paths: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    let inbox = Inbox::new(store.clone());
    let mut ids = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let raw = std::fs::read(path).unwrap();
        let accepted = inbox
            .accept(&raw, &Envelope::import(format!("ruf-{index}.eml")))
            .await
            .unwrap();
        ids.push(accepted.id);
    }
    let config = WorkerConfig {
        redact_failure_reports: redact,
        ..WorkerConfig::default()
    };
    Worker::new(store.clone(), Limits::default(), "w", config)
        .run_until_idle()
        .await
        .unwrap();
    ids
}

/// Every row of `table` as text.
async fn table_text(store: &Store, table: &str) -> String {
    table_text_but(store, table, "").await
}

/// Every row of `table` as text, but for column `except`.
async fn table_text_but(store: &Store, table: &str, except: &str) -> String {
    let db = store.db();
    let select = match store.db().backend() {
        Backend::Postgres => {
            format!("SELECT CAST(to_jsonb(t) - '{except}' AS TEXT) FROM {table} t")
        }
        Backend::Sqlite => {
            let columns: Vec<(String,)> = db
                .fetch_all(
                    &db.statement("SELECT name FROM pragma_table_info($1)", vec![table.into()]),
                )
                .await
                .unwrap();
            let text: Vec<String> = columns
                .iter()
                .filter(|(column,)| column != except)
                .map(|(column,)| {
                    format!(
                        "COALESCE(CASE WHEN typeof(\"{column}\") = 'blob' THEN hex(\"{column}\") \
                         ELSE CAST(\"{column}\" AS TEXT) END, '')"
                    )
                })
                .collect();
            format!("SELECT {} FROM {table}", text.join(" || ' ' || "))
        }
    };
    let rows: Vec<(String,)> = db.fetch_all(&db.statement(&select, vec![])).await.unwrap();
    rows.into_iter()
        .map(|(row,)| row)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every table but the raw bytes (checked apart: compressed, they are
/// not text).
async fn database_text(store: &Store) -> String {
    let db = store.db();
    let list = match store.db().backend() {
        Backend::Postgres => {
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        }
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let tables: Vec<(String,)> = db.fetch_all(&db.statement(list, vec![])).await.unwrap();
    let mut text = String::new();
    for (table,) in tables {
        if table != "inbox_raw" {
            text.push_str(&table_text(store, &table).await);
            text.push('\n');
        }
    }
    text
}

fn assert_private_gone(text: &str, context: &str) {
    for private in PRIVATE {
        assert!(!text.contains(private), "{context}: {private:?} kept");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redacted_failure_reports_keep_no_local_part_and_no_body_anywhere() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let ids = store_corpus(&store, true).await;
        let stored = store.report_counts().await.unwrap().failure_reports;
        // Five files, four reports: the LinkedIn report comes twice (LF
        // and CRLF), the second a duplicate.
        assert_eq!(stored, 4, "{backend}: every report stored");

        // The raw messages are gone, marked as retention marks them.
        for id in &ids {
            assert_eq!(
                store.message_raw(*id).await.unwrap(),
                None,
                "{backend} {id}"
            );
            let message = store.message(*id).await.unwrap().unwrap();
            assert!(message.raw_pruned_at.is_some(), "{backend} {id}");
        }
        let db = store.db();
        let (raw_rows,): (i64,) = db
            .fetch_one(&db.statement("SELECT count(*) FROM inbox_raw", vec![]))
            .await
            .unwrap();
        assert_eq!(raw_rows, 0, "{backend}");

        // The database: no local part, no body; the domains stay. The
        // original's Message-ID is left as it was (it names a message,
        // not a mailbox, and recognises the report sent again).
        let reports = table_text_but(&store, "failure_reports", "original_message_id").await;
        assert!(
            reports.contains("redacted@linkedin.com"),
            "{backend}: {reports}"
        );
        assert!(
            reports.contains("redacted@domain.de"),
            "{backend}: {reports}"
        );
        assert_eq!(
            redact_addresses(&reports),
            reports,
            "{backend}: an address kept its local part"
        );
        assert_private_gone(&database_text(&store).await, &format!("{backend} database"));

        // The API and the pages.
        let server = Server::start(store.clone(), WebConfig::default()).await;
        server
            .state
            .accounts
            .add_user("alice", PASSWORD, "admin")
            .await
            .unwrap();
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let token = server.state.accounts.create_token("t").await.unwrap();
        let list = server
            .get("/api/v1/failure/reports?limit=100", Some(&token))
            .await;
        assert_eq!(list.status, 200, "{backend}");
        let list_text = list.text();
        assert!(list_text.contains("redacted@"), "{backend}: {list_text}");
        assert_eq!(redact_addresses(&list_text), list_text, "{backend}");
        assert_private_gone(&list_text, &format!("{backend} API list"));
        let mut pages = vec![alice.get(&server, "/failures").await.text()];
        for item in list.json()["items"].as_array().unwrap() {
            let id = item["id"].as_i64().unwrap();
            let one = server
                .get(&format!("/api/v1/failure/reports/{id}"), Some(&token))
                .await
                .text();
            assert_eq!(redact_addresses(&one), one, "{backend}");
            pages.push(one);
            pages.push(alice.get(&server, &format!("/failures/{id}")).await.text());
        }
        for page in &pages {
            assert_private_gone(page, &format!("{backend} page"));
        }
        assert!(
            pages
                .iter()
                .any(|page| page.contains("Sender &#60;redacted@example.com&#62;")),
            "{backend}"
        );
        // The raw download says why it is gone.
        let gone = server
            .get(
                &format!("/api/v1/inbox/messages/{}/raw", ids[0]),
                Some(&token),
            )
            .await;
        assert_eq!(gone.status, 410, "{backend}");

        // The same report again is still recognised (its key is computed
        // from the redacted report, the same each time).
        let again =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(
                "tests/fixtures/corpus/parsedmarc/failure/dmarc_ruf_report_linkedin.crlf.eml",
            ))
            .unwrap();
        let mut resent = again.clone();
        resent.extend_from_slice(b"\r\n");
        Inbox::new(store.clone())
            .accept(&resent, &Envelope::import("resent.eml"))
            .await
            .unwrap();
        let config = WorkerConfig {
            redact_failure_reports: true,
            ..WorkerConfig::default()
        };
        Worker::new(store.clone(), Limits::default(), "w", config)
            .run_until_idle()
            .await
            .unwrap();
        assert_eq!(
            store.report_counts().await.unwrap().failure_reports,
            stored,
            "{backend}: a duplicate"
        );
        assert_eq!(table_text(&store, "inbox_raw").await, "", "{backend}");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redaction_failure_reports_are_kept_as_received() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let ids = store_corpus(&store, false).await;
        let reports = table_text(&store, "failure_reports").await;
        assert!(reports.contains("recipient@linkedin.com"), "{backend}");
        assert!(!reports.contains("redacted@linkedin.com"), "{backend}");
        for id in &ids {
            assert!(store.message_raw(*id).await.unwrap().is_some(), "{backend}");
        }
        store.close().await;
    }
}

#[test]
fn the_setting_reaches_every_worker() {
    let config = dmarcd::config::Config::load_with_env(
        None,
        &[(
            "DMARCD_RETENTION_REDACT_FAILURE_REPORTS".to_string(),
            "true".to_string(),
        )],
    )
    .unwrap();
    assert!(config.retention.redact_failure_reports);
    assert!(config.worker.redact_failure_reports);
}
