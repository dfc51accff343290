//! Read replicas (PostgreSQL streaming standbys): the dashboard's and the
//! API's reads (`query/`) go to a standby that is known to be at most
//! `max_lag` behind the primary, and back to the primary otherwise; every
//! write, and the reads that must see a write just made (sessions, the
//! domain list, approvals), stay on the primary.
//!
//! Staleness is bounded, not estimated: a check reads the primary's WAL
//! position P at instant T, then asks the standby whether it has replayed
//! up to P. If it has, everything committed before T is on the standby,
//! so until the next check it trails by at most "now − T". A standby is
//! used while that bound stays within `max_lag`; one that stops catching
//! up (a broken stream, a long replay conflict, a standby promoted to a
//! primary of its own) drops out of use by itself once the bound passes,
//! without anyone having to notice why. Replay timestamps are not used:
//! on a quiet primary they grow old although nothing is missing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use super::db::Db;
use super::{postgres, StoreError, StoreResult};

/// Where the replicas are and how stale a read may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    pub urls: Vec<String>,
    /// A standby is read from only while it is known to trail the
    /// primary by at most this much.
    pub max_lag: Duration,
    /// How often each standby's position is checked.
    pub check_interval: Duration,
}

/// One standby as `/metrics` and the log see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    /// host:port/database, never the password.
    pub name: String,
    /// Reads go to it now.
    pub in_use: bool,
    /// Upper bound of how far it trails the primary, in seconds; `None`
    /// until it has once been seen caught up.
    pub staleness_seconds: Option<f64>,
    /// Why it is not in use, when a check said so.
    pub error: Option<String>,
}

pub(super) struct Replicas {
    members: Vec<Replica>,
    max_lag: Duration,
    /// Round robin over the standbys in use.
    next: AtomicUsize,
}

struct Replica {
    name: String,
    db: Db,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    /// Everything the primary had committed at this instant is on the standby.
    caught_up_at: Option<Instant>,
    error: Option<String>,
}

impl Replicas {
    pub(super) fn connect(settings: &ReplicaSettings) -> StoreResult<Replicas> {
        let members = settings
            .urls
            .iter()
            .map(|url| {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(StoreError::UnsupportedUrl(url.clone()));
                }
                Ok(Replica {
                    name: display_name(url),
                    db: postgres::connect_lazy(url)?,
                    health: Mutex::new(Health::default()),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Replicas {
            members,
            max_lag: settings.max_lag,
            next: AtomicUsize::new(0),
        })
    }

    /// A standby fresh enough to read from, taking turns; `None` sends the
    /// read to the primary.
    pub(super) fn pick(&self) -> Option<&Db> {
        let fresh: Vec<&Replica> = self
            .members
            .iter()
            .filter(|replica| replica.health().is_fresh(self.max_lag))
            .collect();
        if fresh.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(&fresh[turn % fresh.len()].db)
    }

    pub(super) fn status(&self) -> Vec<ReplicaStatus> {
        self.members
            .iter()
            .map(|replica| {
                let health = replica.health();
                ReplicaStatus {
                    name: replica.name.clone(),
                    in_use: health.is_fresh(self.max_lag),
                    staleness_seconds: health.caught_up_at.map(|at| at.elapsed().as_secs_f64()),
                    error: health.error.clone(),
                }
            })
            .collect()
    }

    /// Checks every standby against the primary's current WAL position.
    pub(super) async fn check(&self, primary: &Db) {
        let Db::Postgres(primary) = primary else {
            return;
        };
        let asked_at = Instant::now();
        let position: Result<String, sqlx::Error> =
            sqlx::query_scalar("SELECT CAST(pg_current_wal_lsn() AS text)")
                .fetch_one(primary)
                .await;
        let position = match position {
            Ok(position) => position,
            Err(error) => {
                // Without the primary's position nothing can be vouched
                // for: the standbys' bounds grow until it answers again.
                tracing::warn!(%error, "replica check: the primary's WAL position is unknown");
                return;
            }
        };
        for replica in &self.members {
            // A standby that does not answer within the bound is out
            // anyway; waiting longer would only hold up the others' checks.
            let outcome = tokio::time::timeout(self.max_lag, replica.caught_up_with(&position))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", self.max_lag.as_secs())));
            let mut health = replica.health.lock().unwrap_or_else(|e| e.into_inner());
            let was_fresh = health.is_fresh(self.max_lag);
            match outcome {
                Ok(true) => {
                    health.caught_up_at = Some(asked_at);
                    health.error = None;
                }
                Ok(false) => {}
                Err(reason) => {
                    // Reads sent there would fail: stop at once.
                    health.caught_up_at = None;
                    health.error = Some(reason);
                }
            }
            let fresh = health.is_fresh(self.max_lag);
            if was_fresh != fresh {
                if fresh {
                    tracing::info!(replica = %replica.name, "replica in use for reads");
                } else {
                    tracing::warn!(
                        replica = %replica.name,
                        reason = health.error.as_deref().unwrap_or("it trails the primary by more than database.replica_max_lag_seconds"),
                        "replica left out: reads go to the primary"
                    );
                }
            }
        }
    }

    /// Checks every `interval` for as long as a `Store` holds the set.
    pub(super) async fn watch(replicas: Weak<Self>, primary: Db, interval: Duration) {
        loop {
            let Some(replicas) = replicas.upgrade() else {
                return;
            };
            replicas.check(&primary).await;
            drop(replicas);
            tokio::time::sleep(interval).await;
        }
    }
}

impl Replica {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the standby has replayed the primary's WAL up to `position`;
    /// `Err` with a reason when it cannot serve reads at all.
    async fn caught_up_with(&self, position: &str) -> Result<bool, String> {
        let Db::Postgres(pool) = &self.db else {
            return Err("not a PostgreSQL database".to_string());
        };
        let row: Result<(bool, Option<bool>), sqlx::Error> = sqlx::query_as(
            "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= CAST($1 AS pg_lsn)",
        )
        .bind(position)
        .fetch_one(pool)
        .await;
        match row {
            Ok((false, _)) => Err(
                "not a standby (pg_is_in_recovery() is false): it may have been promoted"
                    .to_string(),
            ),
            Ok((true, caught_up)) => Ok(caught_up.unwrap_or(false)),
            Err(error) => Err(format!("unreachable: {error}")),
        }
    }
}

impl Health {
    fn is_fresh(&self, max_lag: Duration) -> bool {
        self.error.is_none() && self.caught_up_at.is_some_and(|at| at.elapsed() <= max_lag)
    }
}

/// `host:port/database` of a URL, without user or password.
fn display_name(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}:{}{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432),
            parsed.path()
        ),
        Err(_) => "replica".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_leave_out_credentials() {
        assert_eq!(
            display_name("postgres://dmarcd:secret@db2.example:5433/dmarcd"),
            "db2.example:5433/dmarcd"
        );
        assert_eq!(display_name("postgresql://db3/dmarcd"), "db3:5432/dmarcd");
    }

    #[test]
    fn a_standby_is_fresh_only_within_the_bound_and_without_error() {
        let max_lag = Duration::from_secs(5);
        let mut health = Health::default();
        assert!(!health.is_fresh(max_lag), "never seen caught up");
        health.caught_up_at = Some(Instant::now());
        assert!(health.is_fresh(max_lag));
        health.caught_up_at = Instant::now().checked_sub(Duration::from_secs(6));
        assert!(!health.is_fresh(max_lag), "caught up too long ago");
        health.caught_up_at = Some(Instant::now());
        health.error = Some("unreachable".to_string());
        assert!(!health.is_fresh(max_lag));
    }
}
