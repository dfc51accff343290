//! Hosted MTA-STS and hosted records as stored: each domain's policy and
//! its history, the hosted DMARC record, and what ACME needs shared by
//! every node (account, certificates, challenges being validated).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::db::{json, Backend, Db};
use super::{StoreError, StoreResult};
use crate::hosted::policy::{next_policy_id, Mode, Policy};

/// A domain's hosted policy as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredPolicy {
    pub domain: String,
    #[serde(flatten)]
    pub policy: Policy,
    /// The id in the `_mta-sts` record; new with every change.
    pub policy_id: String,
    pub updated_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// One change of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PolicyChange {
    pub changed_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub changed_at: DateTime<Utc>,
    /// The policy before (null: the first one).
    pub old: Option<Policy>,
    pub new: Policy,
    pub old_id: Option<String>,
    pub new_id: String,
    /// Enforced although the safety checks failed.
    pub forced: bool,
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    domain: String,
    mode: String,
    mx: String,
    max_age: i64,
    policy_id: String,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

impl PolicyRow {
    fn decode(self) -> StoreResult<StoredPolicy> {
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!("the MTA-STS policy of {} has {what}", self.domain))
        };
        let mode = Mode::parse(&self.mode).ok_or_else(|| corrupt("an unknown mode"))?;
        let mx: Vec<String> =
            serde_json::from_str(&self.mx).map_err(|_| corrupt("unreadable mx patterns"))?;
        Ok(StoredPolicy {
            policy: Policy {
                mode,
                mx,
                max_age: u64::try_from(self.max_age).map_err(|_| corrupt("a negative max_age"))?,
            },
            domain: self.domain,
            policy_id: self.policy_id,
            updated_by: self.updated_by,
            updated_at: self.updated_at,
        })
    }
}

const POLICY_COLUMNS: &str = "domain, mode, mx, max_age, policy_id, updated_by, updated_at";

pub async fn policy(db: &Db, domain: &str) -> StoreResult<Option<StoredPolicy>> {
    let row: Option<PolicyRow> = db
        .fetch_optional(&db.statement(
            &format!("SELECT {POLICY_COLUMNS} FROM mta_sts_policies WHERE domain = $1"),
            vec![domain.into()],
        ))
        .await?;
    row.map(PolicyRow::decode).transpose()
}

pub async fn policies(db: &Db) -> StoreResult<Vec<StoredPolicy>> {
    let rows: Vec<PolicyRow> = db
        .fetch_all(&db.statement(
            &format!("SELECT {POLICY_COLUMNS} FROM mta_sts_policies ORDER BY domain"),
            Vec::new(),
        ))
        .await?;
    rows.into_iter().map(PolicyRow::decode).collect()
}

/// Stores `policy` for `domain` with a new id, and the change in the
/// history, in one transaction; returns the policy as now served.
pub async fn set_policy(
    db: &Db,
    domain: &str,
    policy: &Policy,
    by: &str,
    forced: bool,
    now: DateTime<Utc>,
) -> StoreResult<StoredPolicy> {
    let mut transaction = db.begin_durable().await?;
    // Two admins changing one policy at once: the second waits, then
    // builds on the first's id (SQLite's BEGIN IMMEDIATE already
    // serializes writers).
    let lock = if transaction.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let before: Option<PolicyRow> = transaction
        .fetch_optional(&transaction.statement(
            &format!("SELECT {POLICY_COLUMNS} FROM mta_sts_policies WHERE domain = $1{lock}"),
            vec![domain.into()],
        ))
        .await?;
    let before = before.map(PolicyRow::decode).transpose()?;
    let policy_id = next_policy_id(now, before.as_ref().map(|b| b.policy_id.as_str()));
    let row: PolicyRow = transaction
        .fetch_one(&transaction.statement(
            &format!(
                "INSERT INTO mta_sts_policies ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (domain) DO UPDATE SET mode = excluded.mode, mx = excluded.mx, \
                 max_age = excluded.max_age, policy_id = excluded.policy_id, \
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at \
                 RETURNING {POLICY_COLUMNS}"
            ),
            vec![
                domain.into(),
                policy.mode.key().into(),
                json(&policy.mx),
                policy.max_age.into(),
                policy_id.as_str().into(),
                by.into(),
                now.into(),
            ],
        ))
        .await?;
    let entry = |stored: &StoredPolicy| serde_json::json!({ "policy": stored.policy, "id": stored.policy_id });
    let stored = row.decode()?;
    transaction
        .execute(&transaction.statement(
            "INSERT INTO mta_sts_policy_history \
             (domain, changed_by, changed_at, old_policy, new_policy, forced) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                domain.into(),
                by.into(),
                now.into(),
                before.as_ref().map(|b| entry(b).to_string()).into(),
                entry(&stored).to_string().into(),
                forced.into(),
            ],
        ))
        .await?;
    transaction.commit().await?;
    Ok(stored)
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    changed_by: String,
    changed_at: DateTime<Utc>,
    old_policy: Option<String>,
    new_policy: String,
    forced: bool,
}

