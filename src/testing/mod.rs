//! Synthetic reports for tests, benchmarks and load scripts. Deterministic:
//! the same arguments always give the same report. Also a real DNS server
//! on loopback (`dns`) for enrichment tests.

pub mod dns;

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

fn record(index: usize) -> Record {
    // Distinct addresses: walk 11.0.0.0 upwards, skipping .0 and .255.
    let host = u32::try_from(index).unwrap_or(u32::MAX);
    let address = 0x0B00_0000u32 + (host / 254) * 256 + host % 254 + 1;
    let passes = !index.is_multiple_of(3);
    let verdict = if passes {
        DmarcResult::Pass
    } else {
        DmarcResult::Fail
    };
    let sender = format!("sender{}.example.net", index % 997);
    Record {
        source_ip: Some(IpAddr::V4(Ipv4Addr::from(address))),
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
