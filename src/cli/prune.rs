//! `dmarcd prune [--dry-run]`: what `[retention]` no longer keeps, deleted
//! now (or counted).

use std::process::ExitCode;

use crate::config::Config;

pub async fn prune(config: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let retention = &config.retention;
    let what = format!(
        "raw messages (retention.raw_days = {}, retention.failure_raw_days = {}; 0 keeps for ever)",
        retention.raw_days, retention.failure_raw_days
    );
    if dry_run {
        let prunable = store
            .prunable_raw(&retention.raw(), chrono::Utc::now())
            .await?;
        println!(
            "would delete {} {what}, {} bytes",
            prunable.messages, prunable.bytes
        );
    } else {
        let pruned = crate::retention::prune_once(&store, retention).await?;
        println!("deleted {} {what}, {} bytes", pruned.messages, pruned.bytes);
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
