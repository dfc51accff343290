//! The inbox tables: raw messages as received, their claims by workers and
//! their statuses.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use super::db::{json, Backend, Db, Tx, Value};
use super::{raw_codec, rows, sha256, Accepted, Claimed, MessageInfo, StoreResult};
use crate::inbox::{Envelope, MessageStatus};

pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// Stores messages in one transaction (one commit, one fsync, for all of
/// them); returns once they are committed. Bytes already in the inbox are
/// not stored again: their existing id is returned.
pub(super) async fn insert_messages(
    db: &Db,
    messages: &[(&[u8], &Envelope)],
) -> StoreResult<Vec<Accepted>> {
    let backend = db.backend();
    let insert = format!(
        "INSERT INTO inbox_messages
            (sha256, size, received_at, intake, source_name, peer_ip, helo, mail_from, rcpt_to, tls, subject)
         VALUES ($1, $2, $3, $4, $5, {peer}, $7, $8, {rcpt_to}, $10, $11)
         ON CONFLICT (sha256) DO NOTHING
         RETURNING id",
        peer = backend.inet("$6"),
        rcpt_to = backend.text_list("$9"),
    );
    let mut transaction = db.begin_durable().await?;
    let mut accepted = Vec::with_capacity(messages.len());
    for (raw, envelope) in messages {
        let digest = sha256(raw).to_vec();
        let inserted: Option<(i64,)> = transaction
            .fetch_optional(&db.statement(
                &insert,
                vec![
                    Value::Bytes(digest.clone()),
                    (raw.len() as i64).into(),
                    now().into(),
                    envelope.intake.as_str().into(),
                    envelope.source_name.as_deref().into(),
                    envelope.peer_ip.into(),
                    envelope.helo.as_deref().into(),
                    envelope.mail_from.as_deref().into(),
                    json(&envelope.rcpt_to),
                    envelope.tls.into(),
                    crate::inbox::subject_of(raw).into(),
                ],
            ))
            .await?;
        match inserted {
            Some((id,)) => {
                insert_raw(&mut transaction, id, raw).await?;
                accepted.push(Accepted { id, is_new: true });
            }
            None => {
                let (id,): (i64,) = transaction
                    .fetch_one(&db.statement(
                        "SELECT id FROM inbox_messages WHERE sha256 = $1",
                        vec![Value::Bytes(digest)],
                    ))
                    .await?;
                accepted.push(Accepted { id, is_new: false });
            }
        }
    }
    transaction.commit().await?;
    Ok(accepted)
}

/// A message's bytes, in chunks of `rows::RAW_CHUNK_BYTES` (an empty
/// message is one empty chunk).
async fn insert_raw(transaction: &mut Tx, id: i64, raw: &[u8]) -> StoreResult<()> {
    let chunks: Vec<&[u8]> = if raw.is_empty() {
        vec![raw]
    } else {
        raw.chunks(rows::RAW_CHUNK_BYTES).collect()
    };
    for (seq, chunk) in chunks.into_iter().enumerate() {
        let (stored, codec) = raw_codec::encode(chunk);
        let insert = transaction.statement(
            "INSERT INTO inbox_raw (message_id, seq, raw, compression) VALUES ($1, $2, $3, $4)",
            vec![
                id.into(),
                (seq as i64).into(),
                Value::Bytes(stored),
                codec.as_str().into(),
            ],
        );
        transaction.execute(&insert).await?;
    }
    Ok(())
}

/// A claimed message as the claim returns it.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    source_name: Option<String>,
    attempts: i32,
}

/// Claims messages: first any one whose lease expired, alone (its worker
/// stopped or crashed; if the message itself crashes the process, it must
/// not take a batch down with it again), else a batch of pending ones.
pub(super) async fn claim(
    db: &Db,
    worker: &str,
    batch: u32,
    max_bytes: u64,
    lease: Duration,
) -> StoreResult<Vec<Claimed>> {
    for (expired, limit) in [(true, 1), (false, batch.max(1))] {
        let mut transaction = db.begin_derived().await?;
        let statement = match db.backend() {
            Backend::Postgres => super::postgres::claim(expired, worker, limit, max_bytes, lease),
            Backend::Sqlite => super::sqlite::claim(expired, worker, limit, max_bytes, lease),
        };
        let rows: Vec<ClaimRow> = transaction.fetch_all(&statement).await?;
        if rows.is_empty() {
            transaction.commit().await?;
            continue;
        }
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let mut raws = read_raw(&mut transaction, &ids).await?;
        transaction.commit().await?;
        let mut claimed: Vec<Claimed> = rows
            .into_iter()
            .map(|row| Claimed {
                raw: raws.remove(&row.id).unwrap_or_default(),
                id: row.id,
                source_name: row.source_name,
                attempts: row.attempts,
            })
            .collect();
        claimed.sort_by_key(|message| message.id);
        return Ok(claimed);
    }
    Ok(Vec::new())
}

