//! How mail reaches the domain and how safely: MX, MTA-STS (record,
//! policy, coverage of every MX), TLS-RPT; and BIMI.

use super::{select_records, Context, PostureChecker};
use crate::dns::finding::{Finding, RecordKind};
use crate::dns::https::POLICY_PATH;
use crate::dns::mta_sts::{is_sts_record, parse_policy, parse_sts_record, policy_findings};
use crate::dns::resolver::Answer;
use crate::dns::tlsrpt::{bimi_findings, is_bimi_record, is_tlsrpt_record, parse_tlsrpt};

pub(super) async fn check(checker: &PostureChecker, domain: &str) -> Context {
    let (mx_and_sts, tlsrpt, bimi) = tokio::join!(
        async {
            let (mut context, hosts) = mx(checker, domain).await;
            context.absorb(mta_sts(checker, domain, hosts.as_deref()).await);
            context
        },
        tls_rpt(checker, domain),
        bimi(checker, domain),
    );
    let mut context = mx_and_sts;
    context.absorb(tlsrpt);
    context.absorb(bimi);
    context
}

/// MX hosts (None when the lookup failed).
async fn mx(checker: &PostureChecker, domain: &str) -> (Context, Option<Vec<String>>) {
    const KIND: RecordKind = RecordKind::Mx;
    let mut context = Context::default();
    let hosts = match checker.dns.mx(domain).await {
        Answer::Failed(reason) => {
            context.push(Finding::unchecked(KIND, &format!("MX {domain}"), &reason));
            return (context, None);
        }
        Answer::Missing => {
            context.observe(KIND, domain, "MX", Vec::new());
            context.push(Finding::warning(
                KIND,
                "mx.missing",
                format!(
                    "{domain} has no MX record, so mail to it goes to its address record, if any."
                ),
            ));
            return (context, Some(Vec::new()));
        }
        Answer::Found(hosts) => hosts,
    };
    context.observe(
        KIND,
        domain,
        "MX",
        hosts
            .iter()
            .map(|host| format!("{} {}.", host.preference, host.exchange))
            .collect(),
    );
    // RFC 7505: a single MX of "." says the domain takes no mail.
    if hosts.len() == 1 && hosts[0].exchange.is_empty() {
        context.push(Finding::ok(
            KIND,
            "mx.null",
            format!("{domain} publishes a null MX: it accepts no mail."),
        ));
        return (context, Some(Vec::new()));
    }
    let names: Vec<String> = hosts.iter().map(|host| host.exchange.clone()).collect();
    let lookups = names
        .iter()
        .map(|name| async move { (name, checker.dns.addresses(name).await) });
    let mut reachable = 0;
    for (name, answer) in futures_util::future::join_all(lookups).await {
        match answer {
            Answer::Found(_) => reachable += 1,
            Answer::Missing => context.push(Finding::error(
                KIND,
                "mx.no_address",
                format!("The MX host {name} has no address, so senders cannot deliver to it."),
            )),
            Answer::Failed(reason) => context.push(Finding::unchecked(
                KIND,
                &format!("the address of {name}"),
                &reason,
            )),
        }
    }
    if reachable > 0 {
        context.push(Finding::ok(
            KIND,
            "mx.hosts",
            format!("{domain} receives mail at {}.", names.join(", ")),
        ));
    }
    (context, Some(names))
}

async fn mta_sts(checker: &PostureChecker, domain: &str, mx_hosts: Option<&[String]>) -> Context {
    const KIND: RecordKind = RecordKind::MtaSts;
    let mut context = Context::default();
    let name = format!("_mta-sts.{domain}");
    let answer = checker.dns.txt(&name).await;
    context.observe_txt(KIND, &name, &answer);
    let records = match &answer {
        Answer::Failed(reason) => {
            context.push(Finding::unchecked(KIND, &format!("TXT {name}"), reason));
            return context;
        }
        Answer::Missing => Vec::new(),
        Answer::Found(found) => {
            let max_bytes = checker.config.max_txt_bytes;
            let (records, too_long) =
                select_records(&mut context, KIND, &name, found, is_sts_record, max_bytes);
            if records.is_empty() && too_long > 0 {
                return context;
            }
            records
        }
    };
    let record = match records.as_slice() {
        [] => {
            context.push(Finding::warning(
                KIND,
                "mta_sts.missing",
                format!("{domain} publishes no MTA-STS policy, so senders may deliver over unverified or no TLS."),
            ));
            return context;
        }
        [one] => one,
        several => {
            context.push(Finding::error(
                KIND,
                "mta_sts.multiple",
                format!(
                    "{name} has {} MTA-STS records; senders treat that as no policy.",
                    several.len()
                ),
            ));
            return context;
        }
    };
    if let Err(finding) = parse_sts_record(record) {
        context.push(finding);
        return context;
    }
    let url = format!("https://mta-sts.{domain}{POLICY_PATH}");
    let policy_text = match checker.fetcher.fetch(&checker.dns, domain).await {
        Ok(text) => text,
        Err(reason) => {
            context.push(Finding::error(
                KIND,
                "mta_sts.policy_unavailable",
                format!("{name} announces a policy, but {reason}; senders then apply none."),
            ));
            return context;
        }
    };
    context.observe(KIND, &url, "policy", vec![policy_text.clone()]);
    match parse_policy(&policy_text) {
        Err(problem) => context.push(Finding::error(
            KIND,
            "mta_sts.policy_syntax",
            format!("The policy at {url} is invalid ({problem}), so senders apply none."),
        )),
        Ok(policy) => {
            let hosts = mx_hosts.unwrap_or_default();
            context.findings.extend(policy_findings(&policy, hosts));
        }
    }
    context
}

