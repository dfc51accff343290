//! Mailbox pull against a real Dovecot (Debian's dovecot-imapd) started on
//! loopback per test, with TLS from a test CA, Maildirs filled from the
//! corpus, and dmarcd's inbox on a real SQLite file and PostgreSQL.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dmarcd::inbox::{Inbox, MessageStatus};
use dmarcd::mailbox::{AfterPull, MailboxConfig, MailboxErrorKind, PullEvent, Puller};
use dmarcd::store::Store;
use dmarcd::testing::dovecot::{Dovecot, DovecotOptions};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::Limits;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

/// A Dovecot with one user, or None (loudly; an error in CI) when it is
/// not installed.
pub fn dovecot_with(options: DovecotOptions) -> Option<Dovecot> {
    if !Dovecot::installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "dovecot-imapd must be installed in CI (.ci/run installs it)"
        );
        eprintln!("NOTE: /usr/sbin/dovecot is missing: this mailbox test was SKIPPED");
        return None;
    }
    let options = DovecotOptions {
        users: vec![(USER.to_string(), PASSWORD.to_string())],
        ..options
    };
    Some(Dovecot::start(options).expect("dovecot starts"))
}

pub fn dovecot() -> Option<Dovecot> {
    dovecot_with(DovecotOptions::default())
}

/// A mailbox on the test server: implicit TLS trusting the test CA.
pub fn mailbox(server: &Dovecot, name: &str) -> MailboxConfig {
    MailboxConfig {
        port: Some(server.tls_port),
        ca_file: Some(server.ca_file.clone()),
        password: Some(PASSWORD.to_string()),
        ..MailboxConfig::new(name, "localhost", USER)
    }
}

pub fn puller(store: &Store, config: MailboxConfig, owner: &str) -> Puller {
    Puller::new(
        Arc::new(config),
        Inbox::new(store.clone()),
        owner,
        Limits::default(),
    )
}

/// A Microsoft-style report: the XML gzipped and base64 on one line.
fn microsoft_report() -> Vec<u8> {
    let xml =
        common::corpus("aggregate/protection.outlook.com!example.com!1711756800!1711843200.xml");
    common::email_with_attachment(
        "application/gzip",
        "protection.outlook.com!example.com!1711756800!1711843200.xml.gz",
        &common::gzip(&xml, flate2::Compression::default()),
        true,
    )
}

fn letter() -> Vec<u8> {
    b"From: Bob <bob@example.net>\r\nTo: dmarc@example.com\r\nSubject: Lunch?\r\nMessage-ID: <lunch@example.net>\r\n\r\nAre you free on Friday?\r\n".to_vec()
}

/// The corpus mails a report mailbox receives, and one that is no report.
fn corpus_mails() -> Vec<Vec<u8>> {
    vec![
        common::corpus("aggregate/twilight.eml"),
        microsoft_report(),
        common::corpus("smtp_tls/google.com_smtp_tls_report.eml"),
        common::corpus("failure/dmarc_ruf_report_linkedin.eml"),
        letter(),
    ]
}

async fn inbox_total(store: &Store) -> i64 {
    store.status_counts().await.unwrap().values().sum()
}

