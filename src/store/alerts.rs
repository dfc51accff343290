//! Alert rules, channels and alerts as stored (PostgreSQL 0020, SQLite
//! 0018), and their evaluation: on the rollup applier's batch (new
//! sources before the batch is counted, failing volume after, in its
//! transaction) and on a schedule (failure and TLS reports past a cursor,
//! silence, causes gone). An alert opens once per rule, domain and
//! subject; while open, firing again only refreshes it; one that fires
//! again within its rule's cooldown after resolving is reopened without
//! a new notification. Opening and resolving queue notifications in the
//! outbox in the same transaction.

use crate::scope::Scope;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::db::{json, ColumnType, Db, Tx};
use super::delta::FineRow;
use super::outbox;
use super::{StoreError, StoreResult};
use crate::alerts::{self, Alert, Channel, ChannelKind, Finding, Rule, RuleKind};
use crate::outbox::WebhookFormat;
use crate::senders::{Class, SendersConfig};

mod classes;
mod dns;
pub mod rates;

/// Held by the scheduled evaluation on PostgreSQL: one node at a time.
const ALERT_SCHEDULE_LOCK: i64 = 7_363_012_950;
/// New-source alerts one batch opens per domain, at most: a report from
/// a domain's whole new mail provider is one cause, not a flood.
const NEW_SOURCES_PER_DOMAIN: usize = 25;

/// What an evaluation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvaluationSummary {
    pub opened: u64,
    pub refreshed: u64,
    pub resolved: u64,
}

impl EvaluationSummary {
    fn add(&mut self, other: EvaluationSummary) {
        self.opened += other.opened;
        self.refreshed += other.refreshed;
        self.resolved += other.resolved;
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: i64,
    domain: Option<String>,
    kind: String,
    threshold: i64,
    window_days: i32,
    cooldown_minutes: i32,
    channels: String,
    classes: String,
    enabled: bool,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl RuleRow {
    fn decode(self) -> StoreResult<Rule> {
        Ok(Rule {
            kind: RuleKind::parse(&self.kind).ok_or_else(|| {
                StoreError::Corrupt(format!("alert rule {} has an unknown kind", self.id))
            })?,
            channels: serde_json::from_str(&self.channels).map_err(|_| {
                StoreError::Corrupt(format!("alert rule {} has unreadable channels", self.id))
            })?,
            classes: serde_json::from_str(&self.classes).map_err(|_| {
                StoreError::Corrupt(format!("alert rule {} has unreadable classes", self.id))
            })?,
            id: self.id,
            domain: self.domain,
            threshold: self.threshold,
            window_days: self.window_days,
            cooldown_minutes: self.cooldown_minutes,
            enabled: self.enabled,
            created_by: self.created_by,
            created_at: self.created_at,
        })
    }
}

const RULE_COLUMNS: &str = "id, domain, kind, threshold, window_days, cooldown_minutes, channels, \
                            classes, enabled, created_by, created_at";

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: i64,
    name: String,
    kind: String,
    target: String,
    format: String,
    secret: Option<String>,
    created_by: String,
    created_at: DateTime<Utc>,
    group_id: Option<i64>,
}

impl ChannelRow {
    fn decode(self) -> StoreResult<Channel> {
        let corrupt = || StoreError::Corrupt(format!("alert channel {} is unreadable", self.id));
        Ok(Channel {
            kind: match self.kind.as_str() {
                "email" => ChannelKind::Email,
                "webhook" => ChannelKind::Webhook,
                _ => return Err(corrupt()),
            },
            format: WebhookFormat::parse(&self.format).map_err(|_| corrupt())?,
            signed: self.secret.is_some(),
            id: self.id,
            name: self.name,
            target: self.target,
            secret: self.secret,
            created_by: self.created_by,
            created_at: self.created_at,
            group_id: self.group_id,
        })
    }
}

const CHANNEL_COLUMNS: &str =
    "id, name, kind, target, format, secret, created_by, created_at, group_id";

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    rule_id: i64,
    kind: String,
    domain: String,
    subject: String,
    state: String,
    title: String,
    detail: String,
    link: String,
    occurrences: i64,
    opened_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    resolved_by: Option<String>,
}

impl AlertRow {
    fn decode(self) -> StoreResult<Alert> {
        Ok(Alert {
            kind: RuleKind::parse(&self.kind).ok_or_else(|| {
                StoreError::Corrupt(format!("alert {} has an unknown kind", self.id))
            })?,
            id: self.id,
            rule_id: self.rule_id,
            domain: self.domain,
            subject: self.subject,
            state: self.state,
            title: self.title,
            detail: self.detail,
            link: self.link,
            occurrences: self.occurrences,
            opened_at: self.opened_at,
            last_seen_at: self.last_seen_at,
            resolved_at: self.resolved_at,
            resolved_by: self.resolved_by,
        })
    }
}

const ALERT_COLUMNS: &str = "id, rule_id, kind, domain, subject, state, title, detail, link, \
                             occurrences, opened_at, last_seen_at, resolved_at, resolved_by";

/// A rule to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub domain: Option<String>,
    pub kind: RuleKind,
    pub threshold: i64,
    pub window_days: i32,
    pub cooldown_minutes: i32,
    pub channels: Vec<i64>,
    /// New-source rules: only these classes; empty: all.
    pub classes: Vec<Class>,
    pub created_by: String,
}

/// A channel to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    pub name: String,
    pub kind: ChannelKind,
    pub target: String,
    pub format: WebhookFormat,
    pub secret: Option<String>,
    pub created_by: String,
}

