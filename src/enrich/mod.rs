//! Enrichment: what a sending IP address is. Country and ASN come from
//! MaxMind-format databases, the PTR name from reverse DNS, its base domain
//! from the public suffix list, and a source name and type ("Amazon SES",
//! `esp`) from a map shipped with dmarcd plus the user's own CSV.
//!
//! File lookups are synchronous and take well under a microsecond. Reverse
//! DNS is slow and unreliable, so it never runs on the ingestion path: the
//! worker stores records and notes their IPs; `service` describes them and
//! resolves their PTR names afterwards, saving answers in the database (the
//! persistent cache) so a restart does not redo them.

mod dns;
mod fetch;
mod geo;
mod names;
mod service;
mod update;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use dns::{build_resolver, parse_name_server_for};
pub use dns::{PtrAnswer, PtrResolver};
pub use geo::{GeoDatabases, GeoInfo};
pub use names::{base_domain, SourceMap, SourceMapError, SourceName, SOURCE_TYPES};
pub use service::{EnrichProgress, EnrichService};
pub use update::{
    built_month, GeoKind, GeoUpdateConfig, GeoUpdateError, GeoUpdater, Month, Outcome,
};

/// The `[enrich]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// MaxMind-format `.mmdb` files (country, ASN or both), read in order:
    /// for each field the first file that has it wins. A missing file is
    /// skipped with a warning; a file replaced on disk is reloaded.
    pub databases: Vec<PathBuf>,
    /// A CSV of extra source names (`base_reverse_dns,name,type`); its rows
    /// win over the map shipped with dmarcd.
    pub source_map: Option<PathBuf>,
    /// Look up PTR names (turn off for offline use).
    pub reverse_dns: bool,
    /// Name servers (`192.0.2.53`, `192.0.2.53:5353`, `[2001:db8::53]:53`);
    /// empty: the system resolver (`/etc/resolv.conf`).
    pub name_servers: Vec<String>,
    /// Time allowed for one PTR lookup, in milliseconds.
    pub dns_timeout_ms: u64,
    /// PTR lookups in flight at once.
    pub dns_concurrency: usize,
    /// Answers kept in the in-memory resolver cache (the database keeps all).
    pub dns_cache_entries: u64,
    /// Longest time a PTR answer is trusted before it is looked up again
    /// (checked every ten minutes), in seconds.
    pub dns_max_ttl_seconds: u64,
    /// How long "no PTR name" is trusted, in seconds.
    pub dns_negative_ttl_seconds: u64,
    /// Lookups that time out or fail are retried this many times, with
    /// growing pauses, before the IP is left without a name.
    pub dns_max_attempts: u32,
    /// Milliseconds between checks for new IPs to describe.
    pub poll_interval_ms: u64,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            databases: Vec::new(),
            source_map: None,
            reverse_dns: true,
            name_servers: Vec::new(),
            dns_timeout_ms: 2000,
            dns_concurrency: 32,
            dns_cache_entries: 10_000,
            dns_max_ttl_seconds: 7 * 24 * 3600,
            dns_negative_ttl_seconds: 24 * 3600,
            dns_max_attempts: 5,
            poll_interval_ms: 1000,
        }
    }
}

impl EnrichConfig {
    pub fn dns_timeout(&self) -> Duration {
        Duration::from_millis(self.dns_timeout_ms)
    }
}

/// What is known of one sending IP: the store's row type, filled here.
pub use crate::store::SourceInfo;

/// Describes IPs from files alone: databases and source map. Cheap to clone
/// and shared by every task.
#[derive(Clone)]
pub struct Enricher {
    geo: Arc<GeoDatabases>,
    names: Arc<SourceMap>,
}

impl Enricher {
    pub fn new(geo: GeoDatabases, names: SourceMap) -> Self {
        Enricher {
            geo: Arc::new(geo),
            names: Arc::new(names),
        }
    }

    /// Opens the configured databases (missing ones are skipped with a
    /// warning) and the shipped map plus the user's CSV (an unreadable CSV
    /// is an error: the user asked for it).
    pub fn from_config(config: &EnrichConfig) -> Result<Self, SourceMapError> {
        let names = match &config.source_map {
            Some(path) => SourceMap::shipped().with_csv_file(path)?,
            None => SourceMap::shipped(),
        };
        Ok(Enricher::new(GeoDatabases::open(&config.databases), names))
    }

    /// What the files say about `ip`, given its PTR name if known.
    pub fn describe(&self, ip: IpAddr, ptr: Option<&str>) -> SourceInfo {
        let geo = self.geo.lookup(ip);
        let ptr = ptr.map(normalize_name).filter(|name| !name.is_empty());
        let base = ptr.as_deref().and_then(base_domain).map(str::to_string);
        let named = base
            .as_deref()
            .and_then(|domain| self.names.get(domain))
            .or_else(|| geo.as_domain.as_deref().and_then(|d| self.names.get(d)));
        let (source_name, source_type) = match named {
            Some(entry) => (Some(entry.name.clone()), Some(entry.kind.clone())),
            None => (
                base.as_deref()
                    .map(Arc::from)
                    .or_else(|| geo.as_name.clone()),
                None,
            ),
        };
        SourceInfo {
            ip,
            country: geo.country,
            asn: geo.asn,
            as_name: geo.as_name,
            as_domain: geo.as_domain,
            ptr,
            base_domain: base,
            source_name,
            source_type,
        }
    }

    /// Reloads databases whose file changed on disk; returns how many.
    pub fn reload_if_changed(&self) -> usize {
        self.geo.reload_if_changed()
    }

    pub fn geo(&self) -> &GeoDatabases {
        &self.geo
    }

    /// The databases, shared (the dashboard reads whether any is loaded).
    pub fn geo_shared(&self) -> Arc<GeoDatabases> {
        Arc::clone(&self.geo)
    }

    pub fn names(&self) -> &SourceMap {
        &self.names
    }
}

/// `Mail-YW1.Google.com.` → `mail-yw1.google.com`.
fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}
