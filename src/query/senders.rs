//! Who sends as a domain: its sources over a period, each in a class with
//! the line that put it there (`senders::classify`), for the Senders page
//! and `/api/v1/domains/{domain}/senders`.
//!
//! Classes are worked out when read, not stored: they depend on the
//! approvals, on the newest DNS check and on the thresholds in the config
//! as much as on the reports, and each of those changes on its own. Read
//! time makes every change count at once (an approval, a new SPF record,
//! a new threshold) with nothing to backfill or keep in step. What is read
//! is bounded whatever the database holds: the per-name totals (one row
//! per source and day or month), the totals of the domain's 1000 busiest
//! IPs, their `ip_sources` rows, and the newest `senders.sample_records`
//! failing records (the failure causes and override reasons).

use crate::scope::Scope;
use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;

use super::aggregate::{self, GroupBy, SummaryRow, SummarySort};
use super::filter::{Filter, ParsedFilter, SenderKey};
use super::time::time_text;
use super::{Page, QueryError};
use crate::senders::class::FORWARDING_REASONS;
use crate::senders::{
    classify, matching_rule, ordered_rules, Class, IpFacts, SendersConfig, SourceFacts,
};
use crate::store::approvals::{self, Approval};
use crate::store::db::json;
use crate::store::posture;
use crate::store::Store;

/// IPs of a domain whose totals are read (busiest first) to match IP,
/// CIDR, AS and PTR rules and the SPF networks against named sources.
const IP_ROWS: i64 = 1000;

/// The period and class a senders query asks for.
#[derive(Debug, Clone, Default)]
pub struct SendersQuery {
    pub domain: String,
    /// `YYYY-MM-DD` or RFC 3339, as the filter parameters take them.
    pub since: Option<String>,
    pub until: Option<String>,
    pub class: Option<Class>,
}

/// One source of a domain, classed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SenderRow {
    /// The sender name the enrichment gives, or the IP of a source without one.
    pub source: String,
    /// Whether `source` is an IP.
    pub is_ip: bool,
    /// From the source map (`esp`, `mailbox_provider`, …).
    pub source_type: Option<String>,
    pub messages: i64,
    pub dmarc_pass: i64,
    pub dkim_aligned_pass: i64,
    pub spf_aligned_pass: i64,
    /// dmarc_pass / messages, 0–1.
    pub pass_rate: f64,
    pub class: Class,
    /// The one line that put the source in its class.
    pub reason: String,
    /// Why its failing mail fails, from the sampled failing records.
    pub cause: Option<String>,
    /// What fixes the commonest cause.
    pub fix: Option<String>,
    /// Facts shown beside the class, not used for it (the PTR name).
    pub signals: Vec<String>,
    /// The approval rule that decided the class, if one did.
    pub approval_id: Option<i64>,
}

/// Sources and messages of one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClassTotal {
    pub class: Class,
    pub sources: i64,
    pub messages: i64,
}

/// The settings the classes were worked out with (`[senders]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Thresholds {
    pub authorized_pass_percent: u8,
    pub majority_percent: u8,
    pub forwarders: Vec<String>,
    pub max_sources: u32,
    pub sample_records: u32,
}

/// A domain's sources over a period, classed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SenderReport {
    pub domain: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub thresholds: Thresholds,
    /// When the SPF networks used were checked; null: no stored check
    /// has an SPF record, and the "inside the published SPF" signal is skipped.
    pub spf_checked_at: Option<String>,
    /// The networks the published SPF authorizes, as that check expanded them.
    pub spf_networks: Vec<String>,
    /// Sources in the period (the busiest `max_sources` are listed).
    pub sources_total: i64,
    /// Failing records read for causes and override reasons.
    pub sampled_failing_records: i64,
    /// Per class, over the listed sources (whatever `class` asked for).
    pub classes: Vec<ClassTotal>,
    pub sources: Vec<SenderRow>,
}

#[derive(sqlx::FromRow)]
struct IpRow {
    ip: String,
    source_name: Option<String>,
    asn: Option<i64>,
    ptr: Option<String>,
    base_domain: Option<String>,
    dns_state: String,
}

