//! SMTP intake figures, printed (not a timed test): `cargo bench --bench smtp`.
//! Runs the real `dmarcd serve` as a separate process (SQLite, and
//! PostgreSQL when DATABASE_URL is set) and drives it over loopback:
//! - concurrent clients sending ~5 KB report mails: messages/s answered 250
//!   (each committed to the inbox before the reply), server peak RSS;
//! - one 50 MB message: server peak RSS against the message size;
//! - 1,000 idle connections: server RSS.
//!
//! Workers are disabled in the measured server (`DMARCD_WORKER_ENABLED=false`)
//! so the figures are the listener's and the inbox's alone.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CLIENTS: usize = 32;
const MESSAGES_PER_CLIENT: usize = 125;

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(database_url: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
        command
            .arg("serve")
            .env("DMARCD_DATA_DIR", dir.path())
            .env("DMARCD_SMTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("DMARCD_SMTP_MAX_CONNECTIONS", "4000")
            .env("DMARCD_SMTP_MAX_CONNECTIONS_PER_IP", "4000")
            .env("DMARCD_SMTP_MAX_MESSAGES_PER_CONNECTION", "100000")
            .env("DMARCD_SMTP_MAX_MESSAGE_BYTES", "104857600")
            .env("DMARCD_WORKER_ENABLED", "false")
            .env("DMARCD_WEB_ENABLED", "false")
            .env("DMARCD_LOG", "warn")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null());
        if let Some(url) = database_url {
            command.env("DMARCD_DATABASE_URL", url);
        }
        let child = command.spawn().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "dmarcd serve did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            port,
            _dir: dir,
        }
    }

    /// (current RSS, peak RSS) in MiB, from /proc.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        client.reply().await;
        client
    }

    async fn reply(&mut self) -> String {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.unwrap() == 0 {
                return text;
            }
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return text;
            }
        }
    }

    /// MAIL, RCPT and DATA pipelined (with SIZE, as MTAs send it), then the data.
    async fn send_message(&mut self, body: &[u8]) {
        let commands = format!(
            "MAIL FROM:<noreply@google.com> SIZE={}\r\nRCPT TO:<dmarc@example.com>\r\nDATA\r\n",
            body.len()
        );
        self.writer.write_all(commands.as_bytes()).await.unwrap();
        for _ in 0..3 {
            self.reply().await;
        }
        let mut data = Vec::with_capacity(body.len() + 5);
        data.extend_from_slice(body);
        data.extend_from_slice(b"\r\n.\r\n");
        self.writer.write_all(&data).await.unwrap();
        let answer = self.reply().await;
        assert!(answer.starts_with("250"), "{answer}");
    }
}

/// A ~5 KB report mail: headers and a base64 zip-sized body, unique per call.
fn report_mail(client: usize, index: usize) -> Vec<u8> {
    let mut mail = format!(
        "From: noreply-dmarc-support@google.com\r\nTo: dmarc@example.com\r\nSubject: Report domain: example.com Submitter: google.com Report-ID: {client}-{index}\r\nMIME-Version: 1.0\r\nContent-Type: application/zip; name=\"google.com!example.com!1!2.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    let mut state = (client as u64 * 1_000_003 + index as u64) | 1;
    for _ in 0..64 {
        let line: String = (0..76)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(state % 64) as usize] as char
            })
            .collect();
        mail.extend_from_slice(line.as_bytes());
        mail.extend_from_slice(b"\r\n");
    }
    mail
}

async fn throughput(backend: &str, database_url: Option<&str>) {
    let server = Server::start(database_url);
    let port = server.port;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut connection = Client::connect(port).await;
            connection
                .writer
                .write_all(b"EHLO bench.test\r\n")
                .await
                .unwrap();
            connection.reply().await;
            for index in 0..MESSAGES_PER_CLIENT {
                connection.send_message(&report_mail(client, index)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    let messages = CLIENTS * MESSAGES_PER_CLIENT;
    let (_, peak) = server.memory();
    println!(
        "{backend}: {messages} messages of ~5 KB from {CLIENTS} clients: {:.2} s, {:.0} messages/s committed, server peak RSS {peak:.0} MiB",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    );
}

async fn large_message(backend: &str, database_url: Option<&str>) {
    let server = Server::start(database_url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (baseline, _) = server.memory();
    let size = 50 * 1024 * 1024;
    // One line of base64-like text, 50 MB long, as Microsoft sends it.
    let mut body = b"Subject: large\r\nContent-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    body.extend((0..size).map(|i| {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i * 7 + i / 64) % 64]
    }));
    let mut client = Client::connect(server.port).await;
    client
        .writer
        .write_all(b"EHLO bench.test\r\n")
        .await
        .unwrap();
    client.reply().await;
    let start = Instant::now();
    client.send_message(&body).await;
    let elapsed = start.elapsed();
    let (_, peak) = server.memory();
    println!(
        "{backend}: one 50 MB single-line message: {:.2} s, server peak RSS {peak:.0} MiB (baseline {baseline:.0} MiB): {:.2}x the message size",
        elapsed.as_secs_f64(),
        peak / 50.0
    );
}

async fn idle_connections(backend: &str, database_url: Option<&str>) {
    let server = Server::start(database_url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (baseline, _) = server.memory();
    let mut connections = Vec::new();
    for _ in 0..1000 {
        connections.push(Client::connect(server.port).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss, _) = server.memory();
    println!(
        "{backend}: 1000 idle connections: server RSS {rss:.0} MiB (baseline {baseline:.0} MiB, {:.0} KiB per connection)",
        (rss - baseline) * 1024.0 / 1000.0
    );
    drop(connections);
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        throughput("sqlite", None).await;
        large_message("sqlite", None).await;
        idle_connections("sqlite", None).await;
        let Ok(url) = std::env::var("DATABASE_URL") else {
            println!("postgres: skipped (DATABASE_URL unset)");
            return;
        };
        let name = format!("dmarcd_smtp_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
        let database = format!("{base}/{name}");
        throughput("postgres", Some(&database)).await;
        large_message("postgres", Some(&database)).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    });
}
