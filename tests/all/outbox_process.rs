//! The outbox in a real `dmarcd serve` process.
//!
//! Crash safety: the process is
//! killed (SIGKILL) while a committed message is on the wire, stuck at the
//! relay's final dot. After a restart the message is sent again once the
//! dead node's claim has run out, with the same Message-ID (the dedup id a
//! receiver drops a repeat by), and accepted exactly once; nothing more
//! is sent. Both backends.
//!
//! Shutdown: SIGTERM while a relay hangs on a batch of messages stops the
//! process within seconds (it waited for every send of the batch to time
//! out, minutes); the messages are pending again at once and the next
//! node delivers each once. Both backends.
//!
//! A sendmail binary instead of a relay: Debian's msmtp (a sendmail
//! replacement) hands the message to the SMTP sink.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use dmarcd::outbox::{Notification, OutboxItem};
use dmarcd::store::Store;

use crate::common;
use crate::common::smtp_sink::SmtpSink;

/// A `dmarcd serve` whose outbox sends to the sink: quick passes and
/// short timeouts, so that a dead node's claim runs out within seconds
/// (6 × the 3 s mail timeout: 18 s).
fn serve(database_url: Option<&str>, data: &Path, sink_port: u16) -> Child {
    serve_with(
        database_url,
        data,
        &[
            ("DMARCD_MAIL_OUT_RELAY", "127.0.0.1".to_string()),
            ("DMARCD_MAIL_OUT_PORT", sink_port.to_string()),
            ("DMARCD_MAIL_OUT_TLS", "none".to_string()),
            ("DMARCD_MAIL_OUT_TIMEOUT_SECONDS", "3".to_string()),
        ],
    )
}

