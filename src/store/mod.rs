//! Persistence: one interface, two backends. PostgreSQL is the production
//! store (several dmarcd processes may share it); SQLite, a single file, is
//! the zero-setup default.
//!
//! One typed path serves both (`db.rs`): SQL written once with `$N`
//! placeholders, rows decoded into `FromRow` structs, and the few things
//! the two dialects do differently said by `Backend`'s vocabulary or kept
//! in `postgres.rs` / `sqlite.rs`.

pub mod accounts;
pub mod alerts;
mod applier;
pub mod approvals;
pub mod audit;
pub mod certificates;
mod copy;
pub mod db;
pub mod delta;
pub mod derived;
pub mod digests;
pub mod groups;
pub mod hosted;
mod inbox;
mod mailboxes;
mod migrate;
pub mod outbox;
mod postgres;
pub mod posture;
mod raw_codec;
mod record_retention;
mod replicas;
mod reports;
mod requeue;
mod retention;
pub mod rollup;
mod rows;
mod save;
mod sources;
mod sqlite;
pub mod sso;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::extract::ExtractedReport;
use crate::inbox::{Envelope, MessageStatus};

pub use applier::{AppliedRollups, RollupLag};
/// The name `derived.rs` and `rollup.rs` know `Backend` by.
use db::Backend as Dialect;
pub use db::{Backend, Db, Sql};
pub use mailboxes::{MailboxProgress, MailboxState};
pub use migrate::Migration;
pub use outbox::{ClaimedOutboxItem, NewOutboxItem, OutboxEntry, OutboxResult};
pub use record_retention::{
    cutoff as record_cutoff, PrunedRecords, RecordRetention, PRUNED_DAY_ROLLUPS,
};
pub use replicas::{ReplicaSettings, ReplicaStatus};
pub use reports::KnownNames;
pub use retention::{Pruned, RawRetention};
pub use sources::{
    DnsRefresh, EnrichmentCounts, PtrResult, SourceInfo, SourceRecord, StoredDnsState,
};

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
    /// Why the message failed or was ignored, as stored with it.
    pub reason: Option<String>,
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
    /// When retention deleted its raw bytes.
    pub raw_pruned_at: Option<chrono::DateTime<chrono::Utc>>,
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
    /// The database cannot be reached: nothing was written; retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database is up but asked to try again: a deadlock or
    /// serialization conflict between concurrent writers, a lock or a
    /// statement that timed out, a busy SQLite file. Nothing was written.
    #[error("the database asked to try again: {0}")]
    Busy(#[source] sqlx::Error),
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
    /// A stored JSON value that does not decode (written by another version?).
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether trying again later may succeed: the same data, another
    /// moment. A message hit by such an error is retried, never failed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Busy(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            ErrorClass::Unreachable => StoreError::Unavailable(error),
            ErrorClass::TryAgain => StoreError::Busy(error),
            ErrorClass::Other => StoreError::Query(error),
        }
    }
}

enum ErrorClass {
    /// The connection or the server is gone.
    Unreachable,
    /// The server asks to try again.
    TryAgain,
    /// Anything else, including data the database refuses (SQLSTATE
    /// classes 22 data exception, 23 integrity, 54 program limit): a
    /// problem of what was written, not of when.
    Other,
}

