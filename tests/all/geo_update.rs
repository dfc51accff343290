//! `dmarcd geo update` against a local stand-in for DB-IP's download site
//! serving `.mmdb.gz` files the tests write: a good download is swapped in
//! atomically and picked up by a running enricher; a damaged, wrong or
//! oversized one is refused and the file in place kept; a month not yet
//! published falls back to the previous one; two runs never write at once.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Datelike, NaiveDate, Utc};
use common::download_server::{DownloadServer, Served};
use common::mmdb;
use dmarcd::enrich::{GeoDatabases, GeoUpdateConfig, GeoUpdateError, GeoUpdater, Month, Outcome};
use flate2::Compression;
use serde_json::json;

const PROBE: &str = "8.8.8.8";

fn at(day: NaiveDate) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(day.and_hms_opt(3, 0, 0).unwrap().and_utc().timestamp() as u64)
}

fn country_db(country: &str, built: NaiveDate) -> Vec<u8> {
    mmdb::build_described(
        "DBIP-Country-Lite",
        at(built),
        &[
            ("8.8.8.0/24", json!({"country": {"iso_code": country}})),
            ("11.0.0.0/24", json!({"country": {"iso_code": country}})),
        ],
    )
}

fn asn_db(asn: u32, built: NaiveDate) -> Vec<u8> {
    mmdb::build_described(
        "DBIP-ASN-Lite",
        at(built),
        &[(
            "8.8.8.0/24",
            json!({"autonomous_system_number": asn, "autonomous_system_organization": "Google LLC"}),
        )],
    )
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    common::gzip(bytes, Compression::default())
}

fn file_path(name: &str, month: Month) -> String {
    format!("/{name}-{}-{:02}.mmdb.gz", month.year, month.month)
}

fn months_ago(day: NaiveDate, months: u32) -> NaiveDate {
    day.with_day(1)
        .unwrap()
        .checked_sub_months(chrono::Months::new(months))
        .unwrap()
}

fn config(server: &DownloadServer, directory: &Path) -> GeoUpdateConfig {
    GeoUpdateConfig {
        directory: Some(directory.to_path_buf()),
        country_url: server.template("dbip-country-lite"),
        asn_url: server.template("dbip-asn-lite"),
        min_node_count: 1,
        ..GeoUpdateConfig::default()
    }
}

/// Only the databases and the lock file: no temporary file left behind.
fn assert_clean(directory: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".geo-update.lock")
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|name| name == "dbip-asn-lite.mmdb" || name == "dbip-country-lite.mmdb"),
        "{names:?}"
    );
}

fn write_config(dir: &Path, server: &DownloadServer, geo: &Path) -> PathBuf {
    let path = dir.join("dmarcd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\n[geo]\ndirectory = {geo:?}\ncountry_url = {country:?}\n\
             asn_url = {asn:?}\nmin_node_count = 1\n",
            data = dir.join("data"),
            country = server.template("dbip-country-lite"),
            asn = server.template("dbip-asn-lite"),
        ),
    )
    .unwrap();
    path
}

