//! Saving what a worker made of a batch of messages: what is written, in
//! which order, and what each message's status becomes. The statements are
//! in `reports.rs` and `inbox.rs`.
//!
//! Order matters across concurrent saves (workers, and other dmarcd
//! processes on one PostgreSQL): every save takes row locks in one global
//! order so two saves can never wait for each other in a cycle: aggregate
//! reports sorted by their unique key, then the other reports, then the
//! monitored domains, sorted, in one statement. Rollups are not touched
//! here: the stored reports are queued for the rollup applier.

use std::collections::{BTreeSet, HashMap};

use super::db::Tx;
use super::reports;
use super::rows::AggregateRow;
use super::{Outcome, SaveSummary, StoreError, StoreResult};
use crate::inbox::MessageStatus;
use crate::report::{AggregateReport, Report};

/// The records of one newly stored aggregate report, to be written.
pub(super) struct NewRecords<'a> {
    pub report: i64,
    pub row: &'a AggregateRow,
    pub aggregate: &'a AggregateReport,
}

/// One aggregate report of the batch, with where it goes.
struct PendingAggregate<'a> {
    message: usize,
    message_id: i64,
    location: &'a str,
    report: &'a AggregateReport,
    row: AggregateRow,
}

impl PendingAggregate<'_> {
    /// The report's unique key in the database.
    fn key(&self) -> (&str, &str, &str, i64) {
        let meta = &self.report.metadata;
        (
            &meta.org_name,
            &meta.report_id,
            &self.report.policy_published.domain,
            self.row.begin.timestamp(),
        )
    }
}

/// The aggregate reports of one message whose records were written while
/// it was being parsed (`StreamedSave`), by location: their rows exist (or
/// were duplicates), and the outcome's reports hold only the records that
/// came after the last chunk.
#[derive(Debug, Default)]
pub(super) struct Streamed {
    pub reports: HashMap<String, StreamedReport>,
}

#[derive(Debug, Clone)]
pub(super) struct StreamedReport {
    /// What identifies the report (organization, report id, policy
    /// domain, begin), as read before its first records.
    pub key: (String, String, String, i64),
    /// The report's row; `None` when the same report was stored already.
    pub id: Option<i64>,
    /// Records written so far, and the messages they stand for.
    pub records: u64,
    pub messages: u64,
}

