//! Property tests: any report written out as XML or JSON parses back equal.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dmarcd::report::aggregate::*;
use dmarcd::report::tlsrpt::{
    self, FailureDetail, PolicyType, ResultType, TlsPolicyResult, TlsReport,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Text as reports carry it: markup characters and non-ASCII included, no
/// leading or trailing whitespace (values are trimmed on reading).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9<>&\"'.:@_é漢-]([a-zA-Z0-9<>&\"' .:@_é漢-]{0,16}[a-zA-Z0-9<>&\"'.:@_é漢-])?"
}

/// A keyword: one of the known values, or an unknown one kept as written.
fn keyword<T: std::fmt::Debug + Clone + 'static>(
    known: Vec<T>,
    parse: fn(&str) -> T,
) -> impl Strategy<Value = T> {
    prop_oneof![
        proptest::sample::select(known),
        "[A-Za-z][a-z_]{2,10}x".prop_map(move |raw| parse(&raw)),
    ]
}

/// Shared text, as record-level strings are.
fn shared() -> impl Strategy<Value = Option<Arc<str>>> {
    option::of(text().prop_map(Arc::from))
}

fn disposition() -> impl Strategy<Value = Disposition> {
    keyword(
        vec![
            Disposition::None,
            Disposition::Quarantine,
            Disposition::Reject,
            Disposition::Pass,
        ],
        Disposition::parse,
    )
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from)
    ]
}

fn record() -> impl Strategy<Value = Record> {
    let evaluated = (
        option::of(disposition()),
        option::of(keyword(
            vec![DmarcResult::Pass, DmarcResult::Fail],
            DmarcResult::parse,
        )),
        option::of(keyword(
            vec![DmarcResult::Pass, DmarcResult::Fail],
            DmarcResult::parse,
        )),
        vec(
            (
                option::of(keyword(
                    vec![
                        OverrideType::Forwarded,
                        OverrideType::LocalPolicy,
                        OverrideType::PolicyTestMode,
                    ],
                    OverrideType::parse,
                )),
                shared(),
            )
                .prop_map(|(kind, comment)| OverrideReason { kind, comment }),
            0..2,
        ),
    )
        .prop_map(|(disposition, dkim, spf, reasons)| PolicyEvaluated {
            disposition,
            dkim,
            spf,
            reasons,
        });
    let dkim = (
        shared(),
        shared(),
        option::of(keyword(
            vec![DkimResult::Pass, DkimResult::TempError],
            DkimResult::parse,
        )),
        shared(),
    )
        .prop_map(|(domain, selector, result, human_result)| DkimAuthResult {
            domain,
            selector,
            result,
            human_result,
        });
    let spf = (
        shared(),
        option::of(keyword(
            vec![SpfScope::Mfrom, SpfScope::Helo],
            SpfScope::parse,
        )),
        option::of(keyword(
            vec![SpfResult::SoftFail, SpfResult::Policy],
            SpfResult::parse,
        )),
        shared(),
    )
        .prop_map(|(domain, scope, result, human_result)| SpfAuthResult {
            domain,
            scope,
            result,
            human_result,
        });
    (
        ip(),
        any::<u32>(),
        evaluated,
        (shared(), shared(), shared()),
        vec(dkim, 0..3),
        vec(spf, 0..2),
    )
        .prop_map(
            |(
                ip,
                count,
                policy_evaluated,
                (header_from, envelope_from, envelope_to),
                dkim,
                spf,
            )| Record {
                source_ip: Some(ip),
                invalid_source_ip: None,
                count: u64::from(count),
                policy_evaluated,
                identifiers: Identifiers {
                    header_from,
                    envelope_from,
                    envelope_to,
                },
                auth_results: AuthResults { dkim, spf },
                extensions: Vec::new(),
            },
        )
}

