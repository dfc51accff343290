//! Domain posture as stored: every check (what it found, the records it
//! saw), record changes as events, when each domain is checked next, and
//! the DKIM selectors added by hand.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::db::{json, Backend, Db};
use super::{StoreError, StoreResult};
use crate::dns::{Finding, Grade, Observation, PostureReport};

/// A stored check, decoded.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredCheck {
    pub id: i64,
    pub domain: String,
    #[schema(value_type = String, format = DateTime)]
    pub checked_at: DateTime<Utc>,
    pub grades: Vec<Grade>,
    pub findings: Vec<Finding>,
    pub observations: Vec<Observation>,
    /// The SPF tree as the check expanded it (JSON, as `PostureReport.spf`);
    /// null when the domain has no SPF record to expand.
    #[schema(value_type = Option<Object>)]
    pub spf: Option<serde_json::Value>,
}

#[derive(sqlx::FromRow)]
struct CheckRow {
    id: i64,
    domain: String,
    checked_at: DateTime<Utc>,
    grades: String,
    findings: String,
    observations: String,
    spf: Option<String>,
}

impl CheckRow {
    fn decode(self) -> StoreResult<StoredCheck> {
        let bad = |what: &str, error: serde_json::Error| {
            StoreError::Corrupt(format!(
                "domain check {} has unreadable {what}: {error}",
                self.id
            ))
        };
        Ok(StoredCheck {
            id: self.id,
            checked_at: self.checked_at,
            grades: serde_json::from_str(&self.grades).map_err(|e| bad("grades", e))?,
            findings: serde_json::from_str(&self.findings).map_err(|e| bad("findings", e))?,
            observations: serde_json::from_str(&self.observations)
                .map_err(|e| bad("observations", e))?,
            spf: self
                .spf
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| bad("spf", e))?,
            domain: self.domain,
        })
    }
}

/// A record that changed between two checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecordEvent {
    pub domain: String,
    pub kind: String,
    pub name: String,
    pub record_type: String,
    /// The values before (empty: there was no such record).
    pub old_values: Vec<String>,
    /// The values after (empty: the record is gone).
    pub new_values: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub changed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    domain: String,
    kind: String,
    name: String,
    record_type: String,
    old_values: String,
    new_values: String,
    changed_at: DateTime<Utc>,
}

fn select_checks(backend: Backend) -> String {
    format!(
        "SELECT id, domain, checked_at, {grades} AS grades, {findings} AS findings, \
         {observations} AS observations, {spf} AS spf FROM domain_checks",
        grades = backend.json_text("grades"),
        findings = backend.json_text("findings"),
        observations = backend.json_text("observations"),
        spf = backend.json_text("spf"),
    )
}

