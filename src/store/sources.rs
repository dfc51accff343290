//! `ip_sources`: what each sending IP is (country, AS, PTR name, source
//! name), worked out by the enrichment task (enrich/).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json as object;

use super::db::{json, Backend, ColumnType, Db};
use super::inbox::now;
use super::StoreResult;

/// Everything dmarcd knows about one sending IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub ip: IpAddr,
    /// ISO 3166 alpha-2, upper case.
    pub country: Option<Arc<str>>,
    pub asn: Option<u32>,
    pub as_name: Option<Arc<str>>,
    pub as_domain: Option<Arc<str>>,
    /// The PTR name, lower case, without the trailing dot.
    pub ptr: Option<String>,
    /// The registrable domain of `ptr` (`google.com` for `mail-yw1-f41.google.com`).
    pub base_domain: Option<String>,
    /// From the map when the base domain (or the AS domain) is in it; else
    /// the base domain; else the AS name.
    pub source_name: Option<Arc<str>>,
    /// One of `SOURCE_TYPES` for the shipped map; the user's CSV may add others.
    pub source_type: Option<Arc<str>>,
}

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

/// `SourceRecord` as its row reads.
#[derive(sqlx::FromRow)]
struct SourceRow {
    country: Option<String>,
    asn: Option<i64>,
    as_name: Option<String>,
    as_domain: Option<String>,
    ptr: Option<String>,
    base_domain: Option<String>,
    source_name: Option<String>,
    source_type: Option<String>,
    described: bool,
    dns_state: String,
    dns_attempts: i64,
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
    fn from_rows(rows: impl Iterator<Item = (String, i64, i64)>) -> Self {
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

/// Source IPs of a stored report: known ones are cache hits (nothing to
/// look up), new ones misses.
pub(super) fn count_sources(distinct: usize, new: u64) {
    let known = (distinct as u64).saturating_sub(new);
    crate::metrics::count("dmarcd_enrich_sources_total", &[("result", "known")], known);
    crate::metrics::count("dmarcd_enrich_sources_total", &[("result", "new")], new);
}

/// A time as JSON text in the form both backends compare (SQLite keeps
/// times as this text; PostgreSQL reads it).
fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// When something due `due_in` from now falls due (`None`: never).
fn due_at(due_in: Option<Duration>) -> Option<DateTime<Utc>> {
    let due = chrono::Duration::from_std(due_in?).unwrap_or(chrono::Duration::days(365));
    Some(now() + due)
}

/// The columns of a description, as rows of `save_descriptions` and
/// `save_ptr_results` carry them.
const DESCRIPTION_COLUMNS: [(&str, ColumnType); 9] = [
    ("ip", ColumnType::Text),
    ("country", ColumnType::Text),
    ("asn", ColumnType::Int),
    ("as_name", ColumnType::Text),
    ("as_domain", ColumnType::Text),
    ("ptr", ColumnType::Text),
    ("base_domain", ColumnType::Text),
    ("source_name", ColumnType::Text),
    ("source_type", ColumnType::Text),
];

fn description(info: &SourceInfo) -> serde_json::Map<String, serde_json::Value> {
    let text = |value: &Option<std::sync::Arc<str>>| value.as_deref().map(str::to_string);
    let value = object!({
        "ip": info.ip.to_string(),
        "country": text(&info.country),
        "asn": info.asn,
        "as_name": text(&info.as_name),
        "as_domain": text(&info.as_domain),
        "ptr": info.ptr,
        "base_domain": info.base_domain,
        "source_name": text(&info.source_name),
        "source_type": text(&info.source_type),
    });
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

#[derive(sqlx::FromRow)]
struct Undescribed {
    ip: String,
    ptr: Option<String>,
}

/// IPs whose country, ASN and name are still to be worked out.
pub(super) async fn to_describe(db: &Db, limit: u32) -> StoreResult<Vec<(IpAddr, Option<String>)>> {
    let select = format!(
        "SELECT {} AS ip, ptr FROM ip_sources WHERE described_at IS NULL ORDER BY ip LIMIT $1",
        db.backend().ip_text("ip")
    );
    let rows: Vec<Undescribed> = db
        .fetch_all(&db.statement(&select, vec![i64::from(limit).into()]))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.ip.parse().ok()?, row.ptr)))
        .collect())
}

