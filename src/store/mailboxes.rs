//! Where each mailbox pull stands (`mailbox_state`): the folder's
//! UIDVALIDITY and the last UID handled, the lease that keeps two nodes
//! from pulling one mailbox, and what the dashboard and `/metrics` show.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::db::Db;
use super::inbox::now;
use super::StoreResult;

/// One mailbox's row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailboxState {
    pub name: String,
    pub uidvalidity: Option<i64>,
    pub last_uid: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// In plain words, for the dashboard.
    pub last_error: Option<String>,
    /// `MailboxErrorKind::as_str` of the last error.
    pub last_error_kind: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub messages_new: i64,
    pub messages_duplicate: i64,
    pub messages_skipped: i64,
    pub backlog: i64,
    pub waiting: Option<String>,
}

impl MailboxState {
    /// Whether the last attempt failed (an error newer than the last success).
    pub fn is_failing(&self) -> bool {
        match (self.last_error_at, self.last_success_at) {
            (Some(error), Some(success)) => error >= success,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// What one batch of a pull did, written together with the UID reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxProgress {
    pub uidvalidity: u32,
    /// Every message up to this UID is in the inbox and handled on the server.
    pub last_uid: u32,
    pub new: u64,
    pub duplicate: u64,
    pub skipped: u64,
    /// Messages found but not yet handled.
    pub backlog: u64,
}

const COLUMNS: &str = "name, uidvalidity, last_uid, lease_owner, lease_until, last_attempt_at, \
     last_success_at, last_error, last_error_kind, last_error_at, consecutive_failures, \
     messages_new, messages_duplicate, messages_skipped, backlog, waiting";

pub(super) async fn all(db: &Db) -> StoreResult<Vec<MailboxState>> {
    db.fetch_all(&db.statement(
        &format!("SELECT {COLUMNS} FROM mailbox_state ORDER BY name"),
        Vec::new(),
    ))
    .await
}

pub(super) async fn one(db: &Db, name: &str) -> StoreResult<Option<MailboxState>> {
    db.fetch_optional(&db.statement(
        &format!("SELECT {COLUMNS} FROM mailbox_state WHERE name = $1"),
        vec![name.into()],
    ))
    .await
}

/// Takes or renews the lease on `name` for `owner`: true when `owner`
/// holds it until now + `lease`. One conditional UPDATE, so of two nodes
/// asking at once only one gets it (on either backend).
pub(super) async fn take_lease(
    db: &Db,
    name: &str,
    owner: &str,
    lease: Duration,
) -> StoreResult<bool> {
    db.execute(&db.statement(
        "INSERT INTO mailbox_state (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        vec![name.into()],
    ))
    .await?;
    let now = now();
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let taken = db
        .execute(&db.statement(
            "UPDATE mailbox_state SET lease_owner = $2, lease_until = $3
              WHERE name = $1
                AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until IS NULL OR lease_until < $4)",
            vec![name.into(), owner.into(), until.into(), now.into()],
        ))
        .await?;
    Ok(taken == 1)
}

pub(super) async fn release_lease(db: &Db, name: &str, owner: &str) -> StoreResult<()> {
    db.execute(&db.statement(
        "UPDATE mailbox_state SET lease_owner = NULL, lease_until = NULL, waiting = NULL
          WHERE name = $1 AND lease_owner = $2",
        vec![name.into(), owner.into()],
    ))
    .await?;
    Ok(())
}

/// Records a batch's progress and renews the lease for `lease`; false when
/// `owner` no longer holds it (nothing written: the holder's own progress
/// wins).
pub(super) async fn progress(
    db: &Db,
    name: &str,
    owner: &str,
    progress: &MailboxProgress,
    lease: Duration,
) -> StoreResult<bool> {
    let now = now();
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let written = db
        .execute(&db.statement(
            "UPDATE mailbox_state
                SET uidvalidity = $3, last_uid = $4,
                    messages_new = messages_new + $5,
                    messages_duplicate = messages_duplicate + $6,
                    messages_skipped = messages_skipped + $7,
                    backlog = $8, last_attempt_at = $9, lease_until = $10
              WHERE name = $1 AND lease_owner = $2",
            vec![
                name.into(),
                owner.into(),
                progress.uidvalidity.into(),
                progress.last_uid.into(),
                progress.new.into(),
                progress.duplicate.into(),
                progress.skipped.into(),
                progress.backlog.into(),
                now.into(),
                until.into(),
            ],
        ))
        .await?;
    Ok(written == 1)
}

/// A pass went through: the errors before it are over.
pub(super) async fn succeeded(db: &Db, name: &str, waiting: Option<&str>) -> StoreResult<()> {
    let now = now();
    db.execute(&db.statement(
        "INSERT INTO mailbox_state (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        vec![name.into()],
    ))
    .await?;
    db.execute(&db.statement(
        "UPDATE mailbox_state
            SET last_attempt_at = $2, last_success_at = $2, consecutive_failures = 0,
                backlog = 0, waiting = $3
          WHERE name = $1",
        vec![name.into(), now.into(), waiting.into()],
    ))
    .await?;
    Ok(())
}

/// A pass failed; returns how many passes in a row have.
pub(super) async fn failed(db: &Db, name: &str, kind: &str, message: &str) -> StoreResult<i32> {
    let now = now();
    db.execute(&db.statement(
        "INSERT INTO mailbox_state (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        vec![name.into()],
    ))
    .await?;
    db.execute(&db.statement(
        "UPDATE mailbox_state
            SET last_attempt_at = $2, last_error_at = $2, last_error_kind = $3,
                last_error = $4, consecutive_failures = consecutive_failures + 1
          WHERE name = $1",
        vec![name.into(), now.into(), kind.into(), message.into()],
    ))
    .await?;
    let (failures,): (i32,) = db
        .fetch_one(&db.statement(
            "SELECT consecutive_failures FROM mailbox_state WHERE name = $1",
            vec![name.into()],
        ))
        .await?;
    Ok(failures)
}
