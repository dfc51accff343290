//! Parsing throughput, printed as figures (not a timed test):
//! `cargo bench --bench parse`. Compare ratios within one run; the machine is
//! small and noisy.

use std::time::{Duration, Instant};

use dmarcd::{extract_reports_from_bytes, testing, Limits};

/// Best of `runs` wall-clock times of `work`.
fn best_of(runs: usize, mut work: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn main() {
    let limits = Limits::default();

    let records = 100_000;
    let xml = testing::aggregate_report(records).to_xml().into_bytes();
    let gzipped = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&xml).unwrap();
        encoder.finish().unwrap()
    };
    let plain = best_of(3, || {
        let reports = extract_reports_from_bytes(&xml, "big.xml", &limits).unwrap();
        assert_eq!(reports.len(), 1);
    });
    println!(
        "aggregate {records} records, plain XML ({:.1} MB): {:.3} s, {:.0} MB/s, {:.0} records/s",
        xml.len() as f64 / 1e6,
        plain.as_secs_f64(),
        mb_per_s(xml.len(), plain),
        records as f64 / plain.as_secs_f64()
    );
    let gz = best_of(3, || {
        extract_reports_from_bytes(&gzipped, "big.xml.gz", &limits).unwrap();
    });
    println!(
        "aggregate {records} records, gzip ({:.1} MB compressed): {:.3} s, {:.0} MB/s of XML",
        gzipped.len() as f64 / 1e6,
        gz.as_secs_f64(),
        mb_per_s(xml.len(), gz)
    );

    let corpus = corpus_files();
    let total_bytes: usize = corpus.iter().map(|(_, bytes)| bytes.len()).sum();
    let rounds = 20;
    let time = best_of(3, || {
        for _ in 0..rounds {
            for (name, bytes) in &corpus {
                let _ = extract_reports_from_bytes(bytes, name, &limits);
            }
        }
    });
    println!(
        "corpus: {} files, {:.1} MB, {:.2} ms per pass ({:.0} files/s)",
        corpus.len(),
        total_bytes as f64 / 1e6,
        time.as_secs_f64() * 1000.0 / rounds as f64,
        (corpus.len() * rounds) as f64 / time.as_secs_f64()
    );
}

fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/parsedmarc");
    let mut files = Vec::new();
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files
}
