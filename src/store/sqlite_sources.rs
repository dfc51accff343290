//! `ip_sources` on SQLite: what each sending IP is (see enrich/). Times are
//! bound from Rust in one text format, so they compare as text.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::Row;

use super::sources::{DnsRefresh, PtrResult, SourceColumns, SourceRecord, StoredDnsState};
use super::sqlite::SqliteStore;
use super::{EnrichmentCounts, StoreResult};
use crate::enrich::SourceInfo;

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

fn after(due_in: Option<Duration>) -> Option<DateTime<Utc>> {
    let due = chrono::Duration::from_std(due_in?).unwrap_or(chrono::Duration::days(365));
    Some(now() + due)
}

impl SqliteStore {
    pub(super) async fn sources_to_describe(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<(IpAddr, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT ip, ptr FROM ip_sources WHERE described_at IS NULL ORDER BY ip LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| Some((row.get::<&str, _>(0).parse().ok()?, row.get(1))))
            .collect())
    }

    pub(super) async fn save_descriptions(&self, infos: &[SourceInfo]) -> StoreResult<()> {
        let columns = SourceColumns::new(infos.iter());
        let described_at = now();
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        for i in 0..columns.len() {
            // `ptr IS ?`: see the PostgreSQL version.
            sqlx::query(
                "UPDATE ip_sources SET country = ?, asn = ?, as_name = ?, as_domain = ?,
                        base_domain = ?, source_name = ?, source_type = ?, described_at = ?
                  WHERE ip = ? AND ptr IS ?",
            )
            .bind(&columns.country[i])
            .bind(columns.asn[i])
            .bind(&columns.as_name[i])
            .bind(&columns.as_domain[i])
            .bind(&columns.base_domain[i])
            .bind(&columns.source_name[i])
            .bind(&columns.source_type[i])
            .bind(described_at)
            .bind(&columns.ip[i])
            .bind(&columns.ptr[i])
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub(super) async fn claim_ptr_lookups(
        &self,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<(IpAddr, u32)>> {
        let rows = sqlx::query(
            "UPDATE ip_sources SET dns_state = 'resolving', dns_due_at = ?3
              WHERE ip IN (SELECT ip FROM ip_sources
                            WHERE dns_state IN ('pending', 'resolving', 'failed')
                              AND dns_due_at <= ?2
                            ORDER BY dns_due_at LIMIT ?1)
             RETURNING ip, dns_attempts",
        )
        .bind(i64::from(limit))
        .bind(now())
        .bind(after(Some(lease)))
        .fetch_all(&self.derived)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let attempts: i64 = row.get(1);
                Some((row.get::<&str, _>(0).parse().ok()?, attempts.max(0) as u32))
            })
            .collect())
    }

    pub(super) async fn save_ptr_results(&self, results: &[PtrResult]) -> StoreResult<()> {
        let checked_at = now();
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        for result in results {
            let due_at = after(result.due_in);
            let Some(info) = &result.info else {
                // A failed lookup keeps whatever name an earlier one found.
                sqlx::query(
                    "UPDATE ip_sources SET dns_state = 'failed', dns_attempts = dns_attempts + 1,
                            dns_checked_at = ?, dns_due_at = ? WHERE ip = ?",
                )
                .bind(checked_at)
                .bind(due_at)
                .bind(result.ip.to_string())
                .execute(&mut *transaction)
                .await?;
                continue;
            };
            let columns = SourceColumns::new(std::iter::once(info));
            sqlx::query(
                "UPDATE ip_sources SET country = ?, asn = ?, as_name = ?, as_domain = ?, ptr = ?,
                        base_domain = ?, source_name = ?, source_type = ?, described_at = ?,
                        dns_state = ?, dns_attempts = 0, dns_checked_at = ?, dns_due_at = ?
                  WHERE ip = ?",
            )
            .bind(&columns.country[0])
            .bind(columns.asn[0])
            .bind(&columns.as_name[0])
            .bind(&columns.as_domain[0])
            .bind(&columns.ptr[0])
            .bind(&columns.base_domain[0])
            .bind(&columns.source_name[0])
            .bind(&columns.source_type[0])
            .bind(checked_at)
            .bind(result.state.as_str())
            .bind(checked_at)
            .bind(due_at)
            .bind(&columns.ip[0])
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub(super) async fn refresh_sources(&self, dns: DnsRefresh) -> StoreResult<u64> {
        let now = now();
        let mut transaction = self.derived.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO ip_sources (ip, dns_due_at)
             SELECT DISTINCT source_ip, ? FROM aggregate_records WHERE source_ip IS NOT NULL
             ON CONFLICT (ip) DO NOTHING",
        )
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        let marked = sqlx::query("UPDATE ip_sources SET described_at = NULL")
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if let Some(condition) = dns.condition("?1") {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE ip_sources SET dns_state = 'pending', dns_attempts = 0, dns_due_at = ?1
                  WHERE {condition}"
            )))
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(marked)
    }

    pub(super) async fn renew_stale_ptrs(&self) -> StoreResult<u64> {
        let now = now();
        Ok(sqlx::query(
            "UPDATE ip_sources SET dns_state = 'pending', dns_due_at = ?1
              WHERE dns_state IN ('done', 'none') AND dns_due_at < ?1",
        )
        .bind(now)
        .execute(&self.derived)
        .await?
        .rows_affected())
    }

    pub(super) async fn source(&self, ip: IpAddr) -> StoreResult<Option<SourceRecord>> {
        let row = sqlx::query(
            "SELECT country, asn, as_name, as_domain, ptr, base_domain, source_name, source_type,
                    described_at IS NOT NULL, dns_state, dns_attempts
               FROM ip_sources WHERE ip = ?",
        )
        .bind(ip.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| SourceRecord {
            ip,
            country: row.get(0),
            asn: row.get(1),
            as_name: row.get(2),
            as_domain: row.get(3),
            ptr: row.get(4),
            base_domain: row.get(5),
            source_name: row.get(6),
            source_type: row.get(7),
            described: row.get(8),
            dns_state: StoredDnsState::parse(row.get::<&str, _>(9)),
            dns_attempts: row.get(10),
        }))
    }

    pub(super) async fn enrichment_counts(&self) -> StoreResult<EnrichmentCounts> {
        let rows = sqlx::query(
            "SELECT dns_state, count(*), sum(described_at IS NULL) FROM ip_sources GROUP BY dns_state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(EnrichmentCounts::from_rows(
            rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))),
        ))
    }
}