/// `dmarcd serve` with quick outbox passes and `mail` settings.
fn serve_with(database_url: Option<&str>, data: &Path, mail: &[(&str, String)]) -> Child {
    let free = || -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let web = free();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("DMARCD_DATA_DIR", data)
        .env("DMARCD_LOG", "warn")
        .env("DMARCD_SMTP_LISTEN", free().to_string())
        .env("DMARCD_WEB_LISTEN", web.to_string())
        .env("DMARCD_ENRICH_REVERSE_DNS", "false")
        .env("DMARCD_MAIL_OUT_FROM", "dmarcd@dmarc.example.com")
        .envs(mail.iter().map(|(key, value)| (*key, value.as_str())))
        .env("DMARCD_OUTBOX_INTERVAL_SECONDS", "1")
        .env("DMARCD_OUTBOX_WEBHOOK_TIMEOUT_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join(format!("stderr-{}.log", web.port()))).unwrap());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(web).is_err() {
        assert!(Instant::now() < deadline, "dmarcd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn message_id(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(raw)
        .unwrap()
        .message_id()
        .unwrap()
        .to_string()
}

async fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "waited {seconds} s for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(store: &Store, id: i64) -> String {
    store
        .outbox_entries(100)
        .await
        .unwrap()
        .into_iter()
        .find(|entry| entry.id == id)
        .unwrap()
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_while_sending_sends_again_after_restart_with_the_same_id() {
    let postgres = common::db::postgres_named().await;
    let sqlite = common::db::sqlite().await;
    let mut cases: Vec<(Option<String>, &Path, Store)> =
        vec![(None, sqlite.0.path(), sqlite.1.clone())];
    if let Some((dir, store, name)) = &postgres {
        let url = common::db::with_database(&std::env::var("DATABASE_URL").unwrap(), name);
        cases.push((Some(url), dir.path(), store.clone()));
    }
    for (round, (url, data, store)) in cases.into_iter().enumerate() {
        let backend = store.backend();
        let Some(sink) = SmtpSink::start_hanging(1).await else {
            return;
        };
        let notification = Notification {
            event: "test".to_string(),
            title: format!("Crash test {round}"),
            text: "Sent once, whatever happens to the sender.".to_string(),
            link: None,
            details: serde_json::json!({}),
        };
        let item = OutboxItem::Mail(notification.mail(vec!["ops@example.com".to_string()], None))
            .queued(Some(format!("crash-test-{round}")));
        let id = store.enqueue_outbox(&[item], Utc::now()).await.unwrap()[0];

        let mut first = serve(url.as_deref(), data, sink.port);
        // The relay has the whole message and will never answer: kill
        // the node now, between sending and recording it.
        wait_until("the relay to take the message", 20, || {
            !sink.hung().is_empty()
        })
        .await;
        first.kill().unwrap();
        first.wait().unwrap();
        assert_eq!(status(&store, id).await, "sending", "{backend}: claimed");
        assert!(sink.messages().is_empty(), "{backend}: nothing accepted");

        let mut second = serve(url.as_deref(), data, sink.port);
        // Sent again once the dead node's claim has run out (18 s).
        let mut sent = String::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        while sent != "sent" {
            assert!(Instant::now() < deadline, "{backend}: not sent again");
            tokio::time::sleep(Duration::from_millis(200)).await;
            sent = status(&store, id).await;
        }
        let accepted = sink.wait_for(1).await;
        assert_eq!(accepted.len(), 1, "{backend}");
        let repeat = &accepted[0].1;
        let hung = &sink.hung()[0];
        assert_eq!(
            message_id(repeat),
            message_id(hung),
            "{backend}: a repeat carries the same Message-ID"
        );
        assert_eq!(
            message_id(repeat),
            format!("dmarcd.outbox.{id}@dmarc.example.com")
        );

        // Nothing more goes out.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sink.messages().len(), 1, "{backend}: sent once");
        second.kill().unwrap();
        second.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_serve_within_seconds_while_a_relay_hangs_and_nothing_is_lost() {
    const QUEUED: usize = 30;
    let postgres = common::db::postgres_named().await;
    let sqlite = common::db::sqlite().await;
    let mut cases: Vec<(Option<String>, &Path, Store)> =
        vec![(None, sqlite.0.path(), sqlite.1.clone())];
    if let Some((dir, store, name)) = &postgres {
        let url = common::db::with_database(&std::env::var("DATABASE_URL").unwrap(), name);
        cases.push((Some(url), dir.path(), store.clone()));
    }
    for (round, (url, data, store)) in cases.into_iter().enumerate() {
        let backend = store.backend();
        // Takes every message in and never answers its final dot.
        let Some(hanging) = SmtpSink::start_hanging(1000).await else {
            return;
        };
        let items: Vec<_> = (0..QUEUED)
            .map(|index| {
                let notification = Notification {
                    event: "test".to_string(),
                    title: format!("Shutdown test {round}.{index}"),
                    text: "Sent once, after the restart.".to_string(),
                    link: None,
                    details: serde_json::json!({}),
                };
                OutboxItem::Mail(notification.mail(vec!["ops@example.com".to_string()], None))
                    .queued(None)
            })
            .collect();
        store.enqueue_outbox(&items, Utc::now()).await.unwrap();

        // A minute-long mail timeout: waiting out the batch would take it.
        let mut node = serve_with(
            url.as_deref(),
            data,
            &[
                ("DMARCD_MAIL_OUT_RELAY", "127.0.0.1".to_string()),
                ("DMARCD_MAIL_OUT_PORT", hanging.port.to_string()),
                ("DMARCD_MAIL_OUT_TLS", "none".to_string()),
                ("DMARCD_MAIL_OUT_TIMEOUT_SECONDS", "60".to_string()),
            ],
        );
        wait_until("the relay to hang on messages", 20, || {
            !hanging.hung().is_empty()
        })
        .await;
        let asked = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &node.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let exited = loop {
            if let Some(status) = node.try_wait().unwrap() {
                break status;
            }
            if asked.elapsed() > Duration::from_secs(20) {
                node.kill().unwrap();
                node.wait().unwrap();
                panic!("{backend}: dmarcd serve was still running 20 s after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let took = asked.elapsed();
        assert!(exited.success(), "{backend}: {exited:?}");
        assert!(
            took < Duration::from_secs(6),
            "{backend}: stopped {took:?} after SIGTERM"
        );

        // Nothing was sent, nothing is left claimed: every message is
        // pending again, its cut-off attempt not counted.
        let entries = store.outbox_entries(100).await.unwrap();
        assert_eq!(entries.len(), QUEUED, "{backend}");
        for entry in &entries {
            assert_eq!(entry.status, "pending", "{backend}: {entry:?}");
            assert_eq!(entry.attempts, 0, "{backend}: {entry:?}");
        }

        // The next node delivers each once, without waiting for a lease.
        let Some(sink) = SmtpSink::start(0).await else {
            return;
        };
        let mut next = serve(url.as_deref(), data, sink.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let entries = store.outbox_entries(100).await.unwrap();
            if entries.iter().all(|entry| entry.status == "sent") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{backend}: not all sent: {entries:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        next.kill().unwrap();
        next.wait().unwrap();
        let delivered = sink.messages();
        let mut ids: Vec<String> = delivered.iter().map(|(_, raw)| message_id(raw)).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(delivered.len(), QUEUED, "{backend}: each sent once");
        assert_eq!(ids.len(), QUEUED, "{backend}");
    }
}

const MSMTP: &str = "/usr/bin/msmtp";

#[tokio::test(flavor = "multi_thread")]
async fn mail_goes_out_through_a_sendmail_binary() {
    if !Path::new(MSMTP).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "msmtp must be installed in CI (.ci/run installs it)"
        );
        eprintln!("NOTE: msmtp is missing: the sendmail test was SKIPPED");
        return;
    }
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let (data, store) = common::db::sqlite().await;
    // msmtp reads its relay from $HOME/.msmtprc (private to its owner).
    let home = tempfile::tempdir().unwrap();
    let rc = home.path().join(".msmtprc");
    std::fs::write(
        &rc,
        format!(
            "defaults\nauth off\ntls off\nlogfile {}\naccount default\nhost 127.0.0.1\nport {}\n",
            home.path().join("msmtp.log").display(),
            sink.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let notification = Notification {
        event: "test".to_string(),
        title: "Through sendmail".to_string(),
        text: "Handed to a local sendmail binary.".to_string(),
        link: None,
        details: serde_json::json!({}),
    };
    let item =
        OutboxItem::Mail(notification.mail(vec!["ops@example.com".to_string()], None)).queued(None);
    let id = store.enqueue_outbox(&[item], Utc::now()).await.unwrap()[0];
    let mut node = serve_with(
        None,
        data.path(),
        &[
            ("DMARCD_MAIL_OUT_SENDMAIL", MSMTP.to_string()),
            ("HOME", home.path().display().to_string()),
        ],
    );
    let delivered = sink.wait_for(1).await;
    // Recorded as sent once msmtp has exited.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&store, id).await != "sent" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.kill().unwrap();
    node.wait().unwrap();
    assert_eq!(
        delivered.len(),
        1,
        "msmtp log: {:?}",
        std::fs::read_to_string(home.path().join("msmtp.log"))
    );
    let (envelope, raw) = &delivered[0];
    assert_eq!(envelope["from"], "dmarcd@dmarc.example.com");
    assert_eq!(envelope["to"], serde_json::json!(["ops@example.com"]));
    let parsed = mail_parser::MessageParser::default().parse(raw).unwrap();
    assert_eq!(parsed.subject(), Some("Through sendmail"));
    assert_eq!(
        parsed.message_id().unwrap(),
        format!("dmarcd.outbox.{id}@dmarc.example.com")
    );
    assert_eq!(status(&store, id).await, "sent");
}