/// The rules `scope` sees: those of its domains; a rule for every domain
/// only by those who see every domain.
pub async fn rules_for(db: &Db, scope: &Scope) -> StoreResult<Vec<Rule>> {
    let mut sql = db.sql();
    sql.push(&format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE 1 = 1"
    ));
    if super::groups::sees_every_domain(db, scope).await? {
        // Their domains' rules and those for every domain: `x OR 1 = 1 AND
        // y` reads `x OR (y)`.
        sql.push(" AND (domain IS NULL OR 1 = 1");
        scope.push_condition(&mut sql, "domain");
        sql.push(")");
    } else {
        scope.push_condition(&mut sql, "domain");
    }
    sql.push(" ORDER BY id");
    let rows: Vec<RuleRow> = db.fetch_all(&sql).await?;
    rows.into_iter().map(RuleRow::decode).collect()
}

/// The channels `scope` sees: every one for those who see every domain;
/// a group's members, those of their groups (an admin's channels are
/// shared by admins' rules: an address or URL may be anyone's).
pub async fn channels_for(db: &Db, scope: &Scope) -> StoreResult<Vec<Channel>> {
    if scope.is_all() {
        return channels(db).await;
    }
    let groups: Vec<i64> = scope.memberships().iter().map(|m| m.group_id).collect();
    Ok(channels(db)
        .await?
        .into_iter()
        .filter(|channel| channel.group_id.is_some_and(|id| groups.contains(&id)))
        .collect())
}

/// Alerts of the domains `scope` sees, newest first: open ones only, or all.
pub async fn list_for(
    db: &Db,
    scope: &Scope,
    open_only: bool,
    limit: u32,
) -> StoreResult<Vec<Alert>> {
    let mut sql = db.sql();
    sql.push(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE 1 = 1"));
    if open_only {
        sql.push(" AND state = 'open'");
    }
    scope.push_condition(&mut sql, "lower(domain)");
    sql.push(" ORDER BY opened_at DESC, id DESC LIMIT ")
        .bind(i64::from(limit));
    let rows: Vec<AlertRow> = db.fetch_all(&sql).await?;
    rows.into_iter().map(AlertRow::decode).collect()
}

pub async fn rules(db: &Db) -> StoreResult<Vec<Rule>> {
    let rows: Vec<RuleRow> = db
        .fetch_all(&db.statement(
            &format!("SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id"),
            Vec::new(),
        ))
        .await?;
    rows.into_iter().map(RuleRow::decode).collect()
}

pub async fn add_rule(db: &Db, new: &NewRule) -> StoreResult<Rule> {
    let row: RuleRow = db
        .fetch_one(&db.statement(
            &format!(
                "INSERT INTO alert_rules (domain, kind, threshold, window_days, cooldown_minutes, \
                 channels, created_by, created_at, classes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING {RULE_COLUMNS}"
            ),
            vec![
                new.domain.as_deref().into(),
                new.kind.key().into(),
                new.threshold.into(),
                new.window_days.into(),
                new.cooldown_minutes.into(),
                json(&new.channels),
                new.created_by.as_str().into(),
                super::seconds(Utc::now()).into(),
                json(&new.classes),
            ],
        ))
        .await?;
    row.decode()
}

/// Turns a rule on or off; `None` when there is no such rule.
pub async fn set_rule_enabled(db: &Db, id: i64, enabled: bool) -> StoreResult<Option<Rule>> {
    let row: Option<RuleRow> = db
        .fetch_optional(&db.statement(
            &format!("UPDATE alert_rules SET enabled = $2 WHERE id = $1 RETURNING {RULE_COLUMNS}"),
            vec![id.into(), enabled.into()],
        ))
        .await?;
    row.map(RuleRow::decode).transpose()
}

/// Deletes a rule and its alerts; false when there was none.
pub async fn delete_rule(db: &Db, id: i64) -> StoreResult<bool> {
    let mut transaction = db.begin_durable().await?;
    transaction
        .execute(&transaction.statement("DELETE FROM alerts WHERE rule_id = $1", vec![id.into()]))
        .await?;
    let deleted = transaction
        .execute(&transaction.statement("DELETE FROM alert_rules WHERE id = $1", vec![id.into()]))
        .await?;
    transaction.commit().await?;
    Ok(deleted == 1)
}

pub async fn channels(db: &Db) -> StoreResult<Vec<Channel>> {
    let rows: Vec<ChannelRow> = db
        .fetch_all(&db.statement(
            &format!("SELECT {CHANNEL_COLUMNS} FROM alert_channels ORDER BY id"),
            Vec::new(),
        ))
        .await?;
    rows.into_iter().map(ChannelRow::decode).collect()
}

pub async fn channel(db: &Db, id: i64) -> StoreResult<Option<Channel>> {
    let row: Option<ChannelRow> = db
        .fetch_optional(&db.statement(
            &format!("SELECT {CHANNEL_COLUMNS} FROM alert_channels WHERE id = $1"),
            vec![id.into()],
        ))
        .await?;
    row.map(ChannelRow::decode).transpose()
}

pub async fn add_channel(db: &Db, new: &NewChannel) -> StoreResult<Channel> {
    add_channel_in(db, new, None).await
}

/// Adds a channel belonging to domain group `group_id` (None: shared).
pub async fn add_channel_in(
    db: &Db,
    new: &NewChannel,
    group_id: Option<i64>,
) -> StoreResult<Channel> {
    let kind = match new.kind {
        ChannelKind::Email => "email",
        ChannelKind::Webhook => "webhook",
    };
    let row: ChannelRow = db
        .fetch_one(&db.statement(
            &format!(
                "INSERT INTO alert_channels (name, kind, target, format, secret, created_by, \
                 created_at, group_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING {CHANNEL_COLUMNS}"
            ),
            vec![
                new.name.as_str().into(),
                kind.into(),
                new.target.as_str().into(),
                new.format.key().into(),
                new.secret.as_deref().into(),
                new.created_by.as_str().into(),
                super::seconds(Utc::now()).into(),
                group_id.into(),
            ],
        ))
        .await?;
    row.decode()
}

pub async fn delete_channel(db: &Db, id: i64) -> StoreResult<bool> {
    Ok(db
        .execute(&db.statement("DELETE FROM alert_channels WHERE id = $1", vec![id.into()]))
        .await?
        == 1)
}

/// Alerts, newest first: open ones only, or all.
pub async fn list(db: &Db, open_only: bool, limit: u32) -> StoreResult<Vec<Alert>> {
    let filter = if open_only {
        "WHERE state = 'open'"
    } else {
        ""
    };
    let rows: Vec<AlertRow> = db
        .fetch_all(&db.statement(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts {filter} ORDER BY opened_at DESC, id DESC LIMIT $1"
            ),
            vec![i64::from(limit).into()],
        ))
        .await?;
    rows.into_iter().map(AlertRow::decode).collect()
}

