//! Posture checks of every monitored domain, on a schedule (`dmarcd
//! serve`) and on demand: each check is stored with the record changes it
//! found, and the domain's next check is set (sooner when something could
//! not be looked up).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::check::{PostureChecker, PostureReport};
use super::config::DnsConfig;
use super::finding::Severity;
use crate::store::posture::{self, RecordEvent};
use crate::store::{Store, StoreResult};

/// How often the schedule looks for due domains.
const POLL: Duration = Duration::from_secs(60);
/// Selectors seen in reports of this many days are checked.
const SELECTOR_DAYS: i64 = 30;
/// Distinct sets of DKIM results read to find them.
const SELECTOR_SCAN: u32 = 10_000;

#[derive(Clone)]
pub struct PostureSchedule {
    store: Store,
    checker: Arc<PostureChecker>,
    config: DnsConfig,
}

impl PostureSchedule {
    pub fn new(store: Store, checker: Arc<PostureChecker>, config: &DnsConfig) -> Self {
        PostureSchedule {
            store,
            checker,
            config: config.clone(),
        }
    }

    pub fn checker(&self) -> &PostureChecker {
        &self.checker
    }

    /// Checks `domain` now with its known selectors, stores the check and
    /// sets its next one; returns the report and the record changes.
    pub async fn check_now(&self, domain: &str) -> StoreResult<(PostureReport, Vec<RecordEvent>)> {
        self.check_now_within(domain, self.config.domain_timeout())
            .await
    }

    /// `check_now`, with at most `limit` for the lookups.
    pub async fn check_now_within(
        &self,
        domain: &str,
        limit: Duration,
    ) -> StoreResult<(PostureReport, Vec<RecordEvent>)> {
        let db = self.store.db();
        let selectors = posture::selectors_for(db, domain, SELECTOR_DAYS, SELECTOR_SCAN).await?;
        let report = self.checker.check_within(domain, &selectors, limit).await;
        let events = posture::save_check(db, &report).await?;
        posture::schedule_next(db, domain, self.next_check(&report)).await?;
        for event in &events {
            tracing::info!(
                domain = event.domain,
                record = event.name,
                record_type = event.record_type,
                old = ?event.old_values,
                new = ?event.new_values,
                "a DNS record changed"
            );
        }
        Ok((report, events))
    }

    /// Checks every domain that is due, `dns.concurrency` at a time;
    /// returns how many were checked.
    pub async fn run_due(&self) -> StoreResult<usize> {
        let lease = self.config.domain_timeout() * 2 + Duration::from_secs(60);
        let mut checked = 0;
        loop {
            let batch = self.config.concurrency.max(1) as u32 * 4;
            let due = posture::claim_due(self.store.db(), batch, lease).await?;
            if due.is_empty() {
                return Ok(checked);
            }
            let results: Vec<_> = futures_util::stream::iter(due)
                .map(|domain| async move {
                    let result = self.check_now(&domain).await;
                    (domain, result)
                })
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
            for (domain, result) in results {
                match result {
                    Ok(_) => checked += 1,
                    // The claim's lease runs out and the domain is due again.
                    Err(error) => tracing::warn!(domain, %error, "cannot store a posture check"),
                }
            }
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            // A check waits on name servers for up to dns.domain_timeout_seconds;
            // shutdown does not wait for it (a claimed domain's lease runs out
            // and it is checked again).
            tokio::select! {
                result = self.run_due() => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "posture checks: cannot read the schedule");
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The interval, moved by up to the jitter either way; a tenth of it
    /// when a lookup failed, so that "could not check" does not last hours.
    fn next_check(&self, report: &PostureReport) -> DateTime<Utc> {
        let interval = self.config.check_interval().as_secs_f64();
        let failed = report.findings.iter().any(|finding| {
            finding.severity == Severity::Unknown && finding.code.ends_with(".could_not_check")
        });
        let base = if failed { interval / 10.0 } else { interval };
        let jitter = self.config.check_jitter_percent as f64 / 100.0;
        let factor = 1.0 + jitter * (2.0 * random_unit() - 1.0);
        let seconds = (base * factor).max(60.0);
        report.checked_at + chrono::Duration::milliseconds((seconds * 1000.0) as i64)
    }
}

/// A number in [0, 1) from the system's random source.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 4];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}
