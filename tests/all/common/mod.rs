//! Builders shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;

use base64::Engine;
use flate2::write::GzEncoder;
use flate2::Compression;

/// A file of the sample corpus (tests/fixtures/corpus/parsedmarc).
pub fn corpus(relative: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/corpus/parsedmarc")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn gzip(bytes: &[u8], level: Compression) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), level);
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A zip archive with the given (name, contents) members, deflated.
pub fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, contents) in members {
        writer.start_file(*name, options).unwrap();
        writer.write_all(contents).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A multipart/mixed email: a text part, then one base64 attachment. With
/// `single_line` the base64 is one line of any length, as Microsoft sends it.
pub fn email_with_attachment(
    content_type: &str,
    filename: &str,
    payload: &[u8],
    single_line: bool,
) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
    let body = if single_line {
        encoded
    } else {
        encoded
            .as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    format!(
        "From: DMARC Aggregate Report <dmarcreport@microsoft.com>\r\n\
         To: dmarc@example.com\r\n\
         Subject: Report Domain: example.com Submitter: protection.outlook.com Report-ID: 411f976a\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"_b_\"\r\n\
         \r\n\
         --_b_\r\n\
         Content-Type: text/plain; charset=\"us-ascii\"\r\n\
         \r\n\
         This is a DMARC aggregate report from Microsoft Corporation.\r\n\
         --_b_\r\n\
         Content-Type: {content_type}; name=\"{filename}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         \r\n\
         {body}\r\n\
         --_b_--\r\n"
    )
    .into_bytes()
}
pub mod cli;
pub mod data;
pub mod db;
pub mod download_server;
pub mod http;
pub mod mmdb;
pub mod oidc_provider;
pub mod policy_server;
pub mod process;
pub mod smtp_sink;
pub mod webhook_server;
pub mod zone_server;
