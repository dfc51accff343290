//! Schema migrations, embedded in the binary and applied in order. Each
//! runs in a transaction together with the row recording it.

use sqlx::{PgPool, SqlitePool};

use super::db::{Backend as Dialect, Db};
use super::derived::{self, Derived};
use super::rollup::{self, Rollup};
use super::{StoreError, StoreResult};

/// One schema change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    sql: &'static str,
    /// Rollups this migration creates, filled from the stored records
    /// right after its SQL, in the same transaction (their counters: a
    /// later migration's columns are filled by that migration).
    fills: &'static [&'static Rollup],
    /// Derived totals this migration creates: filled from the totals they
    /// sum, and given the triggers that keep them, right after its SQL.
    derives: &'static [&'static Derived],
    /// Derived totals whose triggers this migration replaces by the
    /// current ones, right after its SQL.
    retriggers: &'static [&'static Derived],
    /// SQLite: run with foreign key enforcement off, for a migration that
    /// rebuilds a table others refer to (dropping the old table would
    /// otherwise cascade to their rows); the references are checked after
    /// it. PostgreSQL changes tables in place and ignores this.
    rebuilds_tables: bool,
}

/// The totals that migration 5 creates.
const TOTALS: &[&Rollup] = &[
    &rollup::TOTALS_ORG_DAY,
    &rollup::TOTALS_SOURCE_DAY,
    &rollup::TOTALS_SOURCE_MONTH,
    &rollup::TOTALS_SOURCE_ALL,
    &rollup::TOTALS_DOMAIN_SOURCE_DAY,
    &rollup::TOTALS_DOMAIN_SOURCE_MONTH,
    &rollup::TOTALS_DOMAIN_SOURCE_ALL,
];

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../migrations/postgres/0001_initial.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 2,
        name: "ip_sources",
        sql: include_str!("../../migrations/postgres/0002_ip_sources.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 3,
        name: "web",
        sql: include_str!("../../migrations/postgres/0003_web.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 4,
        name: "rollups",
        sql: include_str!("../../migrations/postgres/0004_rollups.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 5,
        name: "totals",
        sql: include_str!("../../migrations/postgres/0005_totals.sql"),
        fills: TOTALS,
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 6,
        name: "described_totals",
        sql: include_str!("../../migrations/postgres/0006_described_totals.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 7,
        name: "int8_sum",
        sql: include_str!("../../migrations/postgres/0007_int8_sum.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 8,
        name: "totals_by_description",
        sql: include_str!("../../migrations/postgres/0008_totals_by_description.sql"),
        fills: &[],
        derives: &derived::ALL,
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 9,
        name: "failing_totals",
        sql: include_str!("../../migrations/postgres/0009_failing_totals.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 10,
        name: "failure_dedupe",
        sql: include_str!("../../migrations/postgres/0010_failure_dedupe.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 11,
        name: "rollup_applier",
        sql: include_str!("../../migrations/postgres/0011_rollup_applier.sql"),
        fills: &[],
        derives: &[],
        retriggers: &derived::ALL,
        rebuilds_tables: false,
    },
    Migration {
        version: 12,
        name: "domain_posture",
        sql: include_str!("../../migrations/postgres/0012_domain_posture.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 13,
        name: "tls_reports_message",
        sql: include_str!("../../migrations/postgres/0013_tls_reports_message.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 14,
        name: "raw_retention",
        sql: include_str!("../../migrations/postgres/0014_raw_retention.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 15,
        name: "mailbox_pull",
        sql: include_str!("../../migrations/postgres/0015_mailbox_pull.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 16,
        name: "sender_approvals",
        sql: include_str!("../../migrations/postgres/0016_sender_approvals.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 17,
        name: "failing_records",
        sql: include_str!("../../migrations/postgres/0017_failing_records.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 18,
        name: "raw_compression",
        sql: include_str!("../../migrations/postgres/0018_raw_compression.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 19,
        name: "outbox",
        sql: include_str!("../../migrations/postgres/0019_outbox.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 20,
        name: "sender_records",
        sql: include_str!("../../migrations/postgres/0020_sender_records.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 21,
        name: "alerts",
        sql: include_str!("../../migrations/postgres/0021_alerts.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 22,
        name: "alert_rule_kinds",
        sql: include_str!("../../migrations/postgres/0022_alert_rule_kinds.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 23,
        name: "alert_rule_classes",
        sql: include_str!("../../migrations/postgres/0023_alert_rule_classes.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 24,
        name: "digests",
        sql: include_str!("../../migrations/postgres/0024_digests.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 25,
        name: "alerts_by_key",
        sql: include_str!("../../migrations/postgres/0025_alerts_by_key.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 26,
        name: "hosted_mta_sts",
        sql: include_str!("../../migrations/postgres/0026_hosted_mta_sts.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 27,
        name: "record_retention",
        sql: include_str!("../../migrations/postgres/0027_record_retention.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 28,
        name: "session_origin",
        sql: include_str!("../../migrations/postgres/0028_session_origin.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 29,
        name: "token_access",
        sql: include_str!("../../migrations/postgres/0029_token_access.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 30,
        name: "token_owner",
        sql: include_str!("../../migrations/postgres/0030_token_owner.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 31,
        name: "audit_log",
        sql: include_str!("../../migrations/postgres/0031_audit_log.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 32,
        name: "totp",
        sql: include_str!("../../migrations/postgres/0032_totp.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 33,
        name: "sso",
        sql: include_str!("../../migrations/postgres/0033_sso.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 34,
        name: "totp_failures",
        sql: include_str!("../../migrations/postgres/0034_totp_failures.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 35,
        name: "domain_groups",
        sql: include_str!("../../migrations/postgres/0035_domain_groups.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 36,
        name: "channel_groups",
        sql: include_str!("../../migrations/postgres/0036_channel_groups.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
];

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../migrations/sqlite/0001_initial.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 2,
        name: "ip_sources",
        sql: include_str!("../../migrations/sqlite/0002_ip_sources.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 3,
        name: "web",
        sql: include_str!("../../migrations/sqlite/0003_web.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 4,
        name: "rollups",
        sql: include_str!("../../migrations/sqlite/0004_rollups.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 5,
        name: "totals",
        sql: include_str!("../../migrations/sqlite/0005_totals.sql"),
        fills: TOTALS,
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 6,
        name: "described_totals",
        sql: include_str!("../../migrations/sqlite/0006_described_totals.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 7,
        name: "totals_by_description",
        sql: include_str!("../../migrations/sqlite/0007_totals_by_description.sql"),
        fills: &[],
        derives: &derived::ALL,
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 8,
        name: "failure_dedupe",
        sql: include_str!("../../migrations/sqlite/0008_failure_dedupe.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 9,
        name: "rollup_applier",
        sql: include_str!("../../migrations/sqlite/0009_rollup_applier.sql"),
        fills: &[],
        derives: &[],
        retriggers: &derived::ALL,
        rebuilds_tables: false,
    },
    Migration {
        version: 10,
        name: "domain_posture",
        sql: include_str!("../../migrations/sqlite/0010_domain_posture.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 11,
        name: "tls_reports_message",
        sql: include_str!("../../migrations/sqlite/0011_tls_reports_message.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 12,
        name: "raw_retention",
        sql: include_str!("../../migrations/sqlite/0012_raw_retention.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 13,
        name: "mailbox_pull",
        sql: include_str!("../../migrations/sqlite/0013_mailbox_pull.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: true,
    },
    Migration {
        version: 14,
        name: "sender_approvals",
        sql: include_str!("../../migrations/sqlite/0014_sender_approvals.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 15,
        name: "failing_records",
        sql: include_str!("../../migrations/sqlite/0015_failing_records.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 16,
        name: "raw_compression",
        sql: include_str!("../../migrations/sqlite/0016_raw_compression.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 17,
        name: "outbox",
        sql: include_str!("../../migrations/sqlite/0017_outbox.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 18,
        name: "sender_records",
        sql: include_str!("../../migrations/sqlite/0018_sender_records.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 19,
        name: "alerts",
        sql: include_str!("../../migrations/sqlite/0019_alerts.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 20,
        name: "alert_rule_kinds",
        sql: include_str!("../../migrations/sqlite/0020_alert_rule_kinds.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: true,
    },
    Migration {
        version: 21,
        name: "alert_rule_classes",
        sql: include_str!("../../migrations/sqlite/0021_alert_rule_classes.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 22,
        name: "digests",
        sql: include_str!("../../migrations/sqlite/0022_digests.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 23,
        name: "alerts_by_key",
        sql: include_str!("../../migrations/sqlite/0023_alerts_by_key.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 24,
        name: "hosted_mta_sts",
        sql: include_str!("../../migrations/sqlite/0024_hosted_mta_sts.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 25,
        name: "record_retention",
        sql: include_str!("../../migrations/sqlite/0025_record_retention.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 26,
        name: "session_origin",
        sql: include_str!("../../migrations/sqlite/0026_session_origin.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 27,
        name: "token_access",
        sql: include_str!("../../migrations/sqlite/0027_token_access.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 28,
        name: "token_owner",
        sql: include_str!("../../migrations/sqlite/0028_token_owner.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 29,
        name: "audit_log",
        sql: include_str!("../../migrations/sqlite/0029_audit_log.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 30,
        name: "totp",
        sql: include_str!("../../migrations/sqlite/0030_totp.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 31,
        name: "sso",
        sql: include_str!("../../migrations/sqlite/0031_sso.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 32,
        name: "totp_failures",
        sql: include_str!("../../migrations/sqlite/0032_totp_failures.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 33,
        name: "domain_groups",
        sql: include_str!("../../migrations/sqlite/0033_domain_groups.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
    Migration {
        version: 34,
        name: "channel_groups",
        sql: include_str!("../../migrations/sqlite/0034_channel_groups.sql"),
        fills: &[],
        derives: &[],
        retriggers: &[],
        rebuilds_tables: false,
    },
];

/// Applies the migrations `db` has not had; returns them.
pub(super) async fn run(db: &Db) -> StoreResult<Vec<Migration>> {
    match db {
        Db::Postgres(pool) => postgres(pool).await,
        Db::Sqlite { durable, .. } => sqlite(durable).await,
    }
}

/// Whether every migration this build knows has been applied.
pub(super) async fn is_current(db: &Db) -> StoreResult<bool> {
    let (applied,): (Option<i64>,) = db
        .fetch_one(&db.statement("SELECT max(version) FROM schema_migrations", Vec::new()))
        .await?;
    Ok(applied.unwrap_or(0) >= latest_version(db.backend()))
}

/// The newest schema version this build knows.
pub(super) fn latest_version(dialect: Dialect) -> i64 {
    let list = match dialect {
        Dialect::Postgres => POSTGRES,
        Dialect::Sqlite => SQLITE,
    };
    list.iter().map(|m| m.version).max().unwrap_or(0)
}

fn failed(migration: &Migration) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |source| StoreError::Migration {
        version: migration.version,
        name: migration.name,
        source,
    }
}

async fn postgres(pool: &PgPool) -> StoreResult<Vec<Migration>> {
    let mut applied = Vec::new();
    let mut transaction = pool.begin().await?;
    // Several dmarcd processes may start at once against one database.
    sqlx::query("SELECT pg_advisory_xact_lock(7401500)")
        .execute(&mut *transaction)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *transaction)
    .await?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *transaction)
        .await?;
    for migration in POSTGRES.iter().filter(|m| !done.contains(&m.version)) {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *transaction)
            .await
            .map_err(failed(migration))?;
        for rollup in migration.fills {
            // Statistics at once: until autovacuum comes by, the planner
            // would take a filled table for an empty one.
            let fill = format!(
                "{}; ANALYZE {}",
                rollup.fill_counters_sql(Dialect::Postgres),
                rollup.table
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(fill))
                .execute(&mut *transaction)
                .await
                .map_err(failed(migration))?;
        }
        for derived in migration.derives {
            sqlx::raw_sql(sqlx::AssertSqlSafe(
                derived.migration_sql(Dialect::Postgres),
            ))
            .execute(&mut *transaction)
            .await
            .map_err(failed(migration))?;
        }
        for derived in migration.retriggers {
            sqlx::raw_sql(sqlx::AssertSqlSafe(
                derived.retrigger_sql(Dialect::Postgres),
            ))
            .execute(&mut *transaction)
            .await
            .map_err(failed(migration))?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *transaction)
            .await?;
        applied.push(*migration);
    }
    transaction.commit().await?;
    Ok(applied)
}

async fn sqlite(pool: &SqlitePool) -> StoreResult<Vec<Migration>> {
    sqlite_until(pool, i64::MAX).await
}

/// Applies the SQLite migrations up to `version`.
async fn sqlite_until(pool: &SqlitePool, version: i64) -> StoreResult<Vec<Migration>> {
    let mut applied = Vec::new();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')))",
    )
    .execute(pool)
    .await?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?;
    let pending = SQLITE
        .iter()
        .filter(|m| !done.contains(&m.version) && m.version <= version);
    for migration in pending {
        let mut connection = pool.acquire().await?;
        if !migration.rebuilds_tables {
            sqlite_one(&mut connection, migration).await?;
        } else {
            // The pragma is a no-op inside a transaction: it is set on the
            // connection the transaction then runs on, and set back
            // whatever happened, before the connection returns to the pool
            // (one that cannot be set back is closed instead).
            sqlx::raw_sql("PRAGMA foreign_keys = OFF")
                .execute(&mut *connection)
                .await?;
            let result = sqlite_one(&mut connection, migration).await;
            if sqlx::raw_sql("PRAGMA foreign_keys = ON")
                .execute(&mut *connection)
                .await
                .is_err()
            {
                drop(connection.detach());
            }
            result?;
        }
        applied.push(*migration);
    }
    Ok(applied)
}

/// Applies one SQLite migration in a transaction on `connection`.
async fn sqlite_one(
    connection: &mut sqlx::SqliteConnection,
    migration: &Migration,
) -> StoreResult<()> {
    let mut transaction = sqlx::Connection::begin(connection).await?;
    sqlx::raw_sql(migration.sql)
        .execute(&mut *transaction)
        .await
        .map_err(failed(migration))?;
    for rollup in migration.fills {
        sqlx::raw_sql(sqlx::AssertSqlSafe(
            rollup.fill_counters_sql(Dialect::Sqlite),
        ))
        .execute(&mut *transaction)
        .await
        .map_err(failed(migration))?;
    }
    for derived in migration.derives {
        sqlx::raw_sql(sqlx::AssertSqlSafe(derived.migration_sql(Dialect::Sqlite)))
            .execute(&mut *transaction)
            .await
            .map_err(failed(migration))?;
    }
    for derived in migration.retriggers {
        sqlx::raw_sql(sqlx::AssertSqlSafe(derived.retrigger_sql(Dialect::Sqlite)))
            .execute(&mut *transaction)
            .await
            .map_err(failed(migration))?;
    }
    if migration.rebuilds_tables {
        // Every reference must still find its row in the rebuilt table.
        let dangling: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&mut *transaction)
                .await
                .map_err(failed(migration))?;
        if let Some((table,)) = dangling.first() {
            return Err(StoreError::Migration {
                version: migration.version,
                name: migration.name,
                source: sqlx::Error::Protocol(format!(
                    "{} rows of {table} lost the row they refer to",
                    dangling.len()
                )),
            });
        }
    }
    sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
        .bind(migration.version)
        .bind(migration.name)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files in `migrations/<backend>/`, as (version, name) pairs.
    fn files(backend: &str) -> Vec<(i64, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut found: Vec<(i64, String)> = std::fs::read_dir(&dir)
            .expect("migrations directory")
            .map(|entry| {
                entry
                    .expect("directory entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8 name")
            })
            .filter_map(|file| {
                let stem = file.strip_suffix(".sql")?;
                let (version, name) = stem.split_once('_')?;
                Some((version.parse().ok()?, name.to_owned()))
            })
            .collect();
        found.sort();
        found
    }

    fn listed(list: &[Migration]) -> Vec<(i64, String)> {
        list.iter()
            .map(|m| (m.version, m.name.to_owned()))
            .collect()
    }

    /// Migration 13 rebuilds inbox_messages (to allow intake 'imap'): the
    /// raw bytes and the reports of every stored message stay linked to it.
    #[tokio::test]
    async fn the_sqlite_inbox_rebuild_keeps_every_message_and_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let Db::Sqlite { durable, .. } = super::super::sqlite::open(&dir.path().join("m.sqlite"))
            .await
            .unwrap()
        else {
            unreachable!("a SQLite file")
        };
        sqlite_until(&durable, 12).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO inbox_messages (id, sha256, size, intake, status) VALUES (7, x'07', 3, 'smtp', 'done');
             INSERT INTO inbox_raw (message_id, seq, raw) VALUES (7, 0, x'616263');
             INSERT INTO tls_reports (message_id, organization_name, report_id, date_begin, date_end)
                  VALUES (7, 'Google', 'r1', '2024-01-01T00:00:00+00:00', '2024-01-02T00:00:00+00:00');",
        )
        .execute(&durable)
        .await
        .unwrap();
        let applied = sqlite_until(&durable, i64::MAX).await.unwrap();
        assert!(applied.iter().any(|m| m.name == "mailbox_pull"));
        let raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM inbox_raw WHERE message_id = 7")
            .fetch_one(&durable)
            .await
            .unwrap();
        assert_eq!(raw, b"abc");
        let linked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tls_reports t JOIN inbox_messages m ON m.id = t.message_id",
        )
        .fetch_one(&durable)
        .await
        .unwrap();
        assert_eq!(linked, 1);
        sqlx::query("INSERT INTO inbox_messages (sha256, size, intake) VALUES (x'08', 1, 'imap')")
            .execute(&durable)
            .await
            .unwrap();
        let enforced: bool = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&durable)
            .await
            .unwrap();
        assert!(enforced, "foreign keys are enforced again afterwards");
    }

    /// A migration file that is not listed here never runs (0013/0011 once
    /// sat unlisted for weeks): every file is listed, in order, once.
    #[test]
    fn every_migration_file_is_listed_in_order() {
        assert_eq!(listed(POSTGRES), files("postgres"));
        assert_eq!(listed(SQLITE), files("sqlite"));
    }
}
