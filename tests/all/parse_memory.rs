//! Peak memory of `dmarcd parse` on hostile TLS reports, read from /proc
//! (issue 16 item 3): an 8 MB gzip body with 1.5 million failure details
//! took the process to 4.4 GB, and a gzip JSON with one 500 MB string was
//! read whole. TLS reports are now streamed and capped (`[decode]`
//! max_tls_failure_details, max_json_string_bytes, max_tlsrpt_json_bytes),
//! which bounds parsing one to about twelve times max_tlsrpt_json_bytes.
//!
//! The binary parses the file, then a second input, stdin, which the test
//! holds open: while it waits there, its VmHWM is the peak of the first.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;

/// The error `dmarcd parse FILE` printed on stderr, and its peak RSS in
/// KiB. FILE must fail: its error line says the parse is over.
fn parse_and_measure(file: &Path) -> (String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmarcd"))
        .arg("parse")
        .arg(file)
        .arg("-")
        .env("DMARCD_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dmarcd runs");
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first_line = String::new();
        let _ = BufReader::new(stderr).read_line(&mut first_line);
        let _ = sender.send(first_line);
    });
    let Ok(first_line) = receiver.recv_timeout(Duration::from_secs(300)) else {
        let _ = child.kill();
        panic!("dmarcd parse printed no error within 300 s");
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    (first_line, peak)
}

fn gzip_file(path: &Path, chunks: impl Iterator<Item = Vec<u8>>) -> u64 {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = GzEncoder::new(std::io::BufWriter::new(file), Compression::default());
    for chunk in chunks {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap().flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

const HEAD: &str = r#"{"organization-name":"Hostile","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"},"report-id":"r","policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com"},"summary":{"total-successful-session-count":1,"total-failure-session-count":1500000},"failure-details":["#;

/// The memory of the process with nothing much to parse, for reference.
fn baseline(dir: &Path) -> u64 {
    let small = dir.join("small.json.gz");
    gzip_file(
        &small,
        std::iter::once(br#"{"organization-name":"X"}"#.to_vec()),
    );
    let (line, peak) = parse_and_measure(&small);
    assert!(
        line.contains("/report-id: missing required field"),
        "{line}"
    );
    peak
}

#[test]
fn a_tls_report_of_one_and_a_half_million_failure_details_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let reference = baseline(dir.path());
    let path = dir.path().join("details.json.gz");
    let details = (0..1_500_000u32).map(|index| {
        let [_, b, c, d] = index.to_be_bytes();
        let separator = if index == 0 { "" } else { "," };
        format!(
            r#"{separator}{{"result-type":"validation-failure","sending-mta-ip":"10.{b}.{c}.{d}","receiving-ip":"203.0.113.5","receiving-mx-hostname":"mx{d}.example.com","failed-session-count":1}}"#
        )
        .into_bytes()
    });
    let chunks = std::iter::once(HEAD.as_bytes().to_vec())
        .chain(details)
        .chain(std::iter::once(b"]}]}".to_vec()));
    let size = gzip_file(&path, chunks);
    assert!(size > 4_000_000, "the gzip body is {size} bytes");

    let (line, peak) = parse_and_measure(&path);
    assert!(
        line.contains("more than 100000 failure details (limit decode.max_tls_failure_details)"),
        "{line}"
    );
    let grown = peak.saturating_sub(reference) / 1024;
    eprintln!(
        "peak RSS {} MiB, {grown} MiB over the reference",
        peak / 1024
    );
    assert!(grown < 64, "parsing grew the process by {grown} MiB");
}

#[test]
fn a_tls_report_with_a_500_mb_string_is_stopped_at_the_string_limit() {
    let dir = tempfile::tempdir().unwrap();
    let reference = baseline(dir.path());
    let path = dir.path().join("string.json.gz");
    let head = br#"{"organization-name":""#.to_vec();
    let filler: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 23) as u8).collect();
    let chunks = std::iter::once(head)
        .chain(std::iter::repeat_n(filler, 500))
        .chain(std::iter::once(br#"","report-id":"r"}"#.to_vec()));
    gzip_file(&path, chunks);

    let (line, peak) = parse_and_measure(&path);
    assert!(
        line.contains(
            "a JSON string longer than 65536 bytes at byte 22 (limit decode.max_json_string_bytes)"
        ),
        "{line}"
    );
    let grown = peak.saturating_sub(reference) / 1024;
    eprintln!(
        "peak RSS {} MiB, {grown} MiB over the reference",
        peak / 1024
    );
    assert!(grown < 16, "parsing grew the process by {grown} MiB");
}

#[test]
fn the_worst_tls_report_within_the_default_limits_stays_within_the_stated_bound() {
    // The cheapest failure detail to write (19 bytes) in as many policies as
    // it takes to fill max_tlsrpt_json_bytes (16 MiB): the most kept per
    // byte read. Stated bound: twelve times the limit.
    let dir = tempfile::tempdir().unwrap();
    let reference = baseline(dir.path());
    let path = dir.path().join("minimal.json.gz");
    let detail = br#"{"result-type":""},"#;
    let per_policy = 99_999;
    let policy_head =
        br#"{"policy":{"policy-type":"sts","policy-domain":"example.com"},"failure-details":["#;
    let mut written = 0usize;
    let mut chunks = vec![br#"{"organization-name":"W","report-id":"r","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"},"policies":["#.to_vec()];
    while written < 17 * 1024 * 1024 {
        let mut policy = policy_head.to_vec();
        policy.extend(detail.repeat(per_policy));
        policy.extend_from_slice(br#"{"result-type":""}]},"#);
        written += policy.len();
        chunks.push(policy);
    }
    gzip_file(&path, chunks.into_iter());

    let (line, peak) = parse_and_measure(&path);
    assert!(
        line.contains("larger than 16777216 bytes (limit decode.max_tlsrpt_json_bytes)"),
        "{line}"
    );
    let grown = peak.saturating_sub(reference) / 1024;
    eprintln!(
        "peak RSS {} MiB, {grown} MiB over the reference",
        peak / 1024
    );
    assert!(grown < 12 * 16, "parsing grew the process by {grown} MiB");
}