fn classify(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ErrorClass::Unreachable,
        sqlx::Error::Database(database) => {
            // A FATAL error ends the session: refused at connection
            // (a database not accepting connections, too many clients,
            // a server starting or stopping) or cut off.
            if database
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some_and(|pg| {
                    matches!(
                        pg.severity(),
                        sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                    )
                })
            {
                return ErrorClass::Unreachable;
            }
            let code = database.code().unwrap_or_default();
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
            if code
                .parse::<i64>()
                .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
            {
                return ErrorClass::TryAgain;
            }
            match code.as_ref() {
                // Serialization failure, deadlock, lock not available,
                // query canceled (statement timeout).
                "40001" | "40P01" | "55P03" | "57014" => ErrorClass::TryAgain,
                // Class 53, insufficient resources (disk full, out of
                // memory, too many connections).
                code if code.starts_with("53") => ErrorClass::TryAgain,
                // Admin shutdown, crash shutdown, cannot connect now, and
                // class 08, connection exceptions.
                "57P01" | "57P02" | "57P03" => ErrorClass::Unreachable,
                code if code.starts_with("08") => ErrorClass::Unreachable,
                _ => ErrorClass::Other,
            }
        }
        _ => ErrorClass::Other,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Tries of a save transaction that the database asks to try again.
const SAVE_TRIES: u32 = 8;
/// Records counted per applier pass (one transaction): big enough that a
/// pass's fixed cost is small, small enough that it holds locks briefly.
pub const APPLIER_PASS_RECORDS: u64 = 200_000;

/// The database behind dmarcd: PostgreSQL or SQLite, behind one typed
/// path (`db.rs`). Statements are written once for both; the modules named
/// after what they keep (`inbox`, `reports`, `requeue`, `sources`,
/// `applier`, `accounts`) hold them, and `postgres.rs` / `sqlite.rs` only
/// what truly differs.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Streaming standbys for the read side, when configured.
    replicas: Option<Arc<replicas::Replicas>>,
    /// The dashboard's address for links in the notifications that alerts
    /// queue (`outbox.dashboard_url`; empty: none).
    dashboard_url: std::sync::Arc<str>,
    /// The source-class thresholds new-source alert rules classify with.
    senders: Arc<crate::senders::SendersConfig>,
}

