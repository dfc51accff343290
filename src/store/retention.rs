//! Retention of raw messages: the bytes of a message dmarcd has processed
//! are deleted some days after processing (fewer days for failure reports,
//! which carry other people's mail), in small batches so that ingestion
//! never waits long behind a prune. The message's row stays, marked with
//! when its bytes went, so pages and the API can say so and nothing tries
//! to reprocess a message it no longer has. A message that failed, or is
//! not processed yet, is never pruned: it is what an admin still needs.

use chrono::{DateTime, Duration, Utc};

use super::db::{json, Backend, Db, Tx};
use super::StoreResult;

/// How long raw messages are kept; zero days keeps them for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRetention {
    /// Days after processing for any processed message.
    pub raw_days: u32,
    /// Days after processing for a message that produced a failure report
    /// (at most `raw_days` when that is set).
    pub failure_raw_days: u32,
    /// Messages per batch (one short transaction each).
    pub batch: u32,
}

/// What a prune did, or (dry run) would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: u64,
    /// The messages' sizes as received.
    pub bytes: u64,
}

/// The condition a prunable message meets, with `$1` the cutoff for any
/// message and `$2` the cutoff for failure reports' messages.
const PRUNABLE: &str = "m.raw_pruned_at IS NULL \
     AND m.status IN ('done', 'duplicate', 'ignored') \
     AND (m.processed_at < $1 \
          OR (m.processed_at < $2 AND EXISTS \
              (SELECT 1 FROM failure_reports f WHERE f.message_id = m.id)))";

/// The two cutoffs; `None` when nothing is to be pruned at all.
fn cutoffs(policy: &RawRetention, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    // A cutoff before any time dmarcd could have processed a message
    // (and one both backends store): "keep for ever".
    let never = DateTime::<Utc>::UNIX_EPOCH;
    let before = |days: u32| now - Duration::days(i64::from(days));
    let any = if policy.raw_days == 0 {
        never
    } else {
        before(policy.raw_days)
    };
    let failure = match (policy.failure_raw_days, policy.raw_days) {
        (0, _) => any,
        (days, 0) => before(days),
        (days, all) => before(days.min(all)),
    };
    (any != never || failure != never).then_some((any, failure))
}

/// Counts the messages a prune at `now` would take.
pub(super) async fn count_prunable(
    db: &Db,
    policy: &RawRetention,
    now: DateTime<Utc>,
) -> StoreResult<Pruned> {
    let Some((any, failure)) = cutoffs(policy, now) else {
        return Ok(Pruned::default());
    };
    let (messages, bytes): (i64, Option<i64>) = db
        .fetch_one(&db.statement(
            &format!(
                "SELECT count(*), CAST(sum(m.size) AS BIGINT) FROM inbox_messages m WHERE {PRUNABLE}"
            ),
            vec![any.into(), failure.into()],
        ))
        .await?;
    Ok(Pruned {
        messages: messages as u64,
        bytes: bytes.unwrap_or(0) as u64,
    })
}

/// Deletes the raw bytes of one batch of prunable messages; returns what
/// it pruned (fewer than a batch: nothing is left).
pub(super) async fn prune_batch(
    db: &Db,
    policy: &RawRetention,
    now: DateTime<Utc>,
) -> StoreResult<Pruned> {
    let Some((any, failure)) = cutoffs(policy, now) else {
        return Ok(Pruned::default());
    };
    let mut transaction = db.begin_durable().await?;
    // Another node pruning at the same time skips the rows this one holds.
    let lock = match transaction.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let batch: Vec<(i64, i64)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT m.id, m.size FROM inbox_messages m WHERE {PRUNABLE} \
                 ORDER BY m.id LIMIT $3{lock}"
            ),
            vec![
                any.into(),
                failure.into(),
                i64::from(policy.batch.max(1)).into(),
            ],
        ))
        .await?;
    if batch.is_empty() {
        transaction.commit().await?;
        return Ok(Pruned::default());
    }
    let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
    delete_raw(&mut transaction, &ids, now).await?;
    transaction.commit().await?;
    Ok(Pruned {
        messages: ids.len() as u64,
        bytes: batch.iter().map(|(_, size)| *size as u64).sum(),
    })
}

/// Deletes the raw bytes of messages `ids` and marks them deleted at `now`
/// (also for redacted failure reports, store/save.rs).
pub(super) async fn delete_raw(
    transaction: &mut Tx,
    ids: &[i64],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let backend = transaction.backend();
    let delete = transaction.statement(
        &format!(
            "DELETE FROM inbox_raw WHERE {}",
            backend.in_int_list("message_id", "$1")
        ),
        vec![json(&ids)],
    );
    transaction.execute(&delete).await?;
    let mark = transaction.statement(
        &format!(
            "UPDATE inbox_messages SET raw_pruned_at = $2 WHERE {}",
            backend.in_int_list("id", "$1")
        ),
        vec![json(&ids), now.into()],
    );
    transaction.execute(&mark).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(raw_days: u32, failure_raw_days: u32) -> RawRetention {
        RawRetention {
            raw_days,
            failure_raw_days,
            batch: 10,
        }
    }

    #[test]
    fn zero_days_keeps_for_ever_and_failure_reports_go_first() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(cutoffs(&policy(0, 0), now), None);
        let (any, failure) = cutoffs(&policy(90, 30), now).unwrap();
        assert_eq!((now - any).num_days(), 90);
        assert_eq!((now - failure).num_days(), 30);
        // Failure reports' messages never stay longer than the others.
        let (any, failure) = cutoffs(&policy(10, 30), now).unwrap();
        assert_eq!((now - any).num_days(), 10);
        assert_eq!((now - failure).num_days(), 10);
        // Only failure reports' messages are pruned.
        let (any, failure) = cutoffs(&policy(0, 30), now).unwrap();
        assert_eq!(any, DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!((now - failure).num_days(), 30);
        // Only the others: failure reports' messages go with them.
        let (any, failure) = cutoffs(&policy(90, 0), now).unwrap();
        assert_eq!(any, failure);
    }
}
