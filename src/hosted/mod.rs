//! Hosted MTA-STS and hosted DNS records. A domain owner points
//! `mta-sts.<domain>` and a few CNAMEs at dmarcd once; from then on the
//! policy mode is switched from the dashboard. dmarcd serves the policy
//! over HTTPS (`site`, certificates per host from `certs`, ordered by
//! `acme`), the records through its own DNS listener (`dns_server`), and
//! checks the MX hosts before anything is enforced (`probe`).

pub mod acme;
pub mod certs;
pub mod config;
pub mod dmarc;
pub mod dns_server;
pub mod policy;
pub mod probe;
pub mod records;
pub mod site;
pub mod validity;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio_rustls::TlsConnector;

use crate::audit::{self, Action, Change};
use crate::dns::resolver::{Answer, DnsClient};
use crate::store::{certificates, hosted, posture, Store, StoreError};
pub use config::{DnsServerConfig, MtaStsConfig};
use policy::{Mode, Policy, PolicyError};
use probe::MxProbe;
use records::RecordToPublish;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum HostedError {
    #[error("{0} is not a monitored domain (add it under Domains first)")]
    NotMonitored(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Dmarc(#[from] dmarc::DmarcFieldError),
    #[error("{0} has no MX record to take the mx patterns from: give them")]
    NoMx(String),
    #[error("the MX hosts of {domain} could not be looked up: {reason}")]
    MxLookup { domain: String, reason: String },
    /// `enforce` refused: senders would fail to deliver.
    #[error("not enforced: {}", .refusal.reasons.join("; "))]
    Unsafe { refusal: Box<EnforceRefusal> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why `enforce` was refused, with what the probes saw.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EnforceRefusal {
    pub reasons: Vec<String>,
    pub mx_hosts: Vec<String>,
    pub probes: Vec<MxProbe>,
}

/// A policy change as asked (dashboard form or API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequest {
    pub mode: Mode,
    /// `None`: keep the current patterns, or take the live MX hosts.
    pub mx: Option<Vec<String>>,
    /// `None`: the mode's default.
    pub max_age: Option<u64>,
    /// Enforce although the safety checks fail.
    pub force: bool,
}

/// The outcome of a change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyChanged {
    pub policy: hosted::StoredPolicy,
    /// The MX probes run before enforcing (empty for other modes).
    pub probes: Vec<MxProbe>,
    /// Checks that failed but were overridden with `force`.
    pub forced_past: Vec<String>,
}

/// Whether the published `_mta-sts` record announces the served policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DnsState {
    /// With a hosted zone: whether `_mta-sts.<domain>` is a CNAME into it.
    pub delegated: Option<bool>,
    /// The TXT text at `_mta-sts.<domain>` (through any CNAME), if any.
    pub published: Option<String>,
    /// Its id is the served policy's.
    pub id_matches: bool,
    /// In a sentence.
    pub summary: String,
}

/// Hosted MTA-STS as the web app and the server use it.
pub struct HostedService {
    store: Store,
    dns: DnsClient,
    tls: TlsConnector,
    config: MtaStsConfig,
    zone: Option<String>,
    dns_listener: bool,
    /// The TLS-RPT record hosted domains get.
    tlsrpt_record: Option<String>,
    helo_name: String,
    /// Set when this node orders certificates: asked to look at once.
    acme_wakeup: Option<Arc<tokio::sync::Notify>>,
}

impl HostedService {
    pub fn from_config(store: Store, config: &crate::config::Config) -> Result<Self, String> {
        let targets = crate::dns::check::ReportTargets::from_config(config);
        let https = config
            .dns
            .report_https_hosts
            .first()
            .map(|host| format!("https://{host}{}", config.web.tlsrpt_path));
        Ok(HostedService {
            store,
            dns: DnsClient::new(&config.dns)?,
            tls: crate::dns::https::trusted_connector(&config.dns)?,
            config: config.mta_sts.clone(),
            zone: config.dns_server.zone.as_deref().map(records::canonical),
            dns_listener: config.dns_server.listen.is_some(),
            tlsrpt_record: records::tlsrpt_record(targets.suggested_address(), https.as_deref()),
            helo_name: config
                .smtp
                .hostname
                .clone()
                .unwrap_or_else(|| "dmarcd.invalid".to_string()),
            acme_wakeup: None,
        })
    }

    /// Has certificate orders looked at as soon as a policy is added.
    pub fn with_acme_wakeup(mut self, wakeup: Arc<tokio::sync::Notify>) -> Self {
        self.acme_wakeup = Some(wakeup);
        self
    }

    /// Has the certificate orders looked at now (a renewal was asked).
    pub fn wake_acme(&self) {
        if let Some(wakeup) = &self.acme_wakeup {
            wakeup.notify_one();
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn tlsrpt_record(&self) -> Option<&str> {
        self.tlsrpt_record.as_deref()
    }

    /// The delegated zone, when one is configured.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// Whether this dmarcd answers the zone itself.
    pub fn serves_dns(&self) -> bool {
        self.dns_listener && self.zone.is_some()
    }

    /// The live MX hosts of `domain`, lowest preference first.
    pub async fn live_mx(&self, domain: &str) -> Result<Vec<String>, HostedError> {
        match self.dns.mx(domain).await {
            Answer::Found(hosts) => Ok(hosts.into_iter().map(|mx| mx.exchange).collect()),
            Answer::Missing => Ok(Vec::new()),
            Answer::Failed(reason) => Err(HostedError::MxLookup {
                domain: domain.to_string(),
                reason,
            }),
        }
    }

    /// Probes `hosts` as an enforcing sender would.
    pub async fn probe(&self, hosts: &[String]) -> Vec<MxProbe> {
        probe::probe_all(
            &self.dns,
            &self.tls,
            hosts,
            self.config.probe_port,
            Duration::from_secs(self.config.probe_timeout_seconds),
            &self.helo_name,
        )
        .await
    }

    /// Changes `domain`'s policy (a new id every time) as `by`.
    pub async fn change_policy(
        &self,
        domain: &str,
        request: &PolicyRequest,
        actor: &crate::audit::Actor,
    ) -> Result<PolicyChanged, HostedError> {
        let by = actor.name.as_str();
        let db = self.store.db();
        if !posture::is_monitored(db, domain).await? {
            return Err(HostedError::NotMonitored(domain.to_string()));
        }
        let current = hosted::policy(db, domain).await?;
        let mx = match (&request.mx, &current) {
            (Some(mx), _) => mx.clone(),
            (None, Some(current)) if !current.policy.mx.is_empty() => current.policy.mx.clone(),
            // The first policy starts from what is published.
            (None, _) => {
                let live = self.live_mx(domain).await?;
                if live.is_empty() && request.mode != Mode::None {
                    return Err(HostedError::NoMx(domain.to_string()));
                }
                live
            }
        };
        let policy = Policy::new(request.mode, &mx, request.max_age)?;
        let (probes, problems) = if policy.mode == Mode::Enforce {
            self.enforce_problems(domain, &policy).await?
        } else {
            (Vec::new(), Vec::new())
        };
        if !problems.is_empty() && !request.force {
            return Err(HostedError::Unsafe {
                refusal: Box::new(EnforceRefusal {
                    reasons: problems,
                    mx_hosts: probes.iter().map(|p| p.host.clone()).collect(),
                    probes,
                }),
            });
        }
        let forced = !problems.is_empty();
        let now = Utc::now();
        let stored = hosted::set_policy(db, domain, &policy, by, forced, now).await?;
        if self.config.acme_directory_url.is_some() {
            certificates::want_certificate(db, &format!("mta-sts.{domain}"), now).await?;
            if let Some(wakeup) = &self.acme_wakeup {
                wakeup.notify_one();
            }
        }
        tracing::info!(domain, mode = policy.mode.key(), id = %stored.policy_id, by, forced, "MTA-STS policy changed");
        let change = Change::of(Action::MtaStsPolicyChange, domain)
            .from(&current)
            .to(&stored);
        audit::record(&self.store, actor, change).await?;
        Ok(PolicyChanged {
            policy: stored,
            probes,
            forced_past: problems,
        })
    }

    /// What would make enforcing `policy` lose mail: live MX hosts no
    /// pattern matches, and hosts without valid STARTTLS.
    async fn enforce_problems(
        &self,
        domain: &str,
        policy: &Policy,
    ) -> Result<(Vec<MxProbe>, Vec<String>), HostedError> {
        let hosts = self.live_mx(domain).await?;
        let mut problems = Vec::new();
        if hosts.is_empty() {
            problems.push(format!("{domain} has no MX record to check"));
        }
        for host in policy.uncovered(&hosts) {
            problems.push(format!("the MX host {host} matches no mx pattern"));
        }
        let probes = self.probe(&hosts).await;
        for failed in probes.iter().filter(|probe| !probe.ok) {
            problems.push(format!("{}: {}", failed.host, failed.detail));
        }
        Ok((probes, problems))
    }

    /// Stores the hosted DMARC record of `domain` from its fields.
    pub async fn set_dmarc(
        &self,
        domain: &str,
        fields: &dmarc::HostedDmarc,
        actor: &crate::audit::Actor,
    ) -> Result<hosted::StoredDmarcRecord, HostedError> {
        let db = self.store.db();
        if !posture::is_monitored(db, domain).await? {
            return Err(HostedError::NotMonitored(domain.to_string()));
        }
        let record = fields.record()?;
        let old = hosted::dmarc_record(db, domain).await?;
        let stored = hosted::set_dmarc_record(db, domain, &record, &actor.name, Utc::now()).await?;
        let change = Change::of(Action::HostedDmarcChange, domain)
            .from(&old)
            .to(&stored);
        audit::record(&self.store, actor, change).await?;
        Ok(stored)
    }

    /// What `_mta-sts.<domain>` publishes now, against the served id.
    pub async fn dns_state(&self, domain: &str, served_id: Option<&str>) -> DnsState {
        let name = format!("_mta-sts.{domain}");
        let delegated = match self.zone.as_deref().filter(|_| self.serves_dns()) {
            Some(zone) => {
                let target = records::mta_sts_name(zone, domain);
                Some(matches!(
                    self.dns.cname(&name).await,
                    Answer::Found(targets) if targets.contains(&target)
                ))
            }
            None => None,
        };
        let (published, summary) = match self.dns.txt(&name).await {
            Answer::Found(records) => {
                let text = records
                    .into_iter()
                    .map(|txt| txt.text)
                    .find(|text| crate::dns::mta_sts::is_sts_record(text));
                match text {
                    Some(text) => (Some(text), String::new()),
                    None => (None, format!("{name} has no v=STSv1 record")),
                }
            }
            Answer::Missing => (None, format!("{name} is not published")),
            Answer::Failed(reason) => (None, format!("{name} could not be looked up: {reason}")),
        };
        let published_id = published
            .as_deref()
            .and_then(|text| crate::dns::mta_sts::parse_sts_record(text).ok());
        let id_matches = published_id.is_some() && published_id.as_deref() == served_id;
        let summary = match (&published_id, served_id) {
            _ if !summary.is_empty() => summary,
            (Some(_), _) if id_matches => format!("{name} announces the served policy"),
            (Some(id), Some(served)) => format!(
                "{name} announces id {id}, not the served {served}: senders keep their cached policy"
            ),
            (Some(id), None) => format!("{name} announces id {id}, but no policy is served here"),
            (None, _) => format!("{name} cannot be read"),
        };
        let summary = match delegated {
            Some(true) => format!("{name} is delegated here; {summary}"),
            Some(false) => format!(
                "{name} is not a CNAME to {} yet; {summary}",
                records::mta_sts_name(self.zone.as_deref().unwrap_or_default(), domain)
            ),
            None => summary,
        };
        DnsState {
            delegated,
            published,
            id_matches,
            summary,
        }
    }

    /// The records the domain owner publishes: the CNAMEs once (with a
    /// zone), or the TXT records by hand (without the DNS listener).
    pub fn records_to_publish(
        &self,
        domain: &str,
        policy_id: Option<&str>,
        dmarc: Option<&str>,
    ) -> Vec<RecordToPublish> {
        if let (true, Some(zone)) = (self.serves_dns(), &self.zone) {
            return records::delegation(zone, domain, self.config.host.as_deref(), dmarc.is_some());
        }
        let txt = |name: String, value: String, purpose: &str| RecordToPublish {
            name: format!("{name}."),
            kind: "TXT".to_string(),
            value,
            purpose: purpose.to_string(),
        };
        let mut wanted = Vec::new();
        if let Some(id) = policy_id {
            wanted.push(txt(
                format!("_mta-sts.{domain}"),
                policy::sts_record(id),
                "MTA-STS policy id: change it with every policy change",
            ));
        }
        if let Some(record) = &self.tlsrpt_record {
            wanted.push(txt(
                format!("_smtp._tls.{domain}"),
                record.clone(),
                "TLS-RPT: where senders send their TLS reports (here)",
            ));
        }
        if let Some(record) = dmarc {
            wanted.push(txt(
                format!("_dmarc.{domain}"),
                record.to_string(),
                "DMARC record",
            ));
        }
        if let Some(host) = &self.config.host {
            wanted.push(RecordToPublish {
                name: format!("mta-sts.{domain}."),
                kind: "CNAME".to_string(),
                value: format!("{}.", records::canonical(host)),
                purpose: "the HTTPS host senders fetch the policy from (this dmarcd)".to_string(),
            });
        }
        wanted
    }
}
