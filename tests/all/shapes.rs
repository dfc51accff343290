//! The shapes real senders give their reports, built here from the corpus
//! reports (tests/fixtures/corpus): re-encoded, re-wrapped, re-compressed,
//! fields stripped. Each must parse to the facts of the original, or be
//! refused or ignored with a reason that names the cause (issue 17).
//!
//! Reports are compared as their `dmarcd parse` JSON, so that a test reads
//! the same on any version of the report types.

use crate::common;

use std::io::Write;

use base64::Engine;
use dmarcd::store::Outcome;
use dmarcd::{extract_reports_from_bytes, worker, Limits};
use flate2::Compression;
use serde_json::{json, Value};

use common::corpus;

fn corpus_text(relative: &str) -> String {
    String::from_utf8(corpus(relative)).expect("UTF-8 corpus file")
}

/// The reports in `bytes` as `dmarcd parse` prints them (without location).
fn parse(bytes: &[u8], name: &str) -> Result<Vec<Value>, String> {
    extract_reports_from_bytes(bytes, name, &Limits::default())
        .map(|reports| {
            reports
                .iter()
                .map(|r| serde_json::to_value(&r.report).unwrap())
                .collect()
        })
        .map_err(|error| error.to_string())
}

fn one(bytes: &[u8], name: &str) -> Value {
    let mut reports = parse(bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(reports.len(), 1, "{name}: one report expected");
    reports.remove(0)
}

/// A report's facts: everything but what the parser had to tolerate.
fn facts(mut report: Value) -> Value {
    if let Some(object) = report.as_object_mut() {
        object.remove("warnings");
    }
    report
}

fn warnings(report: &Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|w| w.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_warned(report: &Value, needle: &str) {
    let warnings = warnings(report);
    assert!(
        warnings.iter().any(|w| w.contains(needle)),
        "no warning containing {needle:?} in {warnings:?}"
    );
}

/// What the worker makes of an input: stored, failed or ignored, and why.
fn outcome(bytes: &[u8], name: &str) -> Outcome {
    worker::classify(extract_reports_from_bytes(bytes, name, &Limits::default()))
}

fn ignored_reason(bytes: &[u8], name: &str) -> String {
    match outcome(bytes, name) {
        Outcome::Ignored(reason) => reason,
        Outcome::Failed(reason) => panic!("{name}: failed instead of ignored: {reason}"),
        Outcome::Reports(reports) => panic!("{name}: {} reports instead of ignored", reports.len()),
    }
}

// ---------------------------------------------------------------- TLS-RPT

const RFC8460: &str = "smtp_tls/rfc8460.json";

fn tls_json(relative: &str) -> Value {
    serde_json::from_slice(&corpus(relative)).unwrap()
}

fn to_bytes(json: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(json).unwrap()
}

/// An RFC 8460 §5.3 report email with the JSON gzipped as its attachment.
fn tls_email(domain_header: Option<&str>, subject: &str, json: &[u8]) -> Vec<u8> {
    let gzipped = common::gzip(json, Compression::default());
    let encoded = base64::engine::general_purpose::STANDARD.encode(gzipped);
    let header = domain_header.map_or(String::new(), |domain| {
        format!("TLS-Report-Domain: {domain}\r\nTLS-Report-Submitter: company-x.example\r\n")
    });
    format!(
        "From: tls-reports@company-x.example\r\nTo: tlsrpt@company-y.example\r\nSubject: {subject}\r\n{header}\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate TLS report.\r\n\
         --b\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"report.json.gz\"\r\n\r\n{encoded}\r\n--b--\r\n"
    )
    .into_bytes()
}

#[test]
fn a_tls_policy_without_policy_domain_takes_the_domain_the_report_was_sent_for() {
    let original = one(&corpus(RFC8460), "rfc8460.json");
    let mut stripped = tls_json(RFC8460);
    stripped["policies"][0]["policy"]
        .as_object_mut()
        .unwrap()
        .remove("policy-domain");
    let stripped = to_bytes(&stripped);

    let by_name = one(
        &stripped,
        "company-x.example!company-y.example!1459468800!1459555199!5065427c.json",
    );
    let by_header = one(
        &tls_email(Some("company-y.example"), "TLS report", &stripped),
        "mail.eml",
    );
    let by_subject = one(
        &tls_email(
            None,
            "Report Domain: company-y.example Submitter: company-x.example Report-ID: <5065427c>",
            &stripped,
        ),
        "mail.eml",
    );
    for shape in [&by_name, &by_header, &by_subject] {
        assert_eq!(facts(shape.clone()), facts(original.clone()));
        assert_warned(shape, "policy-domain is missing");
    }

    let unknown = one(&stripped, "report.json");
    assert_eq!(unknown["policies"][0]["policy_domain"], Value::Null);
    assert_warned(&unknown, "the policy domain is unknown");
}

#[test]
fn missing_session_counts_are_read_as_zero_with_a_warning() {
    let mut expected = tls_json(RFC8460);
    let mut stripped = expected.clone();
    expected["policies"][0]["summary"]["total-failure-session-count"] = json!(0);
    stripped["policies"][0]["summary"]
        .as_object_mut()
        .unwrap()
        .remove("total-failure-session-count");
    for index in 0..3 {
        expected["policies"][0]["failure-details"][index]["failed-session-count"] = json!(0);
        stripped["policies"][0]["failure-details"][index]
            .as_object_mut()
            .unwrap()
            .remove("failed-session-count");
    }
    let parsed = one(&to_bytes(&stripped), "stripped.json");
    assert_eq!(
        facts(parsed.clone()),
        one(&to_bytes(&expected), "zeros.json")
    );
    assert_warned(&parsed, "total-failure-session-count is missing; read as 0");
    assert_warned(&parsed, "failed-session-count is missing; read as 0");
    // Once per kind, not once per detail.
    let details = warnings(&parsed)
        .iter()
        .filter(|w| w.contains("failed-session-count"))
        .count();
    assert_eq!(details, 1, "{:?}", warnings(&parsed));
}

#[test]
fn tls_reports_with_a_bom_quoted_numbers_one_policy_string_and_upper_case_types_read_alike() {
    let mut original = tls_json("smtp_tls/smtp_tls.json");
    original["policies"][0]["policy"]["policy-string"] = json!(["version: STSv1"]);
    let expected = one(&to_bytes(&original), "original.json");

    let with_bom = [b"\xEF\xBB\xBF".as_slice(), &to_bytes(&original)].concat();
    assert_eq!(one(&with_bom, "bom.json"), expected);

    let mut quoted = original.clone();
    for key in [
        "total-successful-session-count",
        "total-failure-session-count",
    ] {
        let count = quoted["policies"][0]["summary"][key].to_string();
        quoted["policies"][0]["summary"][key] = json!(count);
    }
    for detail in quoted["policies"][0]["failure-details"]
        .as_array_mut()
        .unwrap()
    {
        let count = detail["failed-session-count"].to_string();
        detail["failed-session-count"] = json!(count);
    }
    assert_eq!(one(&to_bytes(&quoted), "quoted.json"), expected);

    let mut single = original.clone();
    single["policies"][0]["policy"]["policy-string"] = json!("version: STSv1");
    single["policies"][0]["policy"]["policy-type"] = json!("STS");
    assert_eq!(one(&to_bytes(&single), "single.json"), expected);
}

#[test]
fn a_json_file_that_is_no_tls_report_is_ignored_not_failed() {
    let reason = ignored_reason(br#"{"name": "package.json", "version": "1.0.0"}"#, "p.json");
    assert!(reason.contains("not a TLS report"), "{reason}");

    // Beside a real report in one email it is passed over.
    let tls = corpus(RFC8460);
    let zipped = common::zip(&[("other.json", br#"{"a": 1}"#), ("report.json", &tls)]);
    assert_eq!(parse(&zipped, "two.zip").unwrap().len(), 1);

    // A document that names any of the report's fields is a broken report.
    match outcome(br#"{"organization-name": "X"}"#, "broken.json") {
        Outcome::Failed(reason) => assert!(reason.contains("/report-id"), "{reason}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------- non-reports

const ARF: &str = "failure/dmarc_ruf_report_linkedin.eml";

#[test]
fn an_abuse_report_naming_no_source_ip_and_no_domain_is_ignored() {
    let abuse: String = corpus_text(ARF)
        .replace("Feedback-Type: auth-failure", "Feedback-Type: abuse")
        .lines()
        .filter(|line| !line.starts_with("Source-IP:") && !line.starts_with("Reported-Domain:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let reason = ignored_reason(abuse.as_bytes(), "abuse.eml");
    assert!(
        reason.contains("not a DMARC failure report") && reason.contains("abuse"),
        "{reason}"
    );

    // An abuse report that does name the source is still read.
    let with_ip = corpus_text(ARF).replace("Feedback-Type: auth-failure", "Feedback-Type: abuse");
    assert_eq!(
        one(with_ip.as_bytes(), "abuse-ip.eml")["source_ip"],
        "10.10.10.10"
    );
}

const AGGREGATE: &str = "aggregate/rfc9990-example.net!example.com!1700000000!1700086399.xml";

/// A record with no source IP and no messages.
const EMPTY_RECORD: &str = "<record><row><source_ip></source_ip><count>0</count>\
    <policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>\
    <identifiers><header_from>example.com</header_from></identifiers>\
    <auth_results><spf><domain>example.com</domain><result>none</result></spf></auth_results></record>";

#[test]
fn records_with_no_source_ip_and_a_count_of_zero_are_dropped() {
    let xml = corpus_text(AGGREGATE);
    let original = one(xml.as_bytes(), "original.xml");
    let first = xml.find("<record>").unwrap();
    let padded = format!(
        "{}{EMPTY_RECORD}{}",
        &xml[..first],
        xml[first..].replace("</feedback>", &format!("{EMPTY_RECORD}</feedback>"))
    );
    let parsed = one(padded.as_bytes(), "padded.xml");
    assert_eq!(facts(parsed.clone()), facts(original));
    assert_warned(
        &parsed,
        "dropped 2 record(s) with no source IP and a count of 0",
    );

    let end = xml.rfind("</record>").unwrap() + "</record>".len();
    let hollow = format!("{}{EMPTY_RECORD}{}", &xml[..first], &xml[end..]);
    let reason = ignored_reason(hollow.as_bytes(), "hollow.xml");
    assert!(reason.contains("empty report"), "{reason}");
}

// ---------------------------------------------------------------- encodings

const GOOGLE: &str = "extract_report/nice-input.xml";

fn with_declared_encoding(xml: &str, label: &str) -> String {
    let body = xml
        .trim_start_matches('\u{feff}')
        .trim_start()
        .strip_prefix("<?xml")
        .map(|rest| &rest[rest.find("?>").unwrap() + 2..])
        .unwrap_or(xml);
    format!("<?xml version=\"1.0\" encoding=\"{label}\"?>{body}")
}

fn utf16(text: &str, little_endian: bool, bom: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let units = bom.then_some(0xFEFF).into_iter().chain(text.encode_utf16());
    for unit in units {
        if little_endian {
            bytes.extend_from_slice(&unit.to_le_bytes());
        } else {
            bytes.extend_from_slice(&unit.to_be_bytes());
        }
    }
    bytes
}

#[test]
fn utf16_reports_parse_like_the_utf8_original() {
    let xml = corpus_text(GOOGLE);
    let original = one(xml.as_bytes(), "original.xml");
    let declared = with_declared_encoding(&xml, "UTF-16");
    let shapes = [
        ("le-bom.xml", utf16(&declared, true, true)),
        ("be-bom.xml", utf16(&declared, false, true)),
        ("le.xml", utf16(&declared, true, false)),
        ("be.xml", utf16(&declared, false, false)),
    ];
    for (name, bytes) in shapes {
        assert_eq!(facts(one(&bytes, name)), facts(original.clone()), "{name}");
        let gzipped = common::gzip(&bytes, Compression::default());
        let email = common::email_with_attachment("application/gzip", "r.xml.gz", &gzipped, false);
        assert_eq!(
            facts(one(&email, name)),
            facts(original.clone()),
            "{name} in an email"
        );
        let email = common::email_with_attachment("text/xml", "r.xml", &bytes, false);
        assert_eq!(
            facts(one(&email, name)),
            facts(original.clone()),
            "{name} as text/xml"
        );
    }
}

#[test]
fn declared_legacy_encodings_are_decoded_as_declared() {
    let xml = corpus_text(GOOGLE);
    let cases = [
        ("windows-1252", "Acme “Mail” — 10 €"),
        ("iso-8859-15", "Société Générale €"),
        ("Shift_JIS", "日本郵便株式会社"),
        ("koi8-r", "Почта России"),
    ];
    for (label, org) in cases {
        let named = xml.replace(
            "<org_name>google.com</org_name>",
            &format!("<org_name>{org}</org_name>"),
        );
        assert_ne!(named, xml, "the corpus report names google.com");
        let expected = one(named.as_bytes(), "utf8.xml");
        assert_eq!(expected["metadata"]["org_name"], org);
        let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).unwrap();
        let declared = with_declared_encoding(&named, label);
        let (bytes, _, unmappable) = encoding.encode(&declared);
        assert!(!unmappable, "{label} can write {org}");
        let parsed = one(&bytes, label);
        assert_eq!(facts(parsed.clone()), facts(expected), "{label}");
        assert!(
            warnings(&parsed).is_empty(),
            "{label}: {:?}",
            warnings(&parsed)
        );
    }
}

#[test]
fn an_undecodable_document_names_its_encoding() {
    let xml = corpus_text(GOOGLE);
    let mut utf32 = vec![0xFF, 0xFE, 0, 0];
    for character in xml.chars() {
        utf32.extend_from_slice(&u32::from(character).to_le_bytes());
    }
    let error = parse(&utf32, "utf32.xml").unwrap_err();
    assert!(error.contains("UTF-32"), "{error}");

    let klingon = with_declared_encoding(&xml, "x-klingon");
    let error = parse(klingon.as_bytes(), "klingon.xml").unwrap_err();
    assert!(error.contains("x-klingon"), "{error}");
}

// ---------------------------------------------------------------- transport

#[test]
fn base64_without_padding_is_read_to_its_last_byte() {
    let original = facts(one(&corpus(GOOGLE), "original.xml"));
    for remainder in [1, 2] {
        // A gzip stream whose length leaves a partial base64 group: its
        // last bytes (the CRC and size) are in that group.
        let mut xml = corpus(GOOGLE);
        let mut gzipped = common::gzip(&xml, Compression::default());
        while gzipped.len() % 3 != remainder {
            xml.push(b' ');
            gzipped = common::gzip(&xml, Compression::default());
        }
        for single_line in [true, false] {
            let email = common::email_with_attachment(
                "application/gzip",
                "r.xml.gz",
                &gzipped,
                single_line,
            );
            let padded = String::from_utf8(email).unwrap();
            let unpadded = padded
                .replace("==\r\n--_b_--", "\r\n--_b_--")
                .replace("=\r\n--_b_--", "\r\n--_b_--");
            assert_ne!(unpadded, padded);
            assert_eq!(
                facts(one(unpadded.as_bytes(), "unpadded.eml")),
                original,
                "remainder {remainder}, single line {single_line}"
            );
        }
    }
}

#[test]
fn every_member_of_a_multi_member_gzip_is_read() {
    let xml = corpus(GOOGLE);
    let original = one(&xml, "original.xml");
    let third = xml.len() / 3;
    let mut members = Vec::new();
    for part in [&xml[..third], &xml[third..2 * third], &xml[2 * third..]] {
        members.extend(common::gzip(part, Compression::default()));
    }
    assert_eq!(one(&members, "members.xml.gz"), original);
    // Bytes after the last member are still ignored (Mimecast appends CRLF).
    members.extend_from_slice(b"\r\n");
    assert_eq!(one(&members, "trailing.xml.gz"), original);
}

#[test]
fn a_doctype_that_declares_nothing_is_accepted() {
    let xml = corpus_text(GOOGLE);
    let original = one(xml.as_bytes(), "original.xml");
    for doctype in [
        "<!DOCTYPE feedback>",
        "<!DOCTYPE feedback SYSTEM \"rua.dtd\">",
    ] {
        let shaped = xml.replacen("<feedback", &format!("{doctype}\n<feedback"), 1);
        assert_eq!(one(shaped.as_bytes(), "doctype.xml"), original, "{doctype}");
    }
    let subset = xml.replacen("<feedback", "<!DOCTYPE feedback [ ]>\n<feedback", 1);
    let error = parse(subset.as_bytes(), "subset.xml").unwrap_err();
    assert!(error.contains("DOCTYPE"), "{error}");
}

#[test]
fn iso8601_begin_and_end_are_read_with_a_warning() {
    let xml = corpus_text(AGGREGATE);
    let original = one(xml.as_bytes(), "original.xml");
    let shaped = xml
        .replace(
            "<begin>1700000000</begin>",
            "<begin>2023-11-14T22:13:20Z</begin>",
        )
        .replace("<end>1700086399</end>", "<end>2023-11-15 22:13:19</end>");
    assert_ne!(shaped, xml);
    let parsed = one(shaped.as_bytes(), "iso.xml");
    assert_eq!(facts(parsed.clone()), facts(original));
    assert_warned(&parsed, "as an ISO 8601 date-time");
}

#[test]
fn emails_with_cr_only_line_endings_are_read() {
    for relative in [
        "aggregate/twilight.eml",
        "aggregate/Report domain- borschow.com Submitter- google.com Report-ID- 949348866075514174.eml",
        ARF,
    ] {
        let original = one(&corpus(relative), relative);
        let cr_only = corpus_text(relative)
            .replace("\r\n", "\r")
            .replace('\n', "\r");
        assert_eq!(one(cr_only.as_bytes(), relative), original, "{relative}");
    }
}

// ---------------------------------------------------------------- nothing dropped

#[test]
fn report_level_extensions_after_the_records_are_kept() {
    let xml = corpus_text(AGGREGATE);
    let original = one(xml.as_bytes(), "original.xml");
    let extension = "<extensions><x:seen xmlns:x=\"urn:example:x\">3</x:seen></extensions>";
    let shaped = xml.replace("</feedback>", &format!("{extension}</feedback>"));
    let parsed = one(shaped.as_bytes(), "extensions.xml");
    assert_eq!(parsed["extensions"], json!([extension]));
    assert!(warnings(&parsed).is_empty(), "{:?}", warnings(&parsed));
    let mut without = parsed.clone();
    without.as_object_mut().unwrap().remove("extensions");
    assert_eq!(without, original);
}

#[test]
fn an_unknown_element_is_kept_raw_with_a_warning_that_names_it() {
    let xml = corpus_text(AGGREGATE);
    let original = one(xml.as_bytes(), "original.xml");
    let unknown = "<policy_override>forwarded</policy_override>";
    let shaped = xml.replacen(
        "</policy_evaluated>",
        &format!("{unknown}</policy_evaluated>"),
        1,
    );
    let parsed = one(shaped.as_bytes(), "override.xml");
    assert_eq!(parsed["records"][0]["extensions"], json!([unknown]));
    assert_warned(&parsed, "<policy_override>");
    assert!(
        !warnings(&parsed).iter().any(|w| w.contains("stray text")),
        "{:?}",
        warnings(&parsed)
    );
    let mut without = facts(parsed);
    without["records"][0]
        .as_object_mut()
        .unwrap()
        .remove("extensions");
    assert_eq!(without, facts(original));
}

// ---------------------------------------------------------------- control characters

#[test]
fn control_characters_are_removed_from_every_text_field_with_a_warning() {
    let xml = corpus_text(AGGREGATE);
    let original = one(xml.as_bytes(), "original.xml");
    let report_id = original["metadata"]["report_id"]
        .as_str()
        .unwrap()
        .to_string();
    let org = original["metadata"]["org_name"]
        .as_str()
        .unwrap()
        .to_string();
    let header_from = original["records"][0]["identifiers"]["header_from"]
        .as_str()
        .unwrap()
        .to_string();
    let poisoned = xml
        .replacen(
            &report_id,
            &format!("{}\0{}", &report_id[..2], &report_id[2..]),
            1,
        )
        .replacen(&format!(">{org}<"), &format!(">\u{1}{org}\0<"), 1)
        .replacen(
            &format!("<header_from>{header_from}"),
            &format!("<header_from>{header_from}&#1;\u{1b}"),
            1,
        );
    let parsed = one(poisoned.as_bytes(), "nul.xml");
    assert_eq!(facts(parsed.clone()), facts(original));
    assert_warned(
        &parsed,
        "removed control characters from /feedback/report_metadata/report_id",
    );
    assert_warned(
        &parsed,
        "removed control characters from /feedback/report_metadata/org_name",
    );
    assert_warned(&parsed, "header_from");

    let tls = String::from_utf8(corpus(RFC8460)).unwrap();
    let expected = one(tls.as_bytes(), "rfc8460.json");
    let poisoned = tls
        .replace("\"Company-X\"", "\"Company\\u0000-X\"")
        .replace("\"certificate-expired\"", "\"certificate-\\u0007expired\"");
    let parsed = one(poisoned.as_bytes(), "nul.json");
    assert_eq!(facts(parsed.clone()), facts(expected));
    assert_warned(
        &parsed,
        "removed control characters from /organization-name",
    );
    assert_warned(&parsed, "/policies/0/failure-details/0/result-type");

    let arf = corpus_text(ARF);
    let expected = one(arf.as_bytes(), "arf.eml");
    let poisoned = arf.replace(
        "Reported-Domain: example.com",
        "Reported-Domain: exam\0ple.com",
    );
    let parsed = one(poisoned.as_bytes(), "nul.eml");
    assert_eq!(facts(parsed.clone()), facts(expected));
    assert_warned(&parsed, "removed control characters from reported_domain");
}

#[test]
fn gzip_of_a_report_survives_being_cut_into_writes_of_any_size() {
    // Guards the multi-member reader against a member boundary at any offset
    // of the underlying buffer.
    let xml = corpus(GOOGLE);
    let original = one(&xml, "original.xml");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&xml).unwrap();
    let first = encoder.finish().unwrap();
    for pad in [0usize, 1, 8191, 8192, 8193] {
        let mut stream = first.clone();
        let filler = common::gzip(&vec![b' '; pad], Compression::default());
        stream.extend(&filler);
        assert_eq!(one(&stream, "padded.xml.gz"), original, "pad {pad}");
    }
}

#[test]
fn control_characters_in_member_names_stay_out_of_the_location() {
    let xml = corpus(GOOGLE);
    let zipped = common::zip(&[("report\u{1b}[31m.xml", &xml)]);
    let reports = extract_reports_from_bytes(&zipped, "r.zip", &Limits::default()).unwrap();
    assert_eq!(reports[0].location, "r.zip › report[31m.xml");

    let encoded = base64::engine::general_purpose::STANDARD.encode(&xml);
    let email = format!(
        "From: a@example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/xml\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename*=UTF-8''nul%00name.xml\r\n\r\n{encoded}\r\n"
    );
    let reports =
        extract_reports_from_bytes(email.as_bytes(), "m.eml", &Limits::default()).unwrap();
    assert_eq!(reports[0].location, "m.eml › nulname.xml");
}

#[test]
fn a_control_character_deep_in_a_large_report_or_from_a_reference_is_removed() {
    // Large enough to be parsed in windows and on two threads.
    let mut report = dmarcd::testing::aggregate_report(30_000);
    let last = report.records.len() - 1;
    report.records[last].identifiers.header_from = Some("la\0st.example".into());
    let parsed = one(report.to_xml().as_bytes(), "large.xml");
    assert_eq!(
        parsed["records"][last]["identifiers"]["header_from"],
        "last.example"
    );
    assert_warned(
        &parsed,
        "removed control characters from /feedback/record[30000]",
    );

    let xml = corpus_text(AGGREGATE).replacen("<header_from>", "<header_from>&#1;", 1);
    let parsed = one(xml.as_bytes(), "reference.xml");
    assert_eq!(
        facts(parsed.clone()),
        facts(one(&corpus(AGGREGATE), "original.xml"))
    );
    assert_warned(&parsed, "header_from");
}