/// Saves descriptions from the databases and map. `ptr IS NOT DISTINCT
/// FROM`: a PTR answer saved meanwhile carries its own, newer
/// description; this one must not overwrite it.
pub(super) async fn save_descriptions(db: &Db, infos: &[SourceInfo]) -> StoreResult<()> {
    let backend = db.backend();
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        infos.iter().map(description).collect();
    let update = format!(
        "UPDATE ip_sources AS s SET country = u.country, asn = u.asn, as_name = u.as_name,
                as_domain = u.as_domain, base_domain = u.base_domain, source_name = u.source_name,
                source_type = u.source_type, described_at = $2
           FROM {rows}
          WHERE s.ip = {ip} AND s.ptr IS NOT DISTINCT FROM u.ptr",
        rows = backend.json_rows("$1", "u", &DESCRIPTION_COLUMNS),
        ip = backend.inet("u.ip"),
    );
    db.execute(&db.statement(&update, vec![json(&rows), now().into()]))
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct PtrClaim {
    ip: String,
    dns_attempts: i64,
}

/// Claims up to `limit` IPs due for a PTR lookup, for `lease`.
pub(super) async fn claim_ptr_lookups(
    db: &Db,
    limit: u32,
    lease: Duration,
) -> StoreResult<Vec<(IpAddr, u32)>> {
    let backend = db.backend();
    let update = format!(
        "UPDATE ip_sources SET dns_state = 'resolving', dns_due_at = $3
          WHERE ip IN (SELECT ip FROM ip_sources
                        WHERE dns_state IN ('pending', 'resolving', 'failed') AND dns_due_at <= $2
                        ORDER BY dns_due_at LIMIT $1{skip_locked})
         RETURNING {ip} AS ip, CAST(dns_attempts AS BIGINT) AS dns_attempts",
        // Several nodes resolve at once; each takes other rows.
        skip_locked = match backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        },
        ip = backend.ip_text("ip"),
    );
    let rows: Vec<PtrClaim> = db
        .fetch_all(&db.statement(
            &update,
            vec![
                i64::from(limit).into(),
                now().into(),
                due_at(Some(lease)).into(),
            ],
        ))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.ip.parse().ok()?, row.dns_attempts.max(0) as u32)))
        .collect())
}

/// Saves PTR answers with the descriptions they lead to; a failed lookup
/// keeps whatever name an earlier one found.
pub(super) async fn save_ptr_results(db: &Db, results: &[PtrResult]) -> StoreResult<()> {
    let backend = db.backend();
    let mut transaction = db.begin_derived().await?;
    let answered: Vec<serde_json::Map<String, serde_json::Value>> = results
        .iter()
        .filter_map(|result| {
            let mut row = description(result.info.as_ref()?);
            row.insert("state".into(), result.state.as_str().into());
            row.insert("due_at".into(), due_at(result.due_in).map(time_text).into());
            Some(row)
        })
        .collect();
    if !answered.is_empty() {
        let mut columns = DESCRIPTION_COLUMNS.to_vec();
        columns.extend([("state", ColumnType::Text), ("due_at", ColumnType::Time)]);
        let update = format!(
            "UPDATE ip_sources AS s SET country = u.country, asn = u.asn, as_name = u.as_name,
                    as_domain = u.as_domain, ptr = u.ptr, base_domain = u.base_domain,
                    source_name = u.source_name, source_type = u.source_type, described_at = $2,
                    dns_state = u.state, dns_attempts = 0, dns_checked_at = $2, dns_due_at = u.due_at
               FROM {rows}
              WHERE s.ip = {ip}",
            rows = backend.json_rows("$1", "u", &columns),
            ip = backend.inet("u.ip"),
        );
        let update = transaction.statement(&update, vec![json(&answered), now().into()]);
        transaction.execute(&update).await?;
    }
    let failed: Vec<serde_json::Value> = results
        .iter()
        .filter(|result| result.info.is_none())
        .map(|result| {
            object!({
                "ip": result.ip.to_string(),
                "due_at": due_at(result.due_in).map(time_text),
            })
        })
        .collect();
    if !failed.is_empty() {
        let update = format!(
            "UPDATE ip_sources AS s SET dns_state = 'failed', dns_attempts = s.dns_attempts + 1,
                    dns_checked_at = $2, dns_due_at = u.due_at
               FROM {rows}
              WHERE s.ip = {ip}",
            rows = backend.json_rows(
                "$1",
                "u",
                &[("ip", ColumnType::Text), ("due_at", ColumnType::Time)]
            ),
            ip = backend.inet("u.ip"),
        );
        let update = transaction.statement(&update, vec![json(&failed), now().into()]);
        transaction.execute(&update).await?;
    }
    transaction.commit().await
}