#[derive(sqlx::FromRow)]
struct RawChunk {
    message_id: i64,
    raw: Vec<u8>,
    compression: String,
}

/// The bytes of some messages, by id.
async fn read_raw(
    transaction: &mut Tx,
    ids: &[i64],
) -> StoreResult<std::collections::HashMap<i64, Vec<u8>>> {
    let mut select = transaction.sql();
    let list = select.placeholder(json(&ids));
    select.push(&format!(
        "SELECT message_id, raw, compression FROM inbox_raw WHERE {} ORDER BY message_id, seq",
        select.backend().in_int_list("message_id", &list)
    ));
    let chunks: Vec<RawChunk> = transaction.fetch_all(&select).await?;
    let chunks = chunks
        .into_iter()
        .map(|chunk| {
            Ok((
                chunk.message_id,
                raw_codec::decode(chunk.raw, &chunk.compression)?,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(rows::join_chunks(chunks))
}

/// See `Store::release_claims`.
pub(super) async fn release_claims(db: &Db, worker: &str, ids: &[i64]) -> StoreResult<u64> {
    let mut update = db.sql();
    update
        .push(
            "UPDATE inbox_messages
                SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                    lease_until = NULL, claimed_by = NULL
              WHERE status = 'processing' AND claimed_by = ",
        )
        .bind(worker);
    let list = update.placeholder(json(&ids));
    update.push(&format!(" AND {}", db.backend().in_int_list("id", &list)));
    db.execute(&update).await
}

/// Marks processed messages: one statement per status for the messages
/// without an error text, one per message with one.
pub(super) async fn set_statuses(
    transaction: &mut Tx,
    statuses: &[(i64, MessageStatus, Option<String>)],
) -> StoreResult<()> {
    let finished = now();
    for status in [MessageStatus::Done, MessageStatus::Duplicate] {
        let ids: Vec<i64> = statuses
            .iter()
            .filter(|(_, s, error)| *s == status && error.is_none())
            .map(|(id, _, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let mut update = transaction.sql();
        update
            .push("UPDATE inbox_messages SET status = ")
            .bind(status.as_str())
            .push(", error = NULL, lease_until = NULL, claimed_by = NULL, processed_at = ")
            .bind(finished);
        let list = update.placeholder(json(&ids));
        update.push(&format!(
            " WHERE {}",
            update.backend().in_int_list("id", &list)
        ));
        transaction.execute(&update).await?;
    }
    for (id, status, error) in statuses {
        if error.is_none() && matches!(status, MessageStatus::Done | MessageStatus::Duplicate) {
            continue;
        }
        let update = transaction.statement(
            "UPDATE inbox_messages
                SET status = $1, error = $2, processed_at = $3, lease_until = NULL, claimed_by = NULL
              WHERE id = $4",
            vec![
                status.as_str().into(),
                error.as_deref().into(),
                finished.into(),
                (*id).into(),
            ],
        );
        transaction.execute(&update).await?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    status: String,
    error: Option<String>,
    attempts: i32,
    source_name: Option<String>,
    raw_pruned_at: Option<DateTime<Utc>>,
}

pub(super) async fn message(db: &Db, id: i64) -> StoreResult<Option<MessageInfo>> {
    let row: Option<MessageRow> = db
        .fetch_optional(&db.statement(
            "SELECT id, status, error, attempts, source_name, raw_pruned_at FROM inbox_messages WHERE id = $1",
            vec![id.into()],
        ))
        .await?;
    Ok(row.map(|row| MessageInfo {
        id: row.id,
        status: MessageStatus::parse(&row.status).unwrap_or(MessageStatus::Failed),
        error: row.error,
        attempts: row.attempts,
        source_name: row.source_name,
        raw_pruned_at: row.raw_pruned_at,
    }))
}

/// The raw bytes of a message, reassembled from its chunks.
pub(super) async fn message_raw(db: &Db, id: i64) -> StoreResult<Option<Vec<u8>>> {
    let chunks: Vec<(Vec<u8>, String)> = db
        .fetch_all(&db.statement(
            "SELECT raw, compression FROM inbox_raw WHERE message_id = $1 ORDER BY seq",
            vec![id.into()],
        ))
        .await?;
    if chunks.is_empty() {
        return Ok(None);
    }
    let mut raw = Vec::new();
    for (stored, compression) in chunks {
        raw.extend_from_slice(&raw_codec::decode(stored, &compression)?);
    }
    Ok(Some(raw))
}

pub(super) async fn status_counts(db: &Db) -> StoreResult<BTreeMap<MessageStatus, i64>> {
    let rows: Vec<(String, i64)> = db
        .fetch_all(&db.statement(
            "SELECT status, count(*) FROM inbox_messages GROUP BY status",
            Vec::new(),
        ))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(status, count)| MessageStatus::parse(&status).map(|s| (s, count)))
        .collect())
}
