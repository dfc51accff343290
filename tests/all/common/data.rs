//! A store with known contents for the web tests.

use std::path::Path;

use dmarcd::enrich::{EnrichConfig, EnrichService, Enricher};
use dmarcd::inbox::Envelope;
use dmarcd::inbox::Inbox;
use dmarcd::store::Store;
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};

/// A store holding 300 synthetic records (sources 11.0.0.1 … 11.0.1.46),
/// the corpus's TLS and failure reports, enriched from a database that
/// puts 11.0.0.0/24 in the US and 11.0.1.0/24 in Germany.
pub async fn populated(store: &Store, files: &Path) {
    let inbox = Inbox::new(store.clone());
    let report = testing::aggregate_report(300);
    inbox
        .accept(
            report.to_xml().as_bytes(),
            &Envelope::import("synthetic.xml"),
        )
        .await
        .unwrap();
    for dir in ["smtp_tls", "failure"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/corpus/parsedmarc")
            .join(dir);
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            let raw = std::fs::read(&path).unwrap();
            inbox
                .accept(&raw, &Envelope::import(path.display().to_string()))
                .await
                .unwrap();
        }
    }
    Worker::new(
        store.clone(),
        Limits::default(),
        "w",
        WorkerConfig::default(),
    )
    .run_until_idle()
    .await
    .unwrap();
    let database = files.join("geo.mmdb");
    std::fs::write(
        &database,
        super::mmdb::build(
            "test",
            &[
                (
                    "11.0.0.0/24",
                    super::mmdb::nested("US", 64500, "Example Transit"),
                ),
                (
                    "11.0.1.0/24",
                    super::mmdb::flat("DE", "AS64501", "Beispiel GmbH", "beispiel.de"),
                ),
            ],
        ),
    )
    .unwrap();
    let config = EnrichConfig {
        databases: vec![database],
        reverse_dns: false,
        ..EnrichConfig::default()
    };
    EnrichService::new(
        store.clone(),
        Enricher::from_config(&config).unwrap(),
        config,
    )
    .unwrap()
    .run_until_idle()
    .await
    .unwrap();
}

/// What `serve` does with the inbox, in one call: processes every message
/// waiting, then counts the stored reports in the rollups.
pub async fn process_all(store: &Store) {
    Worker::new(
        store.clone(),
        Limits::default(),
        "w",
        WorkerConfig::default(),
    )
    .run_until_idle()
    .await
    .unwrap();
    store.apply_rollups_until_idle().await.unwrap();
}

/// Stores `raw` in the inbox as an import called `name`, then `process_all`.
pub async fn ingest(store: &Store, name: &str, raw: &[u8]) {
    Inbox::new(store.clone())
        .accept(raw, &Envelope::import(name))
        .await
        .unwrap();
    process_all(store).await;
}
