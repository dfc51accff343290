//! The outbox as stored (`outbox`, PostgreSQL 0019, SQLite 0017): what
//! dmarcd is to send, committed before it is sent; claims for a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several nodes never take the
//! same row; SQLite has one writer); and how each row ended. The payload is
//! opaque JSON here: `crate::outbox` renders and reads it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::db::{json, Backend, Db, Tx};
use super::StoreResult;

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// `mail` or `webhook`.
    pub kind: &'static str,
    /// The same key queued twice is stored once (an alert for one channel).
    pub dedup_key: Option<String>,
    /// What to send, as JSON.
    pub payload: String,
}

/// A claimed row, to send.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedOutboxItem {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// Claims so far, this one included.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// A row as the dashboard and tests see it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: String,
    pub dedup_key: Option<String>,
    pub payload: String,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// The last temporary error, or why it failed for good.
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How sending a claimed row ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxResult {
    Sent,
    /// A temporary failure: tried again at `next_attempt_at`.
    Retry {
        next_attempt_at: DateTime<Utc>,
        error: String,
    },
    /// A permanent failure, or the give-up time passed: kept with the reason.
    Failed(String),
}

/// Queues `items` inside `transaction` (sent only once it commits); returns
/// the ids of the rows stored (a repeated `dedup_key` stores nothing).
pub async fn enqueue(
    transaction: &mut Tx,
    items: &[NewOutboxItem],
    now: DateTime<Utc>,
) -> StoreResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let stored: Option<(i64,)> = transaction
            .fetch_optional(&transaction.statement(
                "INSERT INTO outbox (kind, dedup_key, payload, created_at, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
                vec![
                    item.kind.into(),
                    item.dedup_key.as_deref().into(),
                    item.payload.as_str().into(),
                    now.into(),
                ],
            ))
            .await?;
        ids.extend(stored.map(|(id,)| id));
    }
    Ok(ids)
}

/// `enqueue` in a transaction of its own, durable when it returns.
pub(super) async fn enqueue_now(
    db: &Db,
    items: &[NewOutboxItem],
    now: DateTime<Utc>,
) -> StoreResult<Vec<i64>> {
    let mut transaction = db.begin_durable().await?;
    let ids = enqueue(&mut transaction, items, now).await?;
    transaction.commit().await?;
    Ok(ids)
}

/// Claims up to `limit` rows due at `now` (and rows whose claim ran out:
/// their sender died) for `owner` until `now + lease`, oldest due first.
pub(super) async fn claim(
    db: &Db,
    owner: &str,
    limit: u32,
    lease: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Vec<ClaimedOutboxItem>> {
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let skip_locked = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let mut claimed: Vec<ClaimedOutboxItem> = db
        .fetch_all(&db.statement(
            &format!(
                "UPDATE outbox SET status = 'sending', claimed_by = $1, claimed_until = $2,
                        attempts = attempts + 1
                  WHERE id IN (SELECT id FROM outbox
                                WHERE (status = 'pending' AND next_attempt_at <= $3)
                                   OR (status = 'sending' AND claimed_until < $3)
                                ORDER BY next_attempt_at, id LIMIT $4{skip_locked})
                 RETURNING id, kind, payload, attempts, created_at"
            ),
            vec![
                owner.into(),
                until.into(),
                now.into(),
                i64::from(limit.max(1)).into(),
            ],
        ))
        .await?;
    claimed.sort_by_key(|item| item.id);
    Ok(claimed)
}

/// Records how sending row `id` ended; false when `owner` no longer held
/// its claim (nothing written).
pub(super) async fn finish(
    db: &Db,
    id: i64,
    owner: &str,
    result: &OutboxResult,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let statement = match result {
        OutboxResult::Sent => db.statement(
            "UPDATE outbox SET status = 'sent', finished_at = $3,
                    claimed_by = NULL, claimed_until = NULL
              WHERE id = $1 AND claimed_by = $2 AND status = 'sending'",
            vec![id.into(), owner.into(), now.into()],
        ),
        OutboxResult::Retry {
            next_attempt_at,
            error,
        } => db.statement(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $3, last_error = $4,
                    claimed_by = NULL, claimed_until = NULL
              WHERE id = $1 AND claimed_by = $2 AND status = 'sending'",
            vec![
                id.into(),
                owner.into(),
                (*next_attempt_at).into(),
                error.as_str().into(),
            ],
        ),
        OutboxResult::Failed(reason) => db.statement(
            "UPDATE outbox SET status = 'failed', finished_at = $3, last_error = $4,
                    claimed_by = NULL, claimed_until = NULL
              WHERE id = $1 AND claimed_by = $2 AND status = 'sending'",
            vec![id.into(), owner.into(), now.into(), reason.as_str().into()],
        ),
    };
    Ok(db.execute(&statement).await? == 1)
}

/// Gives back rows `ids` that `owner` claimed and did not finish sending
/// (it is stopping): pending again, due as they were, the attempt not
/// counted, so that the next pass of any node takes them at once instead
/// of after the lease. Returns how many it gave back.
pub(super) async fn release(db: &Db, ids: &[i64], owner: &str) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let backend = db.backend();
    db.execute(&db.statement(
        &format!(
            "UPDATE outbox SET status = 'pending', claimed_by = NULL, claimed_until = NULL,
                    attempts = attempts - 1
              WHERE {} AND claimed_by = $2 AND status = 'sending'",
            backend.in_int_list("id", "$1")
        ),
        vec![json(&ids), owner.into()],
    ))
    .await
}

/// The newest `limit` rows, newest first.
pub(super) async fn entries(db: &Db, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
    db.fetch_all(&db.statement(
        "SELECT id, kind, dedup_key, payload, status, attempts, created_at, next_attempt_at,
                last_error, finished_at
           FROM outbox ORDER BY id DESC LIMIT $1",
        vec![i64::from(limit).into()],
    ))
    .await
}
