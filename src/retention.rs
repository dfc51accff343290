//! Retention as a service: `serve` prunes every `retention.interval_minutes`
//! (every node may; batches skip what another node holds), `dmarcd prune`
//! once. What is pruned and how is in `store::retention` (raw messages)
//! and `store::record_retention` (aggregate records, day rollups).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::config::RetentionConfig;
use crate::metrics;
use crate::store::{Pruned, PrunedRecords, Store, StoreResult};

/// Prunes what the policy no longer keeps, now; logs and counts it.
pub async fn prune_once(
    store: &Store,
    config: &RetentionConfig,
) -> StoreResult<(Pruned, PrunedRecords)> {
    let now = Utc::now();
    let pruned = prune_raw(store, config, now).await?;
    let records = prune_records(store, config, now).await?;
    Ok((pruned, records))
}

async fn prune_records(
    store: &Store,
    config: &RetentionConfig,
    now: DateTime<Utc>,
) -> StoreResult<PrunedRecords> {
    let started = std::time::Instant::now();
    let pruned = store.prune_records(&config.records(), now).await?;
    if pruned.reports > 0 {
        metrics::count(
            "dmarcd_retention_pruned_reports_total",
            &[("data", "aggregate")],
            pruned.reports,
        );
        metrics::count(
            "dmarcd_retention_pruned_records_total",
            &[("data", "aggregate")],
            pruned.records,
        );
    }
    if pruned.day_rollup_rows > 0 {
        metrics::count(
            "dmarcd_retention_pruned_records_total",
            &[("data", "day_rollups")],
            pruned.day_rollup_rows,
        );
    }
    if pruned != PrunedRecords::default() {
        tracing::info!(
            reports = pruned.reports,
            records = pruned.records,
            day_rollup_rows = pruned.day_rollup_rows,
            aggregate_days = config.aggregate_days,
            day_rollup_days = config.day_rollup_days,
            seconds = started.elapsed().as_secs_f64(),
            "retention: deleted aggregate records and day rollups (the month and all-time totals keep their counts)"
        );
    }
    Ok(pruned)
}

async fn prune_raw(
    store: &Store,
    config: &RetentionConfig,
    now: DateTime<Utc>,
) -> StoreResult<Pruned> {
    let pruned = store.prune_raw(&config.raw(), now).await?;
    if pruned.messages > 0 {
        metrics::count(
            "dmarcd_retention_pruned_messages_total",
            &[("data", "raw")],
            pruned.messages,
        );
        metrics::count(
            "dmarcd_retention_pruned_bytes_total",
            &[("data", "raw")],
            pruned.bytes,
        );
        tracing::info!(
            messages = pruned.messages,
            bytes = pruned.bytes,
            raw_days = config.raw_days,
            failure_raw_days = config.failure_raw_days,
            "retention: deleted the raw bytes of processed messages"
        );
    }
    Ok(pruned)
}

/// Deletes audit log entries older than `retention.audit_days`; logs and
/// counts them.
pub async fn prune_audit(store: &Store, config: &RetentionConfig) -> StoreResult<u64> {
    let deleted = crate::audit::prune(store, config.audit_days, config.batch).await?;
    if deleted > 0 {
        metrics::count(
            "dmarcd_retention_pruned_records_total",
            &[("data", "audit")],
            deleted,
        );
        tracing::info!(
            entries = deleted,
            audit_days = config.audit_days,
            "retention: deleted old audit log entries"
        );
    }
    Ok(deleted)
}

/// Prunes at start and then every interval, until `stopped` turns true.
pub async fn run(store: Store, config: RetentionConfig, mut stopped: watch::Receiver<bool>) {
    let interval = Duration::from_secs(config.interval_minutes.max(1) * 60);
    while !*stopped.borrow() {
        if let Err(error) = prune_once(&store, &config).await {
            tracing::warn!(%error, "retention: pruning failed; trying again next interval");
        }
        if let Err(error) = prune_audit(&store, &config).await {
            tracing::warn!(%error, "retention: pruning the audit log failed; trying again next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
    }
}
