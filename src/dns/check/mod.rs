//! One posture check of one domain: every record type looked up at once,
//! each turned into findings, and the records seen kept for the history.

mod dmarc;
mod senders;
mod transport;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::DnsConfig;
use super::finding::{grade, Finding, RecordKind, Severity};
use super::https::PolicyFetcher;
use super::resolver::{Answer, DnsClient, Txt};
use super::spf_tree::SpfTree;
use crate::smtp::RecipientPolicy;

/// What one question to DNS returned, for the history: the values found
/// (sorted), or none when the name has no such record. A question that
/// failed leaves no observation, so an outage is never read as a removal.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Observation {
    pub kind: RecordKind,
    /// `_dmarc.example.com`; `https://mta-sts.example.com/.well-known/mta-sts.txt`
    /// for the MTA-STS policy.
    pub name: String,
    /// `TXT`, `MX`, or `policy`.
    pub record_type: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grade {
    pub kind: RecordKind,
    pub severity: Severity,
}

/// Everything one check of a domain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PostureReport {
    pub domain: String,
    #[schema(value_type = String, format = DateTime)]
    pub checked_at: DateTime<Utc>,
    /// One per record type: its worst finding.
    pub grades: Vec<Grade>,
    pub findings: Vec<Finding>,
    pub observations: Vec<Observation>,
    /// The SPF record expanded, when there is one.
    pub spf: Option<SpfTree>,
}

impl PostureReport {
    pub fn grade(&self, kind: RecordKind) -> Severity {
        self.grades
            .iter()
            .find(|grade| grade.kind == kind)
            .map_or(Severity::Unknown, |grade| grade.severity)
    }
}

/// Where reports should arrive for them to reach this dmarcd: its SMTP
/// recipients and the hosts of its HTTPS TLS-RPT intake.
#[derive(Debug, Clone)]
pub struct ReportTargets {
    recipients: RecipientPolicy,
    /// What a suggested record names: the first configured address, or
    /// `dmarc@` a configured domain.
    suggested: Option<String>,
    https_hosts: Vec<String>,
    tlsrpt_path: String,
}

impl ReportTargets {
    pub fn new(recipients: &[String], https_hosts: &[String], tlsrpt_path: &str) -> Self {
        let suggested = recipients
            .iter()
            .map(|entry| entry.trim().to_ascii_lowercase())
            .find(|entry| !entry.starts_with('@'))
            .or_else(|| {
                recipients
                    .iter()
                    .find_map(|entry| entry.trim().strip_prefix('@'))
                    .map(|domain| format!("dmarc@{}", domain.to_ascii_lowercase()))
            });
        ReportTargets {
            recipients: RecipientPolicy::from_entries(recipients),
            suggested,
            https_hosts: https_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            tlsrpt_path: tlsrpt_path.to_string(),
        }
    }

    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(
            &config.smtp.recipients,
            &config.dns.report_https_hosts,
            &config.web.tlsrpt_path,
        )
    }

    /// Whether this dmarcd knows its own addresses (with no recipients
    /// configured it accepts anything, and "points here" cannot be told).
    pub fn known(&self) -> bool {
        matches!(self.recipients, RecipientPolicy::Only { .. })
    }

    pub fn receives_mail_for(&self, address: &str) -> bool {
        self.known() && self.recipients.accepts(address)
    }

    /// Whether a TLS-RPT `rua` URI (`mailto:` or `https:`) reaches here.
    pub fn receives_tlsrpt_at(&self, uri: &str) -> bool {
        let lower = uri.to_ascii_lowercase();
        if let Some(address) = lower.strip_prefix("mailto:") {
            return self.receives_mail_for(address.split('!').next().unwrap_or_default());
        }
        let Some(rest) = lower.strip_prefix("https://") else {
            return false;
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.split(':').next().unwrap_or_default();
        self.https_hosts.iter().any(|own| own == host) && path == self.tlsrpt_path
    }

    pub fn suggested_address(&self) -> Option<&str> {
        self.suggested.as_deref()
    }
}

/// Runs posture checks: one resolver and one HTTPS client for all domains.
pub struct PostureChecker {
    dns: DnsClient,
    fetcher: PolicyFetcher,
    targets: ReportTargets,
    config: DnsConfig,
}