pub async fn get(db: &Db, id: i64) -> StoreResult<Option<Alert>> {
    let row: Option<AlertRow> = db
        .fetch_optional(&db.statement(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"),
            vec![id.into()],
        ))
        .await?;
    row.map(AlertRow::decode).transpose()
}

/// Resolves an open alert by hand (`by` names who); `None` when no open
/// alert has that id.
pub async fn resolve_by_hand(
    db: &Db,
    id: i64,
    by: &str,
    now: DateTime<Utc>,
    dashboard_url: &str,
) -> StoreResult<Option<Alert>> {
    let mut transaction = db.begin_durable().await?;
    let row: Option<AlertRow> = transaction
        .fetch_optional(&transaction.statement(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND state = 'open'"),
            vec![id.into()],
        ))
        .await?;
    let Some(alert) = row.map(AlertRow::decode).transpose()? else {
        return Ok(None);
    };
    let context = Context::load(&mut transaction, now, dashboard_url).await?;
    let rule = context
        .rules
        .iter()
        .find(|rule| rule.id == alert.rule_id)
        .cloned();
    let resolved = resolve(&mut transaction, &context, rule.as_ref(), alert, Some(by)).await?;
    transaction.commit().await?;
    Ok(Some(resolved))
}

/// The rules and channels an evaluation works with.
struct Context {
    rules: Vec<Rule>,
    channels: Vec<Channel>,
    now: DateTime<Utc>,
    dashboard_url: String,
}

impl Context {
    async fn load(
        transaction: &mut Tx,
        now: DateTime<Utc>,
        dashboard_url: &str,
    ) -> StoreResult<Context> {
        let rules: Vec<RuleRow> = transaction
            .fetch_all(&transaction.statement(
                &format!(
                    "SELECT {RULE_COLUMNS} FROM alert_rules WHERE {} ORDER BY id",
                    transaction.backend().is_true("enabled")
                ),
                Vec::new(),
            ))
            .await?;
        let channels: Vec<ChannelRow> = transaction
            .fetch_all(&transaction.statement(
                &format!("SELECT {CHANNEL_COLUMNS} FROM alert_channels ORDER BY id"),
                Vec::new(),
            ))
            .await?;
        Ok(Context {
            rules: rules
                .into_iter()
                .map(RuleRow::decode)
                .collect::<StoreResult<_>>()?,
            channels: channels
                .into_iter()
                .map(ChannelRow::decode)
                .collect::<StoreResult<_>>()?,
            now: super::seconds(now),
            dashboard_url: dashboard_url.to_string(),
        })
    }

    fn rules_of(&self, kind: RuleKind) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |rule| rule.kind == kind)
    }

    fn channels_of(&self, rule: Option<&Rule>) -> Vec<Channel> {
        match rule {
            Some(rule) if !rule.channels.is_empty() => self
                .channels
                .iter()
                .filter(|channel| rule.channels.contains(&channel.id))
                .cloned()
                .collect(),
            // "Every channel" is every shared one (an admin's): a group's
            // channels hear only their group's rules.
            _ => self
                .channels
                .iter()
                .filter(|channel| channel.group_id.is_none())
                .cloned()
                .collect(),
        }
    }
}

