//! `dmarcd prune [--dry-run]`: what `[retention]` no longer keeps, deleted
//! now (or counted).

use std::process::ExitCode;

use crate::config::Config;

pub async fn prune(config: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let retention = &config.retention;
    let raw = format!(
        "raw messages (retention.raw_days = {}, retention.failure_raw_days = {}; 0 keeps for ever)",
        retention.raw_days, retention.failure_raw_days
    );
    let records = format!(
        "(retention.aggregate_days = {}, retention.day_rollup_days = {}; 0 keeps for ever; \
         the month and all-time totals keep every count)",
        retention.aggregate_days, retention.day_rollup_days
    );
    let now = chrono::Utc::now();
    let started = std::time::Instant::now();
    let (verb, pruned, pruned_records, audit) = if dry_run {
        let raw = store.prunable_raw(&retention.raw(), now).await?;
        let records = store.prunable_records(&retention.records(), now).await?;
        let audit =
            crate::store::audit::count_prunable(store.db(), retention.audit_days, now).await?;
        ("would delete", raw, records, audit)
    } else {
        let (raw, records) = crate::retention::prune_once(&store, retention).await?;
        let audit = crate::retention::prune_audit(&store, retention).await?;
        ("deleted", raw, records, audit)
    };
    println!("{verb} {} {raw}, {} bytes", pruned.messages, pruned.bytes);
    println!(
        "{verb} {} aggregate records of {} reports and {} day rollup rows {records}",
        pruned_records.records, pruned_records.reports, pruned_records.day_rollup_rows
    );
    println!(
        "{verb} {audit} audit log entries (retention.audit_days = {}; 0 keeps for ever)",
        retention.audit_days
    );
    if !dry_run {
        println!("in {:.1} s", started.elapsed().as_secs_f64());
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
