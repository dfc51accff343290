//! Import throughput into each backend, printed as figures:
//! `cargo bench --bench store` (PostgreSQL too when DATABASE_URL is set).
//! Each run goes through the real path: inbox accept → worker → store.

use std::time::Instant;

use dmarcd::inbox::Inbox;
use dmarcd::store::{Envelope, Store};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};
use sqlx::Connection;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::connect(None, dir.path()).await.unwrap();
        bench("sqlite", sqlite).await;
        match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let name = format!("dmarcd_bench_{}", std::process::id());
                let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
                let store = Store::connect(Some(&format!("{base}/{name}")), dir.path())
                    .await
                    .unwrap();
                bench("postgres", store.clone()).await;
                store.close().await;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
            Err(_) => println!("postgres: skipped (DATABASE_URL unset)"),
        }
    });
}

/// Reports arrive compressed (every large sender gzips them); `PLAIN=1`
/// stores plain XML instead, the worst case for the inbox.
fn encode(xml: String) -> Vec<u8> {
    if std::env::var_os("PLAIN").is_some() {
        return xml.into_bytes();
    }
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

async fn bench(backend: &str, store: Store) {
    store.migrate().await.unwrap();
    let inbox = Inbox::new(store.clone());
    let form = if std::env::var_os("PLAIN").is_some() {
        "plain XML"
    } else {
        "gzip"
    };

    let messages: Vec<Vec<u8>> = (0..1000)
        .map(|index| {
            let mut report = testing::aggregate_report(100);
            report.metadata.report_id = format!("bench-{index}");
            encode(report.to_xml())
        })
        .collect();
    let start = Instant::now();
    for (index, raw) in messages.iter().enumerate() {
        inbox
            .accept(raw, &Envelope::import(format!("{index}.xml")))
            .await
            .unwrap();
    }
    let accepted = start.elapsed();
    let records = process(&store).await;
    let total = start.elapsed();
    println!(
        "{backend}: 1000 reports x 100 records ({form}): {:.2} s ({:.2} s accepting), {:.0} reports/s, {:.0} records/s",
        total.as_secs_f64(),
        accepted.as_secs_f64(),
        1000.0 / total.as_secs_f64(),
        records as f64 / total.as_secs_f64()
    );

    let mut large = testing::aggregate_report(100_000);
    large.metadata.report_id = "bench-large".to_string();
    let raw = encode(large.to_xml());
    let start = Instant::now();
    inbox
        .accept(&raw, &Envelope::import("large.xml"))
        .await
        .unwrap();
    let records = process(&store).await;
    let total = start.elapsed();
    println!(
        "{backend}: one report of 100000 records ({form}, {:.1} MB): {:.2} s, {:.0} records/s",
        raw.len() as f64 / 1e6,
        total.as_secs_f64(),
        records as f64 / total.as_secs_f64()
    );
}

/// Two workers (the default concurrency) until the queue is empty.
async fn process(store: &Store) -> u64 {
    let mut tasks = Vec::new();
    let concurrency: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let config = WorkerConfig {
        batch_size: std::env::var("BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4),
        ..WorkerConfig::default()
    };
    for index in 0..concurrency {
        let worker = Worker::new(
            store.clone(),
            Limits::default(),
            format!("bench{index}"),
            config.clone(),
        );
        tasks.push(tokio::spawn(async move {
            worker.run_until_idle().await.unwrap()
        }));
    }
    let mut records = 0;
    for task in tasks {
        records += task
            .await
            .unwrap()
            .iter()
            .map(|p| p.summary.records)
            .sum::<u64>();
    }
    records
}
