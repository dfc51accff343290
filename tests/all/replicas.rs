//! Read replicas (issue 27 item 4) against a real streaming standby: the
//! test makes a PostgreSQL primary of its own (initdb, on a free loopback
//! port) and a standby of it with `pg_basebackup -R`, as an operator
//! would. A cluster of its own, not a base backup of the shared one: that
//! holds every other test's databases (and a benchmark's 10M records).
//!
//! What it proves: dashboard/API reads go to the standby while it keeps
//! up (a report the paused standby has not replayed stays invisible for
//! as long as the standby is within its bound); once the standby trails
//! by more than `max_lag`, reads go to the primary; when it catches up,
//! back to it; a standby that is down leaves reads on the primary.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::store::{ReplicaSettings, Store};
use dmarcd::web::WebConfig;
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::Limits;
use sqlx::Connection;

use crate::common::http::Server;

/// The newest installed PostgreSQL server's programs (Debian's layout).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_basebackup").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn tool(name: &str) -> PathBuf {
    bin_dir().expect("PostgreSQL server programs").join(name)
}

/// A PostgreSQL server the test owns, stopped when dropped.
struct Cluster {
    data: PathBuf,
    port: u16,
}

impl Cluster {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(data: PathBuf, port: u16) -> Cluster {
        let log = data.with_extension("log");
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            data.parent().unwrap().display()
        );
        as_postgres(
            Command::new(tool("pg_ctl"))
                .args(["-D"])
                .arg(&data)
                .args(["-l"])
                .arg(&log)
                .args(["-o", &options, "-w", "start"]),
        );
        Cluster { data, port }
    }

    fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(tool("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a PostgreSQL tool as the postgres user (the server refuses root).
fn as_postgres(command: &mut Command) {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&program)
        .args(&args)
        .output()
        .expect("runuser");
    assert!(
        output.status.success(),
        "{program:?} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A primary and its streaming standby, in `dir`.
fn primary_and_standby(dir: &Path) -> (Cluster, Cluster) {
    let primary_data = dir.join("primary");
    as_postgres(
        Command::new(tool("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&primary_data),
    );
    let primary = Cluster::start(primary_data, free_port());
    let standby_data = dir.join("standby");
    as_postgres(
        Command::new(tool("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-R", "-X", "stream", "-D"])
            .arg(&standby_data),
    );
    let standby = Cluster::start(standby_data, free_port());
    (primary, standby)
}

/// The machine can run its own PostgreSQL clusters (CI's always can).
fn clusters_possible() -> bool {
    let possible = bin_dir().is_some()
        && Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        possible || std::env::var_os("CI").is_none(),
        "CI needs PostgreSQL 15's server binaries for the replica test"
    );
    possible
}

async fn store_report(store: &Store, index: usize) {
    Inbox::new(store.clone())
        .accept(
            &dmarcd::testing::report_email(index, 10),
            &Envelope::import(format!("report-{index}.eml")),
        )
        .await
        .unwrap();
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

/// Reports the API lists (its reads follow the replica routing).
async fn listed_reports(server: &Server, token: &str) -> i64 {
    let reply = server.get("/api/v1/aggregate/reports", Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["total"].as_i64().unwrap()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_follow_a_standby_while_it_keeps_up_and_the_primary_otherwise() {
    if !clusters_possible() {
        eprintln!("NOTE: no PostgreSQL server binaries: replica test SKIPPED");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (primary, standby) = primary_and_standby(dir.path());
    let max_lag = Duration::from_secs(4);
    let data = tempfile::tempdir().unwrap();
    let store = Store::connect(Some(&primary.url()), data.path())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store = store
        .with_replicas(&ReplicaSettings {
            urls: vec![standby.url()],
            max_lag,
            check_interval: Duration::from_millis(100),
        })
        .unwrap();
    let server = Server::start(store.clone(), WebConfig::default()).await;
    let token = server.state.accounts.create_token("t").await.unwrap();
    let in_use = || store.replica_status()[0].in_use;

    store_report(&store, 1).await;
    wait_until("the standby is in use", Duration::from_secs(20), in_use).await;
    assert_eq!(
        store.replica_status()[0].name,
        format!("127.0.0.1:{}/postgres", standby.port)
    );
    assert_eq!(listed_reports(&server, &token).await, 1);

    // The standby stops replaying: a new report is on the primary only.
    // While the standby is within its bound, reads still go to it and do
    // not see the report: that is where they go.
    let mut on_standby = sqlx::PgConnection::connect(&standby.url()).await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut on_standby)
        .await
        .unwrap();
    let paused_at = Instant::now();
    store_report(&store, 2).await;
    let seen = listed_reports(&server, &token).await;
    if paused_at.elapsed() < max_lag - Duration::from_millis(500) {
        assert!(in_use(), "the standby stays in use within its bound");
        assert_eq!(seen, 1, "the read went to the paused standby");
    }
    // Past the bound the standby is left out, and reads see the primary.
    wait_until("the lagging standby is left out", max_lag * 3, || !in_use()).await;
    assert_eq!(listed_reports(&server, &token).await, 2);
    let metrics = server.get("/metrics", None).await.text();
    assert!(
        metrics.contains(&format!(
            "dmarcd_replica_in_use{{replica=\"127.0.0.1:{}/postgres\"}} 0",
            standby.port
        )),
        "{metrics}"
    );

    // Replay resumes: the standby catches up and takes the reads again.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut on_standby)
        .await
        .unwrap();
    wait_until(
        "the standby is back in use",
        Duration::from_secs(20),
        in_use,
    )
    .await;
    assert_eq!(listed_reports(&server, &token).await, 2);
    drop(on_standby);

    // A standby that goes down: reads stay on the primary, and say why.
    standby.stop();
    wait_until(
        "the stopped standby is left out, with the reason",
        Duration::from_secs(30),
        || store.replica_status()[0].error.is_some(),
    )
    .await;
    let status = &store.replica_status()[0];
    assert!(!status.in_use);
    let reason = status.error.as_deref().unwrap();
    assert!(
        reason.contains("unreachable") || reason.contains("no answer within 4 s"),
        "{status:?}"
    );
    assert_eq!(listed_reports(&server, &token).await, 2);
}

#[tokio::test]
async fn replicas_need_a_postgresql_primary() {
    let data = tempfile::tempdir().unwrap();
    let store = Store::connect(None, data.path()).await.unwrap();
    let refused = store.with_replicas(&ReplicaSettings {
        urls: vec!["postgres://127.0.0.1:1/x".to_string()],
        max_lag: Duration::from_secs(5),
        check_interval: Duration::from_secs(1),
    });
    assert!(refused.is_err());
}