/// Stores a check and the record changes since the domain's previous one
/// (returned). Only names both checks could look up are compared: a
/// lookup that failed is no evidence that a record went away.
pub async fn save_check(db: &Db, report: &PostureReport) -> StoreResult<Vec<RecordEvent>> {
    let backend = db.backend();
    let mut tx = db.begin_derived().await?;
    let previous: Option<CheckRow> = tx
        .fetch_optional(&tx.statement(
            &format!(
                "{} WHERE domain = $1 ORDER BY id DESC LIMIT 1",
                select_checks(backend)
            ),
            vec![report.domain.as_str().into()],
        ))
        .await?;
    let events = match previous {
        Some(row) => changes(&row.decode()?.observations, report),
        None => Vec::new(),
    };
    let insert = format!(
        "INSERT INTO domain_checks (domain, checked_at, grades, findings, observations, spf) \
         VALUES ($1, $2, {}, {}, {}, {})",
        backend.jsonb("$3"),
        backend.jsonb("$4"),
        backend.jsonb("$5"),
        backend.jsonb("$6"),
    );
    let spf = match &report.spf {
        Some(tree) => json(tree),
        None => super::db::Value::Text(None),
    };
    tx.execute(&tx.statement(
        &insert,
        vec![
            report.domain.as_str().into(),
            report.checked_at.into(),
            json(&report.grades),
            json(&report.findings),
            json(&report.observations),
            spf,
        ],
    ))
    .await?;
    let insert_event = format!(
        "INSERT INTO domain_record_events \
         (domain, kind, name, record_type, old_values, new_values, changed_at) \
         VALUES ($1, $2, $3, $4, {}, {}, $7)",
        backend.jsonb("$5"),
        backend.jsonb("$6"),
    );
    for event in &events {
        tx.execute(&tx.statement(
            &insert_event,
            vec![
                event.domain.as_str().into(),
                event.kind.as_str().into(),
                event.name.as_str().into(),
                event.record_type.as_str().into(),
                json(&event.old_values),
                json(&event.new_values),
                event.changed_at.into(),
            ],
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(events)
}

/// The observations of `report` that differ from `before`'s at the same
/// (kind, name, type).
fn changes(before: &[Observation], report: &PostureReport) -> Vec<RecordEvent> {
    let key = |o: &Observation| (o.kind, o.name.clone(), o.record_type.clone());
    let before: BTreeMap<_, _> = before.iter().map(|o| (key(o), &o.values)).collect();
    report
        .observations
        .iter()
        .filter_map(|now| {
            let old = before.get(&key(now))?;
            (**old != now.values).then(|| RecordEvent {
                domain: report.domain.clone(),
                kind: now.kind.key().to_string(),
                name: now.name.clone(),
                record_type: now.record_type.clone(),
                old_values: (*old).clone(),
                new_values: now.values.clone(),
                changed_at: report.checked_at,
            })
        })
        .collect()
}

/// The newest checks of `domain`, newest first.
pub async fn checks_of(db: &Db, domain: &str, limit: u32) -> StoreResult<Vec<StoredCheck>> {
    let rows: Vec<CheckRow> = db
        .fetch_all(&db.statement(
            &format!(
                "{} WHERE domain = $1 ORDER BY id DESC LIMIT $2",
                select_checks(db.backend())
            ),
            vec![domain.into(), i64::from(limit).into()],
        ))
        .await?;
    rows.into_iter().map(CheckRow::decode).collect()
}

/// The newest record changes of `domain`, newest first.
pub async fn events_of(db: &Db, domain: &str, limit: u32) -> StoreResult<Vec<RecordEvent>> {
    let backend = db.backend();
    let rows: Vec<EventRow> = db
        .fetch_all(&db.statement(
            &format!(
            "SELECT domain, kind, name, record_type, {old} AS old_values, {new} AS new_values, \
             changed_at FROM domain_record_events WHERE domain = $1 ORDER BY id DESC LIMIT $2",
            old = backend.json_text("old_values"),
            new = backend.json_text("new_values"),
        ),
            vec![domain.into(), i64::from(limit).into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            let values = |text: &str| {
                serde_json::from_str(text).map_err(|error| {
                    StoreError::Corrupt(format!("a record event of {}: {error}", row.domain))
                })
            };
            Ok(RecordEvent {
                old_values: values(&row.old_values)?,
                new_values: values(&row.new_values)?,
                domain: row.domain,
                kind: row.kind,
                name: row.name,
                record_type: row.record_type,
                changed_at: row.changed_at,
            })
        })
        .collect()
}

/// Each monitored domain with its newest check's grades (none if never checked).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DomainPosture {
    pub domain: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub checked_at: Option<DateTime<Utc>>,
    pub grades: Vec<Grade>,
}

#[derive(sqlx::FromRow)]
struct PostureRow {
    name: String,
    checked_at: Option<DateTime<Utc>>,
    grades: Option<String>,
}

pub async fn monitored_posture(db: &Db) -> StoreResult<Vec<DomainPosture>> {
    let sql = format!(
        "SELECT d.name, c.checked_at, {grades} AS grades FROM domains d \
         LEFT JOIN domain_checks c ON c.id = \
           (SELECT max(l.id) FROM domain_checks l WHERE l.domain = d.name) \
         ORDER BY d.name",
        grades = db.backend().json_text("c.grades"),
    );
    let rows: Vec<PostureRow> = db.fetch_all(&db.statement(&sql, Vec::new())).await?;
    rows.into_iter()
        .map(|row| {
            let grades = match row.grades {
                Some(text) => serde_json::from_str(&text).map_err(|error| {
                    StoreError::Corrupt(format!("grades of {}: {error}", row.name))
                })?,
                None => Vec::new(),
            };
            Ok(DomainPosture {
                domain: row.name,
                checked_at: row.checked_at,
                grades,
            })
        })
        .collect()
}

/// Claims up to `limit` monitored domains whose check is due, for
/// `lease` (a node that dies mid-check leaves them to be claimed again).
/// A domain never checked is due at once.
pub async fn claim_due(db: &Db, limit: u32, lease: Duration) -> StoreResult<Vec<String>> {
    let now = Utc::now();
    // "WHERE true": SQLite cannot tell ON CONFLICT from a join's ON after
    // a bare SELECT ... FROM.
    db.execute(&db.statement(
        "INSERT INTO domain_check_schedule (domain, next_check_at) \
         SELECT name, $1 FROM domains WHERE true ON CONFLICT (domain) DO NOTHING",
        vec![now.into()],
    ))
    .await?;
    let claim = format!(
        "UPDATE domain_check_schedule SET next_check_at = $3 \
          WHERE domain IN (SELECT s.domain FROM domain_check_schedule s \
                            JOIN domains d ON d.name = s.domain \
                            WHERE s.next_check_at <= $2 \
                            ORDER BY s.next_check_at LIMIT $1{skip_locked}) \
         RETURNING domain",
        // Several nodes check at once; each takes other domains.
        skip_locked = match db.backend() {
            Backend::Postgres => " FOR UPDATE OF s SKIP LOCKED",
            Backend::Sqlite => "",
        },
    );
    let lease_end = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(1));
    let rows: Vec<(String,)> = db
        .fetch_all(&db.statement(
            &claim,
            vec![i64::from(limit).into(), now.into(), lease_end.into()],
        ))
        .await?;
    Ok(rows.into_iter().map(|(domain,)| domain).collect())
}

/// Sets when `domain` is checked next.
pub async fn schedule_next(db: &Db, domain: &str, at: DateTime<Utc>) -> StoreResult<()> {
    db.execute(&db.statement(
        "INSERT INTO domain_check_schedule (domain, next_check_at) VALUES ($1, $2) \
         ON CONFLICT (domain) DO UPDATE SET next_check_at = $2",
        vec![domain.into(), at.into()],
    ))
    .await?;
    Ok(())
}

/// Whether `domain` is monitored (listed under Domains).
pub async fn is_monitored(db: &Db, domain: &str) -> StoreResult<bool> {
    let (count,): (i64,) = db
        .fetch_one(&db.statement(
            "SELECT count(*) FROM domains WHERE name = $1",
            vec![domain.into()],
        ))
        .await?;
    Ok(count > 0)
}

/// Adds a DKIM selector to check for `domain`; false if it was there.
pub async fn add_selector(db: &Db, domain: &str, selector: &str) -> StoreResult<bool> {
    let added = db
        .execute(&db.statement(
            "INSERT INTO domain_dkim_selectors (domain, selector, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (domain, selector) DO NOTHING",
            vec![domain.into(), selector.into(), Utc::now().into()],
        ))
        .await?;
    Ok(added > 0)
}

/// The DKIM selectors to check for `domain`: those added by hand, and
/// those that signed as it in aggregate reports of the last `days` days
/// (read from distinct sets of DKIM results, at most `scan` of them).
pub async fn selectors_for(
    db: &Db,
    domain: &str,
    days: i64,
    scan: u32,
) -> StoreResult<Vec<String>> {
    let mut selectors: Vec<String> = db
        .fetch_all::<(String,)>(&db.statement(
            "SELECT selector FROM domain_dkim_selectors WHERE domain = $1",
            vec![domain.into()],
        ))
        .await?
        .into_iter()
        .map(|(selector,)| selector)
        .collect();
    let since = Utc::now() - chrono::Duration::days(days);
    let sql = format!(
        "SELECT DISTINCT {results} AS results FROM aggregate_records \
         WHERE policy_domain = $1 AND date_begin >= $2 LIMIT $3",
        results = db.backend().json_text("dkim_results"),
    );
    let sets: Vec<(String,)> = db
        .fetch_all(&db.statement(
            &sql,
            vec![domain.into(), since.into(), i64::from(scan).into()],
        ))
        .await?;
    #[derive(serde::Deserialize)]
    struct DkimResult {
        domain: Option<String>,
        selector: Option<String>,
    }
    for (text,) in sets {
        let Ok(results) = serde_json::from_str::<Vec<DkimResult>>(&text) else {
            continue;
        };
        for result in results {
            let (Some(signer), Some(selector)) = (result.domain, result.selector) else {
                continue;
            };
            let selector = selector.trim().to_ascii_lowercase();
            if signer.trim_end_matches('.').eq_ignore_ascii_case(domain) && is_selector(&selector) {
                selectors.push(selector);
            }
        }
    }
    selectors.sort();
    selectors.dedup();
    Ok(selectors)
}

/// A selector is one or more DNS labels (RFC 6376 section 3.1).
pub fn is_selector(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// When `domain` is checked next, if scheduled.
pub async fn next_check_at(db: &Db, domain: &str) -> StoreResult<Option<DateTime<Utc>>> {
    let row: Option<(DateTime<Utc>,)> = db
        .fetch_optional(&db.statement(
            "SELECT next_check_at FROM domain_check_schedule WHERE domain = $1",
            vec![domain.into()],
        ))
        .await?;
    Ok(row.map(|(at,)| at))
}
