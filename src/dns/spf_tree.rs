//! An SPF record expanded into the tree receivers walk: every include and
//! redirect followed, `a` and `mx` resolved, DNS-querying terms and void
//! lookups counted against RFC 7208's limits (section 4.6.4), loops found,
//! and the IP ranges the record authorizes collected on the way.

use std::future::Future;
use std::pin::Pin;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::finding::{Finding, RecordKind};
use super::resolver::{Answer, DnsClient};
use super::spf::{expand_domain_spec, is_spf_record, parse_spf, Cidr, Qualifier, Term};

const KIND: RecordKind = RecordKind::Spf;
/// RFC 7208 section 4.6.4: terms that query DNS, per evaluation.
pub const MAX_LOOKUPS: usize = 10;
/// RFC 7208 section 4.6.4: lookups that find nothing, per evaluation.
pub const MAX_VOID_LOOKUPS: usize = 2;
/// RFC 7208 section 4.6.4: MX names an `mx` term may resolve.
const MAX_MX_NAMES: usize = 10;

/// One domain's SPF record and its terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpfNode {
    pub domain: String,
    pub record: Option<String>,
    /// Why the record could not be used here (missing, several, syntax…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub terms: Vec<SpfTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpfTerm {
    /// As written in the record (`include:_spf.example.net`).
    pub term: String,
    /// Whether it counts against the limit of 10.
    pub lookup: bool,
    /// Its lookup found nothing (counts against the limit of 2).
    pub void: bool,
    /// Networks it matches (ip4/ip6, or what `a`/`mx` resolved to).
    pub networks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub child: Option<Box<SpfNode>>,
}

/// The whole expansion of a domain's SPF record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpfTree {
    pub root: SpfNode,
    /// DNS-querying terms in the whole tree.
    pub lookups: usize,
    pub void_lookups: usize,
    /// The expansion stopped at `dns.spf_max_expanded_lookups`.
    pub cut: bool,
    /// Networks a `pass` reaches (used to tell authorized senders).
    pub authorized_networks: Vec<String>,
    #[serde(skip)]
    problems: Vec<Finding>,
}

/// What fetching a domain's SPF record gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpfRecord {
    One(String),
    Missing,
    /// RFC 7208 section 4.5: several records are a permerror.
    Several(usize),
    TooLong(usize),
    Failed(String),
}

pub async fn fetch_spf(dns: &DnsClient, domain: &str, max_bytes: usize) -> SpfRecord {
    match dns.txt(domain).await {
        Answer::Failed(reason) => SpfRecord::Failed(reason),
        Answer::Missing => SpfRecord::Missing,
        Answer::Found(records) => {
            let spf: Vec<String> = records
                .into_iter()
                .map(|txt| txt.text)
                .filter(|text| is_spf_record(text))
                .collect();
            match spf.as_slice() {
                [] => SpfRecord::Missing,
                [one] if one.len() > max_bytes => SpfRecord::TooLong(one.len()),
                [one] => SpfRecord::One(one.clone()),
                several => SpfRecord::Several(several.len()),
            }
        }
    }
}

struct Walk<'a> {
    dns: &'a DnsClient,
    max_bytes: usize,
    max_lookups: usize,
    lookups: usize,
    void_lookups: usize,
    cut: bool,
    networks: Vec<IpNet>,
    problems: Vec<Finding>,
}

/// Expands `record`, the SPF record of `domain`.
pub async fn expand(
    dns: &DnsClient,
    domain: &str,
    record: &str,
    max_bytes: usize,
    max_lookups: usize,
) -> SpfTree {
    let mut walk = Walk {
        dns,
        max_bytes,
        max_lookups,
        lookups: 0,
        void_lookups: 0,
        cut: false,
        networks: Vec::new(),
        problems: Vec::new(),
    };
    let mut path = vec![domain.to_string()];
    let root = walk
        .record_node(domain.to_string(), record.to_string(), &mut path, true)
        .await;
    let mut networks = std::mem::take(&mut walk.networks);
    networks.sort();
    networks.dedup();
    SpfTree {
        root,
        lookups: walk.lookups,
        void_lookups: walk.void_lookups,
        cut: walk.cut,
        authorized_networks: networks.iter().map(IpNet::to_string).collect(),
        problems: walk.problems,
    }
}

