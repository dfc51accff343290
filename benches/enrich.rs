//! Enrichment figures: `cargo bench --bench enrich` (PostgreSQL too when
//! DATABASE_URL is set).
//!
//! 1. Lookups with DNS off: 100,000 distinct IPs described from a
//!    MaxMind-format database of 50,000 networks and the source map, on one
//!    thread (target: at least 1,000,000 lookups/s).
//! 2. Ingestion while the enrichment task runs against a DNS server on
//!    loopback that answers every PTR query: 100,000 records from 100,000
//!    distinct IPs, imported as `dmarcd import` does (target: at least 5,000
//!    records/s), then the time until every IP has its PTR name. The same
//!    import into a fresh database with enrichment stopped gives the ratio.

#[path = "../tests/all/common/mmdb.rs"]
#[allow(dead_code)]
mod mmdb;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmarcd::enrich::{EnrichConfig, EnrichService, Enricher, GeoDatabases, SourceMap};
use dmarcd::import::{run_import, ImportSource};
use dmarcd::store::{Store, StoredDnsState};
use dmarcd::testing::dns::{PtrRule, PtrServer};
use dmarcd::worker::WorkerConfig;
use dmarcd::{testing, Limits};
use sqlx::Connection;

const NETWORKS: u32 = 50_000;
const IPS: u32 = 100_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("bench.mmdb");
    std::fs::write(&database, build_database()).unwrap();
    lookups(&database);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for enrichment in [false, true] {
            let sqlite_dir = tempfile::tempdir().unwrap();
            let sqlite = Store::connect(None, sqlite_dir.path()).await.unwrap();
            ingest("sqlite", sqlite, &database, enrichment).await;
            let Ok(url) = std::env::var("DATABASE_URL") else {
                println!("postgres: skipped (DATABASE_URL unset)");
                continue;
            };
            let name = format!("dmarcd_bench_enrich_{}_{enrichment}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
            let store = Store::connect(Some(&format!("{base}/{name}")), dir.path())
                .await
                .unwrap();
            ingest("postgres", store.clone(), &database, enrichment).await;
            store.close().await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    });
}

/// 50,000 /24 networks under 11.0.0.0/8, 3,000 distinct ASNs in 40 countries.
fn build_database() -> Vec<u8> {
    const COUNTRIES: [&str; 40] = [
        "US", "DE", "FR", "GB", "NL", "IE", "SE", "JP", "CN", "IN", "BR", "CA", "AU", "RU", "PL",
        "IT", "ES", "SG", "KR", "ZA", "MX", "AR", "CH", "AT", "BE", "DK", "FI", "NO", "CZ", "RO",
        "TR", "UA", "IL", "HK", "TW", "VN", "ID", "TH", "NZ", "PT",
    ];
    let networks: Vec<(String, serde_json::Value)> = (0..NETWORKS)
        .map(|n| {
            let asn = 64_512 + n % 3000;
            (
                format!("{}/24", Ipv4Addr::from(0x0B00_0000 + (n << 8))),
                mmdb::nested(
                    COUNTRIES[(n % 40) as usize],
                    asn,
                    &format!("Example Network {asn}"),
                ),
            )
        })
        .collect();
    let borrowed: Vec<(&str, serde_json::Value)> = networks
        .iter()
        .map(|(net, value)| (net.as_str(), value.clone()))
        .collect();
    mmdb::build("Bench-Country-ASN", &borrowed)
}

/// The i-th of 100,000 distinct addresses, two per network.
fn address(i: u32) -> IpAddr {
    let network = i % NETWORKS;
    let host = i / NETWORKS + 1;
    IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + (network << 8) + host))
}

/// A PTR name like real ones: a third in the map, the rest unknown hosts.
fn ptr_name(ip: IpAddr) -> String {
    let dashed = ip.to_string().replace('.', "-");
    let IpAddr::V4(v4) = ip else { unreachable!() };
    match u32::from(v4) % 3 {
        0 => format!("mail-{dashed}.outbound.protection.outlook.com"),
        1 => format!("a{dashed}.smtp-out.amazonses.com"),
        _ => format!("host-{dashed}.customer{}.example.net", u32::from(v4) % 1000),
    }
}

