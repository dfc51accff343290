//! Import throughput into each backend, printed as figures:
//! `cargo bench --bench store` (PostgreSQL too when DATABASE_URL is set).
//!
//! Each case writes its reports as files into a temporary directory and
//! times the wall clock of the real `dmarcd import DIR` process (the
//! binary built with this bench), default settings, into a fresh database:
//! the path a user importing a mailbox backup takes, start-up and all.
//!
//! Cases:
//! - realistic: 1,000 gzip reports x 100 records for 20 domains from 5
//!   reporters over 10 days, whose sources come from a skewed pool of 5,000
//!   IPs, so the same sources meet in many reports (`testing::realistic_report`);
//! - same sources: 1,000 gzip reports x 100 records, every report from the
//!   same 100 IPs on the same day (the worst case for contention on rows);
//! - one large report: 100,000 records from 100,000 distinct IPs;
//! - PostgreSQL only: 4 `dmarcd import` processes at once into one database
//!   (several nodes), each with a quarter of a realistic set of 4,000;
//! - one report of 1,500,000 records (10,000 sources over and over), with
//!   the peak resident memory of the import (records are stored in runs as
//!   they are parsed, so it stays flat).
//!
//! - alert rules: the realistic set stored in 10 imports of 100 reports,
//!   the rollup applier run after each (as `serve` applies while reports
//!   arrive, so later batches meet known domains and new sources), once
//!   with no alert rules and once with 50 (25 new-source and 25
//!   failing-volume rules for every domain, the kinds evaluated on the
//!   applier's batches); prints records/s of import + applier and of the
//!   applier alone, and the alerts the rules opened.
//!
//! Each import goes into a database already migrated (as every import but
//! a deployment's first does); migrating a fresh PostgreSQL database takes
//! about 0.3 s of its own.
//!
//! `BENCH_BIN=<path>` (not DMARCD_*: dmarcd reads those as settings) times another build of dmarcd (an older release, to
//! compare before and after in one sitting); a case whose import fails
//! prints FAILED and the error instead of a figure.
//!
//! `PLAIN=1` writes plain XML instead of gzip; `ONLY=<text>` runs the cases
//! whose name contains it; `WORKERS` and `BATCH` set `DMARCD_WORKER_*`;
//! `KEEP=<dir>` leaves each case's files in `<dir>/<case>` (to profile an
//! import by hand).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use dmarcd::report::AggregateReport;
use dmarcd::store::Store;
use dmarcd::testing;
use sqlx::Connection;

/// The dmarcd under test: this build's, or `BENCH_BIN`.
fn binary() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_dmarcd").to_string())
}

/// A case's name and the reports it imports.
type Case = (&'static str, fn() -> Vec<AggregateReport>);

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cases: [Case; 3] = [
            ("realistic 1000 x 100", || {
                (0..1000)
                    .map(|i| testing::realistic_report(i, 100))
                    .collect()
            }),
            ("same sources 1000 x 100", || {
                (0..1000)
                    .map(|i| {
                        let mut report = testing::aggregate_report(100);
                        report.metadata.report_id = format!("bench-{i}");
                        report
                    })
                    .collect()
            }),
            ("one report of 100000 unique IPs", || {
                let mut report = testing::aggregate_report(100_000);
                report.metadata.report_id = "bench-large".to_string();
                vec![report]
            }),
        ];
        let postgres = std::env::var("DATABASE_URL").ok();
        for (name, make) in cases {
            if !selected(name) {
                continue;
            }
            let files = tempfile::tempdir().unwrap();
            let (records, size) = write_reports(files.path(), &make());
            if let Ok(keep) = std::env::var("KEEP") {
                let kept = Path::new(&keep).join(name.replace(' ', "-"));
                std::fs::create_dir_all(&kept).unwrap();
                for entry in std::fs::read_dir(files.path()).unwrap() {
                    let path = entry.unwrap().path();
                    std::fs::copy(&path, kept.join(path.file_name().unwrap())).unwrap();
                }
            }
            let data = tempfile::tempdir().unwrap();
            migrate(&[("DMARCD_DATA_DIR", data.path())], None);
            let result = import(&[files.path()], &[("DMARCD_DATA_DIR", data.path())], None);
            report("sqlite", name, records, size, result);
            if let Some(url) = &postgres {
                let database = Database::create(url).await;
                migrate(&[], Some(&database.url));
                let result = import(&[files.path()], &[], Some(&database.url));
                report("postgres", name, records, size, result);
                database.drop().await;
            }
        }
        match &postgres {
            Some(url) if selected("4 processes") => four_processes(url).await,
            Some(_) => {}
            None => println!("postgres: skipped (DATABASE_URL unset)"),
        }
        if selected("1500000") {
            huge_report(postgres.as_deref()).await;
        }
        if selected("alert rules") {
            alert_rules(postgres.as_deref()).await;
        }
    });
}

fn selected(name: &str) -> bool {
    std::env::var("ONLY").map_or(true, |only| name.contains(&only))
}

