//! Putting stored messages back in the queue: what was derived from them
//! goes, the rollups lose their records, the raw message stays.

use super::applier;
use super::db::{json, Backend, Db};
use super::{Requeue, StoreResult};

pub(super) async fn requeue(db: &Db, selection: &Requeue) -> StoreResult<u64> {
    let mut transaction = db.begin_derived().await?;
    // The applier's turn: the reports it has not counted yet are only taken
    // off its queue; the others are taken away from the rollups.
    applier::take_turn(&mut transaction).await?;
    let mut select = transaction.sql();
    // A message whose bytes retention deleted cannot be read again, and
    // one whose records retention deleted cannot have its counts taken
    // from the rollups (record_retention.rs): its reports stay as they are.
    select.push(
        "SELECT id FROM inbox_messages m WHERE raw_pruned_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM aggregate_reports r \
                          WHERE r.message_id = m.id AND r.records_pruned_at IS NOT NULL) AND ",
    );
    match selection {
        Requeue::Ids(ids) if ids.is_empty() => return Ok(0),
        Requeue::Ids(ids) => {
            let list = select.placeholder(json(ids));
            select.push(&format!(
                "status NOT IN ('pending', 'processing') AND {}",
                select.backend().in_int_list("id", &list)
            ));
        }
        Requeue::Failed => {
            select.push("status = 'failed'");
        }
        Requeue::All => {
            select.push("status NOT IN ('pending', 'processing')");
        }
    }
    select.push(match select.backend() {
        Backend::Postgres => " ORDER BY id FOR UPDATE",
        Backend::Sqlite => " ORDER BY id",
    });
    let ids: Vec<(i64,)> = transaction.fetch_all(&select).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
    let backend = transaction.backend();
    let messages = |column: &str| backend.in_int_list(column, "$1");
    let counted: Vec<(i64,)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT r.id FROM aggregate_reports r
                  WHERE {} AND NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.report_id = r.id)",
                messages("r.message_id")
            ),
            vec![json(&ids)],
        ))
        .await?;
    if !counted.is_empty() {
        let counted: Vec<i64> = counted.into_iter().map(|(id,)| id).collect();
        applier::count_reports(&mut transaction, &counted, -1, None).await?;
    }
    let reports = format!(
        "SELECT id FROM aggregate_reports WHERE {}",
        messages("message_id")
    );
    for statement in [
        format!("DELETE FROM rollup_pending WHERE report_id IN ({reports})"),
        format!("DELETE FROM aggregate_records WHERE report_id IN ({reports})"),
        format!("DELETE FROM aggregate_reports WHERE {}", messages("message_id")),
        format!("DELETE FROM tls_reports WHERE {}", messages("message_id")),
        format!("DELETE FROM failure_reports WHERE {}", messages("message_id")),
        format!(
            "UPDATE inbox_messages
                SET status = 'pending', error = NULL, processed_at = NULL, lease_until = NULL, claimed_by = NULL
              WHERE {}",
            messages("id")
        ),
    ] {
        let statement = transaction.statement(&statement, vec![json(&ids)]);
        transaction.execute(&statement).await?;
    }
    transaction.commit().await?;
    Ok(ids.len() as u64)
}