async fn tls_rpt(checker: &PostureChecker, domain: &str) -> Context {
    const KIND: RecordKind = RecordKind::TlsRpt;
    let mut context = Context::default();
    let name = format!("_smtp._tls.{domain}");
    let answer = checker.dns.txt(&name).await;
    context.observe_txt(KIND, &name, &answer);
    let records = match &answer {
        Answer::Failed(reason) => {
            context.push(Finding::unchecked(KIND, &format!("TXT {name}"), reason));
            return context;
        }
        Answer::Missing => Vec::new(),
        Answer::Found(found) => {
            let max_bytes = checker.config.max_txt_bytes;
            let (records, too_long) = select_records(
                &mut context,
                KIND,
                &name,
                found,
                is_tlsrpt_record,
                max_bytes,
            );
            if records.is_empty() && too_long > 0 {
                return context;
            }
            records
        }
    };
    let suggested = checker.targets.suggested_address();
    let record = match records.as_slice() {
        [] => {
            let mut finding = Finding::warning(
                KIND,
                "tls_rpt.missing",
                format!("{domain} has no TLS-RPT record, so nobody tells you when senders fail to reach it over TLS."),
            );
            if let Some(address) = suggested {
                finding =
                    finding.with_fix(&name, "TXT", format!("v=TLSRPTv1; rua=mailto:{address}"));
            }
            context.push(finding);
            return context;
        }
        [one] => one,
        several => {
            context.push(Finding::error(
                KIND,
                "tls_rpt.multiple",
                format!(
                    "{name} has {} TLS-RPT records; senders then send no report.",
                    several.len()
                ),
            ));
            return context;
        }
    };
    let targets = match parse_tlsrpt(record) {
        Ok(targets) => targets,
        Err(finding) => {
            context.push(finding);
            return context;
        }
    };
    if !checker.targets.known() {
        context.push(Finding::ok(
            KIND,
            "tls_rpt.valid",
            "The TLS-RPT record is valid.",
        ));
    } else if let Some(here) = targets
        .iter()
        .find(|uri| checker.targets.receives_tlsrpt_at(uri))
    {
        context.push(Finding::ok(
            KIND,
            "tls_rpt.here",
            format!("TLS reports for {domain} come to this dmarcd ({here})."),
        ));
    } else {
        let mut finding = Finding::warning(
            KIND,
            "tls_rpt.elsewhere",
            "No rua= target of the TLS-RPT record is one this dmarcd receives, so it sees none of the reports.",
        );
        if let Some(address) = suggested {
            finding = finding.with_fix(
                &name,
                "TXT",
                format!("v=TLSRPTv1; rua={},mailto:{address}", targets.join(",")),
            );
        }
        context.push(finding);
    }
    context
}

async fn bimi(checker: &PostureChecker, domain: &str) -> Context {
    const KIND: RecordKind = RecordKind::Bimi;
    let mut context = Context::default();
    let name = format!("default._bimi.{domain}");
    let answer = checker.dns.txt(&name).await;
    context.observe_txt(KIND, &name, &answer);
    match &answer {
        Answer::Failed(reason) => {
            context.push(Finding::unchecked(KIND, &format!("TXT {name}"), reason))
        }
        Answer::Missing => context.push(Finding::ok(
            KIND,
            "bimi.none",
            format!("{domain} publishes no BIMI record (optional: a brand logo in some inboxes)."),
        )),
        Answer::Found(found) => {
            let max_bytes = checker.config.max_txt_bytes;
            let (records, _) =
                select_records(&mut context, KIND, &name, found, is_bimi_record, max_bytes);
            match records.as_slice() {
                [] => context.push(Finding::ok(
                    KIND,
                    "bimi.none",
                    format!("{domain} publishes no BIMI record (optional: a brand logo in some inboxes)."),
                )),
                [one] => context.findings.extend(bimi_findings(one)),
                several => context.push(Finding::error(
                    KIND,
                    "bimi.multiple",
                    format!("{name} has {} BIMI records; mailbox providers then show no logo.", several.len()),
                )),
            }
        }
    }
    context
}