fn dmarcd(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmarcd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "warn")
        .output()
        .expect("the dmarcd binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn geo_update_swaps_in_both_databases_and_a_running_enricher_reads_them() {
    let server = DownloadServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let geo = dir.path().join("geo");
    let config = write_config(dir.path(), &server, &geo);
    let today = Utc::now().date_naive();
    let this_month = Month::of(today);
    server.put(
        &file_path("dbip-country-lite", this_month),
        Served::File(gz(&country_db("US", today.with_day(1).unwrap()))),
    );
    server.put(
        &file_path("dbip-asn-lite", this_month),
        Served::File(gz(&asn_db(15169, today.with_day(1).unwrap()))),
    );
    // Two months old and wrong: what a forgotten cron job leaves.
    std::fs::create_dir_all(&geo).unwrap();
    let country = geo.join("dbip-country-lite.mmdb");
    let asn = geo.join("dbip-asn-lite.mmdb");
    std::fs::write(&country, country_db("FR", months_ago(today, 2))).unwrap();
    let before = inode(&country);
    // The enricher of a running server, reading the files geo update writes.
    let databases = GeoDatabases::open(&[country.clone(), asn.clone()]);
    let probe = PROBE.parse().unwrap();
    assert_eq!(databases.lookup(probe).country.as_deref(), Some("FR"));
    assert_eq!(databases.lookup(probe).asn, None);

    let output = dmarcd(&config, &["geo", "update"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("country database: installed {this_month}'s")),
        "{said}"
    );
    assert!(
        said.contains(&format!("ASN database: installed {this_month}'s")),
        "{said}"
    );
    assert_clean(&geo);
    // Replaced by a rename: a new inode, never the old file rewritten in place.
    assert_ne!(inode(&country), before);
    // Picked up without a restart, as the enrichment task does every 30 s.
    assert_eq!(databases.reload_if_changed(), 2);
    let info = databases.lookup(probe);
    assert_eq!(info.country.as_deref(), Some("US"));
    assert_eq!(info.asn, Some(15169));
    assert!(databases.includes_dbip());

    // This month's are in place: a daily timer downloads nothing.
    let asked = server.asked().len();
    let output = dmarcd(&config, &["geo", "update"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("country database: up to date"), "{said}");
    assert_eq!(server.asked().len(), asked, "no download");
    // --force downloads, and finds the same file.
    let output = dmarcd(&config, &["geo", "update", "--force"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("is the newest and already in place"),
        "{said}"
    );
    assert_eq!(server.asked().len(), asked + 2);

    // A second run while one holds the lock exits 75 and writes nothing.
    let lock = std::fs::File::options()
        .write(true)
        .open(geo.join(".geo-update.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let output = dmarcd(&config, &["geo", "update", "--force"]);
    assert_eq!(output.status.code(), Some(75), "{}", text(&output));
    assert!(text(&output).contains("another `dmarcd geo update`"));
    assert_eq!(server.asked().len(), asked + 2);
    drop(lock);

    // A refused download is exit status 1, and the file in place stays.
    let good = std::fs::read(&country).unwrap();
    server.put(
        &file_path("dbip-country-lite", this_month),
        Served::File(gz(b"<html>Service Unavailable</html>")),
    );
    let output = dmarcd(&config, &["geo", "update", "--force"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("not a MaxMind-format database"), "{said}");
    assert_eq!(std::fs::read(&country).unwrap(), good);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_wrong_download_is_refused_and_the_file_in_place_kept() {
    let server = DownloadServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = GeoUpdateConfig {
        asn_url: String::new(),
        ..config(&server, dir.path())
    };
    let today = NaiveDate::from_ymd_opt(2027, 3, 14).unwrap();
    let path = file_path("dbip-country-lite", Month::of(today));
    let target = dir.path().join("dbip-country-lite.mmdb");
    let old = country_db("FR", months_ago(today, 2));
    std::fs::write(&target, &old).unwrap();
    let good = country_db("US", today.with_day(1).unwrap());
    let truncated_gzip = gz(&good)[..gz(&good).len() / 2].to_vec();
    let cut_database = gz(&good[..good.len() * 2 / 3]);
    let mut flipped = good.clone();
    // Damage the search tree (the file's first bytes).
    for byte in &mut flipped[..64] {
        *byte ^= 0xa5;
    }
    let without_probe = mmdb::build_at(
        "DBIP-Country-Lite",
        at(today),
        &[("11.0.0.0/24", json!({"country": {"iso_code": "US"}}))],
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a gzip cut in half", truncated_gzip, "does not unpack"),
        (
            "an error page",
            gz(b"<html>Service Unavailable</html>"),
            "not a MaxMind-format database",
        ),
        ("a database cut short", cut_database, "MaxMind"),
        ("a damaged tree", gz(&flipped), "damaged"),
        (
            "an ASN database at the country URL",
            gz(&asn_db(15169, today)),
            "not a country database",
        ),
        (
            "a database that does not know the probe address",
            gz(&without_probe),
            "no country for 8.8.8.8",
        ),
    ];
    let updater = GeoUpdater::new(&config, Path::new("unused"));
    for (case, body, reason) in cases {
        server.put(&path, Served::File(body));
        let results = updater.update(today, false).await.unwrap();
        match &results[..] {
            [Err(GeoUpdateError::Invalid { reason: why, .. })] => {
                assert!(why.contains(reason), "{case}: {why}");
            }
            other => panic!("{case}: {other:?}"),
        }
        assert_eq!(
            std::fs::read(&target).unwrap(),
            old,
            "{case}: old file kept"
        );
        assert_clean(dir.path());
    }
    // The same site with the good file: installed.
    server.put(&path, Served::File(gz(&good)));
    let results = updater.update(today, false).await.unwrap();
    assert!(
        matches!(results[..], [Ok(Outcome::Updated { .. })]),
        "{results:?}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), good);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_month_not_yet_published_falls_back_to_the_previous_one() {
    let server = DownloadServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = GeoUpdateConfig {
        asn_url: String::new(),
        ..config(&server, dir.path())
    };
    let updater = GeoUpdater::new(&config, Path::new("unused"));
    let target = dir.path().join("dbip-country-lite.mmdb");
    let january = NaiveDate::from_ymd_opt(2027, 1, 2).unwrap();
    let december = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let (jan, dec) = (
        file_path("dbip-country-lite", Month::of(january)),
        file_path("dbip-country-lite", Month::of(december)),
    );

    // Nothing published at all, nothing in place: an error naming both.
    let results = updater.update(january, false).await.unwrap();
    match &results[..] {
        [Err(GeoUpdateError::NotPublished { tried, .. })] => {
            assert!(
                tried.contains("2027-01") && tried.contains("2026-12"),
                "{tried}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(!target.exists());

    // January's not out yet (404): December's is installed.
    server.put(&dec, Served::File(gz(&country_db("DE", december))));
    let results = updater.update(january, false).await.unwrap();
    match &results[..] {
        [Ok(Outcome::Updated { month, .. })] => assert_eq!(*month, Month::of(december)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.asked()[server.asked().len() - 2..],
        [jan.clone(), dec.clone()]
    );
    // The next day: only January's is asked for (December's is in place).
    let asked = server.asked().len();
    let results = updater
        .update(january.succ_opt().unwrap(), false)
        .await
        .unwrap();
    assert!(
        matches!(results[..], [Ok(Outcome::NotYetPublished { .. })]),
        "{results:?}"
    );
    assert_eq!(server.asked()[asked..], [jan.as_str()]);

    // January's appears: installed; then up to date without a download.
    server.put(&jan, Served::File(gz(&country_db("NL", january))));
    let results = updater.update(january, false).await.unwrap();
    match &results[..] {
        [Ok(Outcome::Updated { month, .. })] => assert_eq!(*month, Month::of(january)),
        other => panic!("{other:?}"),
    }
    let databases = GeoDatabases::open(std::slice::from_ref(&target));
    assert_eq!(
        databases.lookup(PROBE.parse().unwrap()).country.as_deref(),
        Some("NL")
    );
    let asked = server.asked().len();
    let results = updater.update(january, false).await.unwrap();
    assert!(
        matches!(results[..], [Ok(Outcome::Current { .. })]),
        "{results:?}"
    );
    assert_eq!(server.asked().len(), asked);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_past_the_size_limits_is_refused() {
    let server = DownloadServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = GeoUpdateConfig {
        asn_url: String::new(),
        max_download_bytes: 1024 * 1024,
        max_database_bytes: 2 * 1024 * 1024,
        ..config(&server, dir.path())
    };
    let updater = GeoUpdater::new(&config, Path::new("unused"));
    let today = NaiveDate::from_ymd_opt(2027, 3, 14).unwrap();
    let path = file_path("dbip-country-lite", Month::of(today));
    let target = dir.path().join("dbip-country-lite.mmdb");
    let old = country_db("FR", months_ago(today, 2));
    std::fs::write(&target, &old).unwrap();

    // Streamed with no length declared: cut off past the limit.
    server.put(&path, Served::Endless(3 * 1024 * 1024));
    let results = updater.update(today, false).await.unwrap();
    match &results[..] {
        [Err(GeoUpdateError::Download { reason, .. })] => {
            assert!(reason.contains("geo.max_download_bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Declared too long: refused before the body is read.
    server.put(&path, Served::File(vec![0; 1024 * 1024 + 1]));
    let results = updater.update(today, false).await.unwrap();
    match &results[..] {
        [Err(GeoUpdateError::Download { reason, .. })] => {
            assert!(reason.contains("more than the 1048576 allowed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Small compressed, too big unpacked.
    server.put(&path, Served::File(gz(&vec![0; 3 * 1024 * 1024])));
    let results = updater.update(today, false).await.unwrap();
    match &results[..] {
        [Err(GeoUpdateError::Invalid { reason, .. })] => {
            assert!(reason.contains("geo.max_database_bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&target).unwrap(), old);
    assert_clean(dir.path());
}

/// `geo.monthly`: a running `serve` downloads the databases itself and its
/// enrichment picks them up without a restart: IPs stored before there was
/// any database get their country.
#[tokio::test(flavor = "multi_thread")]
async fn serve_downloads_monthly_and_enriches_without_a_restart() {
    let server = DownloadServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let geo = dir.path().join("geo");
    let config = write_config(dir.path(), &server, &geo);
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str("monthly = true\n");
    std::fs::write(&config, text_config).unwrap();
    let today = Utc::now().date_naive();
    let this_month = Month::of(today);
    server.put(
        &file_path("dbip-country-lite", this_month),
        Served::File(gz(&country_db("US", today.with_day(1).unwrap()))),
    );
    server.put(
        &file_path("dbip-asn-lite", this_month),
        Served::File(gz(&asn_db(64500, today.with_day(1).unwrap()))),
    );
    // A report from 11.0.0.x, stored while no database exists.
    let report = dir.path().join("report.xml");
    std::fs::write(&report, dmarcd::testing::aggregate_report(5).to_xml()).unwrap();
    let output = dmarcd(&config, &["import", report.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let output = dmarcd(&config, &["token", "create", "--name", "test"]);
    assert!(output.status.success(), "{}", text(&output));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();

    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmarcd"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "warn")
        .env("DMARCD_SMTP_ENABLED", "false")
        .env("DMARCD_ENRICH_REVERSE_DNS", "false")
        .env("DMARCD_WEB_LISTEN", web.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let countries = move || -> Option<serde_json::Value> {
        let mut reply = agent
            .get(format!(
                "http://{web}/api/v1/aggregate/summary?group_by=country"
            ))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .ok()?;
        serde_json::from_str(&reply.body_mut().read_to_string().ok()?).ok()
    };
    // The enrichment task looks at the files every 30 seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last = None;
    let found = tokio::task::spawn_blocking(move || loop {
        if let Some(summary) = countries() {
            if summary["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|item| item["key"] == "US"))
            {
                return Ok(summary);
            }
            last = Some(summary);
        }
        if std::time::Instant::now() > deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(500));
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let summary = found.unwrap_or_else(|last| panic!("no country after 90 s: {last:?}"));
    assert_eq!(summary["items"][0]["key"], "US", "{summary}");
    assert!(geo.join("dbip-country-lite.mmdb").exists());
    assert!(geo.join("dbip-asn-lite.mmdb").exists());
    assert_clean(&geo);
    assert_eq!(
        server.asked(),
        [
            file_path("dbip-country-lite", this_month),
            file_path("dbip-asn-lite", this_month)
        ]
    );
}
