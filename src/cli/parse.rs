//! `dmarcd parse`: reports as JSON lines on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::decode::Limits;
use crate::extract::{extract_reports, ExtractedReport};
use crate::report::Report;

pub(super) fn parse_command(files: &[PathBuf], pretty: bool, limits: &Limits) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    for path in files {
        let name = path.display().to_string();
        let opened: Result<Box<dyn std::io::Read>, std::io::Error> = if name == "-" {
            Ok(Box::new(std::io::stdin().lock()))
        } else {
            std::fs::File::open(path).map(|file| Box::new(file) as Box<dyn std::io::Read>)
        };
        let result = match opened {
            Ok(mut input) => {
                extract_reports(&mut input, &name, limits).map_err(|error| error.to_string())
            }
            Err(error) => Err(format!("{name}: cannot open: {error}")),
        };
        match result {
            Ok(reports) => {
                for report in reports {
                    let written = if pretty {
                        serde_json::to_writer_pretty(&mut out, &report)
                            .map_err(std::io::Error::from)
                    } else {
                        write_compact_json(&mut out, report)
                    };
                    if written.is_err() || writeln!(out).is_err() {
                        return ExitCode::from(2);
                    }
                }
            }
            Err(message) => {
                failed += 1;
                let _ = out.flush();
                eprintln!("error: {message}");
            }
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Records per chunk when a large aggregate report is written.
const RECORDS_PER_CHUNK: usize = 8192;

/// Writes one report as a line of JSON. A large aggregate report's records
/// are serialised two chunks at a time on two threads (JSON output is a
/// quarter of the work of `parse` on a 100k-record report); the output is
/// byte for byte what serde_json writes for the whole report.
fn write_compact_json(out: &mut impl Write, mut extracted: ExtractedReport) -> std::io::Result<()> {
    let Report::Aggregate(aggregate) = &mut extracted.report else {
        return serde_json::to_writer(out, &extracted).map_err(std::io::Error::from);
    };
    if aggregate.records.len() < 2 * RECORDS_PER_CHUNK {
        return serde_json::to_writer(out, &extracted).map_err(std::io::Error::from);
    }
    let records = std::mem::take(&mut aggregate.records);
    let shell = serde_json::to_string(&extracted)?;
    // Quotes inside string values are escaped, so this exact text can only
    // be the key of the (now empty) top-level records array.
    const EMPTY_RECORDS: &str = "\"records\":[]";
    let Some(at) = shell.find(EMPTY_RECORDS) else {
        return Err(std::io::Error::other(
            "records key missing from report JSON",
        ));
    };
    out.write_all(&shell.as_bytes()[..at])?;
    out.write_all(b"\"records\":[")?;
    let mut first = true;
    for pair in records.chunks(2 * RECORDS_PER_CHUNK) {
        let (left, right) = pair.split_at(pair.len().min(RECORDS_PER_CHUNK));
        let (left_json, right_json) = std::thread::scope(|scope| {
            let helper = scope.spawn(|| serialize_records(left));
            let right_json = serialize_records(right);
            let left_json = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (left_json, right_json)
        });
        for chunk in [left_json?, right_json?] {
            if chunk.is_empty() {
                continue;
            }
            if !first {
                out.write_all(b",")?;
            }
            out.write_all(&chunk)?;
            first = false;
        }
    }
    out.write_all(b"]")?;
    out.write_all(&shell.as_bytes()[at + EMPTY_RECORDS.len()..])
}

/// Records as comma-separated JSON objects (without the enclosing brackets).
fn serialize_records(records: &[crate::report::aggregate::Record]) -> std::io::Result<Vec<u8>> {
    let mut json = Vec::with_capacity(records.len() * 512);
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            json.push(b',');
        }
        serde_json::to_writer(&mut json, record)?;
    }
    Ok(json)
}