fn report(backend: &str, name: &str, records: u64, bytes: u64, result: Result<f64, String>) {
    let format = if plain() { "plain XML" } else { "gzip" };
    let size = bytes as f64 / 1e6;
    match result {
        Ok(seconds) => println!(
            "{backend}: {name} ({format}, {size:.1} MB): {seconds:.2} s, {:.0} records/s",
            records as f64 / seconds
        ),
        Err(error) => println!("{backend}: {name} ({format}, {size:.1} MB): FAILED: {error}"),
    }
}

/// One report of 1.5 million records: records/s and peak memory.
async fn huge_report(postgres: Option<&str>) {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("huge.xml.gz");
    // 150 times the records of a 10,000-record report, between its header
    // and its end: the file is written as it is made.
    let xml = testing::aggregate_report(10_000).to_xml();
    let first = xml.find("<record>").unwrap();
    let last = xml.rfind("</record>").unwrap() + "</record>".len();
    let file = std::fs::File::create(&path).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    use std::io::Write;
    gzip.write_all(&xml.as_bytes()[..first]).unwrap();
    for _ in 0..150 {
        gzip.write_all(&xml.as_bytes()[first..last]).unwrap();
    }
    gzip.write_all(&xml.as_bytes()[last..]).unwrap();
    gzip.finish().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let name = "one report of 1500000 records";
    // The generated records are wordy: the report unpacks to 1.3 GB, past
    // the default decode.max_decompressed_bytes (512 MiB; a real report of
    // a million records is about 350 MB).
    let limit = (
        "DMARCD_DECODE_MAX_DECOMPRESSED_BYTES",
        Path::new("2147483648"),
    );
    let data = tempfile::tempdir().unwrap();
    migrate(&[("DMARCD_DATA_DIR", data.path())], None);
    let (result, peak) = import_measured(&path, &[("DMARCD_DATA_DIR", data.path()), limit], None);
    report("sqlite", name, 1_500_000, size, result);
    println!("sqlite: {name}: peak RSS {:.0} MiB", peak as f64 / 1024.0);
    if let Some(url) = postgres {
        let database = Database::create(url).await;
        migrate(&[], Some(&database.url));
        let (result, peak) = import_measured(&path, &[limit], Some(&database.url));
        report("postgres", name, 1_500_000, size, result);
        println!("postgres: {name}: peak RSS {:.0} MiB", peak as f64 / 1024.0);
        database.drop().await;
    }
}