impl SpfTree {
    /// Findings about the tree: limits, loops, broken includes, lookups
    /// that failed.
    pub fn findings(&self) -> Vec<Finding> {
        let mut findings = self.problems.clone();
        if self.lookups > MAX_LOOKUPS {
            let count = if self.cut {
                format!("more than {}", self.lookups)
            } else {
                self.lookups.to_string()
            };
            findings.push(Finding::error(
                KIND,
                "spf.too_many_lookups",
                format!(
                    "Evaluating the record takes {count} DNS lookups; receivers stop at {MAX_LOOKUPS} and fail SPF (permerror) for every sender."
                ),
            ));
        } else {
            findings.push(Finding::ok(
                KIND,
                "spf.lookups",
                format!(
                    "Evaluating the record takes {} of the {MAX_LOOKUPS} DNS lookups allowed.",
                    self.lookups
                ),
            ));
        }
        if self.void_lookups > MAX_VOID_LOOKUPS {
            findings.push(Finding::error(
                KIND,
                "spf.void_lookups",
                format!(
                    "{} lookups of the record find nothing; receivers allow {MAX_VOID_LOOKUPS} and then fail SPF (permerror).",
                    self.void_lookups
                ),
            ));
        }
        findings
    }
}

type NodeFuture<'f> = Pin<Box<dyn Future<Output = SpfNode> + Send + 'f>>;

