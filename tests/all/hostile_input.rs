//! Bad input gets a clear, typed error and bounded memory: bombs, entity
//! tricks, truncated archives, traversal names, absurd nesting.

use crate::common;

use std::io::Write;

use dmarcd::decode::{DecodeError, LimitKind};
use dmarcd::report::aggregate::AggregateError;
use dmarcd::{extract_reports_from_bytes, testing, ExtractError, Limits};
use flate2::Compression;

fn extract(bytes: &[u8], name: &str, limits: &Limits) -> ExtractError {
    match extract_reports_from_bytes(bytes, name, limits) {
        Ok(reports) => panic!("{name}: expected an error, got {} reports", reports.len()),
        Err(error) => error,
    }
}

fn limit_of(error: &ExtractError) -> LimitKind {
    match error {
        ExtractError::Decode(DecodeError::Limit { limit, .. }) => *limit,
        other => panic!("expected a limit error, got: {other}"),
    }
}

/// A report that opens like one, then repeats an empty element for
/// `megabytes` MiB: compresses about 1000:1 and keeps the XML parser busy, the
/// worst case for a decompression bomb.
fn bomb_xml(megabytes: usize) -> impl Iterator<Item = Vec<u8>> {
    let head = b"<?xml version=\"1.0\"?><feedback>".to_vec();
    let chunk = b"<x/>".repeat(256 * 1024);
    std::iter::once(head).chain(std::iter::repeat_n(chunk, megabytes))
}

fn gzip_bomb(megabytes: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::best());
    for chunk in bomb_xml(megabytes) {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

#[test]
fn gzip_bomb_is_stopped_by_the_ratio_limit_with_default_limits() {
    let bomb = gzip_bomb(200);
    assert!(bomb.len() < 400 * 1024, "the bomb is {} bytes", bomb.len());
    let error = extract(&bomb, "bomb.xml.gz", &Limits::default());
    assert_eq!(limit_of(&error), LimitKind::CompressionRatio);
    assert!(
        error
            .to_string()
            .starts_with("bomb.xml.gz: exceeds the compression ratio limit of 1000"),
        "{error}"
    );
}

#[test]
fn gzip_bomb_is_stopped_by_the_size_limit() {
    let limits = Limits {
        max_decompressed_bytes: 4 * 1024 * 1024,
        max_compression_ratio: u64::MAX,
        ..Limits::default()
    };
    let error = extract(&gzip_bomb(64), "bomb.gz", &limits);
    assert_eq!(limit_of(&error), LimitKind::DecompressedBytes);
    assert_eq!(
        error.to_string(),
        "bomb.gz: exceeds the decompressed size limit of 4194304 (unpacks past it)"
    );
}

#[test]
fn zip_bomb_names_the_member_and_the_limit() {
    let xml: Vec<u8> = bomb_xml(64).flatten().collect();
    let bomb = common::zip(&[("report.xml", &xml)]);
    let limits = Limits {
        max_decompressed_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let error = extract(&bomb, "bomb.zip", &limits);
    assert_eq!(limit_of(&error), LimitKind::DecompressedBytes);
    assert!(
        error
            .to_string()
            .starts_with("bomb.zip › report.xml: exceeds the decompressed size limit"),
        "{error}"
    );
}

#[test]
fn zip_with_too_many_members_is_refused() {
    let xml = testing::aggregate_report(1).to_xml();
    let names: Vec<String> = (0..40).map(|i| format!("r{i}.xml")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), xml.as_bytes())).collect();
    let error = extract(&common::zip(&members), "many.zip", &Limits::default());
    assert_eq!(limit_of(&error), LimitKind::ZipMembers);
}

#[test]
fn nesting_past_the_depth_limit_is_refused() {
    let mut layered = testing::aggregate_report(1).to_xml().into_bytes();
    for _ in 0..5 {
        layered = common::gzip(&layered, Compression::fast());
    }
    let error = extract(&layered, "onion.gz", &Limits::default());
    assert_eq!(limit_of(&error), LimitKind::NestingDepth);
}

#[test]
fn an_oversized_container_is_refused_before_it_is_opened() {
    let xml = testing::aggregate_report(50).to_xml();
    let zipped = common::zip(&[("report.xml", xml.as_bytes())]);
    let limits = Limits {
        max_container_bytes: 1024,
        ..Limits::default()
    };
    assert_eq!(
        limit_of(&extract(&zipped, "big.zip", &limits)),
        LimitKind::ContainerBytes
    );
}

