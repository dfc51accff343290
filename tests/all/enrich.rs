//! Enrichment against real parts: MaxMind-format files built in the test,
//! a DNS server on a loopback port, and both storage backends.

use crate::common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dmarcd::enrich::{
    EnrichConfig, EnrichService, Enricher, GeoDatabases, PtrAnswer, PtrResolver, SourceMap,
};
use dmarcd::inbox::Envelope;
use dmarcd::inbox::Inbox;
use dmarcd::store::{Store, StoredDnsState};
use dmarcd::testing::dns::{PtrRule, PtrServer};
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};

use common::mmdb;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Writes `bytes` to `path` the way downloads are installed: a temporary
/// file renamed over the old one.
fn install(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The synthetic report's first addresses (11.0.0.1 …) fall in these networks.
fn geo_files(dir: &Path) -> Vec<PathBuf> {
    let nested = dir.join("country-asn.mmdb");
    install(
        &nested,
        &mmdb::build(
            "GeoLite2-Country",
            &[("11.0.0.0/24", mmdb::nested("US", 64500, "Example Transit"))],
        ),
    );
    let flat = dir.join("ipinfo-lite.mmdb");
    install(
        &flat,
        &mmdb::build(
            "ipinfo lite",
            &[
                (
                    "11.0.0.0/24",
                    mmdb::flat("CA", "AS64999", "Ignored Second", "ignored.example"),
                ),
                (
                    "11.0.1.0/24",
                    mmdb::flat("de", "AS64501", "Example Hosting GmbH", "mcsv.net"),
                ),
            ],
        ),
    );
    vec![nested, flat]
}

#[test]
fn both_record_layouts_are_read_and_the_first_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let geo = GeoDatabases::open(&geo_files(dir.path()));
    assert_eq!(geo.loaded(), 2);

    let nested = geo.lookup(ip("11.0.0.7"));
    assert_eq!(nested.country.as_deref(), Some("US"));
    assert_eq!(nested.asn, Some(64500));
    assert_eq!(nested.as_name.as_deref(), Some("Example Transit"));
    // The AS fields come from one file: the second file's AS domain
    // belongs to its own (different) AS number.
    assert_eq!(nested.as_domain, None);

    let flat = geo.lookup(ip("11.0.1.9"));
    assert_eq!(flat.country.as_deref(), Some("DE"), "upper-cased");
    assert_eq!(flat.asn, Some(64501), "\"AS64501\" is read as a number");
    assert_eq!(flat.as_name.as_deref(), Some("Example Hosting GmbH"));
    assert_eq!(flat.as_domain.as_deref(), Some("mcsv.net"));

    let unknown = geo.lookup(ip("192.0.2.1"));
    assert_eq!(unknown, Default::default());
    assert_eq!(geo.lookup(ip("2001:db8::1")), Default::default());
}

#[test]
fn a_missing_file_is_skipped_then_picked_up_and_replacements_are_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.mmdb");
    let geo = GeoDatabases::open(std::slice::from_ref(&path));
    assert_eq!(geo.loaded(), 0);
    assert_eq!(geo.lookup(ip("11.0.0.1")).country, None);
    assert_eq!(geo.reload_if_changed(), 0, "still missing: nothing to do");

    install(
        &path,
        &mmdb::build("t", &[("11.0.0.0/24", mmdb::nested("US", 1, "One"))]),
    );
    assert_eq!(geo.reload_if_changed(), 1);
    assert_eq!(geo.lookup(ip("11.0.0.1")).country.as_deref(), Some("US"));
    assert_eq!(geo.reload_if_changed(), 0, "unchanged file is not reloaded");

    install(
        &path,
        &mmdb::build("t", &[("11.0.0.0/24", mmdb::nested("FR", 2, "Two"))]),
    );
    assert_eq!(geo.reload_if_changed(), 1);
    let info = geo.lookup(ip("11.0.0.1"));
    assert_eq!((info.country.as_deref(), info.asn), (Some("FR"), Some(2)));

    // A broken replacement keeps the last good version.
    install(&path, b"not a database");
    assert_eq!(geo.reload_if_changed(), 0);
    assert_eq!(geo.lookup(ip("11.0.0.1")).country.as_deref(), Some("FR"));
}