#[derive(serde::Deserialize)]
struct HistoryEntry {
    policy: Policy,
    id: String,
}

/// `domain`'s policy changes, newest first.
pub async fn history(db: &Db, domain: &str, limit: u32) -> StoreResult<Vec<PolicyChange>> {
    let rows: Vec<ChangeRow> = db
        .fetch_all(&db.statement(
            "SELECT changed_by, changed_at, old_policy, new_policy, forced \
             FROM mta_sts_policy_history WHERE domain = $1 ORDER BY id DESC LIMIT $2",
            vec![domain.into(), limit.into()],
        ))
        .await?;
    let read = |text: &str| {
        serde_json::from_str::<HistoryEntry>(text).map_err(|_| {
            StoreError::Corrupt(format!(
                "an MTA-STS history entry of {domain} is unreadable"
            ))
        })
    };
    rows.into_iter()
        .map(|row| {
            let old = row.old_policy.as_deref().map(read).transpose()?;
            let new = read(&row.new_policy)?;
            Ok(PolicyChange {
                changed_by: row.changed_by,
                changed_at: row.changed_at,
                old_id: old.as_ref().map(|entry| entry.id.clone()),
                old: old.map(|entry| entry.policy),
                new_id: new.id,
                new: new.policy,
                forced: row.forced,
            })
        })
        .collect()
}

/// A hosted DMARC record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StoredDmarcRecord {
    pub domain: String,
    pub record: String,
    pub updated_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

pub async fn dmarc_record(db: &Db, domain: &str) -> StoreResult<Option<StoredDmarcRecord>> {
    db.fetch_optional(&db.statement(
        "SELECT domain, record, updated_by, updated_at FROM hosted_dmarc_records WHERE domain = $1",
        vec![domain.into()],
    ))
    .await
}

/// Stores (replaces) the hosted DMARC record of `domain`, already checked.
pub async fn set_dmarc_record(
    db: &Db,
    domain: &str,
    record: &str,
    by: &str,
    now: DateTime<Utc>,
) -> StoreResult<StoredDmarcRecord> {
    db.fetch_one(&db.statement(
        "INSERT INTO hosted_dmarc_records (domain, record, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (domain) DO UPDATE SET record = excluded.record, \
         updated_by = excluded.updated_by, updated_at = excluded.updated_at \
         RETURNING domain, record, updated_by, updated_at",
        vec![domain.into(), record.into(), by.into(), now.into()],
    ))
    .await
}

/// Stops hosting `domain`'s DMARC record; false if none was hosted.
pub async fn remove_dmarc_record(db: &Db, domain: &str) -> StoreResult<bool> {
    Ok(db
        .execute(&db.statement(
            "DELETE FROM hosted_dmarc_records WHERE domain = $1",
            vec![domain.into()],
        ))
        .await?
        > 0)
}
