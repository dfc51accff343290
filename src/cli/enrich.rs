//! `dmarcd enrich`: describe stored sending IPs now (what `serve` does
//! continuously), optionally all of them again.

use std::process::ExitCode;

use crate::config::Config;
use crate::enrich::{EnrichService, Enricher};
use crate::store::{DnsRefresh, Store, StoredDnsState};

/// The enrichment task for `config`.
pub(super) fn service(config: &Config, store: Store) -> anyhow::Result<EnrichService> {
    service_with(
        config,
        store,
        Enricher::from_config(&config.enrich_effective())?,
    )
}

pub(super) fn service_with(
    config: &Config,
    store: Store,
    enricher: Enricher,
) -> anyhow::Result<EnrichService> {
    if config.enrich.databases.is_empty() {
        tracing::info!(
            directory = %config.geo.directory(&config.data_dir).display(),
            "no IP databases listed (enrich.databases): reading the ones `dmarcd geo update` keeps"
        );
    }
    if !config.enrich.reverse_dns {
        tracing::info!("reverse DNS is off (enrich.reverse_dns = false)");
    }
    EnrichService::new(store, enricher, config.enrich_effective()).map_err(anyhow::Error::msg)
}

pub(super) async fn enrich(config: &Config, refresh: bool, dns: bool) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let service = service(config, store.clone())?;
    // The sources of stored reports are noted as the rollups count them.
    let counted = store.apply_rollups_until_idle().await?;
    if counted.reports > 0 {
        println!(
            "counted {} stored reports ({} records) first",
            counted.reports, counted.records
        );
    }
    if refresh {
        let mode = if dns {
            DnsRefresh::All
        } else {
            DnsRefresh::Stale
        };
        let marked = store.refresh_sources(mode).await?;
        println!("re-enriching {marked} IP addresses");
    }
    let progress = service.run_until_idle().await?;
    let counts = store.enrichment_counts().await?;
    println!(
        "described {} IP addresses; PTR lookups: {} named, {} without a name, {} failed",
        progress.described, progress.named, progress.no_name, progress.failed
    );
    println!(
        "stored: {} IP addresses, {} with a PTR name, {} without, {} waiting to retry, {} pending",
        counts.sources,
        counts.dns(StoredDnsState::Done),
        counts.dns(StoredDnsState::NoName),
        counts.dns(StoredDnsState::Failed),
        counts.dns(StoredDnsState::Pending) + counts.dns(StoredDnsState::Resolving),
    );
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
