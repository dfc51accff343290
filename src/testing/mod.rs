//! Synthetic reports for tests, benchmarks and load scripts. Deterministic:
//! the same arguments always give the same report. Also a real DNS server
//! on loopback (`dns`) for enrichment tests.

pub mod dns;
pub mod dovecot;

use base64::Engine;

use std::net::{IpAddr, Ipv4Addr};

use crate::report::aggregate::*;

/// An aggregate report with `records` rows, each from a distinct source IP,
/// shaped like a large Google or Microsoft report (two DKIM signatures and
/// one SPF result per row, a mix of passes and failures).
pub fn aggregate_report(records: usize) -> AggregateReport {
    AggregateReport {
        schema: SchemaFamily::Rfc7489,
        version: Some("1.0".to_string()),
        namespace: None,
        metadata: ReportMetadata {
            org_name: "Enterprise Outlook".to_string(),
            email: Some("dmarcreport@microsoft.com".to_string()),
            extra_contact_info: None,
            report_id: format!("synthetic-{records}"),
            begin: 1_711_756_800,
            end: 1_711_843_200,
            errors: Vec::new(),
            generator: None,
        },
        policy_published: PolicyPublished {
            domain: "example.com".to_string(),
            adkim: Some(Alignment::Relaxed),
            aspf: Some(Alignment::Relaxed),
            p: Some(Disposition::Quarantine),
            sp: Some(Disposition::Quarantine),
            np: None,
            pct: Some(100),
            fo: Some("0".to_string()),
            testing: None,
            discovery_method: None,
        },
        extensions: Vec::new(),
        records: (0..records).map(record).collect(),
        warnings: Vec::new(),
    }
}

/// The `index`th of a run of distinct addresses: 11.0.0.0 upwards,
/// skipping .0 and .255.
fn distinct_ip(index: usize) -> IpAddr {
    let host = u32::try_from(index).unwrap_or(u32::MAX);
    IpAddr::V4(Ipv4Addr::from(
        0x0B00_0000u32 + (host / 254) * 256 + host % 254 + 1,
    ))
}

/// The `index`th of `count` reports shaped like a real mailbox's: 20
/// domains, 5 reporting organizations, one report per organization,
/// domain and day (so a set of 1,000 covers ten days), and source IPs
/// drawn from a pool of 5,000 with a skew (a few senders appear in most
/// reports, as the big mailbox providers and ESPs do), so that the same
/// sources and days meet in many reports stored at once.
pub fn realistic_report(index: usize, records: usize) -> AggregateReport {
    const DOMAINS: usize = 20;
    const REPORTERS: [&str; 5] = [
        "google.com",
        "Enterprise Outlook",
        "Yahoo",
        "Mail.Ru",
        "comcast.net",
    ];
    const POOL: usize = 5_000;
    let domain = index % DOMAINS;
    let reporter = (index / DOMAINS) % REPORTERS.len();
    let day = (index / (DOMAINS * REPORTERS.len())) as i64;
    let begin = 1_711_756_800 + day * 86_400;
    let mut report = aggregate_report(0);
    report.metadata.org_name = REPORTERS[reporter].to_string();
    report.metadata.report_id = format!("realistic-{index}");
    report.metadata.begin = begin;
    report.metadata.end = begin + 86_399;
    report.policy_published.domain = format!("domain-{domain}.example");
    // A cheap deterministic mix (splitmix64) picks the sources.
    let mut state = index as u64 ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut seen = std::collections::HashSet::new();
    while report.records.len() < records {
        // Squaring a uniform draw skews it towards the pool's start.
        let uniform = (next() % 10_000) as f64 / 10_000.0;
        let source = ((uniform * uniform) * POOL as f64) as usize;
        if !seen.insert(source) && seen.len() < POOL {
            continue;
        }
        let mut row = record(source);
        row.identifiers.header_from = Some(report.policy_published.domain.as_str().into());
        report.records.push(row);
    }
    report
}

/// The `index`th of a run of report mails as Google sends them: a
/// `realistic_report` of `records` rows, gzipped, base64 in lines of 76,
/// with the headers a mailbox shows.
pub fn report_email(index: usize, records: usize) -> Vec<u8> {
    use std::io::Write;
    let report = realistic_report(index, records);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gzip.write_all(report.to_xml().as_bytes());
    let packed = gzip.finish().unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(packed);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap_or_default())
        .collect();
    let domain = &report.policy_published.domain;
    let id = &report.metadata.report_id;
    let file = format!(
        "google.com!{domain}!{}!{}.xml.gz",
        report.metadata.begin, report.metadata.end
    );
    format!(
        "From: noreply-dmarc-support@google.com\r\n\
         To: dmarc@{domain}\r\n\
         Subject: Report domain: {domain} Submitter: google.com Report-ID: {id}\r\n\
         Message-ID: <{id}@google.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: application/gzip; name=\"{file}\"\r\n\
         Content-Disposition: attachment; filename=\"{file}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

fn record(index: usize) -> Record {
    let passes = !index.is_multiple_of(3);
    let verdict = if passes {
        DmarcResult::Pass
    } else {
        DmarcResult::Fail
    };
    let sender = format!("sender{}.example.net", index % 997);
    Record {
        source_ip: Some(distinct_ip(index)),
        invalid_source_ip: None,
        count: (index % 50 + 1) as u64,
        policy_evaluated: PolicyEvaluated {
            disposition: Some(if passes {
                Disposition::None
            } else {
                Disposition::Quarantine
            }),
            dkim: Some(verdict.clone()),
            spf: Some(verdict),
            reasons: Vec::new(),
        },
        identifiers: Identifiers {
            header_from: Some("example.com".into()),
            envelope_from: Some(sender.as_str().into()),
            envelope_to: Some("example.org".into()),
        },
        auth_results: AuthResults {
            dkim: vec![
                DkimAuthResult {
                    domain: Some("example.com".into()),
                    selector: Some("selector1".into()),
                    result: Some(if passes {
                        DkimResult::Pass
                    } else {
                        DkimResult::Fail
                    }),
                    human_result: None,
                },
                DkimAuthResult {
                    domain: Some(sender.as_str().into()),
                    selector: Some(format!("s{}", index % 7).into()),
                    result: Some(DkimResult::Pass),
                    human_result: None,
                },
            ],
            spf: vec![SpfAuthResult {
                domain: Some(sender.into()),
                scope: Some(SpfScope::Mfrom),
                result: Some(if passes {
                    SpfResult::Pass
                } else {
                    SpfResult::SoftFail
                }),
                human_result: None,
            }],
        },
        extensions: Vec::new(),
    }
}

/// A base64 SubjectPublicKeyInfo for an RSA modulus of `bits` bits, as a
/// DKIM record's `p=` holds it (the modulus is no real key; the checks
/// read only its length).
pub fn rsa_spki(bits: usize) -> String {
    fn der(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(body);
        out
    }
    let mut modulus = vec![0u8];
    modulus.push(0x80);
    modulus.extend(std::iter::repeat_n(0x55, bits / 8 - 1));
    let rsa = der(0x30, &[der(0x02, &modulus), der(0x02, &[1, 0, 1])].concat());
    let mut bit_string = vec![0];
    bit_string.extend(rsa);
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let spki = der(0x30, &[algorithm, der(0x03, &bit_string)].concat());
    base64::engine::general_purpose::STANDARD.encode(spki)
}
