//! Bytes the inbox keeps per raw message, as received ("before": stored as
//! received) and as stored now (chunks deflated when that pays,
//! `store::raw_codec`), and the inbox's intake rate, printed (not a timed
//! test): `cargo bench --bench raw_bytes`. Sets: the repository's corpus,
//! Microsoft-style mails (gzip report as one line of base64), and mails
//! whose attachment is plain XML. SQLite, and PostgreSQL when
//! DATABASE_URL is set.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use base64::Engine;
use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::store::Store;
use sqlx::Connection;

fn corpus() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext != "md") {
                files.push(std::fs::read(path).unwrap());
            }
        }
    }
    files
}

fn mail(attachment: &[u8], content_type: &str, single_line: bool) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    let body = if single_line {
        encoded
    } else {
        encoded
            .as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    format!(
        "From: DMARC Aggregate Report <dmarcreport@microsoft.com>\r\n\
         To: dmarc@example.com\r\n\
         Subject: Report Domain: example.com Submitter: protection.outlook.com\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"_b_\"\r\n\r\n\
         --_b_\r\nContent-Type: text/plain\r\n\r\nThis is a DMARC aggregate report.\r\n\
         --_b_\r\nContent-Type: {content_type}; name=\"r\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--_b_--\r\n"
    )
    .into_bytes()
}

/// Reports of various sizes, each made distinct by its report id.
fn reports(count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let mut report = dmarcd::testing::aggregate_report(20 + (index * 97) % 2000);
            report.metadata.report_id = format!("bench-{index}");
            report.to_xml()
        })
        .collect()
}

fn microsoft(count: usize) -> Vec<Vec<u8>> {
    reports(count)
        .iter()
        .map(|xml| {
            let mut gzip =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(xml.as_bytes()).unwrap();
            mail(&gzip.finish().unwrap(), "application/gzip", true)
        })
        .collect()
}

fn plain_xml(count: usize) -> Vec<Vec<u8>> {
    reports(count)
        .iter()
        .map(|xml| mail(xml.as_bytes(), "text/xml", false))
        .collect()
}

async fn measure(store: &Store, set: &str, messages: &[Vec<u8>]) {
    let inbox = Inbox::new(store.clone());
    let started = Instant::now();
    for raw in messages {
        inbox.accept(raw, &Envelope::import("bench")).await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let db = store.db();
    let (received, stored): (i64, i64) = db
        .fetch_one(&db.statement(
            "SELECT CAST(sum(m.size) AS BIGINT), \
             CAST((SELECT sum(length(raw)) FROM inbox_raw) AS BIGINT) FROM inbox_messages m",
            Vec::new(),
        ))
        .await
        .unwrap();
    let count = messages.len() as f64;
    println!(
        "{:<10} {:<22} {:>6} msgs  received {:>10} B ({:>8.0} B/msg)  stored {:>10} B ({:>8.0} B/msg)  {:>5.1}%  intake {:>7.0} msg/s",
        store.backend(),
        set,
        messages.len(),
        received,
        received as f64 / count,
        stored,
        stored as f64 / count,
        stored as f64 * 100.0 / received as f64,
        count / seconds
    );
}

async fn fresh(database_url: Option<&str>, dir: &Path) -> Store {
    let store = match database_url {
        None => Store::connect(None, dir).await.unwrap(),
        Some(url) => {
            let name = format!("dmarcd_bench_raw_{}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut admin)
            .await;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
            Store::connect(Some(&format!("{base}/{name}")), dir)
                .await
                .unwrap()
        }
    };
    store.migrate().await.unwrap();
    store
}

#[tokio::main]
async fn main() {
    let sets = [
        ("corpus", corpus()),
        ("microsoft-style gzip", microsoft(200)),
        ("plain XML attachment", plain_xml(200)),
    ];
    let url = std::env::var("DATABASE_URL").ok();
    let mut backends = vec![None];
    if let Some(url) = url.as_deref() {
        backends.push(Some(url));
    }
    for database_url in backends {
        for (set, messages) in &sets {
            let dir = tempfile::tempdir().unwrap();
            let store = fresh(database_url, dir.path()).await;
            measure(&store, set, messages).await;
            store.close().await;
        }
    }
}