/// `import`, with the peak resident memory (KiB) read from /proc while it runs.
fn import_measured(
    file: &Path,
    env: &[(&str, &Path)],
    database: Option<&str>,
) -> (Result<f64, String>, u64) {
    let start = Instant::now();
    let mut child = command("import", &[file], env, database).spawn().unwrap();
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let hwm = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let seconds = start.elapsed().as_secs_f64();
            if status.success() {
                return (Ok(seconds), peak);
            }
            use std::io::Read;
            let (mut stdout, mut stderr) = (String::new(), String::new());
            let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            return (Err(why(&stdout, &stderr)), peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Four importers at once into one PostgreSQL, as several nodes would be.
async fn four_processes(url: &str) {
    let reports: Vec<AggregateReport> = (0..4000)
        .map(|i| testing::realistic_report(i, 100))
        .collect();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut records = 0;
    let mut bytes = 0;
    for (part, dir) in dirs.iter().enumerate() {
        let quarter: Vec<AggregateReport> = reports.iter().skip(part).step_by(4).cloned().collect();
        let (r, b) = write_reports(dir.path(), &quarter);
        records += r;
        bytes += b;
    }
    let database = Database::create(url).await;
    migrate(&[], Some(&database.url));
    let start = Instant::now();
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            command("import", &[dir.path()], &[], Some(&database.url))
                .spawn()
                .unwrap()
        })
        .collect();
    let mut failure = None;
    for child in children {
        let output = child.wait_with_output().unwrap();
        if !output.status.success() {
            failure = Some(why(
                &String::from_utf8_lossy(&output.stdout),
                &String::from_utf8_lossy(&output.stderr),
            ));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let name = "4 processes, realistic 4000 x 100";
    if let Some(error) = failure {
        report("postgres", name, records, bytes, Err(error));
        database.drop().await;
        return;
    }
    report("postgres", name, records, bytes, Ok(seconds));
    let mut db = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM aggregate_records")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(stored as u64, records, "every record stored once");
    db.close().await.unwrap();
    database.drop().await;
}

fn plain() -> bool {
    std::env::var_os("PLAIN").is_some()
}

/// Writes one file per report; returns the records and bytes written.
fn write_reports(dir: &Path, reports: &[AggregateReport]) -> (u64, u64) {
    let mut bytes = 0;
    for (index, report) in reports.iter().enumerate() {
        let raw = encode(report.to_xml());
        bytes += raw.len() as u64;
        let name = if plain() { "xml" } else { "xml.gz" };
        std::fs::write(dir.join(format!("{index:05}.{name}")), raw).unwrap();
    }
    let records = reports.iter().map(|r| r.records.len() as u64).sum();
    (records, bytes)
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

fn command(
    subcommand: &str,
    paths: &[&Path],
    env: &[(&str, &Path)],
    database: Option<&str>,
) -> Command {
    let mut command = Command::new(binary());
    command.arg(subcommand).args(paths);
    command
        .env_remove("DATABASE_URL")
        .env("DMARCD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(url) = database {
        command.env("DATABASE_URL", url);
    }
    for (setting, variable) in [
        ("WORKERS", "DMARCD_WORKER_CONCURRENCY"),
        ("BATCH", "DMARCD_WORKER_BATCH_SIZE"),
    ] {
        if let Ok(value) = std::env::var(setting) {
            command.env(variable, value);
        }
    }
    command
}

/// `dmarcd migrate`, before the clock starts.
fn migrate(env: &[(&str, &Path)], database: Option<&str>) {
    let output = command("migrate", &[], env, database).output().unwrap();
    assert!(
        output.status.success(),
        "dmarcd migrate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs one `dmarcd import`; returns its wall time in seconds, or the
/// error it ended with.
fn import(paths: &[&Path], env: &[(&str, &Path)], database: Option<&str>) -> Result<f64, String> {
    let start = Instant::now();
    let output = command("import", paths, env, database).output().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    if output.status.success() {
        Ok(seconds)
    } else {
        Err(why(
            &String::from_utf8_lossy(&output.stdout),
            &String::from_utf8_lossy(&output.stderr),
        ))
    }
}

/// Why an import failed: the error it ended with (its last line on stderr),
/// or, when a report failed, the last line of its summary.
fn why(stdout: &str, stderr: &str) -> String {
    let last = |text: &str| text.trim().lines().last().map(str::to_string);
    last(stderr)
        .or_else(|| last(stdout))
        .unwrap_or_else(|| "no output".to_string())
}

/// A fresh PostgreSQL database for one case.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(admin_url: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "dmarcd_bench_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        Database {
            admin_url: admin_url.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// Replaces the alert rules with `count` batch rules for every domain:
/// half new-source (thresholds 1, 2, …), half failing-volume (windows of
/// 1 to 7 days, thresholds 10, 20, …).
async fn set_alert_rules(store: &Store, count: usize) {
    use dmarcd::alerts::RuleKind;
    use dmarcd::store::alerts::{self, NewRule};
    for rule in alerts::rules(store.db()).await.unwrap() {
        alerts::delete_rule(store.db(), rule.id).await.unwrap();
    }
    for i in 0..count {
        let (kind, threshold, window_days) = if i % 2 == 0 {
            (RuleKind::NewSource, (i / 2 + 1) as i64, 7)
        } else {
            (
                RuleKind::FailingVolume,
                10 * (i as i64 + 1),
                (i % 7) as i32 + 1,
            )
        };
        let rule = NewRule {
            domain: None,
            kind,
            threshold,
            window_days,
            cooldown_minutes: 360,
            channels: Vec::new(),
            classes: Vec::new(),
            created_by: "bench".to_string(),
        };
        alerts::add_rule(store.db(), &rule).await.unwrap();
    }
}

/// Import + applier throughput with 0 and with 50 alert rules.
async fn alert_rules(postgres: Option<&str>) {
    const CHUNKS: usize = 10;
    let files: Vec<tempfile::TempDir> = (0..CHUNKS)
        .map(|chunk| {
            let dir = tempfile::tempdir().unwrap();
            let reports: Vec<AggregateReport> = (chunk * 100..(chunk + 1) * 100)
                .map(|i| testing::realistic_report(i, 100))
                .collect();
            write_reports(dir.path(), &reports);
            dir
        })
        .collect();
    let records = (CHUNKS * 100 * 100) as f64;
    for backend in ["sqlite", "postgres"] {
        if backend == "postgres" && postgres.is_none() {
            continue;
        }
        for rules in [0, 50] {
            let data = tempfile::tempdir().unwrap();
            let database = match postgres.filter(|_| backend == "postgres") {
                Some(url) => Some(Database::create(url).await),
                None => None,
            };
            let url = database.as_ref().map(|database| database.url.clone());
            let env: Vec<(&str, &Path)> = match &url {
                Some(_) => Vec::new(),
                None => vec![("DMARCD_DATA_DIR", data.path())],
            };
            migrate(&env, url.as_deref());
            let store = Store::connect(url.as_deref(), data.path()).await.unwrap();
            set_alert_rules(&store, rules).await;
            let (mut importing, mut applying) = (0.0, 0.0);
            for chunk in &files {
                importing += import(&[chunk.path()], &env, url.as_deref()).unwrap();
                let start = Instant::now();
                store.apply_rollups_until_idle().await.unwrap();
                applying += start.elapsed().as_secs_f64();
            }
            let opened = dmarcd::store::alerts::list(store.db(), false, 100_000)
                .await
                .unwrap()
                .len();
            println!(
                "{backend}: alert rules: realistic 1000 x 100 in 10 imports, {rules} rules: \
                 {:.0} records/s import + applier ({:.2} s), applier alone {:.2} s \
                 ({:.0} records/s), {opened} alerts opened",
                records / (importing + applying),
                importing + applying,
                applying,
                records / applying,
            );
            store.close().await;
            if let Some(database) = database {
                database.drop().await;
            }
        }
    }
}