#[derive(sqlx::FromRow)]
struct SampleRow {
    source: Option<String>,
    count: i64,
    header_from: Option<String>,
    reasons: String,
    dkim: String,
    spf: String,
}

/// What the rows read say about one source.
#[derive(Default)]
struct Gathered {
    /// (IP, messages) of the busiest IPs of a named source.
    ips: Vec<(IpAddr, i64)>,
    failing: i64,
    forwarding: i64,
    forwarding_reason: Option<String>,
    causes: crate::senders::CauseTally,
}

/// A domain's senders are read for a caller who sees it (the approvals,
/// records and policy read beside them are the domain's too).
fn seen(scope: &Scope, filter: &super::ParsedFilter) -> Result<(), QueryError> {
    let domain = filter.domain.as_deref().unwrap_or_default();
    if scope.sees(domain) {
        Ok(())
    } else {
        Err(QueryError::NotFound(format!("no domain {domain:?}")))
    }
}

pub async fn senders(
    store: &Store,
    scope: &Scope,
    config: &SendersConfig,
    query: &SendersQuery,
) -> Result<SenderReport, QueryError> {
    let filter = Filter {
        domain: Some(query.domain.clone()),
        since: query.since.clone(),
        until: query.until.clone(),
        ..Filter::default()
    }
    .parse(scope)?;
    seen(scope, &filter)?;
    let domain = filter.domain.clone().unwrap_or_default();

    // The reads are independent: side by side, so that the page waits
    // for the slowest, not for their sum.
    let sources_page = Page::new(Some(i64::from(config.max_sources.clamp(1, 1000))), None, 1)?;
    let ((sources, sources_total), busiest_ips, sampled, context) = tokio::try_join!(
        aggregate::summary(
            store,
            &filter,
            GroupBy::SourceName,
            SummarySort::Messages,
            sources_page,
        ),
        aggregate::busiest_sources(store, &filter, IP_ROWS),
        sample(store, config, &filter),
        Context::read(store, &domain),
    )?;

    // What each IP is: the busiest IPs, and the sources that are IPs.
    let mut wanted: Vec<String> = busiest_ips.iter().map(|(ip, _)| ip.to_string()).collect();
    wanted.extend(
        sources
            .iter()
            .filter_map(|r| r.key.clone())
            .filter(|key| IpAddr::from_str(key).is_ok()),
    );
    wanted.sort();
    wanted.dedup();
    let ips = ip_rows(store, &wanted).await?;

    let mut gathered: HashMap<String, Gathered> = HashMap::new();
    for &(ip, messages) in &busiest_ips {
        let key = ips
            .get(&ip)
            .and_then(|info| info.source_name.clone())
            .unwrap_or_else(|| ip.to_string());
        gathered.entry(key).or_default().ips.push((ip, messages));
    }
    for row in &sampled {
        let Some(key) = &row.source else { continue };
        gathered.entry(key.clone()).or_default().add_failing(
            &domain,
            row.count,
            row.header_from.as_deref(),
            &row.reasons,
            &row.dkim,
            &row.spf,
        );
    }

    let mut rows = Vec::with_capacity(sources.len());
    for summary in &sources {
        let key = summary.key.clone().unwrap_or_else(|| "(unknown)".into());
        let here = gathered.remove(&key).unwrap_or_default();
        rows.push(context.row(config, summary, here, &ips));
    }

    let classes = Class::ALL
        .iter()
        .map(|&class| {
            let of: Vec<&SenderRow> = rows.iter().filter(|r| r.class == class).collect();
            ClassTotal {
                class,
                sources: of.len() as i64,
                messages: of.iter().map(|r| r.messages).sum(),
            }
        })
        .collect();
    if let Some(class) = query.class {
        rows.retain(|row| row.class == class);
    }
    Ok(SenderReport {
        domain,
        since: filter.since.map(time_text),
        until: filter.until.map(time_text),
        thresholds: Thresholds {
            authorized_pass_percent: config.authorized_pass_percent,
            majority_percent: config.majority_percent,
            forwarders: config.forwarders.clone(),
            max_sources: config.max_sources,
            sample_records: config.sample_records,
        },
        spf_checked_at: context.spf_check.as_ref().map(|(at, _)| time_text(*at)),
        spf_networks: context.spf_check.map(|(_, n)| n).unwrap_or_default(),
        sources_total,
        sampled_failing_records: sampled.len() as i64,
        classes,
        sources: rows,
    })
}