#[test]
fn billion_laughs_doctype_is_refused() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol9 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>"#;
    let error = extract(laughs.as_bytes(), "lolz.xml", &Limits::default());
    assert!(
        matches!(
            error,
            ExtractError::Aggregate {
                source: AggregateError::DoctypeRefused { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("DOCTYPE"), "{error}");
}

#[test]
fn external_entities_are_refused_and_undefined_ones_kept_as_text() {
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><feedback/>"#;
    let error = extract(xxe.as_bytes(), "xxe.xml", &Limits::default());
    assert!(error.to_string().contains("DOCTYPE"), "{error}");

    let mut report = testing::aggregate_report(1);
    report.metadata.org_name = "ORG".to_string();
    let xml = report
        .to_xml()
        .replace("<org_name>ORG</org_name>", "<org_name>&xxe;</org_name>");
    let parsed =
        extract_reports_from_bytes(xml.as_bytes(), "undefined.xml", &Limits::default()).unwrap();
    let dmarcd::Report::Aggregate(parsed) = &parsed[0].report else {
        panic!()
    };
    assert_eq!(parsed.metadata.org_name, "&xxe;");
    assert!(parsed
        .warnings
        .iter()
        .any(|w| w.contains("undefined entity")));
}

#[test]
fn ten_thousand_nested_elements_are_refused() {
    let mut xml = String::from("<feedback>");
    for _ in 0..10_000 {
        xml.push_str("<a>");
    }
    let error = extract(xml.as_bytes(), "deep.xml", &Limits::default());
    match error {
        ExtractError::Aggregate {
            source: AggregateError::TooDeep { limit, .. },
            ..
        } => assert_eq!(limit, 64),
        other => panic!("expected TooDeep, got {other}"),
    }
}

#[test]
fn truncated_gzip_is_a_corrupt_gzip_error() {
    let xml = testing::aggregate_report(200).to_xml();
    let gzipped = common::gzip(xml.as_bytes(), Compression::default());
    let truncated = &gzipped[..gzipped.len() / 2];
    let error = extract(truncated, "cut.xml.gz", &Limits::default());
    assert!(
        matches!(
            error,
            ExtractError::Decode(DecodeError::Corrupt { format: "gzip", .. })
        ),
        "{error}"
    );
}

#[test]
fn truncated_zip_is_a_corrupt_zip_error() {
    let xml = testing::aggregate_report(200).to_xml();
    let zipped = common::zip(&[("report.xml", xml.as_bytes())]);
    let truncated = &zipped[..zipped.len() - 100];
    let error = extract(truncated, "cut.zip", &Limits::default());
    assert!(
        matches!(
            error,
            ExtractError::Decode(DecodeError::Corrupt { format: "zip", .. })
        ),
        "{error}"
    );
}

#[test]
fn truncated_xml_is_refused_rather_than_stored_half() {
    let xml = testing::aggregate_report(20).to_xml();
    let cut = &xml[..xml.len() * 2 / 3];
    let error = extract(cut.as_bytes(), "cut.xml", &Limits::default());
    assert!(
        matches!(
            error,
            ExtractError::Aggregate {
                source: AggregateError::Truncated { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn zip_member_with_a_traversal_name_is_refused() {
    let xml = testing::aggregate_report(1).to_xml();
    let zipped = common::zip(&[("../../etc/passwd", xml.as_bytes())]);
    let error = extract(&zipped, "evil.zip", &Limits::default());
    match error {
        ExtractError::Decode(DecodeError::UnsafeMemberName { member, .. }) => {
            assert_eq!(member, "../../etc/passwd")
        }
        other => panic!("expected UnsafeMemberName, got {other}"),
    }
}

#[test]
fn an_empty_attachment_is_reported_as_no_report() {
    let email = common::email_with_attachment("application/gzip", "report.xml.gz", b"", false);
    let error = extract(&email, "empty-attachment.eml", &Limits::default());
    assert!(
        matches!(
            error,
            ExtractError::Decode(DecodeError::NoReportInEmail { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("report.xml.gz"), "{error}");
}

#[test]
fn unrecognised_content_says_what_it_starts_with() {
    let error = extract(b"\x00\x01binary junk", "junk.bin", &Limits::default());
    assert!(
        error
            .to_string()
            .starts_with("junk.bin: not a report: unrecognised content"),
        "{error}"
    );
}

#[test]
fn a_non_report_xml_document_is_not_an_aggregate_report() {
    let error = extract(
        b"<html><body>hi</body></html>",
        "page.xml",
        &Limits::default(),
    );
    assert_eq!(error.to_string(), "page.xml: invalid DMARC aggregate report: not a DMARC aggregate report: no <feedback> root element");
}

#[test]
fn a_bad_count_names_its_record() {
    let xml = testing::aggregate_report(3).to_xml().replacen(
        "<count>2</count>",
        "<count>lots</count>",
        1,
    );
    let error = extract(xml.as_bytes(), "count.xml", &Limits::default());
    assert_eq!(
        error.to_string(),
        "count.xml: invalid DMARC aggregate report: /feedback/record[2]/row/count: \"lots\" is not a message count"
    );
}

#[test]
fn tls_report_errors_name_the_json_pointer() {
    let json = br#"{"organization-name":"X","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"},
        "report-id":"r","policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com"},
        "summary":{"total-successful-session-count":-4,"total-failure-session-count":0}}]}"#;
    let error = extract(json, "bad.json", &Limits::default());
    assert_eq!(
        error.to_string(),
        "bad.json: invalid SMTP TLS report: /policies/0/summary/total-successful-session-count: expected a non-negative integer, found the number -4"
    );
    let error = extract(b"{\"organization-name\": ", "cut.json", &Limits::default());
    assert!(
        error.to_string().contains("not valid JSON at line 1"),
        "{error}"
    );
}

#[test]
fn a_megabytes_long_text_run_is_refused_early() {
    let mut xml = b"<feedback><report_metadata><org_name>".to_vec();
    xml.extend(std::iter::repeat_n(b'a', 5 * 1024 * 1024));
    let error = extract(&xml, "long.xml", &Limits::default());
    assert!(
        matches!(
            error,
            ExtractError::Aggregate {
                source: AggregateError::RunTooLong { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn an_overlong_value_names_its_element() {
    let mut report = testing::aggregate_report(1);
    report.metadata.report_id = "r".repeat(100_000);
    let error = extract(report.to_xml().as_bytes(), "id.xml", &Limits::default());
    assert_eq!(
        error.to_string(),
        "id.xml: invalid DMARC aggregate report: /feedback/report_metadata/report_id: a value longer than 65536 bytes"
    );
}

#[test]
fn a_gzip_holding_no_report_is_an_error() {
    let error = extract(
        &common::gzip(b"just some text", Compression::fast()),
        "notes.gz",
        &Limits::default(),
    );
    assert!(
        error.to_string().starts_with("notes.gz: not a report"),
        "{error}"
    );
}

/// A TLS report with `policies` policies of `details` failure details each.
fn tls_report(policies: usize, details: usize) -> Vec<u8> {
    let detail = r#"{"result-type":"validation-failure","sending-mta-ip":"198.51.100.1","failed-session-count":1}"#;
    let policy = format!(
        r#"{{"policy":{{"policy-type":"sts","policy-domain":"example.com"}},"summary":{{"total-successful-session-count":1,"total-failure-session-count":1}},"failure-details":[{}]}}"#,
        vec![detail; details].join(",")
    );
    format!(
        r#"{{"organization-name":"X","date-range":{{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"}},"report-id":"r","policies":[{}]}}"#,
        vec![policy; policies].join(",")
    )
    .into_bytes()
}

#[test]
fn each_report_limit_is_an_error_that_names_its_setting() {
    let tight = Limits {
        max_aggregate_records: 10,
        max_tls_policies: 2,
        max_tls_failure_details: 5,
        max_json_string_bytes: 100,
        max_tlsrpt_json_bytes: 1000,
        ..Limits::default()
    };
    let xml = testing::aggregate_report(11).to_xml();
    let error = extract(xml.as_bytes(), "records.xml", &tight).to_string();
    assert!(
        error.contains("more than 10 records") && error.contains("decode.max_aggregate_records"),
        "{error}"
    );
    assert!(extract_reports_from_bytes(
        testing::aggregate_report(10).to_xml().as_bytes(),
        "ten.xml",
        &tight
    )
    .is_ok());

    let cases: [(&[u8], &str); 4] = [
        (&tls_report(3, 1), "/policies: more than 2 policies (limit decode.max_tls_policies)"),
        (
            &tls_report(1, 6),
            "/policies/0/failure-details: more than 5 failure details (limit decode.max_tls_failure_details)",
        ),
        (
            &tls_report(2, 5),
            "larger than 1000 bytes (limit decode.max_tlsrpt_json_bytes)",
        ),
        (
            br#"{"organization-name":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789X"}"#,
            "a JSON string longer than 100 bytes at byte 22 (limit decode.max_json_string_bytes)",
        ),
    ];
    for (json, expected) in cases {
        let error = extract(json, "tls.json", &tight).to_string();
        assert!(error.contains(expected), "{error}");
    }
    assert!(extract_reports_from_bytes(&tls_report(1, 5), "fits.json", &tight).is_ok());
}
