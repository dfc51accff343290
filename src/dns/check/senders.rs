//! What says who may send as the domain: SPF (expanded into its tree)
//! and the DKIM keys of its selectors.

use super::{select_records, Context, PostureChecker};
use crate::dns::dkim::parse_dkim;
use crate::dns::finding::{Finding, RecordKind};
use crate::dns::resolver::Answer;
use crate::dns::spf::{is_spf_record, parse_spf, record_findings};
use crate::dns::spf_tree::{expand, SpfTree};

pub(super) async fn check(
    checker: &PostureChecker,
    domain: &str,
    selectors: &[String],
) -> (Context, Option<SpfTree>) {
    let (mut context, tree) = spf(checker, domain).await;
    context.absorb(dkim(checker, domain, selectors).await);
    (context, tree)
}

async fn spf(checker: &PostureChecker, domain: &str) -> (Context, Option<SpfTree>) {
    const KIND: RecordKind = RecordKind::Spf;
    let mut context = Context::default();
    let answer = checker.dns.txt(domain).await;
    let found = match &answer {
        Answer::Failed(reason) => {
            context.push(Finding::unchecked(KIND, &format!("TXT {domain}"), reason));
            return (context, None);
        }
        Answer::Missing => Vec::new(),
        Answer::Found(found) => found.clone(),
    };
    // Only the SPF records of the domain's TXT set are its SPF history
    // (the rest are site verifications and the like).
    let spf_values: Vec<String> = found
        .iter()
        .filter(|txt| is_spf_record(&txt.text))
        .map(|txt| txt.text.clone())
        .collect();
    context.observe(KIND, domain, "TXT", spf_values);
    let (records, too_long) = select_records(
        &mut context,
        KIND,
        domain,
        &found,
        is_spf_record,
        checker.config.max_txt_bytes,
    );
    let record = match records.as_slice() {
        [one] => one.clone(),
        [] if too_long > 0 => return (context, None),
        [] => {
            context.push(Finding::error(
                KIND,
                "spf.missing",
                format!("{domain} has no SPF record, so receivers cannot tell which servers may send as it."),
            ));
            return (context, None);
        }
        several => {
            context.push(Finding::error(
                KIND,
                "spf.multiple",
                format!(
                    "{domain} has {} SPF records; RFC 7208 makes that a permerror, so SPF fails for every sender.",
                    several.len()
                ),
            ));
            return (context, None);
        }
    };
    if let Ok(terms) = parse_spf(&record) {
        context
            .findings
            .extend(record_findings(domain, &record, &terms));
    }
    let tree = expand(
        &checker.dns,
        domain,
        &record,
        checker.config.max_txt_bytes,
        checker.config.spf_max_expanded_lookups,
    )
    .await;
    context.findings.extend(tree.findings());
    (context, Some(tree))
}

async fn dkim(checker: &PostureChecker, domain: &str, selectors: &[String]) -> Context {
    const KIND: RecordKind = RecordKind::Dkim;
    let mut context = Context::default();
    if selectors.is_empty() {
        context.push(Finding::new(
            KIND,
            crate::dns::finding::Severity::Unknown,
            "dkim.no_selectors",
            format!("No DKIM selector of {domain} is known yet: none was seen in reports and none was added."),
        ));
        return context;
    }
    let lookups = selectors.iter().map(|selector| async move {
        let name = format!("{selector}._domainkey.{domain}");
        let answer = checker.dns.txt(&name).await;
        (selector, name, answer)
    });
    for (selector, name, answer) in futures_util::future::join_all(lookups).await {
        context.observe_txt(KIND, &name, &answer);
        match answer {
            Answer::Failed(reason) => {
                context.push(Finding::unchecked(KIND, &format!("TXT {name}"), &reason))
            }
            Answer::Missing => context.push(Finding::error(
                KIND,
                "dkim.missing",
                format!(
                    "Selector {selector} has no key at {name}, so mail signed with it fails DKIM."
                ),
            )),
            Answer::Found(records) => {
                let (keys, too_long) = select_records(
                    &mut context,
                    KIND,
                    &name,
                    &records,
                    |_| true,
                    checker.config.max_txt_bytes,
                );
                match keys.as_slice() {
                    [key] => context.findings.extend(parse_dkim(selector, key).1),
                    [] if too_long > 0 => {}
                    [] => {}
                    several => context.push(Finding::error(
                        KIND,
                        "dkim.multiple",
                        format!("{name} has {} TXT records; verifiers may pick any, so signatures fail at random.", several.len()),
                    )),
                }
            }
        }
    }
    context
}
