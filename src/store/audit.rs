//! The audit log as stored: one row per change and per sign-in, added by
//! the app, deleted only by retention, never updated (the database refuses
//! an UPDATE: migrations `audit_log`). What goes in is decided by
//! `crate::audit`; this module only writes, lists and prunes rows.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::db::{Db, Sql};
use super::StoreResult;

/// An entry to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub address: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    /// JSON text of what was there before, if anything.
    pub old_value: Option<String>,
    /// JSON text of what is there after, if anything.
    pub new_value: Option<String>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, Default, utoipa::ToSchema)]
pub struct EntryRow {
    pub id: i64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// A user name, `token:NAME` or `cli:USER`.
    pub actor: String,
    pub address: Option<String>,
    /// `group.verb`, one of `crate::audit::Action`'s keys.
    pub action: String,
    pub target: String,
    /// JSON text of the value before (secrets hidden), if there was one.
    pub old_value: Option<String>,
    /// JSON text of the value after (secrets hidden), if there is one.
    pub new_value: Option<String>,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Which entries to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exactly this actor (a user name, `token:NAME`, `cli:USER`).
    pub actor: Option<String>,
    /// This action, or every action under it when it ends in `.`
    /// (`alert_rule.` lists adds, changes and deletes).
    pub action: Option<String>,
    /// Targets containing this text.
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Entries older than this id (the next page).
    pub before_id: Option<i64>,
}

const COLUMNS: &str = "id, at, actor, address, action, target, old_value, new_value";

pub async fn insert(db: &Db, entry: &NewEntry<'_>) -> StoreResult<()> {
    db.execute(&db.statement(
        "INSERT INTO audit_log (at, actor, address, action, target, old_value, new_value) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            entry.at.into(),
            entry.actor.into(),
            entry.address.into(),
            entry.action.into(),
            entry.target.into(),
            entry.old_value.as_deref().into(),
            entry.new_value.as_deref().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The query for `filter`'s entries, newest first, at most `limit` when
/// given (a page) or all of them (a CSV export, streamed).
pub fn select(db: &Db, filter: &AuditFilter, limit: Option<i64>) -> Sql {
    let mut sql = db.sql();
    sql.push(&format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1"));
    if let Some(actor) = &filter.actor {
        sql.push(" AND actor = ").bind(actor.as_str());
    }
    match filter.action.as_deref() {
        Some(group) if group.ends_with('.') => {
            // The length is written into the text (a count, not input):
            // PostgreSQL has no substr taking a bigint parameter.
            let length = group.chars().count();
            sql.push(&format!(" AND substr(action, 1, {length}) = "))
                .bind(group);
        }
        Some(action) => {
            sql.push(" AND action = ").bind(action);
        }
        None => {}
    }
    if let Some(target) = &filter.target {
        // instr/strpos: a plain substring, no wildcards to escape.
        let find = match db.backend() {
            super::Backend::Postgres => "strpos",
            super::Backend::Sqlite => "instr",
        };
        sql.push(&format!(" AND {find}(target, "))
            .bind(target.as_str())
            .push(") > 0");
    }
    if let Some(since) = filter.since {
        sql.push(" AND at >= ").bind(since);
    }
    if let Some(until) = filter.until {
        sql.push(" AND at < ").bind(until);
    }
    if let Some(before) = filter.before_id {
        sql.push(" AND id < ").bind(before);
    }
    sql.push(" ORDER BY id DESC");
    if let Some(limit) = limit {
        sql.push(" LIMIT ").bind(limit);
    }
    sql
}

/// One page of `filter`'s entries, newest first.
pub async fn list(db: &Db, filter: &AuditFilter, limit: i64) -> StoreResult<Vec<EntryRow>> {
    db.fetch_all(&select(db, filter, Some(limit))).await
}

/// The cutoff for entries kept `days` (None: kept for ever).
fn cutoff(days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - Duration::days(i64::from(days)))
}

/// How many entries a prune keeping `days` would delete at `now`.
pub async fn count_prunable(db: &Db, days: u32, now: DateTime<Utc>) -> StoreResult<u64> {
    let Some(cutoff) = cutoff(days, now) else {
        return Ok(0);
    };
    let (count,): (i64,) = db
        .fetch_one(&db.statement(
            "SELECT count(*) FROM audit_log WHERE at < $1",
            vec![cutoff.into()],
        ))
        .await?;
    Ok(count as u64)
}

/// Deletes up to `batch` entries older than `days` at `now` (oldest
/// first); returns how many went.
pub async fn prune_batch(db: &Db, days: u32, batch: u32, now: DateTime<Utc>) -> StoreResult<u64> {
    let Some(cutoff) = cutoff(days, now) else {
        return Ok(0);
    };
    db.execute(&db.statement(
        "DELETE FROM audit_log WHERE id IN \
         (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)",
        vec![cutoff.into(), i64::from(batch.max(1)).into()],
    ))
    .await
}
