//! Command-line interface.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::decode::Limits;
use crate::extract::extract_reports;

#[derive(Debug, Parser)]
#[command(
    name = "dmarcd",
    version,
    about = "Self-hosted DMARC and SMTP TLS report server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse report files or emails and print each report as one line of JSON.
    ///
    /// Accepts .xml, .json, .gz, .zip, zlib and whole emails (.eml), judged
    /// by content. Prints one JSON document per report on stdout (see
    /// docs/parse-output.md), one error line per failing input on stderr,
    /// and exits non-zero if any input failed.
    Parse {
        /// Files to parse ("-" reads standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pretty-print the JSON (one document per report, still in order).
        #[arg(long)]
        pretty: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Parse { files, pretty } => parse_command(&files, pretty, &Limits::default()),
    }
}

fn parse_command(files: &[PathBuf], pretty: bool, limits: &Limits) -> ExitCode {
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
                    } else {
                        serde_json::to_writer(&mut out, &report)
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