impl Gathered {
    /// Adds one failing record: its messages, override reasons and causes.
    fn add_failing(
        &mut self,
        domain: &str,
        count: i64,
        header_from: Option<&str>,
        reasons: &str,
        dkim: &str,
        spf: &str,
    ) {
        self.failing += count;
        if let Some(reason) = forwarding_reason(reasons) {
            self.forwarding += count;
            self.forwarding_reason.get_or_insert(reason);
        }
        self.causes
            .add_record(header_from.unwrap_or(domain), count, dkim, spf);
    }
}

/// What classes the sources of one domain besides their own rows: the
/// admins' rules and the networks of the published SPF.
struct Context {
    domain: String,
    rules: Vec<Approval>,
    spf_check: Option<(DateTime<Utc>, Vec<String>)>,
    networks: Vec<IpNet>,
}

impl Context {
    async fn read(store: &Store, domain: &str) -> Result<Context, QueryError> {
        let rules =
            ordered_rules(approvals::list(store.reads(), &Scope::All, Some(domain), false).await?);
        let spf_check = newest_spf(store, domain).await?;
        let networks = spf_check
            .as_ref()
            .map(|(_, networks)| {
                networks
                    .iter()
                    .filter_map(|n| IpNet::from_str(n).ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Context {
            domain: domain.to_string(),
            rules,
            spf_check,
            networks,
        })
    }

    /// One source classed: its totals (`summary`, keyed by its name or
    /// IP), what its IPs and failing records say (`here`), and what each
    /// IP is (`ips`).
    fn row(
        &self,
        config: &SendersConfig,
        summary: &SummaryRow,
        mut here: Gathered,
        ips: &HashMap<IpAddr, IpRow>,
    ) -> SenderRow {
        let key = summary.key.clone().unwrap_or_else(|| "(unknown)".into());
        let ip = IpAddr::from_str(&key).ok();
        if let Some(ip) = ip {
            here.ips = vec![(ip, summary.messages)];
        }
        let ip_facts: Vec<(IpFacts, i64)> = here
            .ips
            .iter()
            .map(|(ip, messages)| {
                let info = ips.get(ip);
                (
                    IpFacts {
                        ip: Some(*ip),
                        asn: info.and_then(|i| i.asn),
                        base_domain: info.and_then(|i| i.base_domain.clone()),
                    },
                    *messages,
                )
            })
            .collect();
        let inside_spf = self.spf_check.as_ref().map(|_| {
            let mut first = None;
            let inside: i64 = ip_facts
                .iter()
                .filter_map(|(facts, messages)| {
                    let ip = facts.ip?;
                    let network = self.networks.iter().find(|n| n.contains(&ip))?;
                    first.get_or_insert_with(|| network.to_string());
                    Some(*messages)
                })
                .sum();
            (inside, first)
        });
        let rule = matching_rule(
            &self.rules,
            &key,
            ip.is_some(),
            &ip_facts,
            summary.messages,
            config,
        );
        let ip_info = ip.and_then(|ip| ips.get(&ip));
        let facts = SourceFacts {
            domain: self.domain.clone(),
            key,
            is_ip: ip.is_some(),
            source_type: summary.label.clone(),
            messages: summary.messages,
            dmarc_pass: summary.dmarc_pass,
            dkim_aligned_pass: summary.dkim_aligned_pass,
            spf_aligned_pass: summary.spf_aligned_pass,
            inside_spf,
            failing_sampled: here.failing,
            forwarding_reasons: here.forwarding,
            forwarding_reason: here.forwarding_reason,
            causes: here.causes,
            rule,
            ptr: ip_info.and_then(|info| info.ptr.clone()),
            ptr_looked_up: ip_info
                .is_some_and(|info| matches!(info.dns_state.as_str(), "done" | "none" | "failed")),
        };
        row_of(summary, facts, config)
    }
}

fn row_of(summary: &SummaryRow, facts: SourceFacts, config: &SendersConfig) -> SenderRow {
    let classed = classify(&facts, config);
    SenderRow {
        source: facts.key,
        is_ip: facts.is_ip,
        source_type: facts.source_type,
        messages: summary.messages,
        dmarc_pass: summary.dmarc_pass,
        dkim_aligned_pass: summary.dkim_aligned_pass,
        spf_aligned_pass: summary.spf_aligned_pass,
        pass_rate: summary.pass_rate,
        class: classed.class,
        reason: classed.reason,
        cause: classed.cause,
        fix: classed.fix,
        signals: classed.signals,
        approval_id: facts.rule.map(|rule| rule.id),
    }
}

/// The first forwarding override reason of a record's reasons (JSON).
fn forwarding_reason(reasons: &str) -> Option<String> {
    let reasons: Vec<serde_json::Value> = serde_json::from_str(reasons).ok()?;
    reasons
        .iter()
        .filter_map(|reason| reason.get("type")?.as_str())
        .map(str::to_ascii_lowercase)
        .find(|kind| FORWARDING_REASONS.contains(&kind.as_str()))
}

/// What `ip_sources` says about each of `ips`.
async fn ip_rows(store: &Store, ips: &[String]) -> Result<HashMap<IpAddr, IpRow>, QueryError> {
    if ips.is_empty() {
        return Ok(HashMap::new());
    }
    let db = store.reads();
    let backend = db.backend();
    let mut sql = db.sql();
    let list = sql.placeholder(json(&ips));
    sql.push(&format!(
        "SELECT {ip} AS ip, source_name, asn, ptr, base_domain, dns_state \
         FROM ip_sources WHERE {condition}",
        ip = backend.ip_text("ip"),
        condition = backend.in_ip_list("ip", &list),
    ));
    let rows: Vec<IpRow> = db.fetch_all(&sql).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((IpAddr::from_str(&row.ip).ok()?, row)))
        .collect())
}