async fn process(store: &Store) {
    Worker::new(
        store.clone(),
        Limits::default(),
        "test",
        WorkerConfig::default(),
    )
    .run_until_idle()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn move_mode_commits_reports_then_moves_them_and_sorts_out_non_reports() {
    let Some(server) = dovecot() else { return };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        for mail in corpus_mails() {
            server.deliver(USER, "INBOX", &mail).unwrap();
        }
        let name = format!("rua-{backend}");
        let puller = puller(&store, mailbox(&server, &name), "node-a");
        let summary = puller.pull_once().await.unwrap();
        assert_eq!(
            (summary.found, summary.new, summary.not_reports),
            (5, 5, 1),
            "{backend}"
        );
        assert!(
            server.messages(USER, "INBOX").is_empty(),
            "{backend}: INBOX emptied"
        );
        assert_eq!(
            server.messages(USER, "Archive.dmarcd").len(),
            4,
            "{backend}"
        );
        assert_eq!(
            server.messages(USER, "Archive.dmarcd-not-reports").len(),
            1,
            "{backend}"
        );
        assert_eq!(inbox_total(&store).await, 5, "{backend}");
        process(&store).await;
        let counts = store.report_counts().await.unwrap();
        assert_eq!(
            (
                counts.aggregate_reports,
                counts.tls_reports,
                counts.failure_reports
            ),
            (2, 1, 1),
            "{backend}"
        );
        let statuses = store.status_counts().await.unwrap();
        assert_eq!(
            statuses.get(&MessageStatus::Ignored),
            Some(&1),
            "{backend}: the letter"
        );
        let state = store.mailbox_state(&name).await.unwrap().unwrap();
        assert_eq!(state.messages_new, 5, "{backend}");
        assert!(
            state.last_uid >= 5 && state.uidvalidity.is_some(),
            "{backend}"
        );
        assert!(
            state.last_success_at.is_some() && !state.is_failing(),
            "{backend}"
        );
        assert_eq!(
            state.lease_owner, None,
            "{backend}: the lease is given back"
        );
        // Nothing new: a second pass finds nothing.
        let again = puller.pull_once().await.unwrap();
        assert_eq!(again.found, 0, "{backend}");
        // Emptied for the next backend's round.
        server.clear(USER, "Archive.dmarcd").unwrap();
        server.clear(USER, "Archive.dmarcd-not-reports").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seen_mode_marks_messages_and_resumes_after_the_last_uid() {
    let Some(server) = dovecot() else { return };
    let (_dir, store) = common::db::sqlite().await;
    let config = MailboxConfig {
        after: AfterPull::Seen,
        ..mailbox(&server, "seen")
    };
    for index in 0..3 {
        server
            .deliver(USER, "INBOX", &dmarcd::testing::report_email(index, 5))
            .unwrap();
    }
    let puller = puller(&store, config, "node-a");
    let first = puller.pull_once().await.unwrap();
    assert_eq!((first.found, first.new), (3, 3));
    let files = server.messages(USER, "INBOX");
    assert_eq!(files.len(), 3, "left in place");
    assert!(
        files.iter().all(|name| name.ends_with(":2,S")),
        "marked seen: {files:?}"
    );
    server
        .deliver(USER, "INBOX", &dmarcd::testing::report_email(3, 5))
        .unwrap();
    let second = puller.pull_once().await.unwrap();
    assert_eq!(
        (second.found, second.new, second.duplicate),
        (1, 1, 0),
        "only the message past the last UID is fetched"
    );
    assert_eq!(inbox_total(&store).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_mode_expunges_only_after_the_commit() {
    let Some(server) = dovecot() else { return };
    let (_dir, store) = common::db::sqlite().await;
    let config = MailboxConfig {
        after: AfterPull::Delete,
        ..mailbox(&server, "delete")
    };
    for mail in corpus_mails() {
        server.deliver(USER, "INBOX", &mail).unwrap();
    }
    let summary = puller(&store, config, "node-a").pull_once().await.unwrap();
    assert_eq!(summary.new, 5);
    assert!(server.messages(USER, "INBOX").is_empty());
    assert!(
        server.messages(USER, "Archive.dmarcd").is_empty(),
        "nothing archived"
    );
    assert_eq!(inbox_total(&store).await, 5);
}

/// The puller is stopped dead after its first batch is committed and
/// before anything is moved (its progress channel is full, then its task
/// is aborted, connection and all). Its lease runs out; a new process
/// pulls again: every message is there once, and all are moved.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_commit_and_move_loses_nothing_and_stores_nothing_twice() {
    let Some(server) = dovecot() else { return };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let name = format!("crash-{backend}");
        for index in 0..6 {
            server
                .deliver(USER, "INBOX", &dmarcd::testing::report_email(index, 5))
                .unwrap();
        }
        let config = MailboxConfig {
            batch_size: 3,
            lease_seconds: 10,
            ..mailbox(&server, &name)
        };
        let (events, _held) = tokio::sync::mpsc::channel(1);
        events
            .send(PullEvent::Handled {
                last_uid: 0,
                remaining: 0,
            })
            .await
            .unwrap();
        let crashing = puller(&store, config.clone(), "node-crashed").with_events(events);
        let task = tokio::spawn(async move { crashing.pull_once().await });
        let started = Instant::now();
        while inbox_total(&store).await < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{backend}: no commit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let _ = task.await;
        assert_eq!(
            inbox_total(&store).await,
            3,
            "{backend}: the first batch only"
        );
        assert_eq!(
            server.messages(USER, "INBOX").len(),
            6,
            "{backend}: nothing moved"
        );

        let restarted = puller(&store, config, "node-restarted");
        let refused = restarted.pull_once().await.unwrap_err();
        assert_eq!(
            refused.kind,
            MailboxErrorKind::Leased,
            "{backend}: {refused}"
        );
        tokio::time::sleep(Duration::from_secs(11)).await;
        let summary = restarted.pull_once().await.unwrap();
        assert_eq!(
            (summary.found, summary.new, summary.duplicate),
            (6, 3, 3),
            "{backend}: the committed three are recognised"
        );
        assert_eq!(inbox_total(&store).await, 6, "{backend}: stored once each");
        assert!(server.messages(USER, "INBOX").is_empty(), "{backend}");
        server.clear(USER, "Archive.dmarcd").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_a_clear_sign_in_error_on_the_dashboard_state() {
    let Some(server) = dovecot() else { return };
    let (_dir, store) = common::db::sqlite().await;
    let config = MailboxConfig {
        password: Some("wrong".to_string()),
        ..mailbox(&server, "wrong")
    };
    let error = puller(&store, config, "node-a")
        .pull_once()
        .await
        .unwrap_err();
    assert_eq!(error.kind, MailboxErrorKind::Auth, "{error}");
    assert!(
        error.message.contains("refused to sign in \"alice\""),
        "{error}"
    );
    assert!(error.message.contains("AUTHENTICATIONFAILED"), "{error}");
    let state = store.mailbox_state("wrong").await.unwrap().unwrap();
    assert!(state.is_failing());
    assert_eq!(state.last_error_kind.as_deref(), Some("auth"));
    assert_eq!(state.last_error.as_deref(), Some(error.message.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_folder_is_named_and_tls_needs_a_trusted_certificate() {
    let Some(server) = dovecot() else { return };
    let (_dir, store) = common::db::sqlite().await;
    let missing = MailboxConfig {
        folder: "Reports".to_string(),
        ..mailbox(&server, "missing")
    };
    let error = puller(&store, missing, "node-a")
        .pull_once()
        .await
        .unwrap_err();
    assert_eq!(error.kind, MailboxErrorKind::Folder, "{error}");
    assert!(
        error.message.contains("\"Reports\" does not exist"),
        "{error}"
    );

    let untrusted = MailboxConfig {
        ca_file: None,
        ..mailbox(&server, "untrusted")
    };
    let error = puller(&store, untrusted, "node-a")
        .pull_once()
        .await
        .unwrap_err();
    assert_eq!(error.kind, MailboxErrorKind::Tls, "{error}");
    assert!(error.message.contains("ca_file"), "{error}");

    server.deliver(USER, "INBOX", &letter()).unwrap();
    let starttls = MailboxConfig {
        tls: dmarcd::mailbox::TlsMode::Starttls,
        port: Some(server.port),
        ..mailbox(&server, "starttls")
    };
    let summary = puller(&store, starttls, "node-a")
        .pull_once()
        .await
        .unwrap();
    assert_eq!(summary.new, 1, "STARTTLS on the plain port works");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_uidvalidity_rescans_without_storing_twice() {
    let Some(server) = dovecot() else { return };
    let (_dir, store) = common::db::sqlite().await;
    let config = MailboxConfig {
        after: AfterPull::Seen,
        ..mailbox(&server, "validity")
    };
    for index in 0..2 {
        server
            .deliver(USER, "INBOX", &dmarcd::testing::report_email(index, 5))
            .unwrap();
    }
    let puller = puller(&store, config, "node-a");
    assert_eq!(puller.pull_once().await.unwrap().new, 2);
    let before = store.mailbox_state("validity").await.unwrap().unwrap();
    server
        .deliver(USER, "INBOX", &dmarcd::testing::report_email(2, 5))
        .unwrap();
    server.reset_uids(USER, "INBOX").unwrap();
    let summary = puller.pull_once().await.unwrap();
    assert_eq!(
        (summary.found, summary.new, summary.duplicate),
        (3, 1, 2),
        "every message looked at again, the two stored before recognised"
    );
    let after = store.mailbox_state("validity").await.unwrap().unwrap();
    assert_ne!(after.uidvalidity, before.uidvalidity);
    assert_eq!(inbox_total(&store).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_20_mb_single_line_message_is_pulled_whole_and_an_oversized_one_is_left_alone() {
    let Some(server) = dovecot() else { return };
    let (_dir, store) = common::db::sqlite().await;
    // About 15 MB of report XML, base64 on one line: a 20 MB message.
    let xml = dmarcd::testing::aggregate_report(25_000).to_xml();
    let large = common::email_with_attachment("text/xml", "large.xml", xml.as_bytes(), true);
    assert!(large.len() > 20_000_000, "{} bytes", large.len());
    server.deliver(USER, "INBOX", &large).unwrap();
    server.deliver(USER, "INBOX", &letter()).unwrap();
    let summary = puller(&store, mailbox(&server, "large"), "node-a")
        .pull_once()
        .await
        .unwrap();
    assert_eq!(summary.new, 2);
    let stored = store.message_raw(1).await.unwrap().unwrap();
    assert!(stored == large, "the stored bytes are the message's");
    process(&store).await;
    assert_eq!(
        store.report_counts().await.unwrap().aggregate_records,
        25_000
    );

    for index in 0..3 {
        server
            .deliver(USER, "INBOX", &dmarcd::testing::report_email(index, 5))
            .unwrap();
    }
    server.deliver(USER, "INBOX", &large).unwrap();
    let limited = MailboxConfig {
        max_message_bytes: 1_000_000,
        ..mailbox(&server, "limited")
    };
    let summary = puller(&store, limited, "node-a").pull_once().await.unwrap();
    assert_eq!(
        (summary.new, summary.skipped),
        (3, 1),
        "one message never stops the mailbox"
    );
    assert_eq!(
        server.messages(USER, "INBOX").len(),
        1,
        "the large one stays, untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_thousand_messages_are_drained_in_batches() {
    let Some(server) = dovecot() else { return };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        for index in 0..5_000 {
            server
                .deliver(USER, "INBOX", &dmarcd::testing::report_email(index, 3))
                .unwrap();
        }
        let name = format!("large-{backend}");
        let started = Instant::now();
        let summary = puller(&store, mailbox(&server, &name), "node-a")
            .pull_once()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!((summary.found, summary.new), (5_000, 5_000), "{backend}");
        assert_eq!(inbox_total(&store).await, 5_000, "{backend}");
        assert!(server.messages(USER, "INBOX").is_empty(), "{backend}");
        let state = store.mailbox_state(&name).await.unwrap().unwrap();
        assert_eq!((state.messages_new, state.backlog), (5_000, 0), "{backend}");
        eprintln!("{backend}: 5,000 messages pulled in {elapsed:.1?}");
        server.clear(USER, "Archive.dmarcd").unwrap();
    }
}

/// The watcher `dmarcd serve` runs: it idles on the folder, so a report
/// delivered later is in the inbox (and, once the worker ran, on the
/// dashboard) within seconds; the Mailboxes page and /metrics say how the
/// pull stands, and a wrong password shows there in plain words.
#[tokio::test(flavor = "multi_thread")]
async fn idle_brings_a_new_report_in_within_seconds_and_the_dashboard_shows_the_pull() {
    let Some(server) = dovecot() else { return };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let config = mailbox(&server, "rua");
        let watcher = puller(&store, config.clone(), "node-a");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move { watcher.run(stopped).await });
        let started = Instant::now();
        loop {
            let state = store.mailbox_state("rua").await.unwrap();
            if state.is_some_and(|s| s.waiting.as_deref() == Some("idle")) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{backend}: never idled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.deliver(USER, "INBOX", &microsoft_report()).unwrap();
        let delivered = Instant::now();
        while inbox_total(&store).await < 1 {
            assert!(
                delivered.elapsed() < Duration::from_secs(5),
                "{backend}: IDLE did not bring the message in"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "{backend}: in the inbox {:?} after delivery",
            delivered.elapsed()
        );
        process(&store).await;
        assert_eq!(
            store.report_counts().await.unwrap().aggregate_reports,
            1,
            "{backend}"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
        let state = store.mailbox_state("rua").await.unwrap().unwrap();
        assert_eq!(
            state.lease_owner, None,
            "{backend}: stopping gives the lease back"
        );

        let failing = MailboxConfig {
            password: Some("wrong".to_string()),
            ..mailbox(&server, "broken")
        };
        puller(&store, failing.clone(), "node-a")
            .pull_once()
            .await
            .unwrap_err();
        let files = tempfile::tempdir().unwrap();
        let web = common::http::Server::start_with_state(
            dmarcd::web::AppState::new(store.clone(), Default::default(), Limits::default())
                .with_mailboxes(vec![config.clone(), failing]),
        )
        .await;
        web.state
            .accounts
            .add_user("admin", "a long password 1", "admin")
            .await
            .unwrap();
        let browser = crate::dashboard::sign_in(&web, "admin", "a long password 1")
            .await
            .unwrap_or_else(|reply| panic!("{backend}: sign-in failed: {}", reply.text()));
        let page = browser.get(&web, "/mailboxes").await;
        assert_eq!(page.status, 200, "{backend}");
        let html = page.text();
        for needle in [
            "rua",
            "alice@localhost",
            "broken",
            "failing",
            "refused to sign in",
            "AUTHENTICATIONFAILED",
        ] {
            assert!(
                html.contains(needle),
                "{backend}: {needle} missing from\n{html}"
            );
        }
        let metrics = web.get("/metrics", None).await.text();
        for needle in [
            "dmarcd_mailbox_failing{mailbox=\"broken\"} 1",
            "dmarcd_mailbox_failing{mailbox=\"rua\"} 0",
            "dmarcd_mailbox_messages{mailbox=\"rua\",outcome=\"new\"} 1",
            "dmarcd_mailbox_errors_total{mailbox=\"broken\",kind=\"auth\"}",
            "dmarcd_messages_received_total{intake=\"imap\",outcome=\"new\"}",
        ] {
            assert!(metrics.contains(needle), "{backend}: {needle} missing");
        }
        drop(files);
        server.clear(USER, "Archive.dmarcd").unwrap();
    }
}

/// Of several nodes sharing the database, one holds a mailbox at a time;
/// the lease passes on when its holder gives it back or stops renewing.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_never_hold_one_mailbox_at_once() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let lease = Duration::from_secs(60);
        let attempts: Vec<_> = (0..8)
            .map(|node| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .take_mailbox_lease("rua", &format!("node-{node}"), lease)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut holders = 0;
        for attempt in attempts {
            holders += usize::from(attempt.await.unwrap());
        }
        assert_eq!(holders, 1, "{backend}: one of eight nodes asking at once");
        let holder = store
            .mailbox_state("rua")
            .await
            .unwrap()
            .unwrap()
            .lease_owner
            .unwrap();
        assert!(
            store
                .take_mailbox_lease("rua", &holder, lease)
                .await
                .unwrap(),
            "{backend}: renewed"
        );
        store.release_mailbox_lease("rua", &holder).await.unwrap();
        assert!(store
            .take_mailbox_lease("rua", "node-late", Duration::from_secs(1))
            .await
            .unwrap());
        assert!(
            !store
                .take_mailbox_lease("rua", &holder, lease)
                .await
                .unwrap(),
            "{backend}"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(
            store
                .take_mailbox_lease("rua", &holder, lease)
                .await
                .unwrap(),
            "{backend}: a lease not renewed runs out"
        );
    }
}

/// Runs the dmarcd binary with a config file; (success, stdout + stderr).
fn dmarcd_cli(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dmarcd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "warn")
        .env("TEST_IMAP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_tests_a_mailbox_without_changing_it_then_pulls_it_once() {
    let Some(server) = dovecot() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmarcd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n\n[[mailbox]]\nname = \"rua\"\nhost = \"localhost\"\nport = {}\n\
             ca_file = {:?}\nuser = \"{USER}\"\npassword_env = \"TEST_IMAP_PASSWORD\"\n",
            dir.path().join("data"),
            server.tls_port,
            server.ca_file
        ),
    )
    .unwrap();
    server.deliver(USER, "INBOX", &microsoft_report()).unwrap();
    server.deliver(USER, "INBOX", &letter()).unwrap();

    let (ok, text) = dmarcd_cli(&config, &["mailbox", "test", "rua"]);
    assert!(ok, "{text}");
    for needle in [
        "signed in as alice",
        "IDLE yes",
        "MOVE yes",
        "\"INBOX\": 2 messages, 2 to pull",
        "would move reports to \"Archive.dmarcd\" (would be created)",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert_eq!(
        server.messages(USER, "INBOX").len(),
        2,
        "the test changes nothing"
    );

    let (ok, text) = dmarcd_cli(&config, &["mailbox", "pull", "rua", "--once"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("rua: 2 messages found, 2 stored, 0 already stored, 0 left on the server (1 not reports)"),
        "{text}"
    );
    assert!(text.contains("processed 2 messages"), "{text}");
    assert!(server.messages(USER, "INBOX").is_empty());

    let (ok, text) = dmarcd_cli(&config, &["mailbox", "test", "rua"]);
    assert!(ok && text.contains("0 messages, 0 to pull"), "{text}");
    assert!(text.contains("(exists)"), "{text}");

    let (ok, text) = dmarcd_cli(&config, &["mailbox", "pull", "nope", "--once"]);
    assert!(
        !ok && text.contains("no [[mailbox]] named \"nope\" in the config (configured: rua)"),
        "{text}"
    );
}

/// A local OAuth2 server: the client-credentials grant at /token (client
/// `dmarcd`, secret `s3cret`), and RFC 7662 introspection at /introspect,
/// which Dovecot's oauth2 passdb asks whether a token is valid and whose.
async fn oauth_server() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::post;
    use axum::{Form, Json};
    let issued: Arc<std::sync::Mutex<Vec<String>>> =
        Arc::new(std::sync::Mutex::new(vec!["command-token".to_string()]));
    let tokens = issued.clone();
    let introspected = issued.clone();
    let app = axum::Router::new()
        .route(
            "/token",
            post(move |Form(form): Form<std::collections::HashMap<String, String>>| {
                let tokens = tokens.clone();
                async move {
                    let granted = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                        && form.get("client_id").map(String::as_str) == Some("dmarcd")
                        && form.get("client_secret").map(String::as_str) == Some("s3cret");
                    if !granted {
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            Json(serde_json::json!({"error": "invalid_client", "error_description": "bad secret"})),
                        );
                    }
                    let mut tokens = tokens.lock().unwrap();
                    let token = format!("token-{}", tokens.len());
                    tokens.push(token.clone());
                    (
                        axum::http::StatusCode::OK,
                        Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})),
                    )
                }
            }),
        )
        .route(
            "/introspect",
            post(move |Form(form): Form<std::collections::HashMap<String, String>>| {
                let issued = introspected.clone();
                async move {
                    let token = form.get("token").cloned().unwrap_or_default();
                    let active = issued.lock().unwrap().contains(&token);
                    Json(if active {
                        serde_json::json!({"active": true, "username": USER})
                    } else {
                        serde_json::json!({"active": false})
                    })
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, issued)
}

/// XOAUTH2 and OAUTHBEARER against Dovecot's own oauth2 passdb (no fake
/// IMAP server): tokens from the client-credentials grant and from a
/// token command are checked by Dovecot at the test's introspection URL.
#[tokio::test(flavor = "multi_thread")]
async fn xoauth2_and_oauthbearer_sign_in_with_tokens_dovecot_checks() {
    let (oauth, issued) = oauth_server().await;
    let Some(server) = dovecot_with(DovecotOptions {
        oauth_introspection_url: Some(format!("http://{oauth}/introspect")),
        ..DovecotOptions::default()
    }) else {
        return;
    };
    let (_dir, store) = common::db::sqlite().await;
    server.deliver(USER, "INBOX", &microsoft_report()).unwrap();
    let granted = MailboxConfig {
        auth: dmarcd::mailbox::AuthMethod::Xoauth2,
        password: Some("s3cret".to_string()),
        token_url: Some(format!("http://{oauth}/token")),
        client_id: Some("dmarcd".to_string()),
        scope: Some("https://outlook.office365.com/.default".to_string()),
        ..mailbox(&server, "xoauth2")
    };
    let summary = puller(&store, granted.clone(), "node-a")
        .pull_once()
        .await
        .unwrap();
    assert_eq!(summary.new, 1, "{}", server.log());
    assert!(issued.lock().unwrap().contains(&"token-1".to_string()));

    server.deliver(USER, "INBOX", &letter()).unwrap();
    let command = MailboxConfig {
        auth: dmarcd::mailbox::AuthMethod::Oauthbearer,
        token_command: Some("printf command-token".to_string()),
        ..mailbox(&server, "oauthbearer")
    };
    let summary = puller(&store, command.clone(), "node-a")
        .pull_once()
        .await
        .unwrap();
    assert_eq!(summary.new, 1, "{}", server.log());

    let revoked = MailboxConfig {
        token_command: Some("echo revoked-token".to_string()),
        ..command
    };
    let error = puller(&store, revoked, "node-a")
        .pull_once()
        .await
        .unwrap_err();
    assert_eq!(error.kind, MailboxErrorKind::Auth, "{error}");
    assert!(
        error.message.contains("OAUTHBEARER") && error.message.contains("token"),
        "{error}"
    );

    let bad_secret = MailboxConfig {
        password: Some("wrong".to_string()),
        ..granted
    };
    let error = puller(&store, bad_secret, "node-a")
        .pull_once()
        .await
        .unwrap_err();
    assert_eq!(error.kind, MailboxErrorKind::Token, "{error}");
    assert!(
        error.message.contains("invalid_client: bad secret"),
        "{error}"
    );
}
