//! Sender approvals as stored: an admin's rule that approves or ignores
//! the sources of a domain (or of every domain) a name, IP, CIDR block,
//! AS number or PTR base domain picks out, with who made it and when. A
//! revoked rule is kept, with who revoked it and when.

use crate::scope::Scope;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::db::{Db, Sql, Tx};
use super::{StoreError, StoreResult};
use crate::senders::{Action, MatchKind};

/// A rule as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub id: i64,
    /// The policy domain it applies to; null: every domain.
    pub domain: Option<String>,
    pub action: Action,
    pub match_kind: MatchKind,
    /// The name, IP, CIDR block, AS number or PTR base domain, in canonical form.
    pub value: String,
    pub note: String,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    pub revoked_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A rule to store: its value already canonical (`MatchKind::canonical`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    pub domain: Option<String>,
    pub action: Action,
    pub match_kind: MatchKind,
    pub value: String,
    pub note: String,
    pub created_by: String,
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    id: i64,
    domain: Option<String>,
    action: String,
    match_kind: String,
    match_value: String,
    note: String,
    created_by: String,
    created_at: DateTime<Utc>,
    revoked_by: Option<String>,
    revoked_at: Option<DateTime<Utc>>,
}

impl ApprovalRow {
    fn decode(self) -> StoreResult<Approval> {
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!("sender approval {} has an unknown {what}", self.id))
        };
        Ok(Approval {
            action: Action::parse(&self.action).map_err(|_| corrupt("action"))?,
            match_kind: MatchKind::parse(&self.match_kind).map_err(|_| corrupt("match kind"))?,
            id: self.id,
            domain: self.domain,
            value: self.match_value,
            note: self.note,
            created_by: self.created_by,
            created_at: self.created_at,
            revoked_by: self.revoked_by,
            revoked_at: self.revoked_at,
        })
    }
}

const COLUMNS: &str = "id, domain, action, match_kind, match_value, note, created_by, \
                       created_at, revoked_by, revoked_at";

/// Stores a rule; returns it as stored.
pub async fn add(db: &Db, new: &NewApproval) -> StoreResult<Approval> {
    let row: ApprovalRow = db
        .fetch_one(&db.statement(
            &format!(
                "INSERT INTO sender_approvals \
                 (domain, action, match_kind, match_value, note, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            vec![
                new.domain.as_deref().into(),
                new.action.key().into(),
                new.match_kind.key().into(),
                new.value.as_str().into(),
                new.note.as_str().into(),
                new.created_by.as_str().into(),
                Utc::now().into(),
            ],
        ))
        .await?;
    row.decode()
}

/// The rules that apply to `domain` (its own and those for every domain),
/// or every rule when `domain` is `None`; revoked ones too when asked.
/// Newest first. A caller limited to some domains sees their rules and
/// those for every domain (which apply to theirs).
pub async fn list(
    db: &Db,
    scope: &Scope,
    domain: Option<&str>,
    revoked: bool,
) -> StoreResult<Vec<Approval>> {
    let mut sql = db.sql();
    sql.push(&format!(
        "SELECT {COLUMNS} FROM sender_approvals WHERE 1 = 1"
    ));
    push_scope(&mut sql, scope);
    if let Some(domain) = domain {
        sql.push(" AND (domain IS NULL OR domain = ")
            .bind(domain)
            .push(")");
    }
    if !revoked {
        sql.push(" AND revoked_at IS NULL");
    }
    sql.push(" ORDER BY id DESC");
    let rows: Vec<ApprovalRow> = db.fetch_all(&sql).await?;
    rows.into_iter().map(ApprovalRow::decode).collect()
}

/// The rules in force, read in `transaction` (the rollup applier's).
pub(super) async fn in_force(transaction: &mut Tx) -> StoreResult<Vec<Approval>> {
    let rows: Vec<ApprovalRow> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT {COLUMNS} FROM sender_approvals WHERE revoked_at IS NULL ORDER BY id DESC"
            ),
            Vec::new(),
        ))
        .await?;
    rows.into_iter().map(ApprovalRow::decode).collect()
}

/// Rule `id`, if `scope` sees it.
pub async fn get(db: &Db, scope: &Scope, id: i64) -> StoreResult<Option<Approval>> {
    let mut sql = db.sql();
    sql.push(&format!(
        "SELECT {COLUMNS} FROM sender_approvals WHERE id = "
    ))
    .bind(id);
    push_scope(&mut sql, scope);
    let row: Option<ApprovalRow> = db.fetch_optional(&sql).await?;
    row.map(ApprovalRow::decode).transpose()
}

/// ` AND (a rule for every domain, or for one `scope` sees)`: `x OR 1 = 1
/// AND y` reads `x OR (y)`, and `x OR 1 = 1` when every domain is seen.
fn push_scope(sql: &mut Sql, scope: &Scope) {
    sql.push(" AND (domain IS NULL OR 1 = 1");
    scope.push_condition(sql, "domain");
    sql.push(")");
}

/// Revokes an active rule; returns it revoked, or `None` when there is
/// no active rule with that id.
pub async fn revoke(db: &Db, id: i64, by: &str) -> StoreResult<Option<Approval>> {
    let row: Option<ApprovalRow> = db
        .fetch_optional(&db.statement(
            &format!(
                "UPDATE sender_approvals SET revoked_by = $2, revoked_at = $3 \
                 WHERE id = $1 AND revoked_at IS NULL RETURNING {COLUMNS}"
            ),
            vec![id.into(), by.into(), Utc::now().into()],
        ))
        .await?;
    row.map(ApprovalRow::decode).transpose()
}