/// The newest failing records of the domain in the period, with the name
/// of their source as the summary by source name keys it.
async fn sample(
    store: &Store,
    config: &SendersConfig,
    filter: &ParsedFilter,
) -> Result<Vec<SampleRow>, QueryError> {
    let db = store.reads();
    let backend = db.backend();
    let mut inner = db.sql();
    inner
        .push(
            "SELECT source_ip, invalid_source_ip, count, header_from, reasons, dkim_results, \
             spf_results FROM aggregate_records r WHERE r.policy_domain = ",
        )
        .bind(filter.domain.clone().unwrap_or_default())
        .push(" AND ")
        .push(&backend.is_false("r.dmarc_pass"));
    if let Some(since) = filter.since {
        inner.push(" AND r.date_begin >= ").bind(since);
    }
    if let Some(until) = filter.until {
        inner.push(" AND r.date_begin < ").bind(until);
    }
    inner
        .push(" ORDER BY r.date_begin DESC LIMIT ")
        .bind(i64::from(config.sample_records));
    // The name of each sampled record's source is looked up by its key,
    // per record: a join let PostgreSQL hash the whole of ip_sources
    // (12 of the query's 16 ms at 50,000 sources, growing with them).
    let mut sql = db.sql();
    sql.push(&format!(
        "SELECT coalesce((SELECT s.source_name FROM ip_sources s WHERE s.ip = f.source_ip), \
         {ip}, f.invalid_source_ip) AS source, f.count, \
         f.header_from, {reasons} AS reasons, {dkim} AS dkim, {spf} AS spf FROM (",
        ip = backend.ip_text("f.source_ip"),
        reasons = backend.json_text("f.reasons"),
        dkim = backend.json_text("f.dkim_results"),
        spf = backend.json_text("f.spf_results"),
    ));
    sql.append(&inner);
    sql.push(") AS f");
    Ok(db.fetch_all(&sql).await?)
}

/// When the newest stored check that found an SPF record ran, and the
/// networks it authorizes.
async fn newest_spf(
    store: &Store,
    domain: &str,
) -> Result<Option<(DateTime<Utc>, Vec<String>)>, QueryError> {
    let checks = posture::checks_of(store.reads(), domain, 1).await?;
    let Some(check) = checks.into_iter().next() else {
        return Ok(None);
    };
    let Some(spf) = check.spf else {
        return Ok(None);
    };
    let tree: crate::dns::spf_tree::SpfTree = serde_json::from_value(spf).map_err(|error| {
        crate::store::StoreError::Corrupt(format!("SPF tree of {domain}: {error}"))
    })?;
    Ok(Some((check.checked_at, tree.authorized_networks)))
}