/// Opens, reopens or refreshes the alert of `rule` for `finding`.
async fn raise(
    transaction: &mut Tx,
    context: &Context,
    rule: &Rule,
    finding: &Finding,
) -> StoreResult<EvaluationSummary> {
    let now = context.now;
    let key = vec![
        rule.id.into(),
        finding.domain.as_str().into(),
        finding.subject.as_str().into(),
    ];
    let refreshed = transaction
        .execute(
            &transaction.statement(
                "UPDATE alerts SET last_seen_at = $4, occurrences = occurrences + 1, detail = $5
              WHERE rule_id = $1 AND domain = $2 AND subject = $3 AND state = 'open'",
                [
                    key.clone(),
                    vec![now.into(), finding.detail.as_str().into()],
                ]
                .concat(),
            ),
        )
        .await?;
    if refreshed > 0 {
        return Ok(EvaluationSummary {
            refreshed: 1,
            ..EvaluationSummary::default()
        });
    }
    let cooled = now - Duration::minutes(i64::from(rule.cooldown_minutes));
    let reopened = transaction
        .execute(
            &transaction.statement(
                "UPDATE alerts SET state = 'open', resolved_at = NULL, resolved_by = NULL,
                    last_seen_at = $4, occurrences = occurrences + 1, detail = $5
              WHERE id = (SELECT id FROM alerts
                           WHERE rule_id = $1 AND domain = $2 AND subject = $3
                             AND state = 'resolved' AND resolved_at >= $6
                           ORDER BY resolved_at DESC LIMIT 1)",
                [
                    key.clone(),
                    vec![now.into(), finding.detail.as_str().into(), cooled.into()],
                ]
                .concat(),
            ),
        )
        .await?;
    if reopened > 0 {
        return Ok(EvaluationSummary {
            refreshed: 1,
            ..EvaluationSummary::default()
        });
    }
    let row: AlertRow = transaction
        .fetch_one(&transaction.statement(
            &format!(
                "INSERT INTO alerts (rule_id, kind, domain, subject, state, title, detail, link, \
                 opened_at, last_seen_at) VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $8) \
                 RETURNING {ALERT_COLUMNS}"
            ),
            vec![
                rule.id.into(),
                rule.kind.key().into(),
                finding.domain.as_str().into(),
                finding.subject.as_str().into(),
                finding.title.as_str().into(),
                finding.detail.as_str().into(),
                finding.link.as_str().into(),
                now.into(),
            ],
        ))
        .await?;
    let alert = row.decode()?;
    let items = alerts::outbox_items(
        &alert,
        true,
        &context.channels_of(Some(rule)),
        &context.dashboard_url,
    );
    outbox::enqueue(transaction, &items, now).await?;
    crate::metrics::count(
        "dmarcd_alerts_opened_total",
        &[("kind", rule.kind.key())],
        1,
    );
    Ok(EvaluationSummary {
        opened: 1,
        ..EvaluationSummary::default()
    })
}

/// `raise` for many findings at once: those with no alert yet (the rule
/// never fired for that domain and subject: every new source, nearly
/// always) are opened by one statement; the rest one by one.
async fn raise_all(
    transaction: &mut Tx,
    context: &Context,
    findings: &[(&Rule, Finding)],
) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    if findings.len() < 2 {
        for (rule, finding) in findings {
            summary.add(raise(transaction, context, rule, finding).await?);
        }
        return Ok(summary);
    }
    let backend = transaction.backend();
    let rows: Vec<serde_json::Value> = findings
        .iter()
        .map(|(rule, finding)| {
            serde_json::json!({
                "r": rule.id, "k": rule.kind.key(), "d": finding.domain, "s": finding.subject,
                "t": finding.title, "x": finding.detail, "l": finding.link,
            })
        })
        .collect();
    let list = |alias: &str| {
        backend.json_rows(
            "$1",
            alias,
            &[
                ("r", ColumnType::Int),
                ("k", ColumnType::Text),
                ("d", ColumnType::Text),
                ("s", ColumnType::Text),
                ("t", ColumnType::Text),
                ("x", ColumnType::Text),
                ("l", ColumnType::Text),
            ],
        )
    };
    let known: Vec<(i64, String, String)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT DISTINCT a.rule_id, a.domain, a.subject FROM alerts a JOIN {} \
                 ON a.rule_id = u.r AND a.domain = u.d AND a.subject = u.s",
                list("u")
            ),
            vec![json(&rows)],
        ))
        .await?;
    let known: BTreeSet<(i64, &str, &str)> = known
        .iter()
        .map(|(rule, domain, subject)| (*rule, domain.as_str(), subject.as_str()))
        .collect();
    let (seen, fresh): (Vec<_>, Vec<_>) =
        findings.iter().zip(rows).partition(|((rule, finding), _)| {
            known.contains(&(rule.id, finding.domain.as_str(), finding.subject.as_str()))
        });
    // Those open already are refreshed by one statement; those resolved
    // (reopened within the cooldown, or opened anew) one by one.
    let seen_rows: Vec<&serde_json::Value> = seen.iter().map(|(_, row)| row).collect();
    let refreshed: Vec<(i64, String, String)> = if seen_rows.is_empty() {
        Vec::new()
    } else {
        transaction
            .fetch_all(&transaction.statement(
                &format!(
                    "UPDATE alerts SET last_seen_at = $2, occurrences = occurrences + 1, \
                     detail = u.x FROM {} WHERE alerts.rule_id = u.r AND alerts.domain = u.d \
                     AND alerts.subject = u.s AND alerts.state = 'open' \
                     RETURNING alerts.rule_id, alerts.domain, alerts.subject",
                    list("u")
                ),
                vec![json(&seen_rows), context.now.into()],
            ))
            .await?
    };
    summary.refreshed += refreshed.len() as u64;
    let refreshed: BTreeSet<(i64, &str, &str)> = refreshed
        .iter()
        .map(|(rule, domain, subject)| (*rule, domain.as_str(), subject.as_str()))
        .collect();
    for ((rule, finding), _) in seen {
        if !refreshed.contains(&(rule.id, finding.domain.as_str(), finding.subject.as_str())) {
            summary.add(raise(transaction, context, rule, finding).await?);
        }
    }
    if fresh.is_empty() {
        return Ok(summary);
    }
    let fresh_rows: Vec<serde_json::Value> = fresh.into_iter().map(|(_, row)| row).collect();
    let opened: Vec<AlertRow> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "INSERT INTO alerts (rule_id, kind, domain, subject, state, title, detail, link, \
                 opened_at, last_seen_at) SELECT u.r, u.k, u.d, u.s, 'open', u.t, u.x, u.l, $2, $2 \
                 FROM {} RETURNING {ALERT_COLUMNS}",
                list("u")
            ),
            vec![json(&fresh_rows), context.now.into()],
        ))
        .await?;
    let mut items = Vec::new();
    for row in opened {
        let alert = row.decode()?;
        let rule = context.rules.iter().find(|rule| rule.id == alert.rule_id);
        items.extend(alerts::outbox_items(
            &alert,
            true,
            &context.channels_of(rule),
            &context.dashboard_url,
        ));
        crate::metrics::count(
            "dmarcd_alerts_opened_total",
            &[("kind", alert.kind.key())],
            1,
        );
        summary.opened += 1;
    }
    outbox::enqueue(transaction, &items, context.now).await?;
    Ok(summary)
}

