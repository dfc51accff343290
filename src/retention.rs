//! Retention as a service: `serve` prunes every `retention.interval_minutes`
//! (every node may; batches skip what another node holds), `dmarcd prune`
//! once. What is pruned and how is in `store::retention`.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::config::RetentionConfig;
use crate::metrics;
use crate::store::{Pruned, Store, StoreResult};

/// Prunes what the policy no longer keeps, now; logs and counts it.
pub async fn prune_once(store: &Store, config: &RetentionConfig) -> StoreResult<Pruned> {
    let pruned = store.prune_raw(&config.raw(), Utc::now()).await?;
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

/// Prunes at start and then every interval, until `stopped` turns true.
pub async fn run(store: Store, config: RetentionConfig, mut stopped: watch::Receiver<bool>) {
    let interval = Duration::from_secs(config.interval_minutes.max(1) * 60);
    while !*stopped.borrow() {
        if let Err(error) = prune_once(&store, &config).await {
            tracing::warn!(%error, "retention: pruning failed; trying again next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
    }
}
