//! The `[dns]` section: where the posture checks ask, how long they wait,
//! how often they run and how much they take in.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Check monitored domains on a schedule (`dmarcd serve`).
    pub checks_enabled: bool,
    /// Name servers (`192.0.2.53`, `192.0.2.53:5353`); empty: the system
    /// resolver (`/etc/resolv.conf`). Tests point this at their own server.
    pub name_servers: Vec<String>,
    /// Time allowed for one DNS query, in milliseconds.
    pub timeout_ms: u64,
    /// Queries sent for one question before it counts as "could not check".
    pub attempts: usize,
    /// Longest time an answer is reused, in seconds (the checks want what
    /// is published now, not what a long TTL let a cache keep).
    pub cache_seconds: u64,
    /// Minutes between two scheduled checks of a domain.
    pub check_interval_minutes: u64,
    /// Each domain's next check moves by up to this share of the interval
    /// (percent), so that checks spread out instead of arriving together.
    pub check_jitter_percent: u64,
    /// Domains checked at once.
    pub concurrency: usize,
    /// Time allowed for the whole check of one domain, in seconds.
    pub domain_timeout_seconds: u64,
    /// A TXT record longer than this (bytes) is reported and not parsed.
    pub max_txt_bytes: usize,
    /// DNS lookups an SPF tree is expanded through before it is cut
    /// (the RFC's limit is 10; going on shows by how much it is passed).
    pub spf_max_expanded_lookups: usize,
    /// Port of the MTA-STS policy host (443 by RFC 8461; tests use their own).
    pub mta_sts_https_port: u16,
    /// Largest MTA-STS policy accepted, in bytes (RFC 8461 suggests 64 KiB).
    pub mta_sts_max_bytes: usize,
    /// Time allowed for the policy fetch (connect, TLS, answer), in seconds.
    pub mta_sts_timeout_seconds: u64,
    /// PEM file of certificate authorities trusted for the MTA-STS fetch
    /// besides Mozilla's roots (an internal CA; tests use their own).
    pub mta_sts_ca_file: Option<PathBuf>,
    /// Host names this dmarcd's web listener answers to, so that a TLS-RPT
    /// `rua=https://<host><web.tlsrpt_path>` counts as pointing here.
    pub report_https_hosts: Vec<String>,
    /// Lookups of any domain (the lookup page and API) per client and minute.
    pub lookups_per_minute: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            checks_enabled: true,
            name_servers: Vec::new(),
            timeout_ms: 3000,
            attempts: 2,
            cache_seconds: 60,
            check_interval_minutes: 360,
            check_jitter_percent: 10,
            concurrency: 4,
            domain_timeout_seconds: 60,
            max_txt_bytes: 8192,
            spf_max_expanded_lookups: 40,
            mta_sts_https_port: 443,
            mta_sts_max_bytes: 65_536,
            mta_sts_timeout_seconds: 10,
            mta_sts_ca_file: None,
            report_https_hosts: Vec::new(),
            lookups_per_minute: 10,
        }
    }
}

impl DnsConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn domain_timeout(&self) -> Duration {
        Duration::from_secs(self.domain_timeout_seconds)
    }

    pub fn check_interval(&self) -> Duration {
        Duration::from_secs(self.check_interval_minutes * 60)
    }

    pub fn mta_sts_timeout(&self) -> Duration {
        Duration::from_secs(self.mta_sts_timeout_seconds)
    }

    /// What is wrong with the settings, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("dns.timeout_ms", self.timeout_ms),
            ("dns.attempts", self.attempts as u64),
            ("dns.check_interval_minutes", self.check_interval_minutes),
            ("dns.concurrency", self.concurrency as u64),
            ("dns.domain_timeout_seconds", self.domain_timeout_seconds),
            ("dns.max_txt_bytes", self.max_txt_bytes as u64),
            ("dns.mta_sts_max_bytes", self.mta_sts_max_bytes as u64),
            ("dns.mta_sts_timeout_seconds", self.mta_sts_timeout_seconds),
            ("dns.lookups_per_minute", u64::from(self.lookups_per_minute)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.check_jitter_percent > 50 {
            return Err("dns.check_jitter_percent must be at most 50".to_string());
        }
        if self.spf_max_expanded_lookups < 10 {
            return Err(
                "dns.spf_max_expanded_lookups must be at least 10 (the RFC's limit)".to_string(),
            );
        }
        for server in &self.name_servers {
            crate::enrich::parse_name_server_for("dns.name_servers", server)?;
        }
        Ok(())
    }
}
