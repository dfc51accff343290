//! `dmarcd import` and `dmarcd reprocess` as a user runs them: the real
//! binary, a fresh SQLite data directory, the corpus on disk.

use std::path::Path;
use std::process::Command;

fn dmarcd(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let run = crate::common::cli::dmarcd(data_dir, args, &[]);
    (run.success, run.stdout)
}

#[test]
fn importing_the_corpus_twice_stores_every_report_once() {
    let data = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/parsedmarc");
    let corpus = corpus.to_str().unwrap();

    let (ok, first) = dmarcd(data.path(), &["import", corpus]);
    assert!(ok, "{first}");
    assert!(
        first.contains("imported 34 files: 34 new messages, 0 already in the inbox"),
        "{first}"
    );
    assert!(
        first.contains(
            "stored: 20 aggregate reports (2345 records), 4 TLS reports, 4 failure reports"
        ),
        "{first}"
    );
    // linkedin.crlf.eml is linkedin.eml with CRLF line ends: one failure
    // report, stored once, like the aggregate reports repeated in the corpus.
    assert!(
        first.contains("duplicates: 5 reports already stored"),
        "{first}"
    );
    assert!(first.contains("ignored (not a report): 1"), "{first}");
    assert!(first.contains("empty.xml: empty input"), "{first}");
    assert!(first.contains("failed: 0"), "{first}");
    assert!(data.path().join("dmarcd.sqlite").exists());

    let (ok, second) = dmarcd(data.path(), &["import", corpus]);
    assert!(ok, "{second}");
    assert!(
        second.contains("0 new messages, 34 already in the inbox"),
        "{second}"
    );
    assert!(
        second
            .contains("stored: 0 aggregate reports (0 records), 0 TLS reports, 0 failure reports"),
        "{second}"
    );

    let (ok, again) = dmarcd(data.path(), &["reprocess", "--all"]);
    assert!(ok, "{again}");
    assert!(
        again.contains("queued 34 messages for reprocessing"),
        "{again}"
    );
    assert!(
        again.contains("stored: 20 aggregate reports (2345 records)"),
        "{again}"
    );
}

#[test]
fn import_lists_failures_with_their_reasons_and_exits_non_zero() {
    let data = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    std::fs::write(
        inputs.path().join("bad.xml"),
        "<feedback><report_metadata><org_name>x</org_name></report_metadata></feedback>",
    )
    .unwrap();
    let (ok, output) = dmarcd(data.path(), &["import", inputs.path().to_str().unwrap()]);
    assert!(!ok, "{output}");
    assert!(output.contains("failed: 1"), "{output}");
    assert!(
        output.contains("bad.xml: invalid DMARC aggregate report: missing required element"),
        "{output}"
    );
}

#[test]
fn migrate_creates_the_schema_once() {
    let data = tempfile::tempdir().unwrap();
    let (ok, first) = dmarcd(data.path(), &["migrate"]);
    assert!(
        ok && first.contains("sqlite: applied 0001 initial"),
        "{first}"
    );
    let (ok, second) = dmarcd(data.path(), &["migrate"]);
    assert!(
        ok && second.contains("sqlite: schema is up to date"),
        "{second}"
    );
}

#[test]
fn imports_mbox_files_and_maildir_folders() {
    let data = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/parsedmarc");
    let twilight = std::fs::read(corpus.join("aggregate/twilight.eml")).unwrap();
    let mimecast = std::fs::read(corpus.join("aggregate/mimecast-weird-gzip.eml")).unwrap();
    let tlsrpt = std::fs::read(corpus.join("smtp_tls/google.com_smtp_tls_report.eml")).unwrap();

    // An mbox holding two of the messages.
    let mut mbox = b"From reports@google.com Mon Feb 11 00:00:00 2019\n".to_vec();
    mbox.extend_from_slice(&twilight);
    mbox.extend_from_slice(b"\nFrom reports@mimecast.org Tue Aug 29 00:00:00 2023\n");
    mbox.extend_from_slice(&mimecast);
    std::fs::write(inputs.path().join("reports.mbox"), mbox).unwrap();

    // A Maildir: messages in cur/ and new/; tmp/ (still being delivered) is skipped.
    let maildir = inputs.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(maildir.join("new/1700000000.1.host"), &tlsrpt).unwrap();
    std::fs::write(maildir.join("tmp/1700000001.2.host"), b"half-delivered").unwrap();

    let (ok, output) = dmarcd(data.path(), &["import", inputs.path().to_str().unwrap()]);
    assert!(ok, "{output}");
    assert!(
        output.contains("imported 2 files: 3 new messages"),
        "{output}"
    );
    assert!(
        output
            .contains("stored: 2 aggregate reports (2 records), 1 TLS reports, 0 failure reports"),
        "{output}"
    );
    assert!(output.contains("failed: 0"), "{output}");
}

/// `dmarcd import` of one report, its peak resident memory in KiB (the
/// highest VmHWM read from /proc while it runs).
fn import_peak_kib(data_dir: &Path, file: &Path, run_records: usize) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmarcd"))
        .args(["import", file.to_str().unwrap()])
        .env("DMARCD_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "warn")
        .env("DMARCD_WORKER_STREAM_FROM_BYTES", "10000")
        .env("DMARCD_WORKER_STREAM_RUN_RECORDS", run_records.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the dmarcd binary runs");
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
            assert!(status.success(), "dmarcd import failed");
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A report's records are stored in runs as they are parsed, so they are
/// never all in memory: importing 24,000 records in runs of 500 peaks well
/// below importing them in one piece (issue 16: 1.5 million records once
/// took 2.5 GB; `cargo bench --bench store` imports 1.5 million in release
/// and prints the peak). What remains grows with the database's own caches
/// (SQLite: 16 MiB of pages per connection), not with the report.
#[test]
fn a_large_report_is_imported_in_runs_not_whole() {
    use std::io::Write;
    let files = tempfile::tempdir().unwrap();
    let records = 24_000;
    let report = dmarcd::testing::aggregate_report(records);
    let path = files.path().join("large.xml.gz");
    let mut gzip = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    gzip.write_all(report.to_xml().as_bytes()).unwrap();
    gzip.finish().unwrap();
    let peak = |run_records: usize| {
        let data = tempfile::tempdir().unwrap();
        import_peak_kib(data.path(), &path, run_records)
    };
    let in_runs = peak(500);
    let whole = peak(records * 10);
    eprintln!("peak RSS {in_runs} KiB in runs of 500, {whole} KiB whole");
    // Held whole, 24,000 parsed records take about 25 MB.
    assert!(
        in_runs + 15 * 1024 < whole,
        "peak RSS {in_runs} KiB in runs of 500, {whole} KiB whole"
    );
}

/// Logs read by a pipe, a file or journald carry no colour codes (they did:
/// `\x1b[2m2026-…\x1b[0m \x1b[32m INFO\x1b[0m`).
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    // An import of an empty file: it logs the migrations it applies.
    let empty =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/parsedmarc/empty.xml");
    let output = Command::new(env!("CARGO_BIN_EXE_dmarcd"))
        .arg("import")
        .arg(empty)
        .env("DMARCD_DATA_DIR", data.path())
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "info")
        .output()
        .expect("the dmarcd binary runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("INFO"), "no log lines to look at: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}
