//! `dmarcd geo update`: country and ASN out of the box. Downloads DB-IP's
//! free "lite" databases (CC BY 4.0: the dashboard shows the attribution
//! link while one is loaded), checks each is a database of the expected
//! kind that answers for a known address, and moves it into place with an
//! atomic rename, so the enricher (which reloads files that change on
//! disk) never sees half a file and a bad download never replaces a good
//! one. A lock file keeps two runs (cron and `serve`, say) from writing at
//! once.
//!
//! DB-IP publishes each month's files at the start of the month under a
//! name with the month in it; until the new month's appear, the previous
//! month's are the newest.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike, Months, NaiveDate};
use serde::Deserialize;

use super::fetch::{self, Fetched};
use super::geo::read_record;

/// The `[geo]` section: where and how `dmarcd geo update` gets databases.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoUpdateConfig {
    /// Where the downloaded files live; default `<data_dir>/geo`. While
    /// `enrich.databases` is empty, the enricher reads the files here.
    pub directory: Option<PathBuf>,
    /// The country database's URL; `{year}` and `{month}` (two digits) are
    /// filled in. Empty: not downloaded.
    pub country_url: String,
    /// The ASN database's URL, likewise.
    pub asn_url: String,
    /// `serve` checks for new databases every `check_interval_hours` and
    /// downloads a new month's when it is out.
    pub monthly: bool,
    pub check_interval_hours: u64,
    /// Largest download accepted (compressed), in bytes.
    pub max_download_bytes: u64,
    /// Largest database accepted (unpacked), in bytes.
    pub max_database_bytes: u64,
    /// Time allowed for one download, in seconds.
    pub timeout_seconds: u64,
    /// A download whose search tree has fewer nodes is refused (DB-IP's
    /// lite files have millions; a truncated or placeholder file, few).
    pub min_node_count: u32,
    /// An address every accepted database must know (its country, its AS).
    pub probe_ip: IpAddr,
}

impl Default for GeoUpdateConfig {
    fn default() -> Self {
        GeoUpdateConfig {
            directory: None,
            country_url: "https://download.db-ip.com/free/dbip-country-lite-{year}-{month}.mmdb.gz"
                .into(),
            asn_url: "https://download.db-ip.com/free/dbip-asn-lite-{year}-{month}.mmdb.gz".into(),
            monthly: false,
            check_interval_hours: 24,
            max_download_bytes: 128 * 1024 * 1024,
            max_database_bytes: 512 * 1024 * 1024,
            timeout_seconds: 600,
            min_node_count: 10_000,
            probe_ip: IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
        }
    }
}

impl GeoUpdateConfig {
    /// The directory, `<data_dir>/geo` unless set.
    pub fn directory(&self, data_dir: &Path) -> PathBuf {
        self.directory
            .clone()
            .unwrap_or_else(|| data_dir.join("geo"))
    }

    /// The files `geo update` writes (for the kinds with a URL).
    pub fn files(&self, data_dir: &Path) -> Vec<PathBuf> {
        let directory = self.directory(data_dir);
        GeoKind::ALL
            .iter()
            .filter(|kind| !self.url(**kind).trim().is_empty())
            .map(|kind| directory.join(kind.file_name()))
            .collect()
    }

    fn url(&self, kind: GeoKind) -> &str {
        match kind {
            GeoKind::Country => &self.country_url,
            GeoKind::Asn => &self.asn_url,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_download_bytes == 0 || self.max_database_bytes == 0 {
            return Err(
                "geo.max_download_bytes and geo.max_database_bytes must be at least 1".into(),
            );
        }
        if self.timeout_seconds == 0 || self.check_interval_hours == 0 {
            return Err(
                "geo.timeout_seconds and geo.check_interval_hours must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// The two databases DB-IP gives away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoKind {
    Country,
    Asn,
}

impl GeoKind {
    pub const ALL: [GeoKind; 2] = [GeoKind::Country, GeoKind::Asn];

    pub fn file_name(self) -> &'static str {
        match self {
            GeoKind::Country => "dbip-country-lite.mmdb",
            GeoKind::Asn => "dbip-asn-lite.mmdb",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            GeoKind::Country => "country",
            GeoKind::Asn => "ASN",
        }
    }

    /// The word its `database_type` holds (`DBIP-Country-Lite`, `GeoLite2-ASN`).
    fn type_word(self) -> &'static str {
        match self {
            GeoKind::Country => "country",
            GeoKind::Asn => "asn",
        }
    }
}

/// A month as DB-IP names its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(day: NaiveDate) -> Self {
        Month {
            year: day.year(),
            month: day.month(),
        }
    }

    fn previous(self) -> Self {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|first| first.checked_sub_months(Months::new(1)))
            .map_or(self, Month::of)
    }

    fn fill(self, template: &str) -> String {
        template
            .replace("{year}", &self.year.to_string())
            .replace("{month}", &format!("{:02}", self.month))
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:02}", self.year, self.month)
    }
}

