//! Persistence: one interface, two backends. PostgreSQL is the production
//! store (several dmarcd processes may share it); SQLite, a single file, is
//! the zero-setup default.
//!
//! `Store` is an enum rather than a trait object: two backends, known at
//! compile time, and async methods without boxing.

pub mod derived;
mod migrate;
mod postgres;
mod postgres_sources;
pub mod rollup;
mod rows;
mod sources;
mod sqlite;
mod sqlite_sources;
mod table;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::extract::ExtractedReport;

pub use migrate::Migration;
pub use sources::{DnsRefresh, EnrichmentCounts, PtrResult, SourceRecord, StoredDnsState};
pub use table::{Arg, Cell, Dialect, Sql};

use crate::enrich::SourceInfo;

/// How a message reached the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    Smtp,
    Http,
    Import,
}

impl Intake {
    pub fn as_str(self) -> &'static str {
        match self {
            Intake::Smtp => "smtp",
            Intake::Http => "http",
            Intake::Import => "import",
        }
    }
}

/// Who handed the message over, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub intake: Intake,
    /// A file path for imports, a request path for HTTP.
    pub source_name: Option<String>,
    pub peer_ip: Option<IpAddr>,
    pub helo: Option<String>,
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub tls: bool,
}

impl Envelope {
    /// An import from a file.
    pub fn import(source_name: impl Into<String>) -> Self {
        Envelope {
            intake: Intake::Import,
            source_name: Some(source_name.into()),
            peer_ip: None,
            helo: None,
            mail_from: None,
            rcpt_to: Vec::new(),
            tls: false,
        }
    }
}

/// The lifecycle of an inbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageStatus {
    Pending,
    Processing,
    Done,
    Failed,
    /// Every report in it was already stored from another message.
    Duplicate,
    /// Not a report (a bounce, spam, a human's mail), kept with the reason.
    Ignored,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Processing => "processing",
            MessageStatus::Done => "done",
            MessageStatus::Failed => "failed",
            MessageStatus::Duplicate => "duplicate",
            MessageStatus::Ignored => "ignored",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => MessageStatus::Pending,
            "processing" => MessageStatus::Processing,
            "done" => MessageStatus::Done,
            "failed" => MessageStatus::Failed,
            "duplicate" => MessageStatus::Duplicate,
            "ignored" => MessageStatus::Ignored,
            _ => return None,
        })
    }

    /// Whether processing has finished with this message (for now).
    pub fn is_final(self) -> bool {
        !matches!(self, MessageStatus::Pending | MessageStatus::Processing)
    }
}

/// The result of `insert_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub id: i64,
    /// False when the same bytes were already in the inbox (that message's id is returned).
    pub is_new: bool,
}

/// A message claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub raw: Vec<u8>,
    pub source_name: Option<String>,
    pub attempts: i32,
}

/// What processing a message produced.
#[derive(Debug)]
pub enum Outcome {
    Reports(Vec<ExtractedReport>),
    Failed(String),
    Ignored(String),
}

/// What was written for one processed message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveSummary {
    pub status: Option<MessageStatus>,
    /// New reports by kind (`aggregate`, `tlsrpt`, `failure`).
    pub stored: BTreeMap<&'static str, u64>,
    /// Reports that were already stored from an earlier message.
    pub duplicates: u64,
    pub records: u64,
    /// False when the claim had been lost (lease expired and another worker
    /// took the message): nothing was written.
    pub written: bool,
}

/// Which stored messages to run through the parser again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    Failed,
    All,
    Ids(Vec<i64>),
}

/// One message's state, as shown to users and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub id: i64,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub attempts: i32,
    pub source_name: Option<String>,
}

/// Totals of the derived data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportCounts {
    pub aggregate_reports: i64,
    pub aggregate_records: i64,
    pub tls_reports: i64,
    pub failure_reports: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or asked to try again (busy, deadlock):
    /// nothing was written; retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a report cannot be stored: {0}")]
    Invalid(String),
    #[error("unsupported database URL {0:?}: use postgres://… or sqlite:…")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient(&error) {
            return StoreError::Unavailable(error);
        }
        StoreError::Query(error)
    }
}

/// Errors that say "try again later", not "this data is wrong": connection
/// trouble, and a database that is busy or resolved a conflict between
/// concurrent writers. A message hit by one is retried, never failed.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
            // PostgreSQL: serialization failure, deadlock, lock not available,
            // query canceled (statement timeout), admin shutdown, cannot connect now.
            let sqlite_busy = code
                .parse::<i64>()
                .is_ok_and(|code| matches!(code & 0xff, 5 | 6));
            sqlite_busy
                || matches!(
                    code.as_ref(),
                    "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P03"
                )
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The database behind dmarcd.
#[derive(Clone)]
pub enum Store {
    Postgres(postgres::PgStore),
    Sqlite(sqlite::SqliteStore),
}

