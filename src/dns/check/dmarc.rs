//! DMARC: the record (or the organizational domain's), its syntax, where
//! its reports go, and whether each outside report host agreed to take
//! them (RFC 7489 section 7.1).

use super::{select_records, Context, PostureChecker};
use crate::dns::dmarc::{is_dmarc_record, parse_dmarc, DmarcRecord};
use crate::dns::finding::{Finding, RecordKind};
use crate::dns::resolver::Answer;
use crate::enrich::base_domain;

const KIND: RecordKind = RecordKind::Dmarc;

pub(super) async fn check(checker: &PostureChecker, domain: &str) -> Context {
    let mut context = Context::default();
    let Some((record_domain, text)) = find_record(checker, domain, &mut context).await else {
        return context;
    };
    let (record, findings) = parse_dmarc(&text);
    context.findings.extend(findings);
    if let Some(record) = record {
        report_addresses(
            checker,
            domain,
            &record_domain,
            &text,
            &record,
            &mut context,
        )
        .await;
    }
    context
}

/// The DMARC record that applies to `domain`: its own, or its
/// organizational domain's (RFC 7489 section 6.6.3), with where it was found.
async fn find_record(
    checker: &PostureChecker,
    domain: &str,
    context: &mut Context,
) -> Option<(String, String)> {
    let name = format!("_dmarc.{domain}");
    let own = checker.dns.txt(&name).await;
    context.observe_txt(KIND, &name, &own);
    let max_bytes = checker.config.max_txt_bytes;
    let (records, too_long) = match &own {
        Answer::Failed(reason) => {
            context.push(Finding::unchecked(KIND, &format!("TXT {name}"), reason));
            return None;
        }
        Answer::Missing => (Vec::new(), 0),
        Answer::Found(found) => {
            select_records(context, KIND, &name, found, is_dmarc_record, max_bytes)
        }
    };
    match records.as_slice() {
        [one] => {
            context.push(Finding::ok(
                KIND,
                "dmarc.found",
                format!("{name} has a DMARC record."),
            ));
            return Some((domain.to_string(), one.clone()));
        }
        [] if too_long > 0 => return None,
        [] => {}
        several => {
            context.push(Finding::error(
                KIND,
                "dmarc.multiple",
                format!(
                    "{name} has {} DMARC records; receivers ignore them all and apply no policy.",
                    several.len()
                ),
            ));
            return None;
        }
    }
    let organizational = base_domain(domain).filter(|org| *org != domain);
    if let Some(org) = organizational {
        let org_name = format!("_dmarc.{org}");
        let inherited = checker.dns.txt(&org_name).await;
        context.observe_txt(KIND, &org_name, &inherited);
        match &inherited {
            Answer::Failed(reason) => {
                context.push(Finding::unchecked(KIND, &format!("TXT {org_name}"), reason));
                return None;
            }
            Answer::Found(found) => {
                let (records, _) =
                    select_records(context, KIND, &org_name, found, is_dmarc_record, max_bytes);
                if let [one] = records.as_slice() {
                    context.push(Finding::ok(
                        KIND,
                        "dmarc.inherited",
                        format!(
                            "{domain} has no DMARC record of its own; the record of its organizational domain {org} applies (its sp= for subdomains)."
                        ),
                    ));
                    return Some((org.to_string(), one.clone()));
                }
            }
            Answer::Missing => {}
        }
    }
    let mut missing = Finding::error(
        KIND,
        "dmarc.missing",
        format!("{domain} has no DMARC record, so receivers apply no policy and send no reports."),
    );
    missing = match checker.targets.suggested_address() {
        Some(address) => missing.with_fix(
            &name,
            "TXT",
            format!("v=DMARC1; p=none; rua=mailto:{address}"),
        ),
        None => missing.with_fix(&name, "TXT", "v=DMARC1; p=none"),
    };
    context.push(missing);
    None
}