/// Marks every stored IP (adding any missing) to be described again, and
/// the PTR names `dns` says to be looked up again.
pub(super) async fn refresh(db: &Db, dns: DnsRefresh) -> StoreResult<u64> {
    let mut transaction = db.begin_derived().await?;
    let add = transaction.statement(
        "INSERT INTO ip_sources (ip, dns_due_at)
         SELECT DISTINCT source_ip, $1 FROM aggregate_records WHERE source_ip IS NOT NULL
         ON CONFLICT (ip) DO NOTHING",
        vec![now().into()],
    );
    transaction.execute(&add).await?;
    let marked = transaction
        .execute(&transaction.statement("UPDATE ip_sources SET described_at = NULL", Vec::new()))
        .await?;
    if let Some(condition) = dns.condition("$1") {
        let update = transaction.statement(
            &format!(
                "UPDATE ip_sources SET dns_state = 'pending', dns_attempts = 0, dns_due_at = $1
                  WHERE {condition}"
            ),
            vec![now().into()],
        );
        transaction.execute(&update).await?;
    }
    transaction.commit().await?;
    Ok(marked)
}

/// Marks PTR answers past their lifetime to be looked up again.
pub(super) async fn renew_stale_ptrs(db: &Db) -> StoreResult<u64> {
    db.execute(&db.statement(
        "UPDATE ip_sources SET dns_state = 'pending', dns_due_at = $1
          WHERE dns_state IN ('done', 'none') AND dns_due_at < $1",
        vec![now().into()],
    ))
    .await
}

/// What is stored about one sending IP.
pub(super) async fn source(db: &Db, ip: IpAddr) -> StoreResult<Option<SourceRecord>> {
    let backend = db.backend();
    let select = format!(
        "SELECT country, asn, as_name, as_domain, ptr, base_domain, source_name,
                source_type, described_at IS NOT NULL AS described, dns_state,
                CAST(dns_attempts AS BIGINT) AS dns_attempts
           FROM ip_sources WHERE ip = {ip}",
        ip = backend.inet("$1"),
    );
    let found: Option<SourceRow> = db
        .fetch_optional(&db.statement(&select, vec![ip.into()]))
        .await?;
    Ok(found.map(|row| SourceRecord {
        ip,
        country: row.country,
        asn: row.asn,
        as_name: row.as_name,
        as_domain: row.as_domain,
        ptr: row.ptr,
        base_domain: row.base_domain,
        source_name: row.source_name,
        source_type: row.source_type,
        described: row.described,
        dns_state: StoredDnsState::parse(&row.dns_state),
        dns_attempts: row.dns_attempts,
    }))
}

#[derive(sqlx::FromRow)]
struct StateCount {
    dns_state: String,
    sources: i64,
    undescribed: i64,
}

/// How far enrichment has got.
pub(super) async fn counts(db: &Db) -> StoreResult<EnrichmentCounts> {
    let rows: Vec<StateCount> = db
        .fetch_all(&db.statement(
            "SELECT dns_state, count(*) AS sources,
                    CAST(sum(CASE WHEN described_at IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS undescribed
               FROM ip_sources GROUP BY dns_state",
            Vec::new(),
        ))
        .await?;
    Ok(EnrichmentCounts::from_rows(
        rows.into_iter()
            .map(|row| (row.dns_state, row.sources, row.undescribed)),
    ))
}
