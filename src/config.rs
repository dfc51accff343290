//! Typed configuration: defaults, then a TOML file, then `DMARCD_*`
//! environment variables, validated with errors that name the setting.
//!
//! Every setting `key` in section `[section]` can be set by the variable
//! `DMARCD_SECTION_KEY` (`DMARCD_DECODE_MAX_ZIP_MEMBERS=8`); top-level keys
//! by `DMARCD_KEY` (`DMARCD_DATA_DIR`). `DATABASE_URL` is honoured too, as
//! most tools around PostgreSQL expect.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::decode::Limits;
use crate::dns::DnsConfig;
use crate::enrich::{EnrichConfig, GeoUpdateConfig};
use crate::mailbox::MailboxConfig;
use crate::outbox::{MailOutConfig, OutboxConfig};
use crate::senders::SendersConfig;
use crate::smtp::SmtpConfig;
use crate::web::WebConfig;
use crate::worker::WorkerConfig;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "dmarcd.toml";

/// Settings that are lists.
const LIST_KEYS: &[&str] = &[
    "recipients",
    "databases",
    "name_servers",
    "trusted_proxies",
    "report_https_hosts",
    "forwarders",
    "nameservers",
];

/// Sections of the config file (for mapping environment variables).
const SECTIONS: &[&str] = &[
    "database",
    "decode",
    "worker",
    "smtp",
    "enrich",
    "geo",
    // Before "dns": DMARCD_DNS_SERVER_LISTEN is [dns_server], not [dns] server_listen.
    "dns_server",
    "dns",
    "web",
    "log",
    "retention",
    "senders",
    "mail_out",
    "outbox",
    "digests",
    "mta_sts",
    "oidc",
];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database (and later other state) lives (default `./data`).
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub decode: Limits,
    pub worker: WorkerConfig,
    pub smtp: SmtpConfig,
    pub enrich: EnrichConfig,
    /// `dmarcd geo update`: DB-IP's free databases, downloaded and checked.
    pub geo: GeoUpdateConfig,
    pub dns: DnsConfig,
    pub web: WebConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    /// IMAP mailboxes to pull reports from (`[[mailbox]]`, several allowed).
    #[serde(rename = "mailbox")]
    pub mailboxes: Vec<MailboxConfig>,
    pub senders: SendersConfig,
    /// How mail leaves (alerts, digests): a relay or a sendmail binary.
    pub mail_out: MailOutConfig,
    pub outbox: OutboxConfig,
    /// Digest mails: how often due ones are looked for, how much they list.
    pub digests: crate::digests::DigestsConfig,
    /// Hosted MTA-STS: the policy listener, its certificates (files or ACME).
    pub mta_sts: crate::hosted::MtaStsConfig,
    /// The authoritative DNS listener for the delegated hosted zone.
    pub dns_server: crate::hosted::DnsServerConfig,
    /// Single sign-on through an OpenID Connect provider (off by default).
    pub oidc: crate::oidc::OidcConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            database: DatabaseConfig::default(),
            decode: Limits::default(),
            worker: WorkerConfig::default(),
            smtp: SmtpConfig::default(),
            enrich: EnrichConfig::default(),
            geo: GeoUpdateConfig::default(),
            dns: DnsConfig::default(),
            web: WebConfig::default(),
            log: LogConfig::default(),
            retention: RetentionConfig::default(),
            mailboxes: Vec::new(),
            senders: SendersConfig::default(),
            mail_out: MailOutConfig::default(),
            outbox: OutboxConfig::default(),
            digests: crate::digests::DigestsConfig::default(),
            mta_sts: crate::hosted::MtaStsConfig::default(),
            dns_server: crate::hosted::DnsServerConfig::default(),
            oidc: crate::oidc::OidcConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user@host/db` for PostgreSQL; unset for the SQLite file
    /// `dmarcd.sqlite` in `data_dir`.
    pub url: Option<String>,
    /// PostgreSQL streaming standbys of `url`: `serve` sends the
    /// dashboard's and the API's reads to them while they keep up.
    pub replica_urls: Vec<String>,
    /// A standby is read from only while it provably trails the primary
    /// by at most this many seconds (default 5); else reads go to the primary.
    pub replica_max_lag_seconds: u64,
    /// Seconds between checks of each standby's position (default 1).
    pub replica_check_seconds: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            replica_urls: Vec::new(),
            replica_max_lag_seconds: 5,
            replica_check_seconds: 1,
        }
    }
}

impl DatabaseConfig {
    pub fn replicas(&self) -> crate::store::ReplicaSettings {
        crate::store::ReplicaSettings {
            urls: self.replica_urls.clone(),
            max_lag: std::time::Duration::from_secs(self.replica_max_lag_seconds),
            check_interval: std::time::Duration::from_secs(self.replica_check_seconds),
        }
    }
}

/// The `[retention]` section: how long stored data is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// `serve` prunes on its own every `interval_minutes`; `dmarcd prune`
    /// works either way.
    pub enabled: bool,
    /// Days a processed message's raw bytes are kept after processing
    /// (0: for ever). Failed and unprocessed messages are always kept.
    pub raw_days: u32,
    /// Days for the raw message of a failure report (ruf), which carries
    /// other people's mail (0: as `raw_days`).
    pub failure_raw_days: u32,
    /// Days of aggregate records, by their report's begin date (0: for
    /// ever). The reports' rows stay, and so do every rollup's counts:
    /// the month and all-time totals keep the history.
    pub aggregate_days: u32,
    /// Days of the day rows of the totals per source, per domain and
    /// source, per country and per source name (0: for ever); their month
    /// and all-time rows, and the per-domain and per-reporter day rollups,
    /// are kept for ever.
    pub day_rollup_days: u32,
    /// Failure reports stored with the local part of every address
    /// replaced (domains kept), and without their raw message (which holds
    /// the original body): report/failure/redact.rs.
    pub redact_failure_reports: bool,
    /// Days audit log entries are kept (0: for ever).
    pub audit_days: u32,
    pub interval_minutes: u64,
    /// Messages, records or rollup rows per delete transaction, so that
    /// ingestion never waits long.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            raw_days: 90,
            failure_raw_days: 30,
            aggregate_days: 0,
            day_rollup_days: 0,
            redact_failure_reports: false,
            audit_days: 400,
            interval_minutes: 60,
            batch: 500,
        }
    }
}

impl RetentionConfig {
    pub fn records(&self) -> crate::store::RecordRetention {
        crate::store::RecordRetention {
            aggregate_days: self.aggregate_days,
            day_rollup_days: self.day_rollup_days,
            batch: self.batch,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.batch == 0 || self.interval_minutes == 0 {
            return Err(
                "retention.batch and retention.interval_minutes must be at least 1".to_string(),
            );
        }
        // A stored record's day rows are what a reprocess of its message
        // takes its counts from: they must outlive the records.
        if self.day_rollup_days != 0
            && (self.aggregate_days == 0 || self.day_rollup_days < self.aggregate_days)
        {
            return Err(format!(
                "retention.day_rollup_days ({}) must be 0 (keep for ever) or at least \
                 retention.aggregate_days ({}, which must then be set too): the day rollups \
                 of the records still stored must stay",
                self.day_rollup_days, self.aggregate_days
            ));
        }
        Ok(())
    }

    pub fn raw(&self) -> crate::store::RawRetention {
        crate::store::RawRetention {
            raw_days: self.raw_days,
            failure_raw_days: self.failure_raw_days,
            batch: self.batch,
        }
    }
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (for people) or `json` (one object per line, for journald,
    /// Loki, Elasticsearch…).
    pub format: LogFormat,
    /// What to log (tracing's filter syntax: `info`, `dmarcd=debug,info`).
    /// The `DMARCD_LOG` environment variable, if set, wins.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config in {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// Loads `path` (or `dmarcd.toml` if present), then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &vars)
    }

    /// Like `load`, with the environment given (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let (mut table, origin) = match path {
            Some(path) => (read_table(path)?, path.display().to_string()),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => (
                read_table(Path::new(DEFAULT_CONFIG_FILE))?,
                DEFAULT_CONFIG_FILE.to_string(),
            ),
            None => (toml::Table::new(), "defaults".to_string()),
        };
        let mut overridden = false;
        for (name, value) in vars {
            if let Some((section, key)) = env_setting(name) {
                set(&mut table, section.as_deref(), &key, value);
                overridden = true;
            }
        }
        // Said once, however many variables there are.
        let origin = if overridden {
            format!("{origin} with environment overrides")
        } else {
            origin
        };
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|error: toml::de::Error| ConfigError::Invalid {
                    origin: origin.clone(),
                    message: error.message().to_string(),
                })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { origin, message })?;
        // Every worker (serve, import, reprocess, mailbox pulls) redacts.
        config.worker.redact_failure_reports = config.retention.redact_failure_reports;
        Ok(config)
    }

    /// The `[enrich]` settings as the enricher uses them: with no
    /// `enrich.databases` listed, the files `dmarcd geo update` keeps in
    /// `geo.directory` (read once they are there).
    pub fn enrich_effective(&self) -> EnrichConfig {
        let mut enrich = self.enrich.clone();
        if enrich.databases.is_empty() {
            enrich.databases = self.geo.files(&self.data_dir);
        }
        enrich
    }

    fn validate(&self) -> Result<(), String> {
        self.geo.validate()?;
        if self.worker.concurrency == 0 {
            return Err("worker.concurrency must be at least 1".to_string());
        }
        self.retention.validate()?;
        self.oidc.validate()?;
        if self.worker.lease_seconds < 10 {
            return Err("worker.lease_seconds must be at least 10".to_string());
        }
        if self.decode.max_decompressed_bytes == 0 || self.decode.max_container_bytes == 0 {
            return Err("decode size limits must be greater than 0".to_string());
        }
        if self.enrich.dns_concurrency == 0 || self.enrich.dns_timeout_ms == 0 {
            return Err(
                "enrich.dns_concurrency and enrich.dns_timeout_ms must be at least 1".to_string(),
            );
        }
        if !self.web.tlsrpt_path.starts_with('/') || self.web.tlsrpt_path.starts_with("/api/") {
            return Err(format!(
                "web.tlsrpt_path must start with / and not with /api/ (got {:?})",
                self.web.tlsrpt_path
            ));
        }
        if self.web.tls_cert_file.is_some() != self.web.tls_key_file.is_some() {
            return Err("web.tls_cert_file and web.tls_key_file must be set together".to_string());
        }
        crate::web::TrustedProxies::parse(&self.web.trusted_proxies)?;
        self.dns.validate()?;
        self.senders.validate()?;
        if self.web.session_hours == 0 || self.web.tlsrpt_max_bytes == 0 {
            return Err(
                "web.session_hours and web.tlsrpt_max_bytes must be at least 1".to_string(),
            );
        }
        crate::mailbox::config::validate_all(&self.mailboxes)?;
        self.mail_out.validate()?;
        self.mta_sts.validate()?;
        self.dns_server.validate()?;
        self.outbox.validate()?;
        self.digests.validate()?;
        if let Some(url) = &self.database.url {
            let known = ["postgres://", "postgresql://", "sqlite:"];
            if !known.iter().any(|prefix| url.starts_with(prefix)) {
                return Err(format!(
                    "database.url must start with postgres:// or sqlite: (got {url:?})"
                ));
            }
        }
        if !self.database.replica_urls.is_empty() {
            let primary_is_postgres = self.database.url.as_deref().is_some_and(|url| {
                url.starts_with("postgres://") || url.starts_with("postgresql://")
            });
            if !primary_is_postgres {
                return Err(
                    "database.replica_urls needs database.url to be a PostgreSQL primary"
                        .to_string(),
                );
            }
            if let Some(url) =
                self.database.replica_urls.iter().find(|url| {
                    !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
                })
            {
                return Err(format!(
                    "database.replica_urls must be postgres:// URLs (got {url:?})"
                ));
            }
            if self.database.replica_max_lag_seconds == 0
                || self.database.replica_check_seconds == 0
            {
                return Err(
                    "database.replica_max_lag_seconds and replica_check_seconds must be at least 1"
                        .to_string(),
                );
            }
        }
        Ok(())
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Invalid {
            origin: path.display().to_string(),
            message: error.to_string(),
        })
}

/// `DMARCD_DECODE_MAX_ZIP_MEMBERS` → (`decode`, `max_zip_members`);
/// `DMARCD_LOG` (the log filter) and `DMARCD_CONFIG` (the file) are not settings;
/// `DATABASE_URL` → (`database`, `url`).
fn env_setting(name: &str) -> Option<(Option<String>, String)> {
    if name == "DATABASE_URL" {
        return Some((Some("database".to_string()), "url".to_string()));
    }
    let rest = name.strip_prefix("DMARCD_")?.to_ascii_lowercase();
    // Read by the command line and the logger, not settings.
    if rest == "config" || rest == "log" {
        return None;
    }
    for section in SECTIONS {
        if let Some(key) = rest
            .strip_prefix(section)
            .and_then(|key| key.strip_prefix('_'))
        {
            return Some((Some(section.to_string()), key.to_string()));
        }
    }
    Some((None, rest))
}

/// Sets a value from the environment, typed as TOML would read it.
fn set(table: &mut toml::Table, section: Option<&str>, key: &str, raw: &str) {
    let value = if LIST_KEYS.contains(&key) {
        // Lists are comma-separated: DMARCD_SMTP_RECIPIENTS=a@x.org,@y.org
        let items = raw
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty());
        toml::Value::Array(
            items
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        )
    } else if let Ok(integer) = raw.parse::<i64>() {
        toml::Value::Integer(integer)
    } else if let Ok(boolean) = raw.parse::<bool>() {
        toml::Value::Boolean(boolean)
    } else {
        toml::Value::String(raw.to_string())
    };
    let target = match section {
        Some(section) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => inner,
                _ => return,
            }
        }
        None => table,
    };
    target.insert(key.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.database.url, None);
    }

    #[test]
    fn environment_overrides_any_setting() {
        let config = Config::load_with_env(
            None,
            &env(&[
                ("DMARCD_DECODE_MAX_ZIP_MEMBERS", "8"),
                ("DATABASE_URL", "postgres://localhost/dmarcd"),
                ("DMARCD_DATA_DIR", "/var/lib/dmarcd"),
                ("DMARCD_WORKER_CONCURRENCY", "3"),
                (
                    "DMARCD_SMTP_RECIPIENTS",
                    "dmarc@example.com, @reports.example.com",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(config.decode.max_zip_members, 8);
        assert_eq!(
            config.database.url.as_deref(),
            Some("postgres://localhost/dmarcd")
        );
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/dmarcd"));
        assert_eq!(config.worker.concurrency, 3);
        assert_eq!(
            config.smtp.recipients,
            vec!["dmarc@example.com", "@reports.example.com"]
        );
    }

    #[test]
    fn unknown_and_invalid_settings_are_named() {
        let error = Config::load_with_env(None, &env(&[("DMARCD_DECODE_MAX_ZIP_MEMBRES", "8")]))
            .unwrap_err();
        assert!(error.to_string().contains("max_zip_membres"), "{error}");
        let error =
            Config::load_with_env(None, &env(&[("DMARCD_WORKER_CONCURRENCY", "0")])).unwrap_err();
        assert!(error.to_string().contains("worker.concurrency"), "{error}");
        let error =
            Config::load_with_env(None, &env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(error.to_string().contains("postgres://"), "{error}");
        let error = Config::load_with_env(
            None,
            &env(&[("DMARCD_WEB_TRUSTED_PROXIES", "127.0.0.1, proxy.local")]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("proxy.local"), "{error}");
        let config = Config::load_with_env(
            None,
            &env(&[("DMARCD_WEB_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/8")]),
        )
        .unwrap();
        assert_eq!(config.web.trusted_proxies, vec!["127.0.0.1", "10.0.0.0/8"]);
    }

    #[test]
    fn day_rollups_must_outlive_the_records() {
        let with = |pairs: &[(&str, &str)]| Config::load_with_env(None, &env(pairs));
        let config = with(&[("DMARCD_RETENTION_AGGREGATE_DAYS", "400")]).unwrap();
        assert_eq!(config.retention.records().aggregate_days, 400);
        assert_eq!(config.retention.records().day_rollup_days, 0);
        with(&[
            ("DMARCD_RETENTION_AGGREGATE_DAYS", "90"),
            ("DMARCD_RETENTION_DAY_ROLLUP_DAYS", "400"),
        ])
        .unwrap();
        for pairs in [
            &[
                ("DMARCD_RETENTION_AGGREGATE_DAYS", "400"),
                ("DMARCD_RETENTION_DAY_ROLLUP_DAYS", "90"),
            ][..],
            &[("DMARCD_RETENTION_DAY_ROLLUP_DAYS", "90")][..],
        ] {
            let error = with(pairs).unwrap_err().to_string();
            assert!(error.contains("retention.day_rollup_days (90)"), "{error}");
            assert!(error.contains("retention.aggregate_days"), "{error}");
        }
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let config = Config::load_with_env(Some(&example), &[]).unwrap();
        assert_eq!(config, Config::default());
    }
}