/// One DKIM or SPF result as a sender's records carry it, with its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuthLine {
    pub domain: String,
    /// The DKIM selector (none for SPF).
    pub selector: Option<String>,
    pub result: String,
    pub messages: i64,
}

/// Everything the sender page shows about one source of a domain.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SenderDetail {
    pub domain: String,
    /// The sender name, or the IP of a source without one.
    pub source: String,
    pub since: Option<String>,
    pub until: Option<String>,
    /// The source as the Senders list has it (class, reason, volume);
    /// null when it sent nothing as the domain in the period.
    pub row: Option<SenderRow>,
    /// Its IPs (busiest first, at most 1000).
    pub ips: Vec<SummaryRow>,
    pub countries: Vec<SummaryRow>,
    /// Per day (oldest first).
    pub days: Vec<SummaryRow>,
    /// Reporters of the sampled records (`sampled_records`).
    pub reporters: Vec<SummaryRow>,
    /// DKIM and SPF results of the sampled records.
    pub dkim: Vec<AuthLine>,
    pub spf: Vec<AuthLine>,
    /// Records read for the results, reporters and failure causes: the
    /// newest of each of its busiest `sampled_ips` IPs, up to
    /// `senders.sample_records` in all.
    pub sampled_records: i64,
    pub sampled_ips: i64,
}

#[derive(sqlx::FromRow)]
struct DetailRow {
    org_name: String,
    count: i64,
    passed: i64,
    header_from: Option<String>,
    reasons: String,
    dkim: String,
    spf: String,
}

/// The IPs of a sender whose newest records are read for its page.
const SAMPLED_IPS: usize = 50;

/// A sender's page: `name` is a sender name or the IP of a source
/// without one, as the Senders list keys it. Its totals, IPs, countries
/// and days come from the totals (which carry each source's name); only
/// the DKIM and SPF detail, reporters and failure causes read records:
/// the newest few of each of its busiest IPs, through the index by
/// domain and source IP.
pub async fn sender(
    store: &Store,
    scope: &Scope,
    config: &SendersConfig,
    query: &SendersQuery,
    name: &str,
) -> Result<SenderDetail, QueryError> {
    let mut filter = Filter {
        domain: Some(query.domain.clone()),
        since: query.since.clone(),
        until: query.until.clone(),
        ..Filter::default()
    }
    .parse(scope)?;
    seen(scope, &filter)?;
    let domain = filter.domain.clone().unwrap_or_default();
    filter.sender = Some(SenderKey::of(name));
    let grouped = |group_by, sort, limit| {
        let filter = filter.clone();
        async move {
            let page = Page::new(Some(limit), None, 1)?;
            aggregate::summary(store, &filter, group_by, sort, page)
                .await
                .map(|(rows, _)| rows)
        }
    };
    // Independent reads, side by side.
    let (totals, ips, countries, days, context) = tokio::try_join!(
        grouped(GroupBy::SourceName, SummarySort::Messages, 1),
        grouped(GroupBy::Source, SummarySort::Messages, IP_ROWS),
        grouped(GroupBy::Country, SummarySort::Messages, 50),
        grouped(GroupBy::Day, SummarySort::Key, 400),
        Context::read(store, &domain),
    )?;
    let addresses: Vec<String> = ips.iter().filter_map(|r| r.key.clone()).collect();
    let described = ip_rows(store, &addresses).await?;
    let sampled_ips = &addresses[..addresses.len().min(SAMPLED_IPS)];
    let records = detail_records(store, config, &filter, sampled_ips).await?;

    let mut gathered = Gathered {
        ips: ips
            .iter()
            .filter_map(|r| Some((IpAddr::from_str(r.key.as_deref()?).ok()?, r.messages)))
            .collect(),
        ..Gathered::default()
    };
    let mut reporters: HashMap<String, (i64, i64)> = HashMap::new();
    let mut dkim: HashMap<(String, Option<String>, String), i64> = HashMap::new();
    let mut spf: HashMap<(String, Option<String>, String), i64> = HashMap::new();
    #[derive(serde::Deserialize)]
    struct Entry {
        domain: Option<String>,
        selector: Option<String>,
        result: Option<String>,
    }
    for row in &records {
        let reporter = reporters.entry(row.org_name.clone()).or_default();
        reporter.0 += row.count;
        reporter.1 += row.passed * row.count;
        if row.passed == 0 {
            gathered.add_failing(
                &domain,
                row.count,
                row.header_from.as_deref(),
                &row.reasons,
                &row.dkim,
                &row.spf,
            );
        }
        for (text, into) in [(&row.dkim, &mut dkim), (&row.spf, &mut spf)] {
            let Ok(entries) = serde_json::from_str::<Vec<Entry>>(text) else {
                continue;
            };
            for entry in entries {
                let key = (
                    entry.domain.unwrap_or_default().to_ascii_lowercase(),
                    entry.selector,
                    entry
                        .result
                        .unwrap_or_else(|| "none".into())
                        .to_ascii_lowercase(),
                );
                *into.entry(key).or_default() += row.count;
            }
        }
    }
    let row = totals
        .first()
        .map(|summary| context.row(config, summary, gathered, &described));
    let lines = |map: HashMap<(String, Option<String>, String), i64>| {
        let mut lines: Vec<AuthLine> = map
            .into_iter()
            .map(|((domain, selector, result), messages)| AuthLine {
                domain,
                selector,
                result,
                messages,
            })
            .collect();
        lines.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.domain.cmp(&b.domain)));
        lines
    };
    let mut reporters: Vec<SummaryRow> = reporters
        .into_iter()
        .map(|(org, (messages, passed))| SummaryRow {
            key: Some(org),
            messages,
            dmarc_pass: passed,
            dmarc_fail: messages - passed,
            pass_rate: if messages > 0 {
                passed as f64 / messages as f64
            } else {
                0.0
            },
            ..SummaryRow::default()
        })
        .collect();
    reporters.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.key.cmp(&b.key)));
    Ok(SenderDetail {
        domain,
        source: name.to_string(),
        since: filter.since.map(time_text),
        until: filter.until.map(time_text),
        row,
        ips,
        countries,
        days,
        reporters,
        dkim: lines(dkim),
        spf: lines(spf),
        sampled_records: records.len() as i64,
        sampled_ips: sampled_ips.len() as i64,
    })
}

