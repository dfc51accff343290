//! A large message is saved while it is parsed: its aggregate records go to
//! the database in runs as the parser reads them, in one transaction that
//! commits once the whole message has parsed (or rolls back if it does
//! not). Memory stays flat however many records a report holds (1.5
//! million records: see benches/store.rs), and on a multi-core machine the
//! database writes one run while the parser reads the next.

use std::sync::Arc;

use super::{classify, Processed, Worker};
use crate::extract::extract_reports_streaming;
use crate::report::AggregateReport;
use crate::store::{Claimed, Outcome, StoreError, StoreResult};

impl Worker {
    /// Parses and saves one claimed message, its records in runs.
    pub(super) async fn run_streamed(&self, message: Claimed) -> StoreResult<Processed> {
        let id = message.id;
        let source_name = message.source_name.clone();
        let unsaved = |summary| Processed {
            id,
            source_name: source_name.clone(),
            summary,
            reason: None,
        };
        let Some(mut save) = self.store.begin_streamed_save(self.name(), id).await? else {
            tracing::warn!(id, worker = %self.name(), "lost the claim on a message; another worker has it");
            return Ok(unsaved(Default::default()));
        };
        // One run in flight: the parser waits while the database writes.
        let (runs, mut received) = tokio::sync::mpsc::channel::<(String, AggregateReport)>(1);
        let limits = Arc::clone(&self.limits);
        let run_records = self.config.stream_run_records.max(1);
        let name = source_name
            .clone()
            .unwrap_or_else(|| format!("message {id}"));
        let redact = self.config.redact_failure_reports;
        let parsing = tokio::task::spawn_blocking(move || {
            let mut hand_over = |location: &str, run: AggregateReport| {
                runs.blocking_send((location.to_string(), run))
                    .map_err(|_| "the database stopped taking this report's records".to_string())
            };
            let outcome = classify(extract_reports_streaming(
                &mut &message.raw[..],
                &name,
                &limits,
                run_records,
                &mut hand_over,
            ));
            super::redacted(outcome, redact)
        });
        let mut refused: Option<StoreError> = None;
        while let Some((location, run)) = received.recv().await {
            if let Err(error) = save.write_records(&location, &run).await {
                refused = Some(error);
                break;
            }
        }
        // A parser still running finds its next run refused, and stops.
        drop(received);
        let outcome = parsing.await.unwrap_or_else(|panic| {
            Outcome::Failed(format!("internal error while parsing: {panic}"))
        });
        let finished = match refused {
            Some(error) => Err(error),
            None if matches!(outcome, Outcome::Reports(_)) => save.finish(&outcome).await,
            // Not a report, or unreadable: nothing of it is kept but the
            // reason (the transaction rolls back as it is dropped).
            None => {
                drop(save);
                self.store.save_outcome(id, self.name(), &outcome).await
            }
        };
        let summary = match finished {
            Ok(summary) => summary,
            Err(error) if error.is_temporary() => {
                // Nothing was saved: back to the queue once the database answers.
                self.lock_unreleased().push(id);
                let _ = self.release_unsaved().await;
                return Err(error);
            }
            // Refused by the database: kept as failed with the reason.
            Err(error) => {
                let failed = Outcome::Failed(format!(
                    "the database refused this message's reports: {error}"
                ));
                self.store.save_outcome(id, self.name(), &failed).await?
            }
        };
        Ok(Processed {
            reason: summary.reason.clone(),
            summary,
            id,
            source_name,
        })
    }
}
