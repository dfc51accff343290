//! Claims pending inbox messages and turns them into stored reports:
//! decode → parse → store, and marks each message done, duplicate, ignored
//! (not a report) or failed (with the reason). A message claimed by a
//! process that died is claimed again once its lease expires.

mod outage;
mod streamed;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use crate::decode::Limits;
use crate::extract::{extract_reports_from_bytes, ExtractError, ExtractedReport};
use crate::inbox::MessageStatus;
use crate::store::{Claimed, Outcome, SaveSummary, Store, StoreResult};

/// Worker settings (`[worker]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Whether `serve` processes the inbox (default true). An intake-only
    /// node (an extra MX) can leave it to other nodes sharing the database.
    pub enabled: bool,
    /// Worker tasks per process (default: 2).
    pub concurrency: usize,
    /// Messages claimed, parsed and saved (in one transaction) at a time by
    /// one task (default: 64)…
    pub batch_size: u32,
    /// …as long as their raw size stays under this many bytes (default
    /// 32 MiB; a larger message is claimed alone).
    pub batch_bytes: u64,
    /// Seconds before a claimed but unfinished message is claimed again (default: 300).
    pub lease_seconds: u64,
    /// Claims after which a message that never finished is failed instead
    /// of tried again (default: 5): one that crashes the process must not
    /// loop forever.
    pub max_attempts: i32,
    /// Milliseconds between polls of an empty queue (default: 1000).
    pub poll_interval_ms: u64,
    /// Longest pause, in milliseconds, between polls while the database
    /// fails (default: 30000); the pause doubles from `poll_interval_ms`.
    pub max_retry_interval_ms: u64,
    /// Messages at least this many raw bytes (default 262144) are saved
    /// while they are parsed, their records in runs (`streamed.rs`), so a
    /// report of millions of records never sits in memory whole.
    pub stream_from_bytes: u64,
    /// Records per run of such a message (default 20000, about 20 MB).
    pub stream_run_records: usize,
    /// `retention.redact_failure_reports`, copied here when the config is
    /// loaded: failure reports are redacted before they are stored.
    #[serde(skip)]
    pub redact_failure_reports: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            enabled: true,
            concurrency: 2,
            batch_size: 64,
            batch_bytes: 32 * 1024 * 1024,
            lease_seconds: 300,
            max_attempts: 5,
            poll_interval_ms: 1000,
            max_retry_interval_ms: 30_000,
            stream_from_bytes: 256 * 1024,
            stream_run_records: 20_000,
            redact_failure_reports: false,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub id: i64,
    pub source_name: Option<String>,
    pub summary: SaveSummary,
    /// The failure or "not a report" reason.
    pub reason: Option<String>,
}

#[derive(Clone)]
pub struct Worker {
    store: Store,
    limits: Arc<Limits>,
    name: String,
    config: WorkerConfig,
    /// Messages this worker claimed and could not save because the
    /// database failed for now, to give back once it answers.
    unreleased: Arc<std::sync::Mutex<Vec<i64>>>,
    /// Shared by the workers of a process (`named` keeps it).
    outages: Arc<outage::OutageLog>,
}

impl Worker {
    /// `name` identifies this worker in claims (host and process, say).
    pub fn new(
        store: Store,
        limits: Limits,
        name: impl Into<String>,
        config: WorkerConfig,
    ) -> Self {
        Worker {
            store,
            limits: Arc::new(limits),
            name: name.into(),
            config,
            unreleased: Arc::default(),
            outages: Arc::default(),
        }
    }