#[test]
fn source_names_come_from_the_map_then_the_base_domain_then_the_as_name() {
    let dir = tempfile::tempdir().unwrap();
    let geo = GeoDatabases::open(&geo_files(dir.path()));
    let enricher = Enricher::new(geo, SourceMap::shipped());

    let google = enricher.describe(ip("11.0.0.1"), Some("Mail-SOR-F41.google.com."));
    assert_eq!(google.ptr.as_deref(), Some("mail-sor-f41.google.com"));
    assert_eq!(google.base_domain.as_deref(), Some("google.com"));
    assert_eq!(google.source_name.as_deref(), Some("Google"));
    assert_eq!(google.source_type.as_deref(), Some("mailbox_provider"));
    assert_eq!(google.country.as_deref(), Some("US"));

    let ses = enricher.describe(ip("11.0.0.2"), Some("a8-30.smtp-out.amazonses.com"));
    assert_eq!(
        (ses.source_name.as_deref(), ses.source_type.as_deref()),
        (Some("Amazon SES"), Some("esp"))
    );

    // Not in the map: the base domain names the source.
    let unknown = enricher.describe(ip("11.0.0.3"), Some("mx1.mail.example.co.uk"));
    assert_eq!(unknown.base_domain.as_deref(), Some("example.co.uk"));
    assert_eq!(unknown.source_name.as_deref(), Some("example.co.uk"));
    assert_eq!(unknown.source_type, None);

    // No PTR: the AS domain if the map knows it, else the AS name.
    let by_as_domain = enricher.describe(ip("11.0.1.5"), None);
    assert_eq!(by_as_domain.source_name.as_deref(), Some("Mailchimp"));
    let by_as_name = enricher.describe(ip("11.0.0.4"), None);
    assert_eq!(by_as_name.source_name.as_deref(), Some("Example Transit"));
    assert_eq!(by_as_name.source_type, None);

    // Nothing known at all.
    let nothing = enricher.describe(ip("198.51.100.1"), None);
    assert_eq!(nothing.source_name, None);
}

#[test]
fn a_users_csv_adds_and_overrides_rows() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sources.csv");
    std::fs::write(
        &csv,
        "base_reverse_dns,name,type\n\
         google.com,Google Workspace (ours),mailbox_provider\n\
         example-esp.net,\"Example ESP, Inc.\",esp\n",
    )
    .unwrap();
    let map = SourceMap::shipped().with_csv_file(&csv).unwrap();
    assert_eq!(
        &*map.get("google.com").unwrap().name,
        "Google Workspace (ours)"
    );
    assert_eq!(
        &*map.get("example-esp.net").unwrap().name,
        "Example ESP, Inc."
    );
    assert_eq!(
        &*map.get("amazonses.com").unwrap().name,
        "Amazon SES",
        "shipped rows stay"
    );

    std::fs::write(&csv, "example.org,Only two fields\n").unwrap();
    let error = SourceMap::shipped().with_csv_file(&csv).unwrap_err();
    assert!(
        error.to_string().contains("line 1") && error.to_string().contains("3 fields"),
        "{error}"
    );
    let missing = SourceMap::shipped().with_csv_file(&dir.path().join("nope.csv"));
    assert!(missing.unwrap_err().to_string().contains("nope.csv"));
}

/// A DNS server with one IP per behaviour: 11.0.0.1 named, .2 no name,
/// .3 SERVFAIL, .4 slower than the timeout, .5 silent; others get a name
/// made from the address.
async fn dns_server() -> PtrServer {
    let rules = HashMap::from([
        (
            ip("11.0.0.1"),
            PtrRule::Name("mail-sor-f41.google.com".into()),
        ),
        (ip("11.0.0.2"), PtrRule::NoName),
        (ip("11.0.0.3"), PtrRule::ServFail),
        (
            ip("11.0.0.4"),
            PtrRule::Slow(Duration::from_secs(5), "late.example.net".into()),
        ),
        (ip("11.0.0.5"), PtrRule::Silent),
    ]);
    PtrServer::start(rules, |ip| {
        PtrRule::Name(format!(
            "host-{}.bulk.example-esp.net",
            ip.to_string().replace('.', "-")
        ))
    })
    .await
    .unwrap()
}

fn dns_config(server: &PtrServer) -> EnrichConfig {
    EnrichConfig {
        name_servers: vec![server.address().to_string()],
        dns_timeout_ms: 400,
        dns_max_attempts: 2,
        ..EnrichConfig::default()
    }
}

#[tokio::test]
async fn ptr_lookups_against_a_dns_server_on_loopback() {
    let server = dns_server().await;
    let resolver = PtrResolver::new(&dns_config(&server)).unwrap();

    match resolver.lookup(ip("11.0.0.1")).await {
        PtrAnswer::Name { name, ttl } => {
            assert_eq!(name, "mail-sor-f41.google.com.");
            assert_eq!(ttl, Duration::from_secs(3600));
        }
        other => panic!("expected a name, got {other:?}"),
    }
    assert_eq!(resolver.lookup(ip("11.0.0.2")).await, PtrAnswer::NoName);
    assert!(matches!(
        resolver.lookup(ip("11.0.0.3")).await,
        PtrAnswer::Failed(_)
    ));
    for slow in ["11.0.0.4", "11.0.0.5"] {
        let started = Instant::now();
        let answer = resolver.lookup(ip(slow)).await;
        assert!(matches!(answer, PtrAnswer::Failed(_)), "{slow}: {answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{slow}: the timeout bounds the lookup ({:?})",
            started.elapsed()
        );
    }
    // Answers are cached in memory: asking again does not reach the server.
    let before = server.queries();
    assert!(matches!(
        resolver.lookup(ip("11.0.0.1")).await,
        PtrAnswer::Name { .. }
    ));
    assert_eq!(server.queries(), before);
}