fn lookups(database: &std::path::Path) {
    let enricher = Enricher::new(
        GeoDatabases::open(&[database.to_path_buf()]),
        SourceMap::shipped(),
    );
    let ips: Vec<IpAddr> = (0..IPS).map(address).collect();
    let ptrs: Vec<String> = ips.iter().map(|ip| ptr_name(*ip)).collect();
    let mut named = 0usize;
    for (label, with_ptr) in [
        ("no PTR (mmdb + AS fallback)", false),
        ("with PTR (mmdb + psl + map)", true),
    ] {
        let mut rates = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            for (ip, ptr) in ips.iter().zip(&ptrs) {
                let info = enricher.describe(*ip, with_ptr.then_some(ptr.as_str()));
                named += usize::from(info.source_type.is_some());
            }
            rates.push(f64::from(IPS) / start.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "lookups, DNS off, {label}: {} distinct IPs x5: best {:.0}/s, median {:.0}/s",
            IPS, rates[4], rates[2]
        );
    }
    assert!(named > 0);
}

/// 200 reports of 500 records, every record from its own IP.
fn reports() -> Vec<ImportSource> {
    (0..200u32)
        .map(|r| {
            let mut report = testing::aggregate_report(500);
            report.metadata.report_id = format!("enrich-{r}");
            for (i, record) in report.records.iter_mut().enumerate() {
                record.source_ip = Some(address(r * 500 + i as u32));
            }
            use std::io::Write;
            let mut gzip =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(report.to_xml().as_bytes()).unwrap();
            ImportSource {
                name: format!("{r}.xml.gz"),
                raw: gzip.finish().unwrap(),
            }
        })
        .collect()
}

async fn ingest(backend: &str, store: Store, database: &std::path::Path, enrichment: bool) {
    store.migrate().await.unwrap();
    if !enrichment {
        let start = Instant::now();
        let records = import(&store, reports()).await;
        let ingested = start.elapsed();
        println!(
            "{backend}: ingestion, enrichment stopped (baseline): {records} records in {:.2} s = {:.0} records/s",
            ingested.as_secs_f64(),
            records as f64 / ingested.as_secs_f64()
        );
        return;
    }
    let server = PtrServer::start(HashMap::new(), |ip| PtrRule::Name(ptr_name(ip)))
        .await
        .unwrap();
    let config = EnrichConfig {
        databases: vec![database.to_path_buf()],
        name_servers: vec![server.address().to_string()],
        poll_interval_ms: 100,
        ..EnrichConfig::default()
    };
    let service = EnrichService::new(
        store.clone(),
        Enricher::from_config(&config).unwrap(),
        config,
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let enrichment = tokio::spawn({
        let service = service.clone();
        async move { service.run(stopped).await }
    });

    let start = Instant::now();
    let records = import(&store, reports()).await;
    let ingested = start.elapsed();
    println!(
        "{backend}: ingestion with enrichment and loopback DNS running: {records} records from {IPS} distinct IPs in {:.2} s = {:.0} records/s",
        ingested.as_secs_f64(),
        records as f64 / ingested.as_secs_f64()
    );
    loop {
        let counts = store.enrichment_counts().await.unwrap();
        if counts.undescribed == 0 && counts.dns(StoredDnsState::Done) == i64::from(IPS) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let enriched = start.elapsed();
    println!(
        "{backend}: every IP described and named {:.2} s after the import started ({:.0} PTR lookups/s overall, {} DNS queries)",
        enriched.as_secs_f64(),
        f64::from(IPS) / enriched.as_secs_f64(),
        server.queries()
    );
    stop.send(true).unwrap();
    enrichment.await.unwrap();
}

async fn import(store: &Store, sources: Vec<ImportSource>) -> u64 {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let feeder = tokio::spawn(async move {
        for source in sources {
            sender.send(source).await.unwrap();
        }
    });
    let outcome = run_import(
        store.clone(),
        Limits::default(),
        WorkerConfig::default(),
        "bench",
        receiver,
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    feeder.await.unwrap();
    outcome.processed.iter().map(|p| p.summary.records).sum()
}