impl Store {
    /// Connects to `url` (`postgres://…`), or, without one, to the SQLite
    /// file `dmarcd.sqlite` in `data_dir` (created if needed).
    pub async fn connect(url: Option<&str>, data_dir: &Path) -> StoreResult<Store> {
        let db = match url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                postgres::connect(url).await?
            }
            Some(url) if url.starts_with("sqlite:") => sqlite::connect_url(url).await?,
            Some(other) => return Err(StoreError::UnsupportedUrl(other.to_string())),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                sqlite::open(&data_dir.join("dmarcd.sqlite")).await?
            }
        };
        Ok(Store {
            db,
            replicas: None,
            dashboard_url: std::sync::Arc::from(""),
            senders: Arc::new(crate::senders::SendersConfig::default()),
        })
    }

    /// The store with `url` as the dashboard's address in notifications.
    pub fn with_dashboard_url(mut self, url: &str) -> Store {
        self.dashboard_url = std::sync::Arc::from(url);
        self
    }

    /// The store with `config` as the source-class thresholds alerts use.
    pub fn with_senders_config(mut self, config: crate::senders::SendersConfig) -> Store {
        self.senders = Arc::new(config);
        self
    }

    pub fn dashboard_url(&self) -> &str {
        &self.dashboard_url
    }

    /// "postgres" or "sqlite".
    pub fn backend(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }

    /// The typed path to the primary database: every write, and reads
    /// that must see a write just made.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Where the read side (`query/`: dashboard pages, API, exports)
    /// reads: a read replica known to trail the primary by at most
    /// `replica_max_lag`, else the primary (`replicas.rs`).
    pub fn reads(&self) -> &Db {
        self.replicas
            .as_ref()
            .and_then(|replicas| replicas.pick())
            .unwrap_or(&self.db)
    }

    /// Sends reads to these PostgreSQL standbys while they keep up, checked
    /// every `settings.check_interval` by a task that lives as long as
    /// the store. The standbys are connected on first use: one that is
    /// down leaves reads on the primary, not dmarcd stopped.
    pub fn with_replicas(mut self, settings: &ReplicaSettings) -> StoreResult<Store> {
        if settings.urls.is_empty() {
            return Ok(self);
        }
        if self.db.backend() != Backend::Postgres {
            return Err(StoreError::Invalid(
                "database.replica_urls needs a PostgreSQL primary (database.url)".to_string(),
            ));
        }
        let replicas = Arc::new(replicas::Replicas::connect(settings)?);
        tokio::spawn(replicas::Replicas::watch(
            Arc::downgrade(&replicas),
            self.db.clone(),
            settings.check_interval,
        ));
        self.replicas = Some(replicas);
        Ok(self)
    }

    /// Each read replica's state (empty without replicas).
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .as_ref()
            .map(|replicas| replicas.status())
            .unwrap_or_default()
    }

    /// Applies pending migrations; returns the ones applied now.
    pub async fn migrate(&self) -> StoreResult<Vec<Migration>> {
        migrate::run(&self.db).await
    }

    /// Whether the database answers and every migration this build knows
    /// has been applied.
    pub async fn schema_is_current(&self) -> StoreResult<bool> {
        migrate::is_current(&self.db).await
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
        inbox::insert_messages(&self.db, messages).await
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
        inbox::claim(&self.db, worker, batch, max_bytes, lease).await
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
        match self.save_batch_retrying(worker, items).await {
            Err(error) if !error.is_temporary() => {
                tracing::warn!(%error, messages = items.len(), "a batch was refused; saving its messages one by one");
                let mut summaries = Vec::with_capacity(items.len());
                for item in items {
                    let summary = match self
                        .save_batch_retrying(worker, std::slice::from_ref(item))
                        .await
                    {
                        Ok(mut one) => one.pop().unwrap_or_default(),
                        Err(error) if error.is_temporary() => return Err(error),
                        // Refused alone: kept as failed with the database's
                        // reason, so it never blocks the queue.
                        Err(error) => {
                            let failed = Outcome::Failed(format!(
                                "the database refused this message's reports: {error}"
                            ));
                            self.save_batch_retrying(worker, &[(item.0, &failed)])
                                .await?
                                .pop()
                                .unwrap_or_default()
                        }
                    };
                    summaries.push(summary);
                }
                Ok(summaries)
            }
            other => other,
        }
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

    /// One save transaction, tried again after a pause when the database
    /// asks to (a deadlock between writers, a busy file): nothing was
    /// written, so trying again is safe.
    async fn save_batch_retrying(
        &self,
        worker: &str,
        items: &[(i64, &Outcome)],
    ) -> StoreResult<Vec<SaveSummary>> {
        let mut pause = Duration::from_millis(20);
        let mut tries = 1;
        loop {
            let result = async {
                let mut transaction = self.db.begin_derived().await?;
                let summaries = save::save_batch(&mut transaction, worker, items, None).await?;
                transaction.commit().await?;
                Ok(summaries)
            }
            .await;
            match result {
                Err(StoreError::Busy(error)) if tries < SAVE_TRIES => {
                    tracing::warn!(%error, tries, "saving a batch: the database asked to try again");
                    crate::metrics::count(
                        "dmarcd_store_retries_total",
                        &[("operation", "save")],
                        1,
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 3).min(Duration::from_secs(2));
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Begins saving one claimed message whose aggregate records are written
    /// chunk by chunk while it is parsed, so that a report of millions of
    /// records never sits in memory whole. `None` when `worker` no longer
    /// holds the claim. Dropping the save without `finish` writes nothing.
    pub async fn begin_streamed_save(
        &self,
        worker: &str,
        message_id: i64,
    ) -> StoreResult<Option<StreamedSave>> {
        let mut transaction = self.db.begin_derived().await?;
        if reports::held(&mut transaction, worker, &[message_id])
            .await?
            .is_empty()
        {
            return Ok(None);
        }
        Ok(Some(StreamedSave {
            transaction,
            worker: worker.to_string(),
            message_id,
            streamed: save::Streamed::default(),
        }))
    }

    /// One pass of the rollup applier: counts up to about `max_records`
    /// queued records in every rollup. `None` when another process is
    /// applying (PostgreSQL: one applier at a time per database).
    /// Alerts of the batch rules are evaluated on each pass's deltas.
    pub async fn apply_rollups(&self, max_records: u64) -> StoreResult<Option<AppliedRollups>> {
        self.apply_rollups_at(max_records, chrono::Utc::now()).await
    }

    /// `apply_rollups` with alerts evaluated at `now` (a test clock).
    pub async fn apply_rollups_at(
        &self,
        max_records: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<AppliedRollups>> {
        let mut transaction = self.db.begin_derived().await?;
        let alerts = applier::AlertClock {
            now,
            dashboard_url: &self.dashboard_url,
            senders: &self.senders,
        };
        let applied = applier::apply(&mut transaction, max_records, Some(alerts)).await?;
        transaction.commit().await?;
        Ok(applied)
    }

    /// Applies until nothing is queued (waiting for another process's
    /// applier to finish its pass, if need be): afterwards the rollups
    /// count every stored record.
    pub async fn apply_rollups_until_idle(&self) -> StoreResult<AppliedRollups> {
        self.apply_rollups_until_idle_at(chrono::Utc::now()).await
    }

    /// `apply_rollups_until_idle` with alerts evaluated at `now`.
    pub async fn apply_rollups_until_idle_at(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<AppliedRollups> {
        let mut total = AppliedRollups::default();
        loop {
            match self.apply_rollups_at(APPLIER_PASS_RECORDS, now).await? {
                Some(pass) if pass.reports == 0 => return Ok(total),
                Some(pass) => total.add(pass),
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// How far the rollups are behind the stored records.
    pub async fn rollup_lag(&self) -> StoreResult<RollupLag> {
        applier::lag(&self.db).await
    }

    /// Gives back messages `worker` claimed but could not finish because the
    /// database failed for a while: they are pending again at once (not
    /// after the lease), and the claim does not count as an attempt.
    pub async fn release_claims(&self, worker: &str, ids: &[i64]) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        inbox::release_claims(&self.db, worker, ids).await
    }

    /// Puts stored messages back in the queue, deleting what was derived from them.
    pub async fn requeue(&self, selection: &Requeue) -> StoreResult<u64> {
        requeue::requeue(&self.db, selection).await
    }

    pub async fn message(&self, id: i64) -> StoreResult<Option<MessageInfo>> {
        inbox::message(&self.db, id).await
    }

    /// The raw bytes of an inbox message, reassembled from its chunks.
    pub async fn message_raw(&self, id: i64) -> StoreResult<Option<Vec<u8>>> {
        inbox::message_raw(&self.db, id).await
    }

    /// Deletes the raw bytes of processed messages past `policy` at `now`,
    /// batch by batch (see `retention`); returns what went.
    pub async fn prune_raw(
        &self,
        policy: &RawRetention,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Pruned> {
        let mut total = Pruned::default();
        loop {
            let batch = retention::prune_batch(&self.db, policy, now).await?;
            total.messages += batch.messages;
            total.bytes += batch.bytes;
            if batch.messages < u64::from(policy.batch.max(1)) {
                return Ok(total);
            }
        }
    }

    /// What `prune_raw` would delete at `now`.
    pub async fn prunable_raw(
        &self,
        policy: &RawRetention,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Pruned> {
        retention::count_prunable(&self.db, policy, now).await
    }

    /// Deletes the aggregate records and day rollups past `policy` at
    /// `now`, batch by batch (see `record_retention`: the rollups keep
    /// every count); returns what went.
    pub async fn prune_records(
        &self,
        policy: &RecordRetention,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<PrunedRecords> {
        let mut total = PrunedRecords::default();
        loop {
            let batch = record_retention::prune_records_batch(&self.db, policy, now).await?;
            if batch.reports == 0 {
                break;
            }
            total.reports += batch.reports;
            total.records += batch.records;
        }
        for table in PRUNED_DAY_ROLLUPS {
            loop {
                let rows =
                    record_retention::prune_day_rollup_batch(&self.db, table, policy, now).await?;
                total.day_rollup_rows += rows;
                if rows < u64::from(policy.batch.max(1)) {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// What `prune_records` would delete at `now`.
    pub async fn prunable_records(
        &self,
        policy: &RecordRetention,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<PrunedRecords> {
        record_retention::count_prunable(&self.db, policy, now).await
    }

    /// Messages per status.
    pub async fn status_counts(&self) -> StoreResult<BTreeMap<MessageStatus, i64>> {
        inbox::status_counts(&self.db).await
    }

    pub async fn report_counts(&self) -> StoreResult<ReportCounts> {
        reports::counts(&self.db).await
    }

    /// Aggregate reports per policy domain.
    pub async fn aggregate_reports_by_domain(&self) -> StoreResult<BTreeMap<String, i64>> {
        reports::aggregate_reports_by_domain(&self.db).await
    }

    /// Reporters and source names seen, at most `limit` of each.
    pub async fn known_names(
        &self,
        scope: &crate::scope::Scope,
        limit: i64,
    ) -> StoreResult<reports::KnownNames> {
        reports::known_names(&self.db, scope, limit).await
    }

    /// The monitored domains `scope` sees.
    pub async fn domains(&self, scope: &crate::scope::Scope) -> StoreResult<Vec<String>> {
        reports::domains(&self.db, scope).await
    }

    /// IPs whose country, ASN and name are still to be worked out, with
    /// the PTR name found so far.
    pub async fn sources_to_describe(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<(IpAddr, Option<String>)>> {
        sources::to_describe(&self.db, limit).await
    }

    /// Saves descriptions from the databases and map (not the PTR names).
    pub async fn save_descriptions(&self, infos: &[SourceInfo]) -> StoreResult<()> {
        if infos.is_empty() {
            return Ok(());
        }
        sources::save_descriptions(&self.db, infos).await
    }

    /// Claims up to `limit` IPs due for a PTR lookup, for `lease`; returns
    /// them with the number of failed attempts so far.
    pub async fn claim_ptr_lookups(
        &self,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<(IpAddr, u32)>> {
        sources::claim_ptr_lookups(&self.db, limit, lease).await
    }

    pub async fn save_ptr_results(&self, results: &[PtrResult]) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        sources::save_ptr_results(&self.db, results).await
    }

    /// Marks every stored IP (adding any missing) to be described again,
    /// and the PTR names `dns` says to be looked up again. Returns the
    /// number of IPs.
    pub async fn refresh_sources(&self, dns: DnsRefresh) -> StoreResult<u64> {
        sources::refresh(&self.db, dns).await
    }

    /// Marks PTR answers past their lifetime to be looked up again.
    pub async fn renew_stale_ptrs(&self) -> StoreResult<u64> {
        sources::renew_stale_ptrs(&self.db).await
    }

    /// What is stored about one sending IP.
    pub async fn source(&self, ip: IpAddr) -> StoreResult<Option<SourceRecord>> {
        sources::source(&self.db, ip).await
    }

    pub async fn enrichment_counts(&self) -> StoreResult<EnrichmentCounts> {
        sources::counts(&self.db).await
    }

    /// Every mailbox's pull state, by name.
    pub async fn mailbox_states(&self) -> StoreResult<Vec<MailboxState>> {
        mailboxes::all(&self.db).await
    }

    pub async fn mailbox_state(&self, name: &str) -> StoreResult<Option<MailboxState>> {
        mailboxes::one(&self.db, name).await
    }

    /// Takes or renews the lease on mailbox `name` for `owner` (one puller
    /// per mailbox across every node sharing the database): true when
    /// `owner` holds it for `lease` from now.
    pub async fn take_mailbox_lease(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<bool> {
        mailboxes::take_lease(&self.db, name, owner, lease).await
    }

    pub async fn release_mailbox_lease(&self, name: &str, owner: &str) -> StoreResult<()> {
        mailboxes::release_lease(&self.db, name, owner).await
    }

    /// Records a batch of a pull and renews the lease for `lease`; false
    /// when `owner` lost the lease.
    pub async fn mailbox_progress(
        &self,
        name: &str,
        owner: &str,
        progress: &MailboxProgress,
        lease: Duration,
    ) -> StoreResult<bool> {
        mailboxes::progress(&self.db, name, owner, progress, lease).await
    }

    /// A pull went through; `waiting` says how the puller now waits ("idle", "poll").
    pub async fn mailbox_succeeded(&self, name: &str, waiting: Option<&str>) -> StoreResult<()> {
        mailboxes::succeeded(&self.db, name, waiting).await
    }

    /// A pull failed (`kind` a fixed word, `message` plain words); returns
    /// the failures in a row.
    pub async fn mailbox_failed(&self, name: &str, kind: &str, message: &str) -> StoreResult<i32> {
        mailboxes::failed(&self.db, name, kind, message).await
    }

    /// Queues messages to send, committed (durably) before this returns;
    /// returns the ids stored (a repeated dedup key stores nothing).
    pub async fn enqueue_outbox(
        &self,
        items: &[NewOutboxItem],
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<i64>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        outbox::enqueue_now(&self.db, items, seconds(now)).await
    }

    /// Claims up to `limit` outbox rows due at `now` for `owner`, for `lease`.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<ClaimedOutboxItem>> {
        outbox::claim(&self.db, owner, limit, lease, seconds(now)).await
    }

    /// Gives back claimed outbox rows `owner` did not finish sending (a
    /// stopping node): pending again at once; returns how many.
    pub async fn release_outbox(&self, ids: &[i64], owner: &str) -> StoreResult<u64> {
        outbox::release(&self.db, ids, owner).await
    }

    /// Records how sending a claimed outbox row ended; false when `owner`
    /// had lost the claim.
    pub async fn finish_outbox(
        &self,
        id: i64,
        owner: &str,
        result: &OutboxResult,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool> {
        let result = match result {
            OutboxResult::Retry {
                next_attempt_at,
                error,
            } => OutboxResult::Retry {
                next_attempt_at: seconds(*next_attempt_at),
                error: error.clone(),
            },
            other => other.clone(),
        };
        outbox::finish(&self.db, id, owner, &result, seconds(now)).await
    }

    /// The newest `limit` outbox rows, newest first.
    pub async fn outbox_entries(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        outbox::entries(&self.db, limit).await
    }

    /// The scheduled alert evaluation at `now`: failure and TLS reports
    /// since the last pass, silence, causes gone. `None` when another node
    /// is evaluating.
    pub async fn evaluate_alerts(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<alerts::EvaluationSummary>> {
        alerts::scheduled(&self.db, now, &self.dashboard_url).await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db
            .execute(&self.db.statement("SELECT 1", Vec::new()))
            .await?;
        Ok(())
    }

    /// Closes every connection; later calls fail as `Unavailable`.
    pub async fn close(&self) {
        self.db.close().await
    }
}

/// A message being saved while it is parsed (`Store::begin_streamed_save`):
/// one transaction, committed by `finish`.
pub struct StreamedSave {
    transaction: db::Tx,
    worker: String,
    message_id: i64,
    streamed: save::Streamed,
}

impl StreamedSave {
    /// Writes a run of the records of the aggregate report at `location`:
    /// `chunk` holds the report as parsed so far (its header) and this
    /// run's records. The first run creates the report's row; a report
    /// stored before is a duplicate, and its records are passed over.
    pub async fn write_records(
        &mut self,
        location: &str,
        chunk: &crate::report::AggregateReport,
    ) -> StoreResult<()> {
        let row = rows::AggregateRow::new(chunk)
            .map_err(|invalid| StoreError::Invalid(format!("{location}: {invalid}")))?;
        let mut streamed = match self.streamed.reports.get(location) {
            Some(streamed) => streamed.clone(),
            None => {
                // Its counts are this run's until `finish` sets the totals.
                let id = reports::insert_aggregate(
                    &mut self.transaction,
                    self.message_id,
                    location,
                    chunk,
                    &row,
                )
                .await?;
                let meta = &chunk.metadata;
                save::StreamedReport {
                    key: (
                        meta.org_name.clone(),
                        meta.report_id.clone(),
                        chunk.policy_published.domain.clone(),
                        row.begin.timestamp(),
                    ),
                    id,
                    records: 0,
                    messages: 0,
                }
            }
        };
        if let Some(report) = streamed.id {
            let new = save::NewRecords {
                report,
                row: &row,
                aggregate: chunk,
            };
            reports::insert_records(&mut self.transaction, std::slice::from_ref(&new)).await?;
            streamed.records += chunk.records.len() as u64;
            streamed.messages += chunk.message_count();
        }
        self.streamed.reports.insert(location.to_string(), streamed);
        Ok(())
    }

    /// Saves the message's outcome (the rest of its reports, its status)
    /// with what was written so far, and commits.
    pub async fn finish(mut self, outcome: &Outcome) -> StoreResult<SaveSummary> {
        let summaries = save::save_batch(
            &mut self.transaction,
            &self.worker,
            &[(self.message_id, outcome)],
            Some(&self.streamed),
        )
        .await?;
        self.transaction.commit().await?;
        Ok(summaries.into_iter().next().unwrap_or_default())
    }
}

/// A time to whole seconds: SQLite keeps times as text and compares them
/// as text, which only orders them rightly in one fixed form.
fn seconds(time: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    time.trunc_subsecs(0)
}

/// The hex SHA-256 of a message, its identity in the inbox.
pub fn sha256(raw: &[u8]) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, raw).as_ref());
    digest
}