async fn resolve(
    transaction: &mut Tx,
    context: &Context,
    rule: Option<&Rule>,
    alert: Alert,
    by: Option<&str>,
) -> StoreResult<Alert> {
    let row: AlertRow = transaction
        .fetch_one(&transaction.statement(
            &format!(
                "UPDATE alerts SET state = 'resolved', resolved_at = $2, resolved_by = $3 \
                 WHERE id = $1 RETURNING {ALERT_COLUMNS}"
            ),
            vec![alert.id.into(), context.now.into(), by.into()],
        ))
        .await?;
    let resolved = row.decode()?;
    let items = alerts::outbox_items(
        &resolved,
        false,
        &context.channels_of(rule),
        &context.dashboard_url,
    );
    outbox::enqueue(transaction, &items, context.now).await?;
    Ok(resolved)
}

fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{query}")
}

/// The sources of a batch never seen before for their domain, with their
/// messages in the batch: read before the batch is counted. A domain's
/// first batch sets its baseline and names none.
pub(super) async fn new_sources(
    transaction: &mut Tx,
    rows: &[FineRow],
) -> StoreResult<Vec<(String, String, i64)>> {
    let enabled: Option<(i64,)> = transaction
        .fetch_optional(&transaction.statement(
            &format!(
                "SELECT id FROM alert_rules WHERE kind = 'new_source' AND {} LIMIT 1",
                transaction.backend().is_true("enabled")
            ),
            Vec::new(),
        ))
        .await?;
    if enabled.is_none() {
        return Ok(Vec::new());
    }
    let mut batch: BTreeMap<(String, String), i64> = BTreeMap::new();
    for row in rows {
        if let Some(ip) = &row.source_ip {
            *batch
                .entry((row.policy_domain.clone(), ip.clone()))
                .or_default() += row.count;
        }
    }
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let backend = transaction.backend();
    let domains: BTreeSet<&String> = batch.keys().map(|(domain, _)| domain).collect();
    let listed: Vec<serde_json::Value> = domains
        .iter()
        .map(|domain| serde_json::json!({ "d": domain }))
        .collect();
    let known: Vec<(String,)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT u.d FROM {list} WHERE EXISTS \
                 (SELECT 1 FROM totals_domain_source_all t WHERE t.policy_domain = u.d)",
                list = backend.json_rows("$1", "u", &[("d", ColumnType::Text)]),
            ),
            vec![json(&listed)],
        ))
        .await?;
    let known: BTreeSet<String> = known.into_iter().map(|(domain,)| domain).collect();
    let pairs: Vec<serde_json::Value> = batch
        .keys()
        .filter(|(domain, _)| known.contains(domain))
        .map(|(domain, ip)| serde_json::json!({ "d": domain, "ip": ip }))
        .collect();
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let seen: Vec<(String, String)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT u.d, u.ip FROM {list} WHERE EXISTS \
                 (SELECT 1 FROM totals_domain_source_all t \
                   WHERE t.policy_domain = u.d AND t.source_ip = {ip})",
                list = backend.json_rows(
                    "$1",
                    "u",
                    &[("d", ColumnType::Text), ("ip", ColumnType::Text)]
                ),
                ip = backend.inet("u.ip"),
            ),
            vec![json(&pairs)],
        ))
        .await?;
    let seen: BTreeSet<(String, String)> = seen.into_iter().collect();
    Ok(batch
        .into_iter()
        .filter(|(key, _)| known.contains(&key.0) && !seen.contains(key))
        .map(|((domain, ip), count)| (domain, ip, count))
        .collect())
}