/// Forwards a method call to whichever backend is in use.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Postgres(store) => store.$method($($arg),*).await,
            Store::Sqlite(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Connects to `url` (`postgres://…`), or, without one, to the SQLite
    /// file `dmarcd.sqlite` in `data_dir` (created if needed).
    pub async fn connect(url: Option<&str>, data_dir: &Path) -> StoreResult<Store> {
        match url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Store::Postgres(postgres::PgStore::connect(url).await?))
            }
            Some(url) if url.starts_with("sqlite:") => {
                Ok(Store::Sqlite(sqlite::SqliteStore::connect_url(url).await?))
            }
            Some(other) => Err(StoreError::UnsupportedUrl(other.to_string())),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                Ok(Store::Sqlite(
                    sqlite::SqliteStore::open(&data_dir.join("dmarcd.sqlite")).await?,
                ))
            }
        }
    }

    /// "postgres" or "sqlite".
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Applies pending migrations; returns the ones applied now.
    pub async fn migrate(&self) -> StoreResult<Vec<Migration>> {
        dispatch!(self.migrate())
    }

    /// Stores a raw message; returns once it is committed. The same bytes
    /// twice are stored once.
    pub async fn insert_message(&self, raw: &[u8], envelope: &Envelope) -> StoreResult<Accepted> {
        let mut accepted = self.insert_messages(&[(raw, envelope)]).await?;
        accepted
            .pop()
            .ok_or_else(|| StoreError::Invalid("the inbox returned no id".to_string()))
    }

    /// `insert_message` for several messages, committed together.
    pub async fn insert_messages(
        &self,
        messages: &[(&[u8], &Envelope)],
    ) -> StoreResult<Vec<Accepted>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.insert_messages(messages))
    }

    /// Claims up to `batch` pending messages (and any whose lease expired),
    /// oldest first, stopping before their total size passes `max_bytes`
    /// (but always at least one).
    pub async fn claim(
        &self,
        worker: &str,
        batch: u32,
        max_bytes: u64,
        lease: Duration,
    ) -> StoreResult<Vec<Claimed>> {
        dispatch!(self.claim(worker, batch, max_bytes, lease))
    }

    /// Writes what processing produced for a batch of messages, and their
    /// new statuses, in one transaction; each message is written whole or
    /// not at all, and only while `worker` still holds its claim.
    pub async fn save_outcomes(
        &self,
        worker: &str,
        items: &[(i64, &Outcome)],
    ) -> StoreResult<Vec<SaveSummary>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.save_outcomes(worker, items))
    }

    /// `save_outcomes` for one message.
    pub async fn save_outcome(
        &self,
        id: i64,
        worker: &str,
        outcome: &Outcome,
    ) -> StoreResult<SaveSummary> {
        let mut summaries = self.save_outcomes(worker, &[(id, outcome)]).await?;
        Ok(summaries.pop().unwrap_or_default())
    }

    /// Puts stored messages back in the queue, deleting what was derived from them.
    pub async fn requeue(&self, selection: &Requeue) -> StoreResult<u64> {
        dispatch!(self.requeue(selection))
    }

    pub async fn message(&self, id: i64) -> StoreResult<Option<MessageInfo>> {
        dispatch!(self.message(id))
    }

    /// Messages per status.
    pub async fn status_counts(&self) -> StoreResult<BTreeMap<MessageStatus, i64>> {
        dispatch!(self.status_counts())
    }

    pub async fn report_counts(&self) -> StoreResult<ReportCounts> {
        dispatch!(self.report_counts())
    }

    /// Aggregate reports per policy domain.
    pub async fn aggregate_reports_by_domain(&self) -> StoreResult<BTreeMap<String, i64>> {
        dispatch!(self.aggregate_reports_by_domain())
    }

    /// The monitored domains.
    pub async fn domains(&self) -> StoreResult<Vec<String>> {
        dispatch!(self.domains())
    }

    /// IPs whose country, ASN and name are still to be worked out, with
    /// the PTR name found so far.
    pub async fn sources_to_describe(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<(IpAddr, Option<String>)>> {
        dispatch!(self.sources_to_describe(limit))
    }

    /// Saves descriptions from the databases and map (not the PTR names).
    pub async fn save_descriptions(&self, infos: &[SourceInfo]) -> StoreResult<()> {
        if infos.is_empty() {
            return Ok(());
        }
        dispatch!(self.save_descriptions(infos))
    }

    /// Claims up to `limit` IPs due for a PTR lookup, for `lease`; returns
    /// them with the number of failed attempts so far.
    pub async fn claim_ptr_lookups(
        &self,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<(IpAddr, u32)>> {
        dispatch!(self.claim_ptr_lookups(limit, lease))
    }

    pub async fn save_ptr_results(&self, results: &[PtrResult]) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        dispatch!(self.save_ptr_results(results))
    }

    /// Marks every stored IP (adding any missing) to be described again,
    /// and the PTR names `dns` says to be looked up again. Returns the
    /// number of IPs.
    pub async fn refresh_sources(&self, dns: DnsRefresh) -> StoreResult<u64> {
        dispatch!(self.refresh_sources(dns))
    }

    /// Marks PTR answers past their lifetime to be looked up again.
    pub async fn renew_stale_ptrs(&self) -> StoreResult<u64> {
        dispatch!(self.renew_stale_ptrs())
    }

    /// What is stored about one sending IP.
    pub async fn source(&self, ip: IpAddr) -> StoreResult<Option<SourceRecord>> {
        dispatch!(self.source(ip))
    }

    pub async fn enrichment_counts(&self) -> StoreResult<EnrichmentCounts> {
        dispatch!(self.enrichment_counts())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self.ping())
    }

    /// Closes every connection; later calls fail as `Unavailable`.
    pub async fn close(&self) {
        dispatch!(self.close())
    }
}

/// The hex SHA-256 of a message, its identity in the inbox.
pub fn sha256(raw: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(raw).into()
}