/// The newest records of the domain from each of `ips` in the period,
/// an equal share of `senders.sample_records` each: one bounded read of
/// the index by domain and source IP per address.
async fn detail_records(
    store: &Store,
    config: &SendersConfig,
    filter: &ParsedFilter,
    ips: &[String],
) -> Result<Vec<DetailRow>, QueryError> {
    if ips.is_empty() {
        return Ok(Vec::new());
    }
    let db = store.reads();
    let backend = db.backend();
    let each = (i64::from(config.sample_records) / ips.len() as i64).max(1);
    let mut sql = db.sql();
    for (i, ip) in ips.iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ALL ");
        }
        sql.push(&format!(
            "SELECT * FROM (SELECT r.org_name, r.count, \
             CAST(CASE WHEN {pass} THEN 1 ELSE 0 END AS BIGINT) AS passed, r.header_from, \
             {reasons} AS reasons, {dkim} AS dkim, {spf} AS spf FROM aggregate_records r \
             WHERE r.policy_domain = ",
            pass = backend.is_true("r.dmarc_pass"),
            reasons = backend.json_text("r.reasons"),
            dkim = backend.json_text("r.dkim_results"),
            spf = backend.json_text("r.spf_results"),
        ))
        .bind(filter.domain.clone().unwrap_or_default());
        let address = backend.inet(&sql.placeholder(ip.clone()));
        sql.push(" AND r.source_ip = ").push(&address);
        if let Some(since) = filter.since {
            sql.push(" AND r.date_begin >= ").bind(since);
        }
        if let Some(until) = filter.until {
            sql.push(" AND r.date_begin < ").bind(until);
        }
        sql.push(" ORDER BY r.date_begin DESC LIMIT ")
            .bind(each)
            .push(") AS s");
        sql.push(&i.to_string());
    }
    Ok(db.fetch_all(&sql).await?)
}