impl PostureChecker {
    pub fn new(config: &DnsConfig, targets: ReportTargets) -> Result<Self, String> {
        Ok(PostureChecker {
            dns: DnsClient::new(config)?,
            fetcher: PolicyFetcher::new(config)?,
            targets,
            config: config.clone(),
        })
    }

    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        Self::new(&config.dns, ReportTargets::from_config(config))
    }

    /// `dns.domain_timeout_seconds`.
    pub fn domain_timeout(&self) -> std::time::Duration {
        self.config.domain_timeout()
    }

    /// The resolver the checks ask (MX hosts for hosted MTA-STS too).
    pub fn dns(&self) -> &DnsClient {
        &self.dns
    }

    /// `[dns]` as the checks use it.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// DNS questions asked so far.
    pub fn queries(&self) -> u64 {
        self.dns.queries()
    }

    /// Checks `domain` (a name: lower-cased, no trailing dot), with the
    /// DKIM `selectors` known for it. Never fails: what could not be looked
    /// up is a "could not check" finding.
    pub async fn check(&self, domain: &str, selectors: &[String]) -> PostureReport {
        self.check_within(domain, selectors, self.config.domain_timeout())
            .await
    }

    /// `check`, with at most `limit` for the whole check (a web request
    /// has its own deadline).
    pub async fn check_within(
        &self,
        domain: &str,
        selectors: &[String],
        limit: std::time::Duration,
    ) -> PostureReport {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        // Microseconds: what both databases keep, so a stored check reads
        // back as it was made.
        let checked_at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let mut context = Context::default();
        let work = async {
            let (dmarc, senders, transport) = tokio::join!(
                dmarc::check(self, &domain),
                senders::check(self, &domain, selectors),
                transport::check(self, &domain),
            );
            (dmarc, senders, transport)
        };
        let mut spf = None;
        match tokio::time::timeout(limit, work).await {
            Ok((dmarc, senders, transport)) => {
                for part in [dmarc, transport] {
                    context.absorb(part);
                }
                spf = senders.1;
                context.absorb(senders.0);
            }
            Err(_) => {
                let reason = format!(
                    "the check took longer than {} s (dns.domain_timeout_seconds)",
                    limit.as_secs()
                );
                for kind in RecordKind::ALL {
                    context
                        .findings
                        .push(Finding::unchecked(kind, "the records", &reason));
                }
            }
        }
        let Context {
            mut findings,
            observations,
        } = context;
        // Pages read worst first within a record type.
        findings.sort_by_key(|finding| {
            (
                finding.kind,
                std::cmp::Reverse(severity_rank(finding.severity)),
            )
        });
        let grades = RecordKind::ALL
            .iter()
            .map(|&kind| Grade {
                kind,
                severity: grade(&findings, kind),
            })
            .collect();
        PostureReport {
            domain,
            checked_at,
            grades,
            findings,
            observations: observations.into_iter().collect(),
            spf,
        }
    }
}

fn severity_rank(severity: Severity) -> u8 {
    match severity {
        Severity::Ok => 0,
        Severity::Unknown => 1,
        Severity::Warning => 2,
        Severity::Error => 3,
    }
}

/// What the parts of a check collect.
#[derive(Debug, Default)]
struct Context {
    findings: Vec<Finding>,
    observations: BTreeSet<Observation>,
}

impl Context {
    fn absorb(&mut self, other: Context) {
        self.findings.extend(other.findings);
        self.observations.extend(other.observations);
    }

    fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Notes what a TXT question returned, and passes the answer on.
    fn observe_txt(&mut self, kind: RecordKind, name: &str, answer: &Answer<Txt>) {
        let values = match answer {
            Answer::Failed(_) => return,
            Answer::Missing => Vec::new(),
            Answer::Found(records) => records.iter().map(|txt| txt.text.clone()).collect(),
        };
        self.observe(kind, name, "TXT", values);
    }

    fn observe(
        &mut self,
        kind: RecordKind,
        name: &str,
        record_type: &str,
        mut values: Vec<String>,
    ) {
        values.sort();
        self.observations.insert(Observation {
            kind,
            name: name.to_string(),
            record_type: record_type.to_string(),
            values,
        });
    }
}

/// The records that `is_kind` accepts, and how many more were too long
/// to read (each reported as an error finding).
fn select_records(
    context: &mut Context,
    kind: RecordKind,
    name: &str,
    records: &[Txt],
    is_kind: impl Fn(&str) -> bool,
    max_bytes: usize,
) -> (Vec<String>, usize) {
    let mut selected = Vec::new();
    let mut too_long = 0;
    for record in records.iter().filter(|txt| is_kind(&txt.text)) {
        if record.text.len() > max_bytes {
            too_long += 1;
            context.push(Finding::error(
                kind,
                &format!("{}.too_long", kind.key()),
                format!(
                    "The {} record at {name} is {} bytes, more than receivers read (dns.max_txt_bytes is {max_bytes}).",
                    kind.label(),
                    record.text.len()
                ),
            ));
        } else {
            selected.push(record.text.clone());
        }
    }
    (selected, too_long)
}
