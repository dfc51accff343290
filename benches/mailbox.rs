//! Mailbox pull figures, printed (not a timed test): `cargo bench --bench mailbox`.
//! A real Dovecot (Debian's dovecot-imapd) on loopback holds 5,000 typical
//! report mails (Google's shape: a gzipped aggregate report of 10 records,
//! base64, ~3 KB); the real `dmarcd mailbox pull NAME --once` drains them
//! over TLS into the inbox (each batch committed before it is moved to the
//! archive folder), on SQLite and on PostgreSQL when DATABASE_URL is set.
//! Prints messages/s and the puller's peak RSS while draining. Workers are
//! off (`DMARCD_WORKER_ENABLED=false`): the figures are the pull's alone.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dmarcd::testing::dovecot::{Dovecot, DovecotOptions};
use sqlx::Connection;

const MESSAGES: usize = 5_000;
const USER: &str = "reports";
const PASSWORD: &str = "bench password";

fn write_config(dir: &Path, server: &Dovecot) -> std::path::PathBuf {
    let path = dir.join("dmarcd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n\n[[mailbox]]\nname = \"bench\"\nhost = \"localhost\"\nport = {}\n\
             ca_file = {:?}\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
            dir.join("data"),
            server.tls_port,
            server.ca_file
        ),
    )
    .unwrap();
    path
}

fn dmarcd(config: &Path, database_url: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("DMARCD_WORKER_ENABLED", "false")
        .env("DMARCD_LOG", "warn");
    if let Some(url) = database_url {
        command.env("DMARCD_DATABASE_URL", url);
    }
    command
}

/// Peak RSS (VmHWM) of a running process in MiB, or None once it is gone.
fn peak_rss(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

fn drain(backend: &str, server: &Dovecot, database_url: Option<&str>) {
    server.clear(USER, "INBOX").unwrap();
    server.clear(USER, "Archive.dmarcd").unwrap();
    let mut bytes = 0;
    for index in 0..MESSAGES {
        let mail = dmarcd::testing::report_email(index, 10);
        bytes += mail.len();
        server.deliver(USER, "INBOX", &mail).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), server);
    let migrated = dmarcd(&config, database_url, &["migrate"])
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let started = Instant::now();
    let mut child = dmarcd(
        &config,
        database_url,
        &["mailbox", "pull", "bench", "--once"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut peak: f64 = 0.0;
    while child.try_wait().unwrap().is_none() {
        if let Some(rss) = peak_rss(child.id()) {
            peak = peak.max(rss);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains(&format!("{MESSAGES} stored")),
        "{backend}: {text}"
    );
    println!(
        "{backend}: {MESSAGES} report mails (~{:.1} KB each) from Dovecot over TLS into the inbox, \
         moved to the archive: {:.2} s, {:.0} messages/s, puller peak RSS {peak:.0} MiB",
        bytes as f64 / MESSAGES as f64 / 1000.0,
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    if !Dovecot::installed() {
        println!(
            "mailbox bench skipped: /usr/sbin/dovecot is missing (apt-get install dovecot-imapd)"
        );
        return;
    }
    let server = Dovecot::start(DovecotOptions {
        users: vec![(USER.to_string(), PASSWORD.to_string())],
        ..DovecotOptions::default()
    })
    .expect("dovecot starts");
    drain("sqlite", &server, None);
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("postgres: skipped (DATABASE_URL unset)");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = format!("dmarcd_mailbox_bench_{}", std::process::id());
    let mut admin = runtime.block_on(sqlx::PgConnection::connect(&url)).unwrap();
    runtime
        .block_on(
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin),
        )
        .unwrap();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    drain("postgres", &server, Some(&format!("{base}/{name}")));
    runtime
        .block_on(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin),
        )
        .unwrap();
}