/// What became of one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new file is in place.
    Updated {
        kind: GeoKind,
        month: Month,
        path: PathBuf,
        bytes: u64,
    },
    /// The file in place was built this month: nothing downloaded.
    Current { kind: GeoKind, built: Month },
    /// The newest published file is the one in place.
    Unchanged { kind: GeoKind, month: Month },
    /// This month's is not out yet and last month's is in place.
    NotYetPublished { kind: GeoKind, month: Month },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Updated {
                kind,
                month,
                path,
                bytes,
            } => write!(
                f,
                "{} database: installed {month}'s ({bytes} bytes) as {}",
                kind.label(),
                path.display()
            ),
            Outcome::Current { kind, built } => write!(
                f,
                "{} database: up to date (built {built}); --force downloads it again",
                kind.label()
            ),
            Outcome::Unchanged { kind, month } => write!(
                f,
                "{} database: {month}'s is the newest and already in place",
                kind.label()
            ),
            Outcome::NotYetPublished { kind, month } => write!(
                f,
                "{} database: {month}'s is not published yet; keeping the one in place",
                kind.label()
            ),
        }
    }
}

/// Why a database was not updated; the file in place is untouched.
#[derive(Debug, thiserror::Error)]
pub enum GeoUpdateError {
    #[error("another `dmarcd geo update` holds {0}; try again when it has finished")]
    Busy(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{kind} database: {reason}")]
    Download { kind: &'static str, reason: String },
    #[error("{kind} database: neither {tried} is published (HTTP 404 or 410)")]
    NotPublished { kind: &'static str, tried: String },
    #[error("{kind} database from {url} refused, the file in place is kept: {reason}")]
    Invalid {
        kind: &'static str,
        url: String,
        reason: String,
    },
}

impl GeoUpdateError {
    /// Another run holds the lock: not a failure of this one.
    pub fn is_busy(&self) -> bool {
        matches!(self, GeoUpdateError::Busy(_))
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> GeoUpdateError + '_ {
    move |error| GeoUpdateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Runs updates into one directory.
pub struct GeoUpdater {
    config: GeoUpdateConfig,
    directory: PathBuf,
}

const LOCK_FILE: &str = ".geo-update.lock";

impl GeoUpdater {
    pub fn new(config: &GeoUpdateConfig, data_dir: &Path) -> Self {
        GeoUpdater {
            directory: config.directory(data_dir),
            config: config.clone(),
        }
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Brings every database with a URL up to `today`'s month (or the
    /// previous one while this month's is not published). `force`
    /// downloads even when the file in place was built this month. One
    /// database's failure does not stop the other's: each gets its result.
    pub async fn update(
        &self,
        today: NaiveDate,
        force: bool,
    ) -> Result<Vec<Result<Outcome, GeoUpdateError>>, GeoUpdateError> {
        std::fs::create_dir_all(&self.directory).map_err(io_error(&self.directory))?;
        let lock_path = self.directory.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(GeoUpdateError::Busy(lock_path)),
            Err(std::fs::TryLockError::Error(error)) => return Err(io_error(&lock_path)(error)),
        }
        let mut results = Vec::new();
        for kind in GeoKind::ALL {
            let template = self.config.url(kind).trim();
            if template.is_empty() {
                continue;
            }
            results.push(
                self.update_one(kind, template, Month::of(today), force)
                    .await,
            );
        }
        // The lock goes with the file handle.
        drop(lock);
        Ok(results)
    }

    async fn update_one(
        &self,
        kind: GeoKind,
        template: &str,
        current: Month,
        force: bool,
    ) -> Result<Outcome, GeoUpdateError> {
        let target = self.directory.join(kind.file_name());
        let existing = built_month(&target);
        if let Some(built) = existing.filter(|built| *built >= current && !force) {
            return Ok(Outcome::Current { kind, built });
        }
        let previous = current.previous();
        // Last month's is only worth a download when what is in place is
        // older (or missing): it is what `serve` tries daily until this
        // month's appears.
        let mut months = vec![current];
        if existing.is_none_or(|built| built < previous) {
            months.push(previous);
        }
        let mut tried = Vec::new();
        for month in months {
            let url = month.fill(template);
            let fetched = fetch::get(
                &url,
                self.config.max_download_bytes,
                Duration::from_secs(self.config.timeout_seconds),
            )
            .await
            .map_err(|reason| GeoUpdateError::Download {
                kind: kind.label(),
                reason,
            })?;
            let body = match fetched {
                Fetched::Body(body) => body,
                Fetched::Missing => {
                    tried.push(url);
                    continue;
                }
            };
            let database =
                self.verified(kind, &body)
                    .map_err(|reason| GeoUpdateError::Invalid {
                        kind: kind.label(),
                        url: url.clone(),
                        reason,
                    })?;
            if std::fs::read(&target).is_ok_and(|old| old == database) {
                return Ok(Outcome::Unchanged { kind, month });
            }
            let bytes = database.len() as u64;
            install(&target, &database)?;
            tracing::info!(%url, path = %target.display(), bytes, "installed IP database");
            return Ok(Outcome::Updated {
                kind,
                month,
                path: target,
                bytes,
            });
        }
        match existing {
            Some(_) => Ok(Outcome::NotYetPublished {
                kind,
                month: current,
            }),
            None => Err(GeoUpdateError::NotPublished {
                kind: kind.label(),
                tried: tried.join(" nor "),
            }),
        }
    }

    /// The unpacked database, if it is one of the kind asked for.
    fn verified(&self, kind: GeoKind, body: &[u8]) -> Result<Vec<u8>, String> {
        let limit = self.config.max_database_bytes;
        let database = if body.starts_with(&[0x1f, 0x8b]) {
            let mut unpacked = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(limit + 1)
                .read_to_end(&mut unpacked)
                .map_err(|error| format!("it does not unpack: {error}"))?;
            unpacked
        } else {
            body.to_vec()
        };
        if database.len() as u64 > limit {
            return Err(format!(
                "it unpacks past {limit} bytes (geo.max_database_bytes)"
            ));
        }
        let reader = maxminddb::Reader::from_source(database.as_slice())
            .map_err(|error| format!("it is not a MaxMind-format database: {error}"))?;
        let meta = reader.metadata();
        if !meta
            .database_type
            .to_ascii_lowercase()
            .contains(kind.type_word())
        {
            return Err(format!(
                "it is a {:?} database, not a {} database",
                meta.database_type,
                kind.label()
            ));
        }
        if meta.node_count < self.config.min_node_count {
            return Err(format!(
                "its search tree has {} nodes, fewer than the {} expected (geo.min_node_count)",
                meta.node_count, self.config.min_node_count
            ));
        }
        check_whole(&reader).map_err(|error| format!("it is damaged: {error}"))?;
        let probe = self.config.probe_ip;
        let info = read_record(&reader, probe);
        let answers = match kind {
            GeoKind::Country => info.country.is_some(),
            GeoKind::Asn => info.asn.is_some() || info.as_name.is_some(),
        };
        if !answers {
            return Err(format!(
                "it has no {} for {probe} (geo.probe_ip)",
                kind.label()
            ));
        }
        drop(reader);
        Ok(database)
    }
}

/// Reads the whole tree and every record it points at, so a file cut
/// short or corrupted fails here rather than in lookups. maxminddb's
/// `verify` does this after checking the metadata to the letter of the
/// format's spec, which asks for a description; a file without one is
/// still readable, so it is walked network by network instead.
fn check_whole(reader: &maxminddb::Reader<&[u8]>) -> Result<(), String> {
    let error = match reader.verify() {
        Ok(()) => return Ok(()),
        Err(error) => error.to_string(),
    };
    if !error.contains("invalid database: description") {
        return Err(error);
    }
    let networks = reader
        .networks(maxminddb::WithinOptions::default())
        .map_err(|error| error.to_string())?;
    for network in networks {
        network
            .and_then(|found| found.decode::<serde::de::IgnoredAny>())
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// The month the database at `path` was built, if it is one.
pub fn built_month(path: &Path) -> Option<Month> {
    let reader = maxminddb::Reader::open_readfile(path).ok()?;
    let epoch = i64::try_from(reader.metadata().build_epoch).ok()?;
    DateTime::from_timestamp(epoch, 0).map(|at| Month::of(at.date_naive()))
}

/// Writes `bytes` beside `target` and renames it over `target`: readers
/// see the old file or the new one, never a mix, and a crash leaves at
/// worst a stray temporary file.
fn install(target: &Path, bytes: &[u8]) -> Result<(), GeoUpdateError> {
    let directory = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error(&temporary)(error));
    }
    if let Err(error) = std::fs::rename(&temporary, target) {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error(target)(error));
    }
    // The rename itself is durable once the directory is synced.
    #[cfg(unix)]
    File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(directory))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_fill_the_template_and_step_back_over_the_year() {
        let january = Month::of(NaiveDate::from_ymd_opt(2027, 1, 15).unwrap());
        assert_eq!(
            january.fill("https://x/dbip-country-lite-{year}-{month}.mmdb.gz"),
            "https://x/dbip-country-lite-2027-01.mmdb.gz"
        );
        assert_eq!(
            january.previous(),
            Month {
                year: 2026,
                month: 12
            }
        );
        assert_eq!(january.previous().to_string(), "2026-12");
    }

    #[test]
    fn the_default_files_are_in_the_data_directory() {
        let config = GeoUpdateConfig::default();
        assert_eq!(
            config.files(Path::new("/var/lib/dmarcd")),
            vec![
                PathBuf::from("/var/lib/dmarcd/geo/dbip-country-lite.mmdb"),
                PathBuf::from("/var/lib/dmarcd/geo/dbip-asn-lite.mmdb")
            ]
        );
        let country_only = GeoUpdateConfig {
            asn_url: String::new(),
            directory: Some("/srv/geo".into()),
            ..GeoUpdateConfig::default()
        };
        assert_eq!(
            country_only.files(Path::new("data")),
            vec![PathBuf::from("/srv/geo/dbip-country-lite.mmdb")]
        );
    }
}