/// Evaluates the batch rules on a counted batch: `new` from `new_sources`
/// (read before counting), failing volume from the rollups now counting
/// the batch.
pub(super) async fn on_batch(
    transaction: &mut Tx,
    rows: &[FineRow],
    new: &[(String, String, i64)],
    now: DateTime<Utc>,
    dashboard_url: &str,
    senders: &SendersConfig,
) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let failing_domains: BTreeMap<String, DateTime<Utc>> = rows
        .iter()
        .filter(|row| !row.dmarc_pass && row.count > 0)
        .fold(BTreeMap::new(), |mut days, row| {
            let day = days.entry(row.policy_domain.clone()).or_insert(row.day);
            *day = (*day).max(row.day);
            days
        });
    if new.is_empty() && failing_domains.is_empty() {
        return Ok(summary);
    }
    let context = Context::load(transaction, now, dashboard_url).await?;
    // Classes only when a rule asks for some: classifying costs lookups.
    let classed: Vec<(String, String)> = new
        .iter()
        .filter(|(domain, _, _)| {
            context
                .rules_of(RuleKind::NewSource)
                .any(|rule| !rule.classes.is_empty() && rule.applies_to(domain))
        })
        .map(|(domain, ip, _)| (domain.clone(), ip.clone()))
        .collect();
    let classes = classes::of_new_sources(transaction, &classed, rows, senders).await?;
    let mut per_domain: HashMap<&str, usize> = HashMap::new();
    let mut new_source_findings: Vec<(&Rule, Finding)> = Vec::new();
    for (domain, ip, count) in new {
        let opened = per_domain.entry(domain.as_str()).or_default();
        if *opened >= NEW_SOURCES_PER_DOMAIN {
            continue;
        }
        for rule in context.rules_of(RuleKind::NewSource) {
            if !rule.applies_to(domain) || *count < rule.threshold {
                continue;
            }
            let class = classes.get(&(domain.clone(), ip.clone())).copied();
            if !rule.classes.is_empty() && !class.is_some_and(|class| rule.classes.contains(&class))
            {
                continue;
            }
            let class_note = class
                .map(|class| format!(" Its class as first reported: {}.", class.label()))
                .unwrap_or_default();
            let finding = Finding {
                domain: domain.clone(),
                subject: ip.clone(),
                title: format!("New source sending as {domain}: {ip}"),
                detail: format!(
                    "{ip} sent {count} message{} as {domain}, the first reported from it.{class_note}",
                    if *count == 1 { "" } else { "s" }
                ),
                link: link("/aggregate", &[("domain", domain), ("source", ip)]),
            };
            new_source_findings.push((rule, finding));
            *opened += 1;
        }
    }
    summary.add(raise_all(transaction, &context, &new_source_findings).await?);
    let failing_days = failing_per_day(transaction, &context, &failing_domains).await?;
    let mut failing_findings: Vec<(&Rule, Finding)> = Vec::new();
    for (domain, last_day) in &failing_domains {
        for rule in context.rules_of(RuleKind::FailingVolume) {
            if !rule.applies_to(domain) {
                continue;
            }
            let first_day = *last_day - Duration::days(i64::from(rule.window_days.max(1) - 1));
            let failing: i64 = failing_days
                .range((domain.clone(), first_day)..=(domain.clone(), *last_day))
                .map(|(_, count)| count)
                .sum();
            if failing < rule.threshold {
                continue;
            }
            let (since, until) = (
                first_day.format("%Y-%m-%d").to_string(),
                last_day.format("%Y-%m-%d").to_string(),
            );
            let finding = Finding {
                domain: domain.clone(),
                subject: String::new(),
                title: format!("{failing} messages failing DMARC as {domain}"),
                detail: format!(
                    "{failing} messages sent as {domain} failed DMARC from {since} to {until} \
                     (the rule's threshold: {}).",
                    rule.threshold
                ),
                link: link(
                    "/aggregate",
                    &[
                        ("domain", domain),
                        ("result", "fail"),
                        ("since", &since),
                        ("until", &until),
                    ],
                ),
            };
            failing_findings.push((rule, finding));
        }
    }
    summary.add(raise_all(transaction, &context, &failing_findings).await?);
    summary.add(rates::source_failing_volume(transaction, &context, rows).await?);
    summary.add(rates::pass_rate_drops(transaction, &context, rows).await?);
    Ok(summary)
}

/// Failing messages per domain and day, over the longest window of the
/// failing-volume rules before each domain's last day in the batch: one
/// statement for the batch, however many rules and windows.
async fn failing_per_day(
    transaction: &mut Tx,
    context: &Context,
    failing_domains: &BTreeMap<String, DateTime<Utc>>,
) -> StoreResult<BTreeMap<(String, DateTime<Utc>), i64>> {
    let longest = context
        .rules_of(RuleKind::FailingVolume)
        .map(|rule| rule.window_days.max(1))
        .max();
    let (Some(longest), Some(first), Some(last)) = (
        longest,
        failing_domains.values().min(),
        failing_domains.values().max(),
    ) else {
        return Ok(BTreeMap::new());
    };
    let first = *first - Duration::days(i64::from(longest - 1));
    let domains: Vec<&String> = failing_domains.keys().collect();
    let backend = transaction.backend();
    let rows: Vec<(String, DateTime<Utc>, i64)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT policy_domain, date_begin, {sum} FROM rollup_domain_day \
                 WHERE {listed} AND {failed} AND date_begin >= $2 AND date_begin <= $3 \
                 GROUP BY policy_domain, date_begin",
                sum = backend.sum("count"),
                listed = backend.in_text_list("policy_domain", "$1"),
                failed = backend.is_false("dmarc_pass"),
            ),
            vec![json(&domains), first.into(), (*last).into()],
        ))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(domain, day, count)| ((domain, day), count))
        .collect())
}

/// The scheduled evaluation: failure and TLS reports past their cursors,
/// silence, and alerts whose cause has gone. `None` when another node is
/// at it (PostgreSQL).
pub(super) async fn scheduled(
    db: &Db,
    now: DateTime<Utc>,
    dashboard_url: &str,
) -> StoreResult<Option<EvaluationSummary>> {
    let mut transaction = db.begin_durable().await?;
    if let Tx::Postgres(pg) = &mut transaction {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ALERT_SCHEDULE_LOCK)
            .fetch_one(&mut **pg)
            .await?;
        if !locked {
            return Ok(None);
        }
    }
    let context = Context::load(&mut transaction, now, dashboard_url).await?;
    let mut summary = EvaluationSummary::default();
    summary.add(failure_reports(&mut transaction, &context).await?);
    summary.add(tls_failures(&mut transaction, &context).await?);
    summary.add(dns::changed(&mut transaction, &context).await?);
    summary.add(dns::broken(&mut transaction, &context).await?);
    summary.add(silence(&mut transaction, &context).await?);
    summary.add(gone(&mut transaction, &context).await?);
    transaction.commit().await?;
    Ok(Some(summary))
}

