//! Writes a synthetic aggregate report (distinct source IP per record) for
//! benchmarks: `cargo run --release --example synthetic_report -- 100000 out.xml [--gzip]`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(records), Some(path)) = (args.first(), args.get(1)) else {
        eprintln!("usage: synthetic_report RECORDS OUTPUT [--gzip]");
        std::process::exit(2);
    };
    let records: usize = records.parse().expect("RECORDS is a number");
    let xml = dmarcd::testing::aggregate_report(records).to_xml();
    let bytes = if args.iter().any(|arg| arg == "--gzip") {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(xml.as_bytes()).expect("gzip in memory");
        encoder.finish().expect("gzip in memory")
    } else {
        xml.into_bytes()
    };
    std::fs::write(path, &bytes).expect("output is writable");
    eprintln!("wrote {path}: {records} records, {} bytes", bytes.len());
}