/// Stores a synthetic report with `records` rows (sources 11.0.0.1 …).
async fn store_report(store: &Store, records: usize, id: &str) {
    let mut report = testing::aggregate_report(records);
    report.metadata.report_id = id.to_string();
    Inbox::new(store.clone())
        .accept(report.to_xml().as_bytes(), &Envelope::import(id))
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

#[tokio::test]
async fn stored_sources_are_enriched_and_answers_survive_a_restart() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = dns_server().await;
        let config = EnrichConfig {
            databases: geo_files(files.path()),
            ..dns_config(&server)
        };
        store_report(&store, 8, "first").await;

        // Stored with the records, waiting to be described.
        let waiting = store.source(ip("11.0.0.1")).await.unwrap().unwrap();
        assert!(!waiting.described, "{backend}");
        assert_eq!(waiting.dns_state, StoredDnsState::Pending, "{backend}");
        assert_eq!(
            store.enrichment_counts().await.unwrap().sources,
            8,
            "{backend}"
        );

        let enricher = Enricher::from_config(&config).unwrap();
        let service = EnrichService::new(store.clone(), enricher.clone(), config.clone()).unwrap();
        let progress = service.run_until_idle().await.unwrap();
        assert_eq!(progress.described, 8, "{backend}");
        assert_eq!(
            (progress.named, progress.no_name, progress.failed),
            (4, 1, 3),
            "{backend}: .1 .6 .7 .8 named, .2 none, .3 .4 .5 failed"
        );

        let google = store.source(ip("11.0.0.1")).await.unwrap().unwrap();
        assert_eq!(
            google.ptr.as_deref(),
            Some("mail-sor-f41.google.com"),
            "{backend}"
        );
        assert_eq!(
            google.base_domain.as_deref(),
            Some("google.com"),
            "{backend}"
        );
        assert_eq!(google.source_name.as_deref(), Some("Google"), "{backend}");
        assert_eq!(
            google.source_type.as_deref(),
            Some("mailbox_provider"),
            "{backend}"
        );
        assert_eq!(google.country.as_deref(), Some("US"), "{backend}");
        assert_eq!(google.asn, Some(64500), "{backend}");
        assert_eq!(google.dns_state, StoredDnsState::Done, "{backend}");

        let no_name = store.source(ip("11.0.0.2")).await.unwrap().unwrap();
        assert_eq!(no_name.dns_state, StoredDnsState::NoName, "{backend}");
        assert_eq!(no_name.ptr, None, "{backend}");
        assert_eq!(
            no_name.source_name.as_deref(),
            Some("Example Transit"),
            "{backend}"
        );

        for failed in ["11.0.0.3", "11.0.0.4", "11.0.0.5"] {
            let row = store.source(ip(failed)).await.unwrap().unwrap();
            assert_eq!(row.dns_state, StoredDnsState::Failed, "{backend} {failed}");
            assert_eq!(row.dns_attempts, 1, "{backend} {failed}");
            assert!(
                row.described,
                "{backend} {failed}: described even without a name"
            );
            assert_eq!(row.source_name.as_deref(), Some("Example Transit"));
        }

        let esp = store.source(ip("11.0.0.6")).await.unwrap().unwrap();
        assert_eq!(
            esp.base_domain.as_deref(),
            Some("example-esp.net"),
            "{backend}"
        );

        // A restart (a new service, an empty in-memory cache) asks nothing
        // again: the answers are in the database, failures wait for their retry.
        let queries = server.queries();
        let restarted = EnrichService::new(store.clone(), enricher, config.clone()).unwrap();
        assert_eq!(
            restarted.run_until_idle().await.unwrap().lookups(),
            0,
            "{backend}"
        );
        // The same IPs in a new report do not trigger lookups either.
        store_report(&store, 8, "second").await;
        assert_eq!(
            restarted.run_until_idle().await.unwrap().lookups(),
            0,
            "{backend}"
        );
        assert_eq!(server.queries(), queries, "{backend}");

        // A refresh after a new map re-describes from the stored PTR names.
        let csv = files.path().join("sources.csv");
        std::fs::write(&csv, "example-esp.net,Example ESP,esp\n").unwrap();
        let remapped = EnrichConfig {
            source_map: Some(csv),
            ..config.clone()
        };
        let service = EnrichService::new(
            store.clone(),
            Enricher::from_config(&remapped).unwrap(),
            remapped,
        )
        .unwrap();
        let marked = store
            .refresh_sources(dmarcd::store::DnsRefresh::Keep)
            .await
            .unwrap();
        assert_eq!(marked, 8, "{backend}");
        let progress = service.run_until_idle().await.unwrap();
        assert_eq!(
            (progress.described, progress.lookups()),
            (8, 0),
            "{backend}"
        );
        let esp = store.source(ip("11.0.0.6")).await.unwrap().unwrap();
        assert_eq!(esp.source_name.as_deref(), Some("Example ESP"), "{backend}");
        assert_eq!(esp.source_type.as_deref(), Some("esp"), "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_silent_name_server_never_holds_up_ingestion_or_descriptions() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = PtrServer::start(HashMap::new(), |_| PtrRule::Silent)
            .await
            .unwrap();
        let config = EnrichConfig {
            databases: geo_files(files.path()),
            name_servers: vec![server.address().to_string()],
            dns_timeout_ms: 30_000,
            poll_interval_ms: 20,
            ..EnrichConfig::default()
        };
        let service = EnrichService::new(
            store.clone(),
            Enricher::from_config(&config).unwrap(),
            config,
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = tokio::spawn({
            let service = service.clone();
            async move { service.run(stopped).await }
        });

        // Reports keep being stored while every PTR lookup hangs…
        for batch in 0..3 {
            store_report(&store, 50, &format!("batch-{batch}")).await;
        }
        assert_eq!(
            store.report_counts().await.unwrap().aggregate_records,
            150,
            "{backend}"
        );
        // …and every IP is described from the files meanwhile, while the
        // lookups (sent at their own pace, 30 s from timing out) hang.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let counts = store.enrichment_counts().await.unwrap();
            if counts.sources == 50 && counts.undescribed == 0 && server.queries() > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{backend}: {counts:?}, {} lookups sent",
                server.queries()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let row = store.source(ip("11.0.0.9")).await.unwrap().unwrap();
        assert_eq!(row.country.as_deref(), Some("US"), "{backend}");
        assert_ne!(row.dns_state, StoredDnsState::Done, "{backend}");

        // Shutdown does not wait for the hanging lookups.
        let started = Instant::now();
        stop.send(true).unwrap();
        running.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{backend}");
        store.close().await;
    }
}

#[test]
fn enrich_refresh_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let databases: Vec<String> = geo_files(files.path())
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let report = data.path().join("report.xml");
    std::fs::write(&report, testing::aggregate_report(4).to_xml()).unwrap();
    let run = |args: &[&str], map: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
        command
            .args(args)
            .env("DMARCD_DATA_DIR", data.path())
            .env_remove("DATABASE_URL")
            .env_remove("DMARCD_DATABASE_URL")
            .env("DMARCD_LOG", "warn")
            .env("DMARCD_ENRICH_DATABASES", databases.join(","))
            .env("DMARCD_ENRICH_REVERSE_DNS", "false");
        if let Some(map) = map {
            command.env("DMARCD_ENRICH_SOURCE_MAP", map);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    run(&["import", report.to_str().unwrap()], None);
    let first = run(&["enrich"], None);
    assert!(first.contains("described 4 IP addresses"), "{first}");
    let again = run(&["enrich"], None);
    assert!(again.contains("described 0 IP addresses"), "{again}");

    // A new map: --refresh describes all of them again.
    let csv = files.path().join("mine.csv");
    std::fs::write(&csv, "example-transit.net,Transit,hosting\n").unwrap();
    let refreshed = run(&["enrich", "--refresh"], Some(&csv));
    assert!(
        refreshed.contains("re-enriching 4 IP addresses"),
        "{refreshed}"
    );
    assert!(
        refreshed.contains("described 4 IP addresses"),
        "{refreshed}"
    );
}

#[test]
fn db_ip_files_are_recognised_for_their_attribution() {
    let dir = tempfile::tempdir().unwrap();
    let plain = GeoDatabases::open(&geo_files(dir.path()));
    assert!(!plain.includes_dbip());
    let dbip = dir.path().join("dbip-country-lite-2026-11.mmdb");
    install(
        &dbip,
        &mmdb::build(
            "DBIP-Country-Lite",
            &[("11.0.0.0/24", mmdb::nested("US", 1, "x"))],
        ),
    );
    assert!(GeoDatabases::open(&[dbip]).includes_dbip());
    let renamed = dir.path().join("country.mmdb");
    install(
        &renamed,
        &mmdb::build(
            "DBIP-Country-Lite",
            &[("11.0.0.0/24", mmdb::nested("US", 1, "x"))],
        ),
    );
    assert!(
        GeoDatabases::open(&[renamed]).includes_dbip(),
        "known by its metadata too"
    );
}