async fn cursor(transaction: &mut Tx, name: &str) -> StoreResult<i64> {
    let row: Option<(i64,)> = transaction
        .fetch_optional(&transaction.statement(
            "SELECT last_id FROM alert_cursors WHERE name = $1",
            vec![name.into()],
        ))
        .await?;
    Ok(row.map_or(0, |(id,)| id))
}

async fn advance(transaction: &mut Tx, name: &str, last_id: i64) -> StoreResult<()> {
    transaction
        .execute(&transaction.statement(
            "INSERT INTO alert_cursors (name, last_id) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
            vec![name.into(), last_id.into()],
        ))
        .await?;
    Ok(())
}

async fn failure_reports(
    transaction: &mut Tx,
    context: &Context,
) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let after = cursor(transaction, "failure_reports").await?;
    let backend = transaction.backend();
    let rows: Vec<(i64, Option<String>)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT id, {domains} AS domains FROM failure_reports WHERE id > $1 ORDER BY id",
                domains = backend.list_text("reported_domain"),
            ),
            vec![after.into()],
        ))
        .await?;
    let Some(last) = rows.last().map(|(id, _)| *id) else {
        return Ok(summary);
    };
    let mut per_domain: BTreeMap<String, i64> = BTreeMap::new();
    for (_, domains) in &rows {
        let domain = domains
            .as_deref()
            .and_then(|list| list.split(',').next())
            .map(|domain| domain.trim().to_ascii_lowercase())
            .filter(|domain| !domain.is_empty());
        if let Some(domain) = domain {
            *per_domain.entry(domain).or_default() += 1;
        }
    }
    for (domain, count) in &per_domain {
        for rule in context.rules_of(RuleKind::FailureReport) {
            if !rule.applies_to(domain) || *count < rule.threshold {
                continue;
            }
            let finding = Finding {
                domain: domain.clone(),
                subject: String::new(),
                title: format!("New failure reports for {domain}"),
                detail: format!(
                    "{count} new failure report{} for {domain}: mail sent as it failed DMARC.",
                    if *count == 1 { "" } else { "s" }
                ),
                link: link("/failures", &[("domain", domain)]),
            };
            summary.add(raise(transaction, context, rule, &finding).await?);
        }
    }
    advance(transaction, "failure_reports", last).await?;
    Ok(summary)
}

async fn tls_failures(transaction: &mut Tx, context: &Context) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let after = cursor(transaction, "tls_reports").await?;
    let rows: Vec<(i64, String, i64, DateTime<Utc>)> = transaction
        .fetch_all(&transaction.statement(
            "SELECT r.id, p.policy_domain, p.failed_sessions, r.date_begin
               FROM tls_reports r JOIN tls_policies p ON p.report_id = r.id
              WHERE r.id > $1 ORDER BY r.id",
            vec![after.into()],
        ))
        .await?;
    let Some(last) = rows.iter().map(|(id, _, _, _)| *id).max() else {
        return Ok(summary);
    };
    // Per domain: failed sessions, and the start of the earliest report
    // that has some.
    let mut per_domain: BTreeMap<String, (i64, Option<DateTime<Utc>>)> = BTreeMap::new();
    for (_, domain, failed, begin) in &rows {
        let entry = per_domain.entry(domain.to_ascii_lowercase()).or_default();
        entry.0 += failed;
        if *failed > 0 {
            entry.1 = Some(entry.1.map_or(*begin, |first| first.min(*begin)));
        }
    }
    for (domain, (failed, first_failing)) in &per_domain {
        let link = link("/tls", &[("domain", domain)]);
        for rule in context.rules_of(RuleKind::TlsrptFailure) {
            if !rule.applies_to(domain) || *failed < rule.threshold.max(1) {
                continue;
            }
            let finding = Finding {
                domain: domain.clone(),
                subject: String::new(),
                title: format!("TLS failures delivering to {domain}"),
                detail: format!(
                    "New TLS reports count {failed} failed session{} delivering mail to {domain}.",
                    if *failed == 1 { "" } else { "s" }
                ),
                link: link.clone(),
            };
            summary.add(raise(transaction, context, rule, &finding).await?);
        }
        let Some(first_failing) = first_failing else {
            continue;
        };
        for rule in context.rules_of(RuleKind::TlsrptFirstFailure) {
            if !rule.applies_to(domain) || *failed < rule.threshold.max(1) {
                continue;
            }
            let days = i64::from(rule.window_days.max(1));
            let clean_since = *first_failing - Duration::days(days);
            if !clean_before(transaction, domain, after, clean_since).await? {
                continue;
            }
            let finding = Finding {
                domain: domain.clone(),
                subject: String::new(),
                title: format!("First TLS failures delivering to {domain} in {days} days"),
                detail: format!(
                    "New TLS reports count {failed} failed session{} delivering mail to {domain}, \
                     after {days} days of reports without any.",
                    if *failed == 1 { "" } else { "s" }
                ),
                link: link.clone(),
            };
            summary.add(raise(transaction, context, rule, &finding).await?);
        }
    }
    advance(transaction, "tls_reports", last).await?;
    Ok(summary)
}

/// Whether the TLS reports for `domain` read before (ids up to `read`)
/// that cover time since `since` exist and count no failed session.
async fn clean_before(
    transaction: &mut Tx,
    domain: &str,
    read: i64,
    since: DateTime<Utc>,
) -> StoreResult<bool> {
    let backend = transaction.backend();
    let (reports, failed): (i64, i64) = transaction
        .fetch_one(&transaction.statement(
            &format!(
                "SELECT count(*), {failed} FROM tls_reports r \
                 JOIN tls_policies p ON p.report_id = r.id \
                 WHERE lower(p.policy_domain) = $1 AND r.id <= $2 AND r.date_end > $3",
                failed = backend.sum("p.failed_sessions"),
            ),
            vec![domain.into(), read.into(), since.into()],
        ))
        .await?;
    Ok(reports > 0 && failed == 0)
}

