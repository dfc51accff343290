//! `[mail_out]` (how mail leaves: a relay over SMTP, or a sendmail
//! binary) and `[outbox]` (how often, how long to retry, webhook limits).

use std::path::PathBuf;

use serde::Deserialize;

/// The `[mail_out]` section. Mail is off until `relay` or `sendmail` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailOutConfig {
    /// The relay's host name (`smtp.example.com`); empty: no relay.
    pub relay: String,
    /// 587 for STARTTLS (submission), 465 for implicit TLS.
    pub port: u16,
    pub tls: MailTls,
    /// Trust this PEM CA file for the relay's certificate, beside the
    /// compiled-in Mozilla roots (a private relay).
    pub ca_file: Option<PathBuf>,
    /// Sign in as this user (optional).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Read the password from this file instead (first line).
    pub password_file: Option<PathBuf>,
    /// The sender address (`dmarcd@example.com`); required with mail on.
    pub from: String,
    /// Deliver through this sendmail binary (`/usr/sbin/sendmail`) instead
    /// of a relay.
    pub sendmail: Option<PathBuf>,
    /// The name given in EHLO; empty: the HOSTNAME environment variable,
    /// else `localhost`.
    pub helo_name: String,
    pub timeout_seconds: u64,
}

impl Default for MailOutConfig {
    fn default() -> Self {
        MailOutConfig {
            relay: String::new(),
            port: 587,
            tls: MailTls::Starttls,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
            from: String::new(),
            sendmail: None,
            helo_name: String::new(),
            timeout_seconds: 30,
        }
    }
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// STARTTLS, required: a relay that does not offer it is an error.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain text: only to a relay on loopback (a local MTA, a test sink).
    None,
}

impl MailOutConfig {
    /// Whether mail can be sent.
    pub fn is_enabled(&self) -> bool {
        !self.relay.is_empty() || self.sendmail.is_some()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.is_enabled() {
            return Ok(());
        }
        if !self.relay.is_empty() && self.sendmail.is_some() {
            return Err("mail_out.relay and mail_out.sendmail cannot both be set".to_string());
        }
        if self.from.parse::<lettre::Address>().is_err() {
            return Err(format!(
                "mail_out.from must be an email address (got {:?})",
                self.from
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(
                "mail_out.password and mail_out.password_file cannot both be set".to_string(),
            );
        }
        if self.username.is_none() && (self.password.is_some() || self.password_file.is_some()) {
            return Err("mail_out.password needs mail_out.username".to_string());
        }
        if self.tls == MailTls::None && !self.relay.is_empty() && !is_loopback(&self.relay) {
            return Err(format!(
                "mail_out.tls = \"none\" sends passwords and reports in clear text: \
                 only allowed to a relay on loopback (got {:?}); use \"starttls\" or \"implicit\"",
                self.relay
            ));
        }
        if self.timeout_seconds == 0 {
            return Err("mail_out.timeout_seconds must be at least 1".to_string());
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `[outbox]` section: delivery of everything dmarcd sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// `serve` sends what is queued; a node with this off only queues.
    pub enabled: bool,
    /// How often the sender looks for due messages.
    pub interval_seconds: u64,
    /// Messages claimed per pass.
    pub batch: u32,
    /// The first retry after a temporary failure; each next one waits twice
    /// as long, up to `max_retry_seconds`.
    pub first_retry_seconds: u64,
    pub max_retry_seconds: u64,
    /// After this long since it was queued, a message that still fails is
    /// given up (kept as failed, with the last error).
    pub give_up_hours: u64,
    /// A webhook that has not answered in this time has failed (and is
    /// retried).
    pub webhook_timeout_seconds: u64,
    /// The dashboard's address as users reach it (`https://dmarc.example.com`),
    /// for links in mail and webhooks; empty: no links.
    pub dashboard_url: String,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            enabled: true,
            interval_seconds: 5,
            batch: 20,
            first_retry_seconds: 60,
            max_retry_seconds: 3600,
            give_up_hours: 48,
            webhook_timeout_seconds: 10,
            dashboard_url: String::new(),
        }
    }
}

impl OutboxConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_seconds == 0
            || self.batch == 0
            || self.first_retry_seconds == 0
            || self.webhook_timeout_seconds == 0
        {
            return Err(
                "outbox.interval_seconds, outbox.batch, outbox.first_retry_seconds and \
                 outbox.webhook_timeout_seconds must be at least 1"
                    .to_string(),
            );
        }
        if self.max_retry_seconds < self.first_retry_seconds {
            return Err(
                "outbox.max_retry_seconds must be at least outbox.first_retry_seconds".to_string(),
            );
        }
        if !self.dashboard_url.is_empty() {
            let url = url::Url::parse(&self.dashboard_url)
                .map_err(|error| format!("outbox.dashboard_url is not a URL: {error}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("outbox.dashboard_url must be an http:// or https:// URL".to_string());
            }
        }
        Ok(())
    }

    /// The wait before attempt `attempts + 1`, after `attempts` failed.
    pub fn backoff(&self, attempts: i32) -> std::time::Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let seconds = self
            .first_retry_seconds
            .saturating_mul(1u64 << doublings)
            .min(self.max_retry_seconds);
        std::time::Duration::from_secs(seconds)
    }

    /// `dashboard_url` joined with `path_and_query` (which starts with `/`).
    pub fn link(&self, path_and_query: &str) -> Option<String> {
        if self.dashboard_url.is_empty() {
            return None;
        }
        Some(format!(
            "{}{path_and_query}",
            self.dashboard_url.trim_end_matches('/')
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_the_cap() {
        let config = OutboxConfig {
            first_retry_seconds: 60,
            max_retry_seconds: 600,
            ..OutboxConfig::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| config.backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn clear_text_mail_only_goes_to_loopback() {
        let config = MailOutConfig {
            relay: "smtp.example.com".to_string(),
            tls: MailTls::None,
            from: "dmarcd@example.com".to_string(),
            ..MailOutConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("loopback"));
        for host in ["127.0.0.1", "localhost", "::1"] {
            let local = MailOutConfig {
                relay: host.to_string(),
                ..config.clone()
            };
            assert_eq!(local.validate(), Ok(()), "{host}");
        }
        let no_from = MailOutConfig {
            relay: "127.0.0.1".to_string(),
            from: String::new(),
            ..config
        };
        assert!(no_from.validate().unwrap_err().contains("mail_out.from"));
    }
}
