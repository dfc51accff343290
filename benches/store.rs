//! Import throughput into each backend, printed as figures:
//! `cargo bench --bench store` (PostgreSQL too when DATABASE_URL is set).
//! Each run takes the path `dmarcd import` takes: inbox accept and workers
//! (accept → decode → parse → store) overlapping, default worker settings.
//! `PLAIN=1` stores plain XML messages instead of gzip; `WORKERS` and
//! `BATCH` override the worker settings.

use std::sync::Arc;
use std::time::Instant;

use dmarcd::import::{run_import, ImportSource};
use dmarcd::store::Store;
use dmarcd::worker::WorkerConfig;
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

fn plain() -> bool {
    std::env::var_os("PLAIN").is_some()
}

/// Reports arrive compressed (every large sender gzips them).
fn encode(xml: String) -> Vec<u8> {
    if plain() {
        return xml.into_bytes();
    }
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

async fn bench(backend: &str, store: Store) {
    store.migrate().await.unwrap();
    let form = if plain() { "plain XML" } else { "gzip" };

    let sources: Vec<ImportSource> = (0..1000)
        .map(|index| {
            let mut report = testing::aggregate_report(100);
            report.metadata.report_id = format!("bench-{index}");
            ImportSource {
                name: format!("{index}.xml"),
                raw: encode(report.to_xml()),
            }
        })
        .collect();
    let start = Instant::now();
    let records = import(&store, sources).await;
    let total = start.elapsed();
    println!(
        "{backend}: 1000 reports x 100 records ({form}): {:.2} s, {:.0} reports/s, {:.0} records/s",
        total.as_secs_f64(),
        1000.0 / total.as_secs_f64(),
        records as f64 / total.as_secs_f64()
    );

    let mut large = testing::aggregate_report(100_000);
    large.metadata.report_id = "bench-large".to_string();
    let raw = encode(large.to_xml());
    let size = raw.len();
    let start = Instant::now();
    let records = import(
        &store,
        vec![ImportSource {
            name: "large.xml".into(),
            raw,
        }],
    )
    .await;
    let total = start.elapsed();
    println!(
        "{backend}: one report of 100000 records ({form}, {:.1} MB): {:.2} s, {:.0} records/s",
        size as f64 / 1e6,
        total.as_secs_f64(),
        records as f64 / total.as_secs_f64()
    );
}

async fn import(store: &Store, sources: Vec<ImportSource>) -> u64 {
    let defaults = WorkerConfig::default();
    let setting = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
    };
    let config = WorkerConfig {
        concurrency: setting("WORKERS").unwrap_or(defaults.concurrency),
        batch_size: setting("BATCH").map_or(defaults.batch_size, |batch: usize| batch as u32),
        ..defaults
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let feeder = tokio::spawn(async move {
        for source in sources {
            sender.send(source).await.unwrap();
        }
    });
    let outcome = run_import(
        store.clone(),
        Limits::default(),
        config,
        "bench",
        receiver,
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    feeder.await.unwrap();
    outcome.processed.iter().map(|p| p.summary.records).sum()
}