/// Days a reporter must have reported on, of the 7 before its last report,
/// to count as reporting daily.
const DAILY_DAYS: usize = 5;

async fn silence(transaction: &mut Tx, context: &Context) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let domain_rules: Vec<&Rule> = context.rules_of(RuleKind::DomainSilent).collect();
    let reporter_rules: Vec<&Rule> = context.rules_of(RuleKind::ReporterSilent).collect();
    if !domain_rules.is_empty() {
        let last: Vec<(String, DateTime<Utc>)> = transaction
            .fetch_all(&transaction.statement(
                "SELECT policy_domain, max(created_at) AS last_at FROM aggregate_reports \
                 GROUP BY policy_domain",
                Vec::new(),
            ))
            .await?;
        for (domain, last_at) in last {
            let domain = domain.to_ascii_lowercase();
            for rule in domain_rules.iter().filter(|rule| rule.applies_to(&domain)) {
                let quiet = context.now - last_at;
                if quiet >= Duration::days(i64::from(rule.window_days)) {
                    let finding = Finding {
                        domain: domain.clone(),
                        subject: String::new(),
                        title: format!("No reports for {domain} in {} days", quiet.num_days()),
                        detail: format!(
                            "The last aggregate report for {domain} arrived {}.",
                            last_at.format("%Y-%m-%d %H:%M UTC")
                        ),
                        link: link("/aggregate", &[("domain", &domain)]),
                    };
                    summary.add(raise(transaction, context, rule, &finding).await?);
                } else {
                    summary.add(resolve_open(transaction, context, rule, &domain, "").await?);
                }
            }
        }
    }
    if !reporter_rules.is_empty() {
        let longest = reporter_rules
            .iter()
            .map(|rule| rule.window_days)
            .max()
            .unwrap_or(1);
        let since = context.now - Duration::days(i64::from(longest) + 8);
        let arrivals: Vec<(String, String, DateTime<Utc>)> = transaction
            .fetch_all(&transaction.statement(
                "SELECT policy_domain, org_name, created_at FROM aggregate_reports \
                 WHERE created_at >= $1",
                vec![since.into()],
            ))
            .await?;
        let mut reporters: BTreeMap<(String, String), Vec<DateTime<Utc>>> = BTreeMap::new();
        for (domain, org, at) in arrivals {
            reporters
                .entry((domain.to_ascii_lowercase(), org))
                .or_default()
                .push(at);
        }
        for ((domain, org), times) in &reporters {
            let Some(last_at) = times.iter().max().copied() else {
                continue;
            };
            let days: BTreeSet<i64> = times
                .iter()
                .map(|at| (last_at - *at).num_days())
                .filter(|ago| (1..=7).contains(ago))
                .collect();
            let daily = days.len() >= DAILY_DAYS;
            for rule in reporter_rules.iter().filter(|rule| rule.applies_to(domain)) {
                let quiet = context.now - last_at;
                if quiet < Duration::days(i64::from(rule.window_days)) {
                    summary.add(resolve_open(transaction, context, rule, domain, org).await?);
                } else if daily {
                    let finding = Finding {
                        domain: domain.clone(),
                        subject: org.clone(),
                        title: format!("{org} stopped reporting {domain}"),
                        detail: format!(
                            "{org} reported {domain} daily; its last report arrived {} ({} days ago).",
                            last_at.format("%Y-%m-%d %H:%M UTC"),
                            quiet.num_days()
                        ),
                        link: link("/aggregate", &[("domain", domain), ("org", org)]),
                    };
                    summary.add(raise(transaction, context, rule, &finding).await?);
                }
            }
        }
    }
    Ok(summary)
}

async fn resolve_open(
    transaction: &mut Tx,
    context: &Context,
    rule: &Rule,
    domain: &str,
    subject: &str,
) -> StoreResult<EvaluationSummary> {
    let row: Option<AlertRow> = transaction
        .fetch_optional(&transaction.statement(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts \
                 WHERE rule_id = $1 AND domain = $2 AND subject = $3 AND state = 'open'"
            ),
            vec![rule.id.into(), domain.into(), subject.into()],
        ))
        .await?;
    let Some(alert) = row.map(AlertRow::decode).transpose()? else {
        return Ok(EvaluationSummary::default());
    };
    resolve(transaction, context, Some(rule), alert, None).await?;
    Ok(EvaluationSummary {
        resolved: 1,
        ..EvaluationSummary::default()
    })
}

/// Resolves the open alerts of event rules that have not fired for their
/// rule's window.
async fn gone(transaction: &mut Tx, context: &Context) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let rows: Vec<AlertRow> = transaction
        .fetch_all(&transaction.statement(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'open'"),
            Vec::new(),
        ))
        .await?;
    for row in rows {
        let alert = row.decode()?;
        if !alert.kind.resolves_after_window() {
            continue;
        }
        let Some(rule) = context.rules.iter().find(|rule| rule.id == alert.rule_id) else {
            continue;
        };
        if context.now - alert.last_seen_at >= Duration::days(i64::from(rule.window_days)) {
            resolve(transaction, context, Some(rule), alert, None).await?;
            summary.resolved += 1;
        }
    }
    Ok(summary)
}
