//! Types shared by both backends for `ip_sources`, the enrichment of each
//! sending IP.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::enrich::SourceInfo;

/// Where an IP's PTR lookup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoredDnsState {
    Pending,
    Resolving,
    /// A PTR name was found.
    Done,
    /// The name server said there is none.
    NoName,
    /// Lookups failed; retried later unless given up.
    Failed,
}

impl StoredDnsState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredDnsState::Pending => "pending",
            StoredDnsState::Resolving => "resolving",
            StoredDnsState::Done => "done",
            StoredDnsState::NoName => "none",
            StoredDnsState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "resolving" => StoredDnsState::Resolving,
            "done" => StoredDnsState::Done,
            "none" => StoredDnsState::NoName,
            "failed" => StoredDnsState::Failed,
            _ => StoredDnsState::Pending,
        }
    }
}

/// Which PTR names `refresh_sources` looks up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRefresh {
    /// None (new database files or map: only the descriptions change).
    Keep,
    /// Stale answers and lookups that were given up.
    Stale,
    /// Every one.
    All,
}

impl DnsRefresh {
    /// The rows to mark pending, given the SQL for "now".
    pub(super) fn condition(self, now: &str) -> Option<String> {
        match self {
            DnsRefresh::Keep => None,
            DnsRefresh::Stale => Some(format!(
                "(dns_state = 'failed' AND dns_due_at IS NULL) \
                 OR (dns_state IN ('done', 'none') AND dns_due_at < {now})"
            )),
            DnsRefresh::All => Some("dns_state <> 'resolving'".to_string()),
        }
    }
}

/// The stored description of one sending IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub ip: IpAddr,
    pub country: Option<String>,
    pub asn: Option<i64>,
    pub as_name: Option<String>,
    pub as_domain: Option<String>,
    pub ptr: Option<String>,
    pub base_domain: Option<String>,
    pub source_name: Option<String>,
    pub source_type: Option<String>,
    /// Country, ASN and name were worked out (from the current files).
    pub described: bool,
    pub dns_state: StoredDnsState,
    pub dns_attempts: i64,
}

/// The outcome of one PTR lookup, ready to store.
#[derive(Debug, Clone)]
pub struct PtrResult {
    pub ip: IpAddr,
    /// `Done` or `NoName` with the new description; `Failed` without one
    /// (the previous name, if any, is kept).
    pub state: StoredDnsState,
    pub info: Option<SourceInfo>,
    /// When to look again: the answer's lifetime, or the pause before a
    /// retry. `None` after the last failed attempt: given up.
    pub due_in: Option<Duration>,
}

/// How far enrichment has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichmentCounts {
    pub sources: i64,
    /// Still to be described from the databases and map.
    pub undescribed: i64,
    /// IPs per PTR lookup state.
    pub dns: BTreeMap<StoredDnsState, i64>,
}

impl EnrichmentCounts {
    /// From (dns_state, count, undescribed count) rows.
    pub(super) fn from_rows(rows: impl Iterator<Item = (String, i64, i64)>) -> Self {
        let mut counts = EnrichmentCounts::default();
        for (state, count, undescribed) in rows {
            counts.sources += count;
            counts.undescribed += undescribed;
            *counts.dns.entry(StoredDnsState::parse(&state)).or_default() += count;
        }
        counts
    }

    pub fn dns(&self, state: StoredDnsState) -> i64 {
        self.dns.get(&state).copied().unwrap_or(0)
    }
}

/// Descriptions as columns, for array-bound statements.
pub(super) struct SourceColumns {
    pub ip: Vec<String>,
    pub country: Vec<Option<String>>,
    pub asn: Vec<Option<i64>>,
    pub as_name: Vec<Option<String>>,
    pub as_domain: Vec<Option<String>>,
    pub ptr: Vec<Option<String>>,
    pub base_domain: Vec<Option<String>>,
    pub source_name: Vec<Option<String>>,
    pub source_type: Vec<Option<String>>,
}

impl SourceColumns {
    pub fn new<'a>(infos: impl Iterator<Item = &'a SourceInfo>) -> Self {
        let mut columns = SourceColumns {
            ip: Vec::new(),
            country: Vec::new(),
            asn: Vec::new(),
            as_name: Vec::new(),
            as_domain: Vec::new(),
            ptr: Vec::new(),
            base_domain: Vec::new(),
            source_name: Vec::new(),
            source_type: Vec::new(),
        };
        let text = |value: &Option<std::sync::Arc<str>>| value.as_deref().map(str::to_string);
        for info in infos {
            columns.ip.push(info.ip.to_string());
            columns.country.push(text(&info.country));
            columns.asn.push(info.asn.map(i64::from));
            columns.as_name.push(text(&info.as_name));
            columns.as_domain.push(text(&info.as_domain));
            columns.ptr.push(info.ptr.clone());
            columns.base_domain.push(info.base_domain.clone());
            columns.source_name.push(text(&info.source_name));
            columns.source_type.push(text(&info.source_type));
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.ip.len()
    }
}

/// Source IPs of a stored report: known ones are cache hits (nothing to
/// look up), new ones misses.
pub(super) fn count_sources(distinct: usize, new: u64) {
    let known = (distinct as u64).saturating_sub(new);
    crate::metrics::count("dmarcd_enrich_sources_total", &[("result", "known")], known);
    crate::metrics::count("dmarcd_enrich_sources_total", &[("result", "new")], new);
}