    /// A worker with the same store and settings under another name.
    pub fn named(&self, name: impl Into<String>) -> Self {
        Worker {
            name: name.into(),
            unreleased: Arc::default(),
            ..self.clone()
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Claims one batch, parses it, and saves the outcomes: a large message
    /// alone, its records stored while it is parsed (`streamed.rs`), the
    /// others in one transaction.
    pub async fn run_batch(&self) -> StoreResult<Vec<Processed>> {
        self.release_unsaved().await?;
        let lease = Duration::from_secs(self.config.lease_seconds);
        let claimed = self
            .store
            .claim(
                &self.name,
                self.config.batch_size.max(1),
                self.config.batch_bytes,
                lease,
            )
            .await?;
        let (large, small): (Vec<Claimed>, Vec<Claimed>) =
            claimed.into_iter().partition(|message| {
                message.raw.len() as u64 >= self.config.stream_from_bytes
                    && message.attempts <= self.config.max_attempts
            });
        let mut processed = Vec::new();
        if !small.is_empty() {
            processed = self.run_together(small).await?;
        }
        for message in large {
            let one = self.run_streamed(message).await?;
            record_metrics(&one.summary, one.reason.as_deref());
            processed.push(one);
        }
        processed.sort_by_key(|message| message.id);
        Ok(processed)
    }

    /// Parses messages, then saves their outcomes in one transaction.
    async fn run_together(&self, claimed: Vec<Claimed>) -> StoreResult<Vec<Processed>> {
        let limits = Arc::clone(&self.limits);
        let max_attempts = self.config.max_attempts;
        let redact = self.config.redact_failure_reports;
        let sources: Vec<(i64, Option<String>)> = claimed
            .iter()
            .map(|m| (m.id, m.source_name.clone()))
            .collect();
        // Decoding and parsing are CPU work: keep them off the async threads.
        // A panic (a parser bug) fails the batch's messages instead of losing them.
        let outcomes = tokio::task::spawn_blocking(move || {
            claimed
                .into_iter()
                .map(|message| {
                    if message.attempts > max_attempts {
                        let reason = format!(
                            "gave up after {} attempts: processing never finished \
                             (the worker handling it stopped or crashed)",
                            message.attempts - 1
                        );
                        return (message.id, Outcome::Failed(reason));
                    }
                    let name = message
                        .source_name
                        .clone()
                        .unwrap_or_else(|| format!("message {}", message.id));
                    let outcome =
                        classify(extract_reports_from_bytes(&message.raw, &name, &limits));
                    (message.id, redacted(outcome, redact))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|panic| {
            let reason = format!("internal error while parsing: {panic}");
            sources
                .iter()
                .map(|(id, _)| (*id, Outcome::Failed(reason.clone())))
                .collect()
        });
        let items: Vec<(i64, &Outcome)> = outcomes
            .iter()
            .map(|(id, outcome)| (*id, outcome))
            .collect();
        let summaries = match self.store.save_outcomes(&self.name, &items).await {
            Ok(summaries) => summaries,
            Err(error) if error.is_temporary() => {
                // Nothing was saved: the batch goes back to the queue as soon
                // as the database answers, without waiting for its lease.
                self.lock_unreleased()
                    .extend(outcomes.iter().map(|(id, _)| *id));
                let _ = self.release_unsaved().await;
                return Err(error);
            }
            Err(error) => return Err(error),
        };

        let mut processed = Vec::with_capacity(outcomes.len());
        for (((id, _), summary), (_, source_name)) in outcomes.iter().zip(summaries).zip(sources) {
            let reason = summary.reason.clone();
            record_metrics(&summary, reason.as_deref());
            if !summary.written {
                tracing::warn!(id, worker = %self.name, "lost the claim on a message; another worker has it");
            }
            processed.push(Processed {
                id: *id,
                source_name,
                summary,
                reason,
            });
        }
        Ok(processed)
    }

    pub(super) fn lock_unreleased(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        self.unreleased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives back the messages a failed save left claimed (see `run_batch`).
    pub(super) async fn release_unsaved(&self) -> StoreResult<()> {
        let ids = self.lock_unreleased().clone();
        if ids.is_empty() {
            return Ok(());
        }
        let released = self.store.release_claims(&self.name, &ids).await?;
        self.lock_unreleased().retain(|id| !ids.contains(id));
        tracing::info!(worker = %self.name, released, "messages claimed before a database failure are pending again");
        Ok(())
    }

    /// Processes batches until the queue is empty, then brings the
    /// rollups up to date with what was stored.
    pub async fn run_until_idle(&self) -> StoreResult<Vec<Processed>> {
        let mut all = Vec::new();
        loop {
            let batch = self.run_batch().await?;
            if batch.is_empty() {
                self.store.apply_rollups_until_idle().await?;
                return Ok(all);
            }
            all.extend(batch);
        }
    }

    /// Runs until `shutdown` turns true, polling the queue when it is empty.
    /// While the database fails, the messages stay in the inbox and the
    /// worker polls less and less often (`outage`); the log says when an
    /// outage starts and when it ends, once each.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let most = Duration::from_millis(self.config.max_retry_interval_ms);
        let mut failures: u32 = 0;
        while !*shutdown.borrow() {
            let result = self.run_batch().await;
            if result.is_ok() {
                failures = 0;
                if let Some(outage) = self.outages.reached() {
                    tracing::warn!(
                        worker = %self.name,
                        seconds = outage.started.elapsed().as_secs(),
                        failed_polls = outage.failed_polls,
                        "the store answers again; the messages waiting in the inbox are processed"
                    );
                }
            }
            let pause = match result {
                Ok(batch) if !batch.is_empty() => {
                    for message in &batch {
                        log_processed(message);
                    }
                    continue;
                }
                Ok(_) => idle,
                Err(error) if error.is_temporary() => {
                    failures = failures.saturating_add(1);
                    if self.outages.failed() {
                        tracing::error!(worker = %self.name, %error, "workers cannot reach the store; the messages wait in the inbox and polls back off until it answers");
                    } else {
                        tracing::debug!(worker = %self.name, %error, "the store is still unavailable");
                    }
                    outage::backoff(idle, failures, most)
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(worker = %self.name, %error, "worker: the store refused a request; retrying");
                    outage::backoff(idle, failures, most)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

fn log_processed(message: &Processed) {
    let status = message
        .summary
        .status
        .map_or("lost", |status| status.as_str());
    match &message.reason {
        Some(reason) => tracing::info!(id = message.id, status, %reason, "message processed"),
        None => tracing::info!(
            id = message.id,
            status,
            records = message.summary.records,
            "message processed"
        ),
    }
}

/// Turns a parse result into what is stored: an input that holds no report
/// at all is `Ignored` (mail to a report address is not always a report);
/// anything that looks like a report but cannot be read is `Failed`.
fn record_metrics(summary: &SaveSummary, reason: Option<&str>) {
    use crate::metrics::count;
    if let Some(status) = summary.status {
        count(
            "dmarcd_messages_processed_total",
            &[("status", status.as_str())],
            1,
        );
        if status == MessageStatus::Failed {
            let label = crate::metrics::reason_label(reason.unwrap_or(""));
            count("dmarcd_parse_failures_total", &[("reason", label)], 1);
        }
    }
    for (kind, stored) in &summary.stored {
        count("dmarcd_reports_stored_total", &[("kind", kind)], *stored);
    }
}

pub fn classify(result: Result<Vec<ExtractedReport>, ExtractError>) -> Outcome {
    match result {
        Ok(reports) => match crate::extract::unstorable(&reports) {
            Some(reason) => Outcome::Failed(reason),
            None => Outcome::Reports(reports),
        },
        Err(error) if error.is_not_a_report() => Outcome::Ignored(error.to_string()),
        Err(error) => Outcome::Failed(error.to_string()),
    }
}

/// The outcome with its failure reports redacted when `redact` is on
/// (`retention.redact_failure_reports`), before anything of them is stored.
pub(crate) fn redacted(mut outcome: Outcome, redact: bool) -> Outcome {
    if let (true, Outcome::Reports(reports)) = (redact, &mut outcome) {
        for extracted in reports.iter_mut() {
            if let crate::report::Report::Failure(report) = &mut extracted.report {
                report.redact();
            }
        }
    }
    outcome
}

/// Keeps the rollups up to date with the stored reports (`store::applier`):
/// one pass after another while reports wait, a poll when none do. Every
/// node runs one; the database lets one at a time work.
pub struct RollupApplier {
    store: Store,
    poll: Duration,
}

impl RollupApplier {
    pub fn new(store: Store, config: &WorkerConfig) -> Self {
        RollupApplier {
            store,
            poll: Duration::from_millis(config.poll_interval_ms.max(10)),
        }
    }

    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut failing = false;
        while !*shutdown.borrow() {
            let pause = match self
                .store
                .apply_rollups(crate::store::APPLIER_PASS_RECORDS)
                .await
            {
                Ok(Some(pass)) if pass.reports > 0 => {
                    failing = false;
                    tracing::debug!(
                        reports = pass.reports,
                        records = pass.records,
                        "rollups counted reports"
                    );
                    continue;
                }
                Ok(_) => {
                    failing = false;
                    self.poll
                }
                Err(error) => {
                    // One line per outage, not one per poll.
                    if !failing {
                        tracing::warn!(%error, "rollup applier cannot write the rollups; retrying");
                    }
                    failing = true;
                    self.poll.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
