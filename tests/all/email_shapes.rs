//! Emails of the shapes real senders use, generated here.

use crate::common;

use dmarcd::{extract_reports_from_bytes, testing, Limits, Report};
use flate2::Compression;

fn aggregate_of(reports: &[dmarcd::ExtractedReport]) -> &dmarcd::report::AggregateReport {
    match &reports[0].report {
        Report::Aggregate(report) => report,
        other => panic!("expected an aggregate report, got {}", other.kind()),
    }
}

/// Microsoft sends a multipart/mixed message whose gzip attachment is base64
/// on one single line, megabytes long. Stored (level 0) gzip keeps the line
/// long without generating hundreds of megabytes of XML.
#[test]
fn accepts_single_line_base64_of_20_mb() {
    let report = testing::aggregate_report(30_000);
    let xml = report.to_xml();
    let gzipped = common::gzip(xml.as_bytes(), Compression::none());
    let filename = format!(
        "protection.outlook.com!example.com!{}!{}.xml.gz",
        report.metadata.begin, report.metadata.end
    );
    let email = common::email_with_attachment("application/gzip", &filename, &gzipped, true);
    let longest_line = email.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap();
    assert!(
        longest_line >= 20_000_000,
        "the base64 line is only {longest_line} bytes"
    );

    let reports = extract_reports_from_bytes(&email, "microsoft.eml", &Limits::default()).unwrap();
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].location.ends_with(&filename),
        "{}",
        reports[0].location
    );
    let parsed = aggregate_of(&reports);
    assert_eq!(parsed.records.len(), 30_000);
    assert_eq!(parsed, &report);
}

#[test]
fn finds_a_gzip_report_whatever_its_mime_type_says() {
    let xml = testing::aggregate_report(3).to_xml();
    let gzipped = common::gzip(xml.as_bytes(), Compression::default());
    for content_type in [
        "text/plain",
        "application/octet-stream",
        "image/png",
        "application/x-zip-compressed",
    ] {
        let email = common::email_with_attachment(content_type, "report.txt", &gzipped, false);
        let reports = extract_reports_from_bytes(&email, "mislabelled.eml", &Limits::default())
            .unwrap_or_else(|e| panic!("{content_type}: {e}"));
        assert_eq!(aggregate_of(&reports).records.len(), 3, "{content_type}");
    }
}

#[test]
fn joins_rfc2231_split_filenames() {
    let xml = testing::aggregate_report(1).to_xml();
    let zipped = common::zip(&[("report.xml", xml.as_bytes())]);
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&zipped)
    };
    let email = format!(
        "from: reports@google.com\nto: dmarc@example.com\nsubject: Report domain: example.com\nmime-version: 1.0\n\
         content-type: multipart/mixed;\n boundary=\"b1\"\n\n--b1\ncontent-type: application/zip;\n\
         \tname*0=\"google.com!example.com!1549929600\";\n\tname*1=\"!1550015999.zip\"\n\
         content-transfer-encoding: base64\n\n{encoded}\n--b1--\n"
    );
    let reports =
        extract_reports_from_bytes(email.as_bytes(), "split.eml", &Limits::default()).unwrap();
    assert!(
        reports[0]
            .location
            .contains("google.com!example.com!1549929600!1550015999.zip › report.xml"),
        "{}",
        reports[0].location
    );
}

#[test]
fn reads_a_message_whose_whole_body_is_the_attachment() {
    // Google and Mimecast send single-part messages.
    let xml = testing::aggregate_report(2).to_xml();
    let zipped = common::zip(&[("google.com!example.com!1!2.xml", xml.as_bytes())]);
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&zipped)
    };
    let email = format!(
        "From: noreply-dmarc-support@google.com\r\nSubject: Report domain: example.com\r\nMIME-Version: 1.0\r\n\
         Content-Type: application/zip; name=\"google.com!example.com!1!2.zip\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
    );
    let reports =
        extract_reports_from_bytes(email.as_bytes(), "google.eml", &Limits::default()).unwrap();
    assert_eq!(aggregate_of(&reports).records.len(), 2);
}

#[test]
fn finds_several_reports_in_one_message() {
    let first = testing::aggregate_report(1).to_xml();
    let second = testing::aggregate_report(2).to_xml();
    let zipped = common::zip(&[("a.xml", first.as_bytes()), ("b.xml", second.as_bytes())]);
    let reports = extract_reports_from_bytes(&zipped, "two.zip", &Limits::default()).unwrap();
    assert_eq!(reports.len(), 2);
}

#[test]
fn ignores_an_html_body_beside_the_report() {
    let xml = testing::aggregate_report(1).to_xml();
    let email = format!(
        "From: a@b.example\nSubject: report\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=x\n\n\
         --x\nContent-Type: text/html\n\n<html><body>Your report</body></html>\n\
         --x\nContent-Type: text/xml\n\n{xml}\n--x--\n"
    );
    let reports =
        extract_reports_from_bytes(email.as_bytes(), "rspamd.eml", &Limits::default()).unwrap();
    assert_eq!(reports.len(), 1);
}

#[test]
fn reads_gzip_inside_gzip_and_gzip_inside_zip() {
    let xml = testing::aggregate_report(4).to_xml();
    let inner = common::gzip(xml.as_bytes(), Compression::default());
    let double = common::gzip(&inner, Compression::default());
    let reports = extract_reports_from_bytes(&double, "double.gz", &Limits::default()).unwrap();
    assert_eq!(aggregate_of(&reports).records.len(), 4);
    let zipped = common::zip(&[("report.xml.gz", &inner)]);
    let reports = extract_reports_from_bytes(&zipped, "nested.zip", &Limits::default()).unwrap();
    assert_eq!(aggregate_of(&reports).records.len(), 4);
}

#[test]
fn reads_zlib_streams() {
    use std::io::Write;
    let xml = testing::aggregate_report(2).to_xml();
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(xml.as_bytes()).unwrap();
    let reports =
        extract_reports_from_bytes(&encoder.finish().unwrap(), "report.z", &Limits::default())
            .unwrap();
    assert_eq!(aggregate_of(&reports).records.len(), 2);
}
