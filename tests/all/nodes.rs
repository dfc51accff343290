//! Several nodes on one PostgreSQL (issue 27 item 5): two `dmarcd serve`
//! processes, each with its own SMTP listener (two MX records of equal
//! priority), receive report mail at once; one is killed (SIGKILL) while
//! its workers hold a claimed batch. A sender whose message was not
//! acknowledged sends it again to the other node, as an MTA retries the
//! other MX. Afterwards every message is stored once, the surviving node
//! has finished the dead node's batch after its lease, and the dashboard
//! API answers the same totals from either node.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmarcd::store::Store;
use dmarcd::web::{AppState, WebConfig};
use dmarcd::Limits;
use lettre::address::Envelope;
use lettre::{SmtpTransport, Transport};

use crate::common;

const MESSAGES: usize = 60;
const RECORDS: usize = 1000;

/// `dmarcd serve`, killed when dropped.
struct Node {
    child: Child,
    smtp: SocketAddr,
    web: SocketAddr,
}

impl Node {
    fn start(url: &str, data: &std::path::Path) -> Node {
        let smtp = free_port();
        let web = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_dmarcd"))
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("DMARCD_DATA_DIR", data)
            .env("DMARCD_LOG", "warn")
            .env("DMARCD_SMTP_LISTEN", smtp.to_string())
            .env("DMARCD_SMTP_RECIPIENTS", "dmarc@example.com")
            .env("DMARCD_WEB_LISTEN", web.to_string())
            .env("DMARCD_ENRICH_REVERSE_DNS", "false")
            // A dead node's claims go back to the queue after this long.
            .env("DMARCD_WORKER_LEASE_SECONDS", "10")
            .env("DMARCD_WORKER_BATCH_SIZE", "4")
            .env("DMARCD_WORKER_POLL_INTERVAL_MS", "100")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        for address in [smtp, web] {
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(address).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "node did not listen on {address}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Node { child, smtp, web }
    }

    /// The pid, as the node's worker names carry it (`host:pid:index`).
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let text = ureq::get(&format!("http://{}{path}", self.web))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn send(node: SocketAddr, raw: &[u8]) -> bool {
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(node.port())
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let envelope = Envelope::new(
        Some("noreply-dmarc-support@google.com".parse().unwrap()),
        vec!["dmarc@example.com".parse().unwrap()],
    )
    .unwrap();
    transport.send_raw(&envelope, raw).is_ok()
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    let db = store.db();
    let (value,): (i64,) = db.fetch_one(&db.statement(sql, Vec::new())).await.unwrap();
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_the_work_and_a_killed_one_loses_nothing() {
    let Some((_dir, store, name)) = common::db::postgres_named().await else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the two-node test"
        );
        eprintln!("NOTE: DATABASE_URL is unset: two-node test SKIPPED");
        return;
    };
    let url = common::db::with_database(&std::env::var("DATABASE_URL").unwrap(), &name);
    let token = AppState::new(store.clone(), WebConfig::default(), Limits::default())
        .accounts
        .create_token("nodes")
        .await
        .unwrap();
    let data_a = tempfile::tempdir().unwrap();
    let data_b = tempfile::tempdir().unwrap();
    let mut node_a = Node::start(&url, data_a.path());
    let node_b = Node::start(&url, data_b.path());
    let (smtp_a, smtp_b) = (node_a.smtp, node_b.smtp);

    // Half the mail to each node, from two senders at once; what node A
    // does not acknowledge is retried at node B afterwards.
    let messages: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..MESSAGES)
            .map(|i| dmarcd::testing::report_email(i, RECORDS))
            .collect(),
    );
    let unacknowledged = Arc::new(Mutex::new(Vec::new()));
    let acknowledged_by_a = Arc::new(Mutex::new(0usize));
    let sender_a = {
        let (messages, unacknowledged, acknowledged) = (
            Arc::clone(&messages),
            Arc::clone(&unacknowledged),
            Arc::clone(&acknowledged_by_a),
        );
        std::thread::spawn(move || {
            for index in (0..MESSAGES).step_by(2) {
                if send(smtp_a, &messages[index]) {
                    *acknowledged.lock().unwrap() += 1;
                } else {
                    unacknowledged.lock().unwrap().push(index);
                }
            }
        })
    };
    let sender_b = {
        let (messages, unacknowledged) = (Arc::clone(&messages), Arc::clone(&unacknowledged));
        std::thread::spawn(move || {
            for index in (1..MESSAGES).step_by(2) {
                if !send(smtp_b, &messages[index]) {
                    unacknowledged.lock().unwrap().push(index);
                }
            }
        })
    };

    // Kill node A while its workers hold a claimed batch.
    let claimed_by_a = format!(
        "SELECT count(*) FROM inbox_messages WHERE status = 'processing' AND claimed_by LIKE '%:{}:%'",
        node_a.pid()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if *acknowledged_by_a.lock().unwrap() >= 4 && scalar(&store, &claimed_by_a).await > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node A was never seen holding a claimed batch"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node_a.kill();
    let held_when_killed = scalar(&store, &claimed_by_a).await;
    assert!(held_when_killed > 0);
    sender_a.join().unwrap();
    sender_b.join().unwrap();
    let retried: Vec<usize> = unacknowledged.lock().unwrap().clone();
    for index in &retried {
        assert!(
            send(smtp_b, &messages[*index]),
            "node B refused message {index}"
        );
    }

    // Node B finishes everything, node A's claimed batch included, once
    // the lease runs out; the rollups catch up.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let open = scalar(
            &store,
            "SELECT count(*) FROM inbox_messages WHERE status IN ('pending', 'processing')",
        )
        .await;
        let waiting = scalar(&store, "SELECT count(*) FROM rollup_pending").await;
        if open == 0 && waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} messages and {waiting} reports still waiting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each report once and each record once, nothing failed. A message
    // node A committed but died before acknowledging was sent again to
    // node B: both copies are kept (each node stamps its own trace
    // header, so the bytes differ), and the second is a duplicate report.
    let stored = scalar(&store, "SELECT count(*) FROM inbox_messages").await;
    let again = stored - MESSAGES as i64;
    assert!(
        (0..=retried.len() as i64).contains(&again),
        "{stored} messages stored for {MESSAGES} sent, {} resent",
        retried.len()
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT count(*) FROM inbox_messages WHERE status = 'done'"
        )
        .await,
        MESSAGES as i64
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT count(*) FROM inbox_messages WHERE status = 'duplicate'"
        )
        .await,
        again
    );
    assert_eq!(
        scalar(&store, "SELECT count(*) FROM aggregate_reports").await,
        MESSAGES as i64
    );
    assert_eq!(
        scalar(&store, "SELECT count(*) FROM aggregate_records").await,
        (MESSAGES * RECORDS) as i64
    );
    let messages_in_records =
        scalar(&store, "SELECT dmarcd_sum(count) FROM aggregate_records").await;

    // Either node (A restarted) answers the same totals, equal to the records.
    let node_a = Node::start(&url, data_a.path());
    let summary = "/api/v1/aggregate/summary?group_by=domain";
    let from_a = node_a.get_json(summary, &token);
    let from_b = node_b.get_json(summary, &token);
    assert_eq!(from_a, from_b);
    let counted: i64 = from_b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["messages"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, messages_in_records, "{from_b}");
    eprintln!(
        "two nodes: node A killed holding {held_when_killed} claimed messages; {} resent to node B, {again} of them stored twice as messages",
        retried.len()
    );
}