impl<'a> Walk<'a> {
    /// The node of `domain` whose record is `record`; `authorizes` says
    /// whether a match here is a pass for the root (every include on the
    /// way had the pass qualifier).
    fn record_node<'f>(
        &'f mut self,
        domain: String,
        record: String,
        path: &'f mut Vec<String>,
        authorizes: bool,
    ) -> NodeFuture<'f>
    where
        'a: 'f,
    {
        Box::pin(async move {
            let mut node = SpfNode {
                domain: domain.clone(),
                record: Some(record.clone()),
                problem: None,
                terms: Vec::new(),
            };
            let terms = match parse_spf(&record) {
                Ok(terms) => terms,
                Err(problem) => {
                    self.problems.push(Finding::error(
                        KIND,
                        "spf.syntax",
                        format!("The SPF record of {domain} has an error ({problem}), so receivers fail SPF (permerror)."),
                    ));
                    node.problem = Some(problem);
                    return node;
                }
            };
            let texts: Vec<&str> = record[6..].split(' ').filter(|t| !t.is_empty()).collect();
            let has_all = terms.iter().any(|term| matches!(term, Term::All(_)));
            for (term, text) in terms.iter().zip(texts) {
                let mut shown = SpfTerm {
                    term: text.to_string(),
                    lookup: term.queries_dns(),
                    void: false,
                    networks: Vec::new(),
                    note: None,
                    child: None,
                };
                if term.queries_dns() {
                    if self.lookups >= self.max_lookups {
                        self.cut = true;
                        shown.note = Some("not followed: the expansion limit was reached".into());
                        self.lookups += 1;
                        node.terms.push(shown);
                        continue;
                    }
                    self.lookups += 1;
                }
                self.term(term, &domain, path, authorizes, has_all, &mut shown)
                    .await;
                node.terms.push(shown);
            }
            node
        })
    }

    async fn term(
        &mut self,
        term: &Term,
        domain: &str,
        path: &mut Vec<String>,
        authorizes: bool,
        has_all: bool,
        shown: &mut SpfTerm,
    ) {
        match term {
            Term::Ip4(qualifier, net) => {
                shown.networks.push(net.to_string());
                if authorizes && *qualifier == Qualifier::Pass {
                    self.networks.push(IpNet::V4(*net));
                }
            }
            Term::Ip6(qualifier, net) => {
                shown.networks.push(net.to_string());
                if authorizes && *qualifier == Qualifier::Pass {
                    self.networks.push(IpNet::V6(*net));
                }
            }
            Term::Include(qualifier, spec) => {
                let passes = authorizes && *qualifier == Qualifier::Pass;
                self.follow(spec, domain, path, passes, "include", shown)
                    .await;
            }
            Term::Redirect(spec) => {
                if has_all {
                    // RFC 7208 section 6.1: redirect is ignored when the record has all.
                    shown.note = Some("ignored: the record has an all mechanism".into());
                } else {
                    self.follow(spec, domain, path, authorizes, "redirect", shown)
                        .await;
                }
            }
            Term::A(qualifier, spec, cidr) => {
                let Some(target) = self.target(spec.as_deref(), domain, shown) else {
                    return;
                };
                let answer = self.dns.addresses(&target).await;
                let passes = authorizes && *qualifier == Qualifier::Pass;
                self.addresses(answer, &target, *cidr, passes, shown);
            }
            Term::Mx(qualifier, spec, cidr) => {
                let Some(target) = self.target(spec.as_deref(), domain, shown) else {
                    return;
                };
                let passes = authorizes && *qualifier == Qualifier::Pass;
                match self.dns.mx(&target).await {
                    Answer::Failed(reason) => self.failed(&target, "MX", &reason, shown),
                    Answer::Missing => {
                        self.void_lookups += 1;
                        shown.void = true;
                        shown.note = Some(format!("{target} has no MX record"));
                    }
                    Answer::Found(hosts) => {
                        if hosts.len() > MAX_MX_NAMES {
                            self.problems.push(Finding::error(
                                KIND,
                                "spf.too_many_mx",
                                format!("mx at {target} names {} hosts; receivers fail SPF past {MAX_MX_NAMES}.", hosts.len()),
                            ));
                        }
                        for host in hosts.iter().take(MAX_MX_NAMES) {
                            if host.exchange.is_empty() {
                                continue;
                            }
                            let answer = self.dns.addresses(&host.exchange).await;
                            self.addresses(answer, &host.exchange, *cidr, passes, shown);
                        }
                    }
                }
            }
            Term::Ptr(..) => {
                shown.note = Some("depends on the sender's PTR name; not expanded".into());
            }
            Term::Exists(_, spec) => {
                let Some(target) = self.target(Some(spec), domain, shown) else {
                    return;
                };
                match self.dns.a(&target).await {
                    Answer::Failed(reason) => self.failed(&target, "A", &reason, shown),
                    Answer::Missing => {
                        self.void_lookups += 1;
                        shown.void = true;
                    }
                    Answer::Found(_) => {}
                }
            }
            Term::All(_) | Term::Explanation(_) | Term::UnknownModifier(_) => {}
        }
    }

    /// The name a term queries, or `None` (noted) when a macro needs the sender.
    fn target(&self, spec: Option<&str>, domain: &str, shown: &mut SpfTerm) -> Option<String> {
        let Some(spec) = spec else {
            return Some(domain.to_string());
        };
        let expanded = expand_domain_spec(spec, domain);
        if expanded.is_none() {
            shown.note = Some("depends on the sender (a macro); not expanded".into());
        }
        expanded
    }

    async fn follow(
        &mut self,
        spec: &str,
        domain: &str,
        path: &mut Vec<String>,
        authorizes: bool,
        what: &str,
        shown: &mut SpfTerm,
    ) {
        let Some(target) = self.target(Some(spec), domain, shown) else {
            return;
        };
        if path.contains(&target) {
            self.problems.push(Finding::error(
                KIND,
                "spf.include_loop",
                format!(
                    "{what}:{target} leads back to a record already on the way ({}), so receivers fail SPF (permerror).",
                    path.join(" > ")
                ),
            ));
            shown.note = Some("loop: this record is already being evaluated".into());
            return;
        }
        match fetch_spf(self.dns, &target, self.max_bytes).await {
            SpfRecord::One(record) => {
                path.push(target.clone());
                let child = self.record_node(target, record, path, authorizes).await;
                path.pop();
                shown.child = Some(Box::new(child));
            }
            SpfRecord::Missing => {
                self.void_lookups += 1;
                shown.void = true;
                shown.note = Some(format!("{target} has no SPF record"));
                self.problems.push(Finding::error(
                    KIND,
                    "spf.include_missing",
                    format!("{what}:{target} names a domain without an SPF record, so receivers fail SPF (permerror)."),
                ));
            }
            SpfRecord::Several(count) => {
                shown.note = Some(format!("{target} has {count} SPF records"));
                self.problems.push(Finding::error(
                    KIND,
                    "spf.include_multiple",
                    format!("{what}:{target} names a domain with {count} SPF records, so receivers fail SPF (permerror)."),
                ));
            }
            SpfRecord::TooLong(bytes) => {
                shown.note = Some(format!("{target}'s SPF record is {bytes} bytes"));
                self.problems.push(Finding::error(
                    KIND,
                    "spf.include_too_long",
                    format!("{what}:{target} has a {bytes}-byte SPF record, too long for receivers to use."),
                ));
            }
            SpfRecord::Failed(reason) => self.failed(&target, "TXT", &reason, shown),
        }
    }

    fn addresses(
        &mut self,
        answer: Answer<std::net::IpAddr>,
        name: &str,
        cidr: Cidr,
        passes: bool,
        shown: &mut SpfTerm,
    ) {
        match answer {
            Answer::Failed(reason) => self.failed(name, "A/AAAA", &reason, shown),
            Answer::Missing => {
                self.void_lookups += 1;
                shown.void = true;
                shown.note = Some(format!("{name} has no address"));
            }
            Answer::Found(ips) => {
                for ip in ips {
                    let length = match ip {
                        std::net::IpAddr::V4(_) => cidr.v4.unwrap_or(32),
                        std::net::IpAddr::V6(_) => cidr.v6.unwrap_or(128),
                    };
                    if let Ok(net) = IpNet::new(ip, length) {
                        let net = net.trunc();
                        shown.networks.push(net.to_string());
                        if passes {
                            self.networks.push(net);
                        }
                    }
                }
            }
        }
    }

    fn failed(&mut self, name: &str, record_type: &str, reason: &str, shown: &mut SpfTerm) {
        shown.note = Some(format!("could not look up {record_type} {name}: {reason}"));
        self.problems.push(Finding::unchecked(
            KIND,
            &format!("{record_type} {name} (in the SPF tree)"),
            reason,
        ));
    }
}
