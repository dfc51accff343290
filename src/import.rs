//! Bulk intake: messages from files go into the inbox while workers already
//! process what is stored, so an import costs about the slower of the two
//! rather than their sum. Used by `dmarcd import` and the storage benchmark.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::decode::Limits;
use crate::inbox::Envelope;
use crate::inbox::Inbox;
use crate::store::{Store, StoreError, StoreResult};
use crate::worker::{Processed, Worker, WorkerConfig};

/// Messages stored per transaction at most.
const ACCEPT_BATCH: usize = 64;

/// One message to import, with the name it is known by (a file path).
#[derive(Debug, Clone)]
pub struct ImportSource {
    pub name: String,
    pub raw: Vec<u8>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    /// Messages stored now.
    pub new_ids: Vec<i64>,
    /// Messages whose bytes were already in the inbox: (name, id).
    pub already: Vec<(String, i64)>,
    /// Every message processed while importing (new ones, and any other
    /// message that was waiting in the queue), by id.
    pub processed: Vec<Processed>,
}

/// Progress, for a bar or a log.
#[derive(Debug, Clone)]
pub enum ImportEvent {
    Stored { name: String },
    Processed { count: usize },
}

/// Stores every source in the inbox and processes the queue until both are
/// done. Sources come through a channel so that files are read while the
/// database works.
pub async fn run_import(
    store: Store,
    limits: Limits,
    config: WorkerConfig,
    worker_name: &str,
    mut sources: mpsc::Receiver<ImportSource>,
    on_event: Arc<dyn Fn(ImportEvent) + Send + Sync>,
) -> StoreResult<ImportOutcome> {
    let storing = Arc::new(AtomicBool::new(true));
    let base = Worker::new(store.clone(), limits, worker_name, config.clone());
    let mut workers = Vec::new();
    for index in 0..config.concurrency.max(1) {
        let worker = base.named(format!("{worker_name}:{index}"));
        let storing = Arc::clone(&storing);
        let on_event = Arc::clone(&on_event);
        workers.push(tokio::spawn(async move {
            drain(worker, storing, on_event).await
        }));
    }

    let inbox = Inbox::new(store);
    let mut outcome = ImportOutcome::default();
    let stored: StoreResult<()> = async {
        // Whatever has arrived is stored in one transaction (group commit):
        // one fsync per batch instead of one per file.
        while let Some(first) = sources.recv().await {
            let mut batch = vec![first];
            while batch.len() < ACCEPT_BATCH {
                match sources.try_recv() {
                    Ok(source) => batch.push(source),
                    Err(_) => break,
                }
            }
            let envelopes: Vec<Envelope> = batch
                .iter()
                .map(|s| Envelope::import(s.name.clone()))
                .collect();
            let messages: Vec<(&[u8], &Envelope)> = batch
                .iter()
                .zip(&envelopes)
                .map(|(s, e)| (s.raw.as_slice(), e))
                .collect();
            let accepted = patiently("storing messages", || inbox.accept_many(&messages)).await?;
            for (source, accepted) in batch.into_iter().zip(accepted) {
                if accepted.is_new {
                    outcome.new_ids.push(accepted.id);
                } else {
                    outcome.already.push((source.name.clone(), accepted.id));
                }
                on_event(ImportEvent::Stored { name: source.name });
            }
        }
        Ok(())
    }
    .await;
    storing.store(false, Ordering::SeqCst);

    for worker in workers {
        let processed = worker
            .await
            .map_err(|error| StoreError::Invalid(format!("a worker task failed: {error}")))??;
        outcome.processed.extend(processed);
    }
    stored?;
    outcome.processed.sort_by_key(|message| message.id);
    Ok(outcome)
}

/// Processes batches until the queue is empty and nothing more is coming.
async fn drain(
    worker: Worker,
    storing: Arc<AtomicBool>,
    on_event: Arc<dyn Fn(ImportEvent) + Send + Sync>,
) -> StoreResult<Vec<Processed>> {
    let mut all = Vec::new();
    loop {
        // Read the flag before claiming: if storing had already ended, an
        // empty claim means the queue is truly drained.
        let still_storing = storing.load(Ordering::SeqCst);
        let batch = patiently("processing messages", || worker.run_batch()).await?;
        if batch.is_empty() {
            if !still_storing {
                return Ok(all);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        on_event(ImportEvent::Processed { count: batch.len() });
        all.extend(batch);
    }
}

/// How long an import waits for a database that stays unreachable or keeps
/// asking to try again before it gives up.
const PATIENCE: Duration = Duration::from_secs(300);

/// Runs `operation` until it succeeds, pausing after each temporary
/// failure (a database restarting, a deadlock between writers, a busy
/// SQLite file): nothing was written by the failed try, and an import of a
/// mailbox backup should ride such moments out rather than stop half way.
/// Any other error, or a database unreachable for `PATIENCE`, ends it.
async fn patiently<T, F, Fut>(what: &str, mut operation: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match operation().await {
            Err(error) if error.is_temporary() && started.elapsed() < PATIENCE => {
                crate::metrics::count("dmarcd_store_retries_total", &[("operation", "import")], 1);
                if !logged {
                    tracing::warn!(%error, "{what}: the database failed for now; trying again");
                    logged = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Ok(value) => {
                if logged {
                    tracing::info!(
                        seconds = started.elapsed().as_secs(),
                        "{what}: the database answers again"
                    );
                }
                return Ok(value);
            }
            Err(error) => return Err(error),
        }
    }
}
