//! `[mta_sts]` and `[dns_server]`: hosted MTA-STS policies, their HTTPS
//! listener and certificates, and the authoritative DNS listener for the
//! hosted zone.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtaStsConfig {
    /// Where policies are served over HTTPS (`0.0.0.0:443`); unset: not
    /// served (policies can still be prepared on the dashboard).
    pub listen: Option<String>,
    /// Plain HTTP for ACME HTTP-01 challenges only (`0.0.0.0:80`).
    pub http_listen: Option<String>,
    /// The host name the `mta-sts.<domain>` CNAMEs point at (this
    /// dmarcd), shown in the records to publish.
    pub host: Option<String>,
    /// A certificate (and its key) for hosts without an ACME one: a
    /// wildcard or a list of mta-sts names. Reloaded when the files change.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// An ACME directory (`https://acme-v02.api.letsencrypt.org/directory`);
    /// unset: no certificates are ordered.
    pub acme_directory_url: Option<String>,
    /// The account's contact (`mailto:admin@example.com`).
    pub acme_contact: Option<String>,
    /// PEM roots trusted for the ACME server besides Mozilla's (a private
    /// CA such as Pebble's).
    pub acme_ca_file: Option<PathBuf>,
    /// `tls-alpn-01` (answered on `listen`, nothing else needed) or
    /// `http-01` (answered on `http_listen`, port 80).
    pub acme_challenge: String,
    /// Seconds between looks for certificates to order or renew.
    pub acme_check_seconds: u64,
    /// Port the MX hosts are probed on before `enforce` (25).
    pub probe_port: u16,
    /// Time for one MX probe (connect, STARTTLS, handshake), in seconds.
    pub probe_timeout_seconds: u64,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        MtaStsConfig {
            listen: None,
            http_listen: None,
            host: None,
            cert_file: None,
            key_file: None,
            acme_directory_url: None,
            acme_contact: None,
            acme_ca_file: None,
            acme_challenge: "tls-alpn-01".to_string(),
            acme_check_seconds: 3600,
            probe_port: 25,
            probe_timeout_seconds: 10,
        }
    }
}

impl MtaStsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("mta_sts.cert_file and mta_sts.key_file must be set together".to_string());
        }
        if !matches!(self.acme_challenge.as_str(), "tls-alpn-01" | "http-01") {
            return Err(format!(
                "mta_sts.acme_challenge must be tls-alpn-01 or http-01 (got {:?})",
                self.acme_challenge
            ));
        }
        if self.acme_challenge == "http-01"
            && self.acme_directory_url.is_some()
            && self.http_listen.is_none()
        {
            return Err(
                "mta_sts.acme_challenge = http-01 needs mta_sts.http_listen (port 80)".to_string(),
            );
        }
        if let Some(url) = &self.acme_directory_url {
            if !url.starts_with("https://") {
                return Err(format!(
                    "mta_sts.acme_directory_url must be an https:// URL (got {url:?})"
                ));
            }
        }
        if self.acme_check_seconds == 0 || self.probe_timeout_seconds == 0 || self.probe_port == 0 {
            return Err(
                "mta_sts.acme_check_seconds, probe_timeout_seconds and probe_port must be at least 1"
                    .to_string(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsServerConfig {
    /// Where the authoritative DNS listener answers, UDP and TCP
    /// (`0.0.0.0:53`); unset: no listener (the records to publish by hand
    /// are shown instead).
    pub listen: Option<String>,
    /// The zone delegated to this dmarcd (`_hosted.reports.example.net`).
    pub zone: Option<String>,
    /// The zone's name servers (this dmarcd's names), for its NS and SOA.
    pub nameservers: Vec<String>,
    /// TTL of hosted answers, in seconds (short: a policy change must
    /// reach senders soon).
    pub ttl: u32,
    /// The contact in the SOA record (`hostmaster.example.net`).
    pub hostmaster: Option<String>,
}

impl Default for DnsServerConfig {
    fn default() -> Self {
        DnsServerConfig {
            listen: None,
            zone: None,
            nameservers: Vec::new(),
            ttl: 300,
            hostmaster: None,
        }
    }
}

impl DnsServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_some() && self.zone.is_none() {
            return Err("dns_server.listen needs dns_server.zone (the delegated zone)".to_string());
        }
        if let Some(zone) = &self.zone {
            let zone = super::records::canonical(zone);
            let label_ok = |label: &str| {
                (1..=63).contains(&label.len())
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if zone.split('.').count() < 2 || zone.len() > 200 || !zone.split('.').all(label_ok) {
                return Err(format!(
                    "dns_server.zone {zone:?} is not a domain name (_hosted.reports.example.net)"
                ));
            }
        }
        if !(1..=86_400).contains(&self.ttl) {
            return Err("dns_server.ttl must be from 1 to 86400 seconds".to_string());
        }
        Ok(())
    }
}