fn aggregate_report() -> impl Strategy<Value = AggregateReport> {
    let metadata = (
        text(),
        option::of(text()),
        option::of(text()),
        text(),
        any::<u32>(),
        any::<u16>(),
        vec(text(), 0..2),
    )
        .prop_map(
            |(org_name, email, extra_contact_info, report_id, begin, span, errors)| {
                ReportMetadata {
                    org_name,
                    email,
                    extra_contact_info,
                    report_id,
                    begin: i64::from(begin),
                    end: i64::from(begin) + i64::from(span),
                    errors,
                    generator: None,
                }
            },
        );
    let alignment = || {
        option::of(keyword(
            vec![Alignment::Relaxed, Alignment::Strict],
            Alignment::parse,
        ))
    };
    let policy = (
        text(),
        alignment(),
        alignment(),
        option::of(disposition()),
        option::of(disposition()),
        option::of(0u8..=100),
        option::of(text()),
    )
        .prop_map(|(domain, adkim, aspf, p, sp, pct, fo)| PolicyPublished {
            domain,
            adkim,
            aspf,
            p,
            sp,
            np: None,
            pct,
            fo,
            testing: None,
            discovery_method: None,
        });
    (metadata, policy, vec(record(), 0..12), any::<bool>()).prop_map(
        |(metadata, policy_published, records, dmarcbis)| AggregateReport {
            schema: if dmarcbis {
                SchemaFamily::Rfc9990
            } else {
                SchemaFamily::Rfc7489
            },
            version: Some("1.0".to_string()),
            namespace: dmarcbis.then(|| "urn:ietf:params:xml:ns:dmarc-2.0".to_string()),
            metadata,
            policy_published,
            extensions: Vec::new(),
            records,
            warnings: Vec::new(),
        },
    )
}

fn tls_report() -> impl Strategy<Value = TlsReport> {
    let detail = (
        keyword(
            vec![
                ResultType::StarttlsNotSupported,
                ResultType::StsPolicyFetchError,
            ],
            ResultType::parse,
        ),
        option::of(ip().prop_map(|ip| ip.to_string())),
        option::of(text()),
        // Addresses are kept in canonical form, so the generated ones are.
        option::of(ip().prop_map(|ip| ip.to_string())),
        any::<u32>(),
        option::of(text()),
    )
        .prop_map(
            |(
                result_type,
                sending_mta_ip,
                receiving_mx_hostname,
                receiving_ip,
                count,
                failure_reason_code,
            )| {
                FailureDetail {
                    result_type,
                    sending_mta_ip,
                    receiving_mx_hostname,
                    receiving_mx_helo: None,
                    receiving_ip,
                    failed_sessions: u64::from(count),
                    additional_information: None,
                    failure_reason_code,
                }
            },
        );
    let policy = (
        keyword(
            vec![PolicyType::Sts, PolicyType::Tlsa, PolicyType::NoPolicyFound],
            PolicyType::parse,
        ),
        text(),
        vec(text(), 0..4),
        vec(text(), 0..3),
        any::<u32>(),
        any::<u32>(),
        vec(detail, 0..3),
    )
        .prop_map(
            |(
                policy_type,
                policy_domain,
                policy_strings,
                mx_hosts,
                ok,
                failed,
                failure_details,
            )| TlsPolicyResult {
                policy_type,
                policy_domain: Some(policy_domain),
                policy_strings,
                mx_hosts,
                successful_sessions: u64::from(ok),
                failed_sessions: u64::from(failed),
                failure_details,
            },
        );
    (
        text(),
        0i64..4_000_000_000,
        0i64..200_000,
        option::of(text()),
        text(),
        vec(policy, 1..3),
    )
        .prop_map(
            |(organization_name, begin, span, contact_info, report_id, policies)| TlsReport {
                organization_name,
                begin: DateTime::<Utc>::from_timestamp(begin, 0).unwrap(),
                end: DateTime::<Utc>::from_timestamp(begin + span, 0).unwrap(),
                contact_info,
                report_id,
                policies,
                warnings: Vec::new(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn aggregate_reports_survive_xml(report in aggregate_report()) {
        let xml = report.to_xml();
        let parsed = parse_bytes(xml.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(parsed, report);
    }

    #[test]
    fn tls_reports_survive_json(report in tls_report()) {
        let json = serde_json::to_vec(&report.to_json()).unwrap();
        let parsed = tlsrpt::parse_bytes(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, report);
    }
}