/// Whether the reports reach this dmarcd, and whether every outside
/// report host authorized them.
async fn report_addresses(
    checker: &PostureChecker,
    domain: &str,
    record_domain: &str,
    text: &str,
    record: &DmarcRecord,
    context: &mut Context,
) {
    let targets = &checker.targets;
    if targets.known() && !record.rua.is_empty() {
        let here = record
            .rua
            .iter()
            .filter_map(|uri| uri.address.as_deref())
            .find(|address| targets.receives_mail_for(address));
        match (here, targets.suggested_address()) {
            (Some(address), _) => context.push(Finding::ok(
                KIND,
                "dmarc.rua_here",
                format!("Aggregate reports for {domain} come to this dmarcd ({address})."),
            )),
            (None, suggested) => {
                let mut finding = Finding::warning(
                    KIND,
                    "dmarc.rua_elsewhere",
                    "No rua= address of the record is one this dmarcd receives, so it sees none of the reports.",
                );
                if let Some(address) = suggested {
                    let fixed = add_rua(text, address);
                    finding = finding.with_fix(&format!("_dmarc.{record_domain}"), "TXT", fixed);
                }
                context.push(finding);
            }
        }
    }
    let own_org = base_domain(record_domain).unwrap_or(record_domain);
    let mut hosts: Vec<&str> = record
        .rua
        .iter()
        .chain(&record.ruf)
        .filter_map(|uri| uri.host.as_deref())
        .filter(|host| base_domain(host).unwrap_or(host) != own_org)
        .collect();
    hosts.sort();
    hosts.dedup();
    for host in hosts {
        // RFC 7489 section 7.1: the report host publishes
        // <policy domain>._report._dmarc.<host> "v=DMARC1" to accept them.
        let name = format!("{record_domain}._report._dmarc.{host}");
        let answer = checker.dns.txt(&name).await;
        context.observe_txt(KIND, &name, &answer);
        let ours = targets.known()
            && record
                .rua
                .iter()
                .chain(&record.ruf)
                .filter(|uri| uri.host.as_deref() == Some(host))
                .filter_map(|uri| uri.address.as_deref())
                .any(|address| targets.receives_mail_for(address));
        match answer {
            Answer::Failed(reason) => {
                context.push(Finding::unchecked(KIND, &format!("TXT {name}"), &reason))
            }
            Answer::Found(records) if records.iter().any(|txt| is_dmarc_record(&txt.text)) => {
                context.push(Finding::ok(
                    KIND,
                    "dmarc.rua_authorized",
                    format!("{host} has authorized reports for {record_domain} ({name})."),
                ))
            }
            _ => {
                let message = if ours {
                    format!(
                        "{host} (this dmarcd) has not authorized reports for {record_domain}, so receivers send it none; publish this record in the zone of {host}."
                    )
                } else {
                    format!(
                        "{host} has not authorized reports for {record_domain}, so receivers send it none; the operator of {host} must publish this record."
                    )
                };
                context.push(
                    Finding::error(KIND, "dmarc.rua_unauthorized", message)
                        .with_fix(&name, "TXT", "v=DMARC1"),
                );
            }
        }
    }
}

/// The record with `address` added to its `rua=` (or a `rua=` added).
fn add_rua(text: &str, address: &str) -> String {
    let parts: Vec<String> = text
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect();
    let mut added = false;
    let mut parts: Vec<String> = parts
        .into_iter()
        .map(|part| match part.split_once('=') {
            Some((name, value)) if name.trim() == "rua" => {
                added = true;
                format!("rua={},mailto:{address}", value.trim())
            }
            _ => part,
        })
        .collect();
    if !added {
        parts.push(format!("rua=mailto:{address}"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_joins_the_rua_list() {
        assert_eq!(
            super::add_rua("v=DMARC1; p=none; rua=mailto:a@x.example", "d@here.example"),
            "v=DMARC1; p=none; rua=mailto:a@x.example,mailto:d@here.example"
        );
        assert_eq!(
            super::add_rua("v=DMARC1;p=reject;", "d@here.example"),
            "v=DMARC1; p=reject; rua=mailto:d@here.example"
        );
    }
}
