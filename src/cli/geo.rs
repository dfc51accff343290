//! `dmarcd geo update` and `serve`'s monthly run of it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use tokio::sync::watch;

use crate::config::Config;
use crate::enrich::{Enricher, GeoUpdater, Outcome};

/// Exit status when another update holds the lock (EX_TEMPFAIL): a timer
/// that fires twice is not a failure.
pub const EXIT_BUSY: u8 = 75;

#[derive(Debug, Subcommand)]
pub enum GeoAction {
    /// Download DB-IP's free country and ASN databases (CC BY 4.0) into
    /// `geo.directory`, check them and swap them in. Exits 0 when every
    /// database is in place (new, or already this month's), 1 when one
    /// could not be updated (the file in place is kept), 75 when another
    /// update is running. A running `serve` picks new files up within a
    /// minute.
    Update {
        /// Download even when the files in place were built this month.
        #[arg(long)]
        force: bool,
    },
}

pub(super) async fn geo(config: &Config, action: GeoAction) -> anyhow::Result<ExitCode> {
    match action {
        GeoAction::Update { force } => update(config, force).await,
    }
}

async fn update(config: &Config, force: bool) -> anyhow::Result<ExitCode> {
    let updater = GeoUpdater::new(&config.geo, &config.data_dir);
    let today = chrono::Utc::now().date_naive();
    let results = match updater.update(today, force).await {
        Ok(results) => results,
        Err(error) if error.is_busy() => {
            eprintln!("{error}");
            return Ok(ExitCode::from(EXIT_BUSY));
        }
        Err(error) => return Err(error.into()),
    };
    if results.is_empty() {
        eprintln!("geo.country_url and geo.asn_url are both empty: nothing to download");
        return Ok(ExitCode::FAILURE);
    }
    let mut failed = false;
    for result in results {
        match result {
            Ok(outcome) => println!("{outcome}"),
            Err(error) => {
                eprintln!("error: {error}");
                failed = true;
            }
        }
    }
    if !config.enrich.databases.is_empty() {
        let files = config.geo.files(&config.data_dir);
        if !files
            .iter()
            .all(|file| config.enrich.databases.contains(file))
        {
            println!(
                "note: enrich.databases lists other files, so dmarcd reads those; \
                 add these to it (or empty it) to use the downloads: {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `geo.monthly`: checks at start and every `geo.check_interval_hours`;
/// files built this month are left alone, so most checks download nothing.
/// The enrichment task notices a replaced file and describes every IP again.
pub(super) async fn monthly(config: Config, mut stopped: watch::Receiver<bool>) {
    let updater = GeoUpdater::new(&config.geo, &config.data_dir);
    let interval = Duration::from_secs(config.geo.check_interval_hours * 3600);
    tracing::info!(
        directory = %updater.directory().display(),
        hours = config.geo.check_interval_hours,
        "IP databases are updated monthly (geo.monthly)"
    );
    while !*stopped.borrow() {
        let today = chrono::Utc::now().date_naive();
        match updater.update(today, false).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(outcome @ Outcome::Updated { .. }) => {
                            tracing::info!("geo update: {outcome}")
                        }
                        Ok(outcome) => tracing::debug!("geo update: {outcome}"),
                        Err(error) => tracing::warn!("geo update: {error}"),
                    }
                }
            }
            Err(error) if error.is_busy() => tracing::debug!("geo update: {error}"),
            Err(error) => tracing::warn!("geo update: {error}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// How often a node without the enrichment task looks at the files.
const RELOAD_CHECK: Duration = Duration::from_secs(30);

pub(super) async fn reload_until_stopped(enricher: Enricher, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        let files = enricher.clone();
        let _ = tokio::task::spawn_blocking(move || files.reload_if_changed()).await;
        tokio::select! {
            _ = tokio::time::sleep(RELOAD_CHECK) => {}
            _ = stopped.changed() => {}
        }
    }
}
