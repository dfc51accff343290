//! The class of a source new to a domain, for new-source rules that watch
//! only some classes (say, suspicious and misconfigured ones). A new
//! source has no history: its class comes from the batch that first
//! reports it (how much of its mail passed, aligned DKIM or SPF), what
//! `ip_sources` already says of its IP (name, service type, AS, PTR), and
//! the admins' approvals, through the same `senders::classify` the sender
//! pages use. The signal of the published SPF's ranges is left out here:
//! it needs the domain's whole period, which the pages read.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::str::FromStr;

use super::{json, FineRow, StoreResult, Tx};
use crate::senders::{
    classify, matching_rule, ordered_rules, Class, IpFacts, SendersConfig, SourceFacts,
};
use crate::store::approvals::{self, Approval};

#[derive(sqlx::FromRow)]
struct IpRow {
    ip: String,
    source_name: Option<String>,
    source_type: Option<String>,
    asn: Option<i64>,
    ptr: Option<String>,
    base_domain: Option<String>,
    dns_state: String,
}

/// Messages of one source in the batch: all, passing DMARC, with aligned
/// DKIM passing, with aligned SPF passing.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    messages: i64,
    dmarc_pass: i64,
    dkim_aligned_pass: i64,
    spf_aligned_pass: i64,
}

fn passed(result: &Option<String>) -> bool {
    result.as_deref() == Some("pass")
}

/// The class of each (domain, IP) of `sources`, as the batch `rows` show it.
pub(super) async fn of_new_sources(
    transaction: &mut Tx,
    sources: &[(String, String)],
    rows: &[FineRow],
    config: &SendersConfig,
) -> StoreResult<HashMap<(String, String), Class>> {
    let mut classes = HashMap::new();
    if sources.is_empty() {
        return Ok(classes);
    }
    let mut tallies: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
    for row in rows {
        let Some(ip) = &row.source_ip else { continue };
        let tally = tallies
            .entry((row.policy_domain.as_str(), ip.as_str()))
            .or_default();
        tally.messages += row.count;
        if row.dmarc_pass {
            tally.dmarc_pass += row.count;
        }
        if passed(&row.dkim_aligned) {
            tally.dkim_aligned_pass += row.count;
        }
        if passed(&row.spf_aligned) {
            tally.spf_aligned_pass += row.count;
        }
    }
    let backend = transaction.backend();
    let ips: Vec<&String> = sources.iter().map(|(_, ip)| ip).collect();
    let described: Vec<IpRow> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT {ip} AS ip, source_name, source_type, asn, ptr, base_domain, dns_state \
                 FROM ip_sources WHERE {listed}",
                ip = backend.ip_text("ip"),
                listed = backend.in_ip_list("ip", "$1"),
            ),
            vec![json(&ips)],
        ))
        .await?;
    let described: HashMap<&str, &IpRow> =
        described.iter().map(|row| (row.ip.as_str(), row)).collect();
    let approvals = ordered_rules(approvals::in_force(transaction).await?);
    let mut rules_of_domain: HashMap<&str, Vec<Approval>> = HashMap::new();
    for (domain, ip) in sources {
        let tally = tallies
            .get(&(domain.as_str(), ip.as_str()))
            .copied()
            .unwrap_or_default();
        let about = described.get(ip.as_str());
        let name = about.and_then(|row| row.source_name.clone());
        let (key, is_ip) = match &name {
            Some(name) => (name.clone(), false),
            None => (ip.clone(), true),
        };
        let ip_facts = IpFacts {
            ip: IpAddr::from_str(ip).ok(),
            asn: about.and_then(|row| row.asn),
            base_domain: about.and_then(|row| row.base_domain.clone()),
        };
        let domain_rules = rules_of_domain.entry(domain.as_str()).or_insert_with(|| {
            approvals
                .iter()
                .filter(|rule| {
                    rule.domain
                        .as_deref()
                        .is_none_or(|own| own.eq_ignore_ascii_case(domain))
                })
                .cloned()
                .collect()
        });
        let facts = SourceFacts {
            domain: domain.clone(),
            rule: matching_rule(
                domain_rules,
                &key,
                is_ip,
                &[(ip_facts, tally.messages)],
                tally.messages,
                config,
            ),
            key,
            is_ip,
            source_type: about.and_then(|row| row.source_type.clone()),
            messages: tally.messages,
            dmarc_pass: tally.dmarc_pass,
            dkim_aligned_pass: tally.dkim_aligned_pass,
            spf_aligned_pass: tally.spf_aligned_pass,
            ptr: about.and_then(|row| row.ptr.clone()),
            ptr_looked_up: about
                .is_some_and(|row| matches!(row.dns_state.as_str(), "done" | "none" | "failed")),
            ..SourceFacts::default()
        };
        classes.insert((domain.clone(), ip.clone()), classify(&facts, config).class);
    }
    Ok(classes)
}
