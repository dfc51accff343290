//! Digest schedules as stored (`digest_schedules`, PostgreSQL 0024,
//! SQLite 0022), the facts a digest reads (rollups and totals per UTC day,
//! TLS policies, never the aggregate records), and sending one: the
//! schedule's "last period sent" moves forward and the mail is queued in
//! the outbox in one transaction, under a dedup key naming the schedule
//! and the period, so a digest is queued once however many nodes try.

use crate::scope::Scope;
use chrono::{DateTime, Utc};

use super::db::{json, Db};
use super::outbox;
use super::{NewOutboxItem, StoreError, StoreResult};
use crate::digests::content::{NewSource, TlsTotals, Totals};
use crate::digests::period::{parse_weekday, weekday_key, Frequency, Period};
use crate::digests::Schedule;

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    id: i64,
    name: String,
    recipients: String,
    domains: String,
    frequency: String,
    time_zone: String,
    hour: i32,
    weekday: Option<String>,
    enabled: bool,
    last_period_start: Option<DateTime<Utc>>,
    last_sent_at: Option<DateTime<Utc>>,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ScheduleRow {
    fn decode(self) -> StoreResult<Schedule> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("digest schedule {} has {what}", self.id));
        let frequency =
            Frequency::parse(&self.frequency).ok_or_else(|| corrupt("an unknown frequency"))?;
        let weekday = match self.weekday.as_deref() {
            Some(day) => Some(parse_weekday(day).ok_or_else(|| corrupt("an unknown weekday"))?),
            None => None,
        };
        let domains: Vec<String> =
            serde_json::from_str(&self.domains).map_err(|_| corrupt("unreadable domains"))?;
        Ok(Schedule {
            id: self.id,
            name: self.name,
            recipients: self
                .recipients
                .split(',')
                .map(str::trim)
                .filter(|address| !address.is_empty())
                .map(str::to_string)
                .collect(),
            domains,
            frequency,
            time_zone: self.time_zone,
            hour: self.hour,
            weekday: weekday.map(|day| weekday_key(day).to_string()),
            enabled: self.enabled,
            last_period_start: self.last_period_start.map(|at| at.date_naive()),
            last_sent_at: self.last_sent_at,
            next_send_at: None,
            created_by: self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str = "id, name, recipients, domains, frequency, time_zone, hour, weekday, \
                       enabled, last_period_start, last_sent_at, created_by, created_at, updated_at";

/// A schedule to store, checked (`crate::digests::NewSchedule::check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    pub name: String,
    pub recipients: Vec<String>,
    pub domains: Vec<String>,
    pub frequency: Frequency,
    pub time_zone: String,
    pub hour: i32,
    /// Weekly: `monday` … `sunday`; otherwise none.
    pub weekday: Option<String>,
    pub enabled: bool,
}

/// Whether `scope` sees a schedule of `domains` (none: every domain, seen
/// by those who see every domain: `every` says whether `scope` does).
pub fn sees_schedule(scope: &Scope, every: bool, domains: &[String]) -> bool {
    every || (!domains.is_empty() && domains.iter().all(|domain| scope.sees(domain)))
}

/// The schedules `scope` sees (`sees_schedule`).
pub async fn schedules_for(db: &Db, scope: &Scope) -> StoreResult<Vec<Schedule>> {
    let every = super::groups::sees_every_domain(db, scope).await?;
    Ok(schedules(db)
        .await?
        .into_iter()
        .filter(|schedule| sees_schedule(scope, every, &schedule.domains))
        .collect())
}

/// Schedule `id`, if `scope` sees it.
pub async fn schedule_for(db: &Db, scope: &Scope, id: i64) -> StoreResult<Option<Schedule>> {
    let every = super::groups::sees_every_domain(db, scope).await?;
    Ok(schedule(db, id)
        .await?
        .filter(|schedule| sees_schedule(scope, every, &schedule.domains)))
}

pub async fn schedules(db: &Db) -> StoreResult<Vec<Schedule>> {
    let rows: Vec<ScheduleRow> = db
        .fetch_all(&db.statement(
            &format!("SELECT {COLUMNS} FROM digest_schedules ORDER BY id"),
            Vec::new(),
        ))
        .await?;
    rows.into_iter().map(ScheduleRow::decode).collect()
}

pub async fn schedule(db: &Db, id: i64) -> StoreResult<Option<Schedule>> {
    let row: Option<ScheduleRow> = db
        .fetch_optional(&db.statement(
            &format!("SELECT {COLUMNS} FROM digest_schedules WHERE id = $1"),
            vec![id.into()],
        ))
        .await?;
    row.map(ScheduleRow::decode).transpose()
}

/// Stores a new schedule, made by `by` at `now`: its first digest is the
/// first send time after `now`.
pub async fn add(
    db: &Db,
    new: &NewSchedule,
    by: &str,
    now: DateTime<Utc>,
) -> StoreResult<Schedule> {
    let now = super::seconds(now);
    let row: ScheduleRow = db
        .fetch_one(&db.statement(
            &format!(
                "INSERT INTO digest_schedules (name, recipients, domains, frequency, time_zone, \
                 hour, weekday, enabled, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {COLUMNS}"
            ),
            vec![
                new.name.as_str().into(),
                new.recipients.join(", ").into(),
                json(&new.domains),
                new.frequency.key().into(),
                new.time_zone.as_str().into(),
                new.hour.into(),
                new.weekday.as_deref().into(),
                new.enabled.into(),
                by.into(),
                now.into(),
            ],
        ))
        .await?;
    row.decode()
}

/// Replaces a schedule's settings (what was sent stays); `None` when
/// there is no such schedule. A changed schedule starts over from `now`:
/// a send time before the change is not caught up.
pub async fn update(
    db: &Db,
    id: i64,
    new: &NewSchedule,
    now: DateTime<Utc>,
) -> StoreResult<Option<Schedule>> {
    let row: Option<ScheduleRow> = db
        .fetch_optional(&db.statement(
            &format!(
                "UPDATE digest_schedules SET name = $2, recipients = $3, domains = $4, \
                 frequency = $5, time_zone = $6, hour = $7, weekday = $8, enabled = $9, \
                 updated_at = $10 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            vec![
                id.into(),
                new.name.as_str().into(),
                new.recipients.join(", ").into(),
                json(&new.domains),
                new.frequency.key().into(),
                new.time_zone.as_str().into(),
                new.hour.into(),
                new.weekday.as_deref().into(),
                new.enabled.into(),
                super::seconds(now).into(),
            ],
        ))
        .await?;
    row.map(ScheduleRow::decode).transpose()
}

pub async fn delete(db: &Db, id: i64) -> StoreResult<bool> {
    Ok(db
        .execute(&db.statement(
            "DELETE FROM digest_schedules WHERE id = $1",
            vec![id.into()],
        ))
        .await?
        == 1)
}

/// Queues `item` for schedule `id` and `period`, and records the period
/// as sent, in one transaction. False, with nothing queued, when that
/// period (or a later one) was already sent: another node was first.
pub async fn mark_sent_and_queue(
    db: &Db,
    id: i64,
    period: &Period,
    item: &NewOutboxItem,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let now = super::seconds(now);
    let mut transaction = db.begin_durable().await?;
    // The row lock this takes holds a second node's update until this
    // commits; it then finds the period sent and changes nothing.
    let moved = transaction
        .execute(&transaction.statement(
            "UPDATE digest_schedules SET last_period_start = $2, last_sent_at = $3 \
             WHERE id = $1 AND (last_period_start IS NULL OR last_period_start < $2)",
            vec![id.into(), period.start_utc().into(), now.into()],
        ))
        .await?;
    if moved != 1 {
        // Dropped unfinished: rolled back.
        drop(transaction);
        return Ok(false);
    }
    outbox::enqueue(&mut transaction, std::slice::from_ref(item), now).await?;
    transaction.commit().await?;
    Ok(true)
}

/// Queues a digest sent by hand ("send now"): it does not count as the
/// period's scheduled digest. Returns the outbox id.
pub async fn queue_by_hand(
    db: &Db,
    item: &NewOutboxItem,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    Ok(
        outbox::enqueue_now(db, std::slice::from_ref(item), super::seconds(now))
            .await?
            .first()
            .copied(),
    )
}

#[derive(sqlx::FromRow)]
struct DomainCount {
    domain: String,
    messages: i64,
    passing: i64,
}

/// Messages and DMARC passes per domain over `period`'s days, from the
/// daily rollup.
async fn counts(db: &Db, period: &Period) -> StoreResult<Vec<DomainCount>> {
    let backend = db.backend();
    let passing = format!(
        "CASE WHEN {} THEN count ELSE 0 END",
        backend.is_true("dmarc_pass")
    );
    db.fetch_all(&db.statement(
        &format!(
            "SELECT policy_domain AS domain, {messages} AS messages, {passing} AS passing \
               FROM rollup_domain_day WHERE date_begin >= $1 AND date_begin < $2 \
              GROUP BY policy_domain",
            messages = backend.sum("count"),
            passing = backend.sum(&passing),
        ),
        vec![period.start_utc().into(), period.end_utc().into()],
    ))
    .await
}

/// Totals per domain over `period` and the one before it, with the
/// aggregate reports received for `period`'s days.
pub async fn totals(
    db: &Db,
    period: &Period,
    previous: &Period,
) -> StoreResult<std::collections::BTreeMap<String, Totals>> {
    let mut totals: std::collections::BTreeMap<String, Totals> = Default::default();
    for row in counts(db, period).await? {
        let entry = totals.entry(row.domain.to_ascii_lowercase()).or_default();
        entry.messages += row.messages;
        entry.passing += row.passing;
    }
    for row in counts(db, previous).await? {
        let entry = totals.entry(row.domain.to_ascii_lowercase()).or_default();
        entry.previous_messages += row.messages;
        entry.previous_passing += row.passing;
    }
    let reports: Vec<(String, i64)> = db
        .fetch_all(&db.statement(
            "SELECT policy_domain, count(*) FROM aggregate_reports \
              WHERE date_begin >= $1 AND date_begin < $2 GROUP BY policy_domain",
            vec![period.start_utc().into(), period.end_utc().into()],
        ))
        .await?;
    for (domain, count) in reports {
        totals
            .entry(domain.to_ascii_lowercase())
            .or_default()
            .reports += count;
    }
    Ok(totals)
}

#[derive(sqlx::FromRow)]
struct NewSourceRow {
    source: String,
    messages: i64,
    failing: i64,
}

/// Sources that sent as `domain` in `period` and never before it, busiest
/// first (`limit` of them), and how many there are.
pub async fn new_sources(
    db: &Db,
    domain: &str,
    period: &Period,
    limit: u32,
) -> StoreResult<(i64, Vec<NewSource>)> {
    let backend = db.backend();
    let rows: Vec<NewSourceRow> = db
        .fetch_all(&db.statement(
            &format!(
                "SELECT {ip} AS source, {messages} AS messages, {failing} AS failing \
                   FROM totals_domain_source_day t \
                  WHERE t.policy_domain = $1 AND t.date_begin >= $2 AND t.date_begin < $3 \
                    AND t.source_ip IS NOT NULL AND t.records > 0 \
                    AND NOT EXISTS (SELECT 1 FROM totals_domain_source_day o \
                                     WHERE o.source_ip = t.source_ip AND o.policy_domain = t.policy_domain \
                                       AND o.date_begin < $2 AND o.records > 0) \
                    AND NOT EXISTS (SELECT 1 FROM totals_domain_source_month o \
                                     WHERE o.source_ip = t.source_ip AND o.policy_domain = t.policy_domain \
                                       AND o.date_begin < $4 AND o.records > 0) \
                  GROUP BY t.source_ip ORDER BY messages DESC, source",
                ip = backend.ip_text("t.source_ip"),
                messages = backend.sum("t.count"),
                failing = backend.sum("t.fail_count"),
            ),
            vec![
                domain.into(),
                period.start_utc().into(),
                period.end_utc().into(),
                // The months before the period's: what was seen before the
                // days retention pruned (retention.day_rollup_days).
                month_start(period.start_utc()).into(),
            ],
        ))
        .await?;
    let total = rows.len() as i64;
    Ok((
        total,
        rows.into_iter()
            .take(limit as usize)
            .map(|row| NewSource {
                source: row.source,
                messages: row.messages,
                failing: row.failing,
            })
            .collect(),
    ))
}

/// TLS-RPT sessions per policy domain in reports whose range starts in
/// `period`, with failed sessions by result type.
pub async fn tls(
    db: &Db,
    period: &Period,
) -> StoreResult<std::collections::BTreeMap<String, TlsTotals>> {
    let backend = db.backend();
    let args = || vec![period.start_utc().into(), period.end_utc().into()];
    let sessions: Vec<(String, i64, i64)> = db
        .fetch_all(&db.statement(
            &format!(
                "SELECT p.policy_domain, {ok}, {failed} FROM tls_policies p \
                   JOIN tls_reports r ON r.id = p.report_id \
                  WHERE r.date_begin >= $1 AND r.date_begin < $2 GROUP BY p.policy_domain",
                ok = backend.sum("p.successful_sessions"),
                failed = backend.sum("p.failed_sessions"),
            ),
            args(),
        ))
        .await?;
    let mut tls: std::collections::BTreeMap<String, TlsTotals> = Default::default();
    for (domain, successful, failed) in sessions {
        let entry = tls.entry(domain.to_ascii_lowercase()).or_default();
        entry.successful += successful;
        entry.failed += failed;
    }
    let types: Vec<(String, String, i64)> = db
        .fetch_all(&db.statement(
            &format!(
                "SELECT p.policy_domain, d.result_type, {failed} AS failed FROM tls_failure_details d \
                   JOIN tls_policies p ON p.id = d.policy_id \
                   JOIN tls_reports r ON r.id = p.report_id \
                  WHERE r.date_begin >= $1 AND r.date_begin < $2 \
                  GROUP BY p.policy_domain, d.result_type ORDER BY failed DESC, d.result_type",
                failed = backend.sum("d.failed_sessions"),
            ),
            args(),
        ))
        .await?;
    for (domain, result_type, failed) in types {
        tls.entry(domain.to_ascii_lowercase())
            .or_default()
            .result_types
            .push((result_type, failed));
    }
    Ok(tls)
}

/// The start of `time`'s month (UTC).
fn month_start(time: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Datelike;
    time.date_naive()
        .with_day(1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map_or(time, |start| start.and_utc())
}
