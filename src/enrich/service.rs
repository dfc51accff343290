//! The enrichment task: describes newly seen IPs from the databases and map,
//! and looks up their PTR names, saving everything in `ip_sources`.
//!
//! It runs beside the workers, not inside them: records are stored first,
//! and a slow or dead name server delays only the names, never ingestion.
//! Describing (fast, local) and resolving (slow, remote) are separate loops
//! so that one waiting on DNS does not hold the other back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{EnrichConfig, Enricher, PtrAnswer, PtrResolver};
use crate::store::{DnsRefresh, PtrResult, Store, StoreResult, StoredDnsState};

/// IPs described per database round trip.
const DESCRIBE_BATCH: u32 = 1000;
/// How often the database files are checked for a new version.
const RELOAD_CHECK: Duration = Duration::from_secs(30);
/// How often PTR answers past their lifetime are queued for a new lookup.
const STALE_CHECK: Duration = Duration::from_secs(600);
/// Shortest time a PTR answer is kept, whatever its TTL: a 60-second TTL
/// must not turn into a lookup per report.
const MIN_ANSWER_LIFETIME: Duration = Duration::from_secs(3600);
/// Pause before the first retry of a failed lookup; it grows fourfold per
/// attempt, up to a day.
const FIRST_RETRY: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrichProgress {
    /// IPs described from the databases and map.
    pub described: u64,
    /// PTR lookups that found a name…
    pub named: u64,
    /// …found there is none…
    pub no_name: u64,
    /// …or failed (retried later, or given up).
    pub failed: u64,
}

impl EnrichProgress {
    fn add(&mut self, other: EnrichProgress) {
        self.described += other.described;
        self.named += other.named;
        self.no_name += other.no_name;
        self.failed += other.failed;
    }

    pub fn lookups(&self) -> u64 {
        self.named + self.no_name + self.failed
    }
}

#[derive(Clone)]
pub struct EnrichService {
    store: Store,
    enricher: Enricher,
    resolver: Option<Arc<PtrResolver>>,
    config: EnrichConfig,
}

impl EnrichService {
    /// Fails only if reverse DNS is on and no resolver can be set up.
    pub fn new(store: Store, enricher: Enricher, config: EnrichConfig) -> Result<Self, String> {
        let resolver = if config.reverse_dns {
            Some(Arc::new(PtrResolver::new(&config)?))
        } else {
            None
        };
        Ok(EnrichService {
            store,
            enricher,
            resolver,
            config,
        })
    }

    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    /// Describes one batch of new IPs; returns how many.
    pub async fn describe_batch(&self) -> StoreResult<u64> {
        let pending = self.store.sources_to_describe(DESCRIBE_BATCH).await?;
        let infos: Vec<_> = pending
            .iter()
            .map(|(ip, ptr)| self.enricher.describe(*ip, ptr.as_deref()))
            .collect();
        self.store.save_descriptions(&infos).await?;
        Ok(infos.len() as u64)
    }

    /// Looks up the PTR names of one batch of due IPs, `dns_concurrency` at
    /// a time, and saves the answers.
    pub async fn resolve_batch(&self) -> StoreResult<EnrichProgress> {
        let Some(resolver) = &self.resolver else {
            return Ok(EnrichProgress::default());
        };
        let concurrency = self.config.dns_concurrency.max(1);
        let limit = (concurrency * 4) as u32;
        // Long enough for every lookup of the batch to time out in turn.
        let waves = limit.div_ceil(concurrency as u32);
        let lease = (self.config.dns_timeout() * waves * 2).max(Duration::from_secs(60));
        let claimed = self.store.claim_ptr_lookups(limit, lease).await?;
        if claimed.is_empty() {
            return Ok(EnrichProgress::default());
        }

        let permits = Arc::new(Semaphore::new(concurrency));
        let mut lookups = JoinSet::new();
        for (ip, attempts) in claimed {
            let resolver = Arc::clone(resolver);
            let permits = Arc::clone(&permits);
            lookups.spawn(async move {
                let _permit = permits.acquire_owned().await;
                (ip, attempts, resolver.lookup(ip).await)
            });
        }
        let mut results = Vec::new();
        let mut progress = EnrichProgress::default();
        while let Some(joined) = lookups.join_next().await {
            let Ok((ip, attempts, answer)) = joined else {
                continue; // the lease lapses and the IP is claimed again
            };
            results.push(self.result_of(ip, attempts, answer, &mut progress));
        }
        self.store.save_ptr_results(&results).await?;
        Ok(progress)
    }

