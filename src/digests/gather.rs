//! The facts of one digest, read from the rollups and totals (one grouped
//! read each for all domains: messages, reports, TLS sessions; per shown
//! domain: its new sources, its classed senders, its newest DNS check).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::content::{Digest, DnsNote, DomainDigest, FailingSource, OpenAlert};
use super::period::Period;
use super::{DigestsConfig, Schedule};
use crate::dns::Severity;
use crate::query::senders::{senders, SendersQuery};
use crate::query::QueryError;
use crate::senders::SendersConfig;
use crate::store::{alerts, digests as stored, posture, Store};

/// Record changes read per domain, newest first (a digest shows those
/// of its period).
const RECORD_EVENTS: u32 = 50;
/// Domains whose parts are read side by side (each reads a few things at
/// once itself): a weekly digest of the 25 domains of the 1M-record load
/// seed took 2.1 s one domain after the other, 1.1 s four at a time
/// (debug build, 2 cores); one domain, 40 ms.
const DOMAINS_AT_ONCE: usize = 4;

pub async fn digest(
    store: &Store,
    config: &DigestsConfig,
    senders_config: &SendersConfig,
    schedule: &Schedule,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Digest, QueryError> {
    let db = store.reads();
    let previous = period.previous(schedule.frequency);
    let (totals, tls, open) = tokio::try_join!(
        stored::totals(db, &period, &previous),
        stored::tls(db, &period),
        alerts::list(store.db(), true, 1000),
    )?;
    // Every domain: those monitored and those with reports in either period.
    let domains: BTreeSet<String> = if schedule.domains.is_empty() {
        store
            .domains(&crate::scope::Scope::All)
            .await?
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .chain(totals.keys().cloned())
            .collect()
    } else {
        schedule
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect()
    };
    let mut all = super::content::Totals::default();
    let mut tls_failed = 0;
    let mut open_alerts = 0;
    let mut ranked: Vec<(String, super::content::Totals)> = Vec::new();
    for domain in &domains {
        let here = totals.get(domain).copied().unwrap_or_default();
        all.add(&here);
        tls_failed += tls.get(domain).map_or(0, |t| t.failed);
        open_alerts += open.iter().filter(|a| a.domain == *domain).count();
        ranked.push((domain.clone(), here));
    }
    // Busiest first; among the quiet, those that had mail before first
    // (their silence is the news), then by name.
    ranked.sort_by(|(a_name, a), (b_name, b)| {
        (b.messages, b.previous_messages)
            .cmp(&(a.messages, a.previous_messages))
            .then_with(|| a_name.cmp(b_name))
    });
    let shown = (config.max_domains as usize).min(ranked.len());
    let more_domains = ranked.len() - shown;
    let base = store.dashboard_url().trim_end_matches('/').to_string();
    let link = |path: String| (!base.is_empty()).then(|| format!("{base}{path}"));
    let range = format!("since={}&until={}", period.first, period.last());
    // A few domains at a time: each part is several independent reads.
    let parts: Vec<DomainDigest> = futures_util::stream::iter(ranked.into_iter().take(shown))
        .map(|(domain, here)| {
            let (link, range, open, tls) = (&link, &range, &open, &tls);
            async move {
                let (new_sources, failing, dns) = tokio::try_join!(
                    async {
                        Ok::<_, QueryError>(
                            stored::new_sources(db, &domain, &period, config.top_sources).await?,
                        )
                    },
                    async {
                        if here.failing() > 0 {
                            failing_sources(
                                store,
                                senders_config,
                                &domain,
                                &period,
                                config.top_sources,
                            )
                            .await
                        } else {
                            Ok(Vec::new())
                        }
                    },
                    dns_notes(store, &domain, &period),
                )?;
                let (new_sources_total, new_sources) = new_sources;
                let alerts = open
                    .iter()
                    .filter(|alert| alert.domain == domain)
                    .map(|alert| OpenAlert {
                        title: alert.title.clone(),
                        link: link(alert.link.clone()),
                        opened_at: alert.opened_at,
                    })
                    .collect();
                let encoded = url_encode(&domain);
                Ok::<_, QueryError>(DomainDigest {
                    new_sources,
                    new_sources_total,
                    failing,
                    tls: tls.get(&domain).cloned().unwrap_or_default(),
                    alerts,
                    dns,
                    link: link(format!("/aggregate?domain={encoded}&{range}")),
                    senders_link: link(format!("/senders?domain={encoded}&{range}")),
                    totals: here,
                    domain,
                })
            }
        })
        .buffered(DOMAINS_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    Ok(Digest {
        schedule: schedule.name.clone(),
        frequency: schedule.frequency,
        period,
        totals: all,
        domains: parts,
        more_domains,
        tls_failed,
        open_alerts,
        settings_link: link("/alerts/digests".to_string()),
        generated_at: now,
    })
}

/// The sources failing most for `domain` in `period`, each with its
/// class as the Senders page works it out.
async fn failing_sources(
    store: &Store,
    config: &SendersConfig,
    domain: &str,
    period: &Period,
    limit: u32,
) -> Result<Vec<FailingSource>, QueryError> {
    let report = senders(
        store,
        &crate::scope::Scope::All,
        config,
        &SendersQuery {
            domain: domain.to_string(),
            since: Some(period.first.to_string()),
            until: Some(period.last().to_string()),
            class: None,
        },
    )
    .await?;
    let mut failing: Vec<FailingSource> = report
        .sources
        .into_iter()
        .filter(|row| row.messages > row.dmarc_pass)
        .map(|row| FailingSource {
            failing: row.messages - row.dmarc_pass,
            messages: row.messages,
            class: row.class.label().to_string(),
            reason: row.cause.unwrap_or(row.reason),
            source: row.source,
        })
        .collect();
    failing.sort_by(|a, b| b.failing.cmp(&a.failing).then(a.source.cmp(&b.source)));
    failing.truncate(limit as usize);
    Ok(failing)
}

/// What the newest DNS check found wrong, and the record changes seen in
/// the period.
async fn dns_notes(
    store: &Store,
    domain: &str,
    period: &Period,
) -> Result<Vec<DnsNote>, QueryError> {
    let db = store.reads();
    let mut notes = Vec::new();
    if let Some(check) = posture::checks_of(db, domain, 1).await?.pop() {
        for finding in check.findings {
            if matches!(finding.severity, Severity::Warning | Severity::Error) {
                notes.push(DnsNote {
                    severity: finding.severity.key().to_string(),
                    message: finding.message,
                });
            }
        }
    }
    for event in posture::events_of(db, domain, RECORD_EVENTS).await? {
        if event.changed_at < period.start_utc() || event.changed_at >= period.end_utc() {
            continue;
        }
        let what = match (event.old_values.is_empty(), event.new_values.is_empty()) {
            (true, _) => format!("appeared: {}", event.new_values.join(" | ")),
            (_, true) => "was removed".to_string(),
            _ => format!("is now {}", event.new_values.join(" | ")),
        };
        notes.push(DnsNote {
            severity: "change".to_string(),
            message: format!(
                "{} {} record {} {what} ({})",
                event.name,
                event.record_type,
                event.kind,
                event.changed_at.format("%Y-%m-%d %H:%M UTC")
            ),
        });
    }
    Ok(notes)
}

/// A domain name for a query string (letters, digits, dots and hyphens
/// pass as they are).
fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
