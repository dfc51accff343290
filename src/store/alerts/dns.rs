//! The scheduled rules fed by the DNS checks (`store::posture`): a record
//! that changed (from the record events, past a cursor) and a record that
//! is broken (the errors of each domain's newest check, past a cursor;
//! resolved by the first check without them). MTA-STS and certificate
//! events plug in the same way: a table of facts with an id, a cursor.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    advance, cursor, raise, resolve, AlertRow, Context, EvaluationSummary, StoreError, StoreResult,
    Tx, ALERT_COLUMNS,
};
use crate::alerts::{Finding, RuleKind};
use crate::dns::{Finding as CheckFinding, RecordKind, Severity};

fn record_label(kind: &str) -> &'static str {
    RecordKind::ALL
        .into_iter()
        .find(|known| known.key() == kind)
        .map_or("DNS", RecordKind::label)
}

fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|value| format!("\"{value}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Record changes since the cursor: one alert per record.
pub(super) async fn changed(
    transaction: &mut Tx,
    context: &Context,
) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let after = cursor(transaction, "domain_record_events").await?;
    let backend = transaction.backend();
    let rows: Vec<(i64, String, String, String, String, String, String)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT id, domain, kind, name, record_type, {old} AS old_values, \
                 {new} AS new_values FROM domain_record_events WHERE id > $1 ORDER BY id",
                old = backend.json_text("old_values"),
                new = backend.json_text("new_values"),
            ),
            vec![after.into()],
        ))
        .await?;
    let Some(last) = rows.last().map(|row| row.0) else {
        return Ok(summary);
    };
    for (id, domain, kind, name, record_type, old, new) in &rows {
        let values = |text: &str| -> StoreResult<Vec<String>> {
            serde_json::from_str(text)
                .map_err(|error| StoreError::Corrupt(format!("record event {id}: {error}")))
        };
        let (old, new) = (values(old)?, values(new)?);
        let label = record_label(kind);
        let domain = domain.to_ascii_lowercase();
        let (what, detail) = match (old.is_empty(), new.is_empty()) {
            (true, _) => (
                "published",
                format!("{name} {record_type} is now {}.", quoted(&new)),
            ),
            (_, true) => (
                "removed",
                format!("{name} {record_type} was {}; it is gone.", quoted(&old)),
            ),
            _ => (
                "changed",
                format!(
                    "{name} {record_type} changed from {} to {}.",
                    quoted(&old),
                    quoted(&new)
                ),
            ),
        };
        for rule in context.rules_of(RuleKind::DnsChanged) {
            if !rule.applies_to(&domain) {
                continue;
            }
            let finding = Finding {
                domain: domain.clone(),
                subject: format!("{kind} {name} {record_type}"),
                title: format!("{label} record of {domain} {what}"),
                detail: detail.clone(),
                link: format!("/domains/{domain}"),
            };
            summary.add(raise(transaction, context, rule, &finding).await?);
        }
    }
    advance(transaction, "domain_record_events", last).await?;
    Ok(summary)
}

/// The errors of each domain's newest check since the cursor: one alert
/// per error, open while checks keep finding it.
pub(super) async fn broken(
    transaction: &mut Tx,
    context: &Context,
) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let after = cursor(transaction, "domain_checks").await?;
    let backend = transaction.backend();
    let newest: Vec<(i64, String, String)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT c.id, c.domain, {findings} AS findings FROM domain_checks c \
                 WHERE c.id IN (SELECT max(id) FROM domain_checks WHERE id > $1 GROUP BY domain) \
                 ORDER BY c.id",
                findings = backend.json_text("c.findings"),
            ),
            vec![after.into()],
        ))
        .await?;
    let Some(last) = newest.last().map(|row| row.0) else {
        return Ok(summary);
    };
    for (id, domain, findings) in &newest {
        let findings: Vec<CheckFinding> = serde_json::from_str(findings)
            .map_err(|error| StoreError::Corrupt(format!("domain check {id}: {error}")))?;
        let domain = domain.to_ascii_lowercase();
        let errors: BTreeMap<&str, &CheckFinding> = findings
            .iter()
            .filter(|finding| finding.severity == Severity::Error)
            .map(|finding| (finding.code.as_str(), finding))
            .collect();
        for rule in context.rules_of(RuleKind::DnsBroken) {
            if !rule.applies_to(&domain) {
                continue;
            }
            for (code, finding) in &errors {
                let alert = Finding {
                    domain: domain.clone(),
                    subject: code.to_string(),
                    title: format!("{} record of {domain} broken", finding.kind.label()),
                    detail: finding.message.clone(),
                    link: format!("/domains/{domain}"),
                };
                summary.add(raise(transaction, context, rule, &alert).await?);
            }
            // Errors the newest check no longer finds have been fixed.
            let open: Vec<AlertRow> = transaction
                .fetch_all(&transaction.statement(
                    &format!(
                        "SELECT {ALERT_COLUMNS} FROM alerts \
                         WHERE rule_id = $1 AND domain = $2 AND state = 'open'"
                    ),
                    vec![rule.id.into(), domain.as_str().into()],
                ))
                .await?;
            let present: BTreeSet<&str> = errors.keys().copied().collect();
            for row in open {
                let alert = row.decode()?;
                if !present.contains(alert.subject.as_str()) {
                    resolve(transaction, context, Some(rule), alert, None).await?;
                    summary.resolved += 1;
                }
            }
        }
    }
    advance(transaction, "domain_checks", last).await?;
    Ok(summary)
}