    fn result_of(
        &self,
        ip: IpAddr,
        attempts: u32,
        answer: PtrAnswer,
        progress: &mut EnrichProgress,
    ) -> PtrResult {
        let max_ttl = Duration::from_secs(self.config.dns_max_ttl_seconds);
        match answer {
            PtrAnswer::Name { name, ttl } => {
                progress.named += 1;
                crate::metrics::count("dmarcd_enrich_ptr_lookups_total", &[("result", "name")], 1);
                PtrResult {
                    ip,
                    state: StoredDnsState::Done,
                    info: Some(self.enricher.describe(ip, Some(&name))),
                    due_in: Some(ttl.max(MIN_ANSWER_LIFETIME).min(max_ttl)),
                }
            }
            PtrAnswer::NoName => {
                progress.no_name += 1;
                crate::metrics::count("dmarcd_enrich_ptr_lookups_total", &[("result", "none")], 1);
                PtrResult {
                    ip,
                    state: StoredDnsState::NoName,
                    info: Some(self.enricher.describe(ip, None)),
                    due_in: Some(Duration::from_secs(self.config.dns_negative_ttl_seconds)),
                }
            }
            PtrAnswer::Failed(reason) => {
                progress.failed += 1;
                crate::metrics::count(
                    "dmarcd_enrich_ptr_lookups_total",
                    &[("result", "failed")],
                    1,
                );
                let attempts = attempts + 1;
                let due_in = (attempts < self.config.dns_max_attempts).then(|| {
                    let pause = FIRST_RETRY.saturating_mul(4u32.saturating_pow(attempts - 1));
                    pause.min(Duration::from_secs(24 * 3600))
                });
                tracing::debug!(%ip, attempts, %reason, "PTR lookup failed");
                PtrResult {
                    ip,
                    state: StoredDnsState::Failed,
                    info: None,
                    due_in,
                }
            }
        }
    }

    /// Describes and resolves until nothing is due (lookups that failed and
    /// wait for a retry are left for later).
    pub async fn run_until_idle(&self) -> StoreResult<EnrichProgress> {
        let mut progress = EnrichProgress::default();
        loop {
            let described = self.describe_batch().await?;
            progress.described += described;
            if described == 0 {
                break;
            }
        }
        loop {
            let pass = self.resolve_batch().await?;
            if pass.lookups() == 0 {
                return Ok(progress);
            }
            progress.add(pass);
        }
    }

    /// Runs until `shutdown` turns true. Database errors are logged and
    /// retried after the poll interval.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        let describing = self.clone().describe_loop(shutdown.clone());
        let resolving = self.clone().resolve_loop(shutdown);
        tokio::join!(describing, resolving);
    }

    async fn describe_loop(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut last_reload_check = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            if last_reload_check.elapsed() >= RELOAD_CHECK {
                last_reload_check = tokio::time::Instant::now();
                let enricher = self.enricher.clone();
                let reloaded = tokio::task::spawn_blocking(move || enricher.reload_if_changed())
                    .await
                    .unwrap_or(0);
                if reloaded > 0 {
                    // New data: describe every known IP again.
                    if let Err(error) = self.store.refresh_sources(DnsRefresh::Keep).await {
                        tracing::warn!(%error, "cannot mark IPs for re-enrichment");
                    }
                }
            }
            let idle = match self.describe_batch().await {
                Ok(described) => described == 0,
                Err(error) => {
                    tracing::warn!(%error, "enrichment: cannot describe new IPs; retrying");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    async fn resolve_loop(self, mut shutdown: watch::Receiver<bool>) {
        if self.resolver.is_none() {
            return;
        }
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut last_stale_check: Option<tokio::time::Instant> = None;
        while !*shutdown.borrow() {
            if last_stale_check.is_none_or(|at| at.elapsed() >= STALE_CHECK) {
                last_stale_check = Some(tokio::time::Instant::now());
                match self.store.renew_stale_ptrs().await {
                    Ok(0) => {}
                    Ok(renewed) => {
                        tracing::info!(renewed, "PTR answers expired; looking them up again")
                    }
                    Err(error) => tracing::warn!(%error, "cannot queue expired PTR answers"),
                }
            }
            // A batch in flight is abandoned at shutdown; its claims lapse
            // and the next start looks those IPs up again.
            let pass = tokio::select! {
                pass = self.resolve_batch() => pass,
                _ = shutdown.changed() => return,
            };
            let idle = match pass {
                Ok(progress) => progress.lookups() == 0,
                Err(error) => {
                    tracing::warn!(%error, "enrichment: cannot save PTR answers; retrying");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}