/// Writes a batch's outcomes; the caller commits. A message no longer
/// claimed by `worker` gets an unwritten summary. `streamed` describes the
/// first (only) message's reports written as it was parsed.
pub(super) async fn save_batch(
    transaction: &mut Tx,
    worker: &str,
    items: &[(i64, &Outcome)],
    streamed: Option<&Streamed>,
) -> StoreResult<Vec<SaveSummary>> {
    let streamed_report = |message: usize, location: &str| -> Option<StreamedReport> {
        (message == 0)
            .then_some(streamed)
            .flatten()
            .and_then(|streamed| streamed.reports.get(location).cloned())
    };
    let ids: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
    let held = reports::held(transaction, worker, &ids).await?;
    let mut summaries: Vec<SaveSummary> = items
        .iter()
        .map(|(id, _)| SaveSummary {
            written: held.contains(id),
            ..SaveSummary::default()
        })
        .collect();
    let mut aggregates = Vec::new();
    for (index, (id, outcome)) in items.iter().enumerate() {
        let Outcome::Reports(reports) = outcome else {
            continue;
        };
        if !summaries[index].written {
            continue;
        }
        for extracted in reports {
            if let Report::Aggregate(report) = &extracted.report {
                // The worker has failed messages whose dates cannot be
                // stored (extract::unstorable); one that gets here anyway
                // fails its batch, which is then saved message by message.
                let row = AggregateRow::new(report).map_err(|invalid| {
                    StoreError::Invalid(format!("{}: {invalid}", extracted.location))
                })?;
                aggregates.push(PendingAggregate {
                    message: index,
                    message_id: *id,
                    location: &extracted.location,
                    report,
                    row,
                });
            }
        }
    }

    let mut domains = BTreeSet::new();
    aggregates.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut inserted = Vec::new();
    let mut queued: Vec<(i64, i64)> = Vec::new();
    for pending in &aggregates {
        let summary = &mut summaries[pending.message];
        if let Some(before) = streamed_report(pending.message, pending.location) {
            let (org, id, domain, begin) = pending.key();
            if before.key != (org.to_string(), id.to_string(), domain.to_string(), begin) {
                return Err(StoreError::Invalid(format!(
                    "{}: the report's metadata or policy changed after its first records",
                    pending.location
                )));
            }
            let Some(report) = before.id else {
                summary.duplicates += 1;
                continue;
            };
            let records = before.records + pending.report.records.len() as u64;
            let messages = before.messages + pending.report.message_count();
            reports::complete_aggregate(
                transaction,
                report,
                pending.report,
                &pending.row,
                records,
                messages,
            )
            .await?;
            *summary.stored.entry("aggregate").or_default() += 1;
            summary.records += records;
            note_domain(&mut domains, &pending.report.policy_published.domain);
            queued.push((report, records as i64));
            inserted.push((report, pending));
            continue;
        }
        match reports::insert_aggregate(
            transaction,
            pending.message_id,
            pending.location,
            pending.report,
            &pending.row,
        )
        .await?
        {
            Some(report) => {
                *summary.stored.entry("aggregate").or_default() += 1;
                summary.records += pending.report.records.len() as u64;
                note_domain(&mut domains, &pending.report.policy_published.domain);
                queued.push((report, pending.report.records.len() as i64));
                inserted.push((report, pending));
            }
            None => summary.duplicates += 1,
        }
    }
    let records: Vec<NewRecords> = inserted
        .iter()
        .map(|(report, pending)| NewRecords {
            report: *report,
            row: &pending.row,
            aggregate: pending.report,
        })
        .collect();
    reports::insert_records(transaction, &records).await?;
    drop(records);
    if !queued.is_empty() {
        reports::queue_rollups(transaction, &queued).await?;
    }

    for (index, (id, outcome)) in items.iter().enumerate() {
        let Outcome::Reports(reports) = outcome else {
            continue;
        };
        if !summaries[index].written {
            continue;
        }
        for extracted in reports {
            let location = extracted.location.as_str();
            let new = match &extracted.report {
                Report::Aggregate(_) => continue,
                Report::Tlsrpt(report) => {
                    let new = reports::insert_tls(transaction, *id, location, report).await?;
                    if new {
                        let named = report
                            .policies
                            .iter()
                            .filter_map(|p| p.policy_domain.as_deref());
                        for domain in named {
                            note_domain(&mut domains, domain);
                        }
                    }
                    new
                }
                Report::Failure(report) => {
                    let new = reports::insert_failure(transaction, *id, location, report).await?;
                    if new {
                        for domain in &report.reported_domain {
                            note_domain(&mut domains, domain);
                        }
                    }
                    new
                }
            };
            let summary = &mut summaries[index];
            if new {
                *summary.stored.entry(extracted.report.kind()).or_default() += 1;
            } else {
                summary.duplicates += 1;
            }
        }
    }
    if !domains.is_empty() {
        reports::add_domains(transaction, &domains.into_iter().collect::<Vec<_>>()).await?;
    }
    // A redacted failure report keeps no copy of the mail it reports
    // (retention.redact_failure_reports): the raw message, which holds the
    // original's addresses and body, goes with this transaction, marked as
    // retention marks it (its download answers 410; it is not
    // reprocessed), and the subject kept from its header (which may name
    // an address) becomes the redacted one. The first copy, new or a
    // duplicate, alike.
    let mut redacted: Vec<(i64, Option<&str>)> = Vec::new();
    for (index, (id, outcome)) in items.iter().enumerate() {
        let Outcome::Reports(reports) = outcome else {
            continue;
        };
        let failure = reports
            .iter()
            .find_map(|extracted| match &extracted.report {
                Report::Failure(report) if report.redacted => Some(report),
                _ => None,
            });
        if let (true, Some(report)) = (summaries[index].written, failure) {
            redacted.push((*id, report.report_subject.as_deref()));
        }
    }
    if !redacted.is_empty() {
        let ids: Vec<i64> = redacted.iter().map(|(id, _)| *id).collect();
        super::retention::delete_raw(transaction, &ids, super::inbox::now()).await?;
        for (id, subject) in redacted {
            let update = transaction.statement(
                "UPDATE inbox_messages SET subject = $2 WHERE id = $1",
                vec![id.into(), subject.into()],
            );
            transaction.execute(&update).await?;
        }
    }

    let mut statuses = Vec::with_capacity(items.len());
    for (index, (id, outcome)) in items.iter().enumerate() {
        let summary = &mut summaries[index];
        if !summary.written {
            continue;
        }
        let (status, error) = match outcome {
            Outcome::Reports(_) if summary.stored.is_empty() && summary.duplicates > 0 => {
                (MessageStatus::Duplicate, None)
            }
            Outcome::Reports(_) => (MessageStatus::Done, None),
            Outcome::Failed(reason) => (MessageStatus::Failed, Some(reason.clone())),
            Outcome::Ignored(reason) => (MessageStatus::Ignored, Some(reason.clone())),
        };
        summary.status = Some(status);
        summary.reason = error.clone();
        statuses.push((*id, status, error));
    }
    super::inbox::set_statuses(transaction, &statuses).await?;
    Ok(summaries)
}

/// A domain named by a stored report becomes a monitored domain, if it is
/// one (`crate::domain`): a report is free text from anyone who can send
/// mail.
fn note_domain(domains: &mut BTreeSet<String>, name: &str) {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if crate::domain::is_domain_name(&name) {
        domains.insert(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_domain_names_become_monitored_domains() {
        let mut domains = BTreeSet::new();
        for name in [
            "Example.COM.",
            "xn--bcher-kva.example",
            "192.0.2.1",
            "<script>alert(1)</script>",
            "localhost",
            "a..b",
            "-bad.example",
            "with space.example",
            "",
        ] {
            note_domain(&mut domains, name);
        }
        assert_eq!(
            domains.into_iter().collect::<Vec<_>>(),
            ["example.com", "xn--bcher-kva.example"]
        );
    }
}
