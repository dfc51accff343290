//! `ip_sources` on PostgreSQL: what each sending IP is (see enrich/).

use std::net::IpAddr;
use std::time::Duration;

use sqlx::Row;

use super::postgres::PgStore;
use super::sources::{DnsRefresh, PtrResult, SourceColumns, SourceRecord, StoredDnsState};
use super::{EnrichmentCounts, StoreResult};
use crate::enrich::SourceInfo;

impl PgStore {
    pub(super) async fn sources_to_describe(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<(IpAddr, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT host(ip), ptr FROM ip_sources WHERE described_at IS NULL ORDER BY ip LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let ip: String = row.get(0);
                Some((ip.parse().ok()?, row.get(1)))
            })
            .collect())
    }

    pub(super) async fn save_descriptions(&self, infos: &[SourceInfo]) -> StoreResult<()> {
        let columns = SourceColumns::new(infos.iter());
        // `ptr IS NOT DISTINCT FROM`: a PTR answer saved meanwhile carries
        // its own, newer description; this one must not overwrite it.
        sqlx::query(
            "UPDATE ip_sources s SET country = u.country, asn = u.asn, as_name = u.as_name,
                    as_domain = u.as_domain, base_domain = u.base_domain,
                    source_name = u.source_name, source_type = u.source_type, described_at = now()
               FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                           $7::text[], $8::text[], $9::text[])
                    AS u(ip, country, asn, as_name, as_domain, ptr, base_domain, source_name, source_type)
              WHERE s.ip = u.ip::inet AND s.ptr IS NOT DISTINCT FROM u.ptr",
        )
        .bind(&columns.ip)
        .bind(&columns.country)
        .bind(&columns.asn)
        .bind(&columns.as_name)
        .bind(&columns.as_domain)
        .bind(&columns.ptr)
        .bind(&columns.base_domain)
        .bind(&columns.source_name)
        .bind(&columns.source_type)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn claim_ptr_lookups(
        &self,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<(IpAddr, u32)>> {
        let rows = sqlx::query(
            "UPDATE ip_sources SET dns_state = 'resolving',
                    dns_due_at = now() + $2 * interval '1 second'
              WHERE ip IN (SELECT ip FROM ip_sources
                            WHERE dns_state IN ('pending', 'resolving', 'failed')
                              AND dns_due_at <= now()
                            ORDER BY dns_due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING host(ip), dns_attempts",
        )
        .bind(i64::from(limit))
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let ip: String = row.get(0);
                let attempts: i32 = row.get(1);
                Some((ip.parse().ok()?, attempts.max(0) as u32))
            })
            .collect())
    }

    pub(super) async fn save_ptr_results(&self, results: &[PtrResult]) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *transaction)
            .await?;
        let answered: Vec<&PtrResult> = results.iter().filter(|r| r.info.is_some()).collect();
        if !answered.is_empty() {
            let columns = SourceColumns::new(answered.iter().filter_map(|r| r.info.as_ref()));
            let states: Vec<&str> = answered.iter().map(|r| r.state.as_str()).collect();
            let due: Vec<Option<f64>> = answered.iter().map(|r| due_seconds(r.due_in)).collect();
            sqlx::query(
                "UPDATE ip_sources s SET country = u.country, asn = u.asn, as_name = u.as_name,
                        as_domain = u.as_domain, ptr = u.ptr, base_domain = u.base_domain,
                        source_name = u.source_name, source_type = u.source_type,
                        described_at = now(), dns_state = u.state, dns_attempts = 0,
                        dns_checked_at = now(), dns_due_at = now() + u.due * interval '1 second'
                   FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                               $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[])
                        AS u(ip, country, asn, as_name, as_domain, ptr, base_domain, source_name,
                             source_type, state, due)
                  WHERE s.ip = u.ip::inet",
            )
            .bind(&columns.ip)
            .bind(&columns.country)
            .bind(&columns.asn)
            .bind(&columns.as_name)
            .bind(&columns.as_domain)
            .bind(&columns.ptr)
            .bind(&columns.base_domain)
            .bind(&columns.source_name)
            .bind(&columns.source_type)
            .bind(&states)
            .bind(&due)
            .execute(&mut *transaction)
            .await?;
        }
        let failed: Vec<&PtrResult> = results.iter().filter(|r| r.info.is_none()).collect();
        if !failed.is_empty() {
            let ips: Vec<String> = failed.iter().map(|r| r.ip.to_string()).collect();
            let due: Vec<Option<f64>> = failed.iter().map(|r| due_seconds(r.due_in)).collect();
            // A failed lookup keeps whatever name an earlier one found.
            sqlx::query(
                "UPDATE ip_sources s SET dns_state = 'failed', dns_attempts = s.dns_attempts + 1,
                        dns_checked_at = now(), dns_due_at = now() + u.due * interval '1 second'
                   FROM UNNEST($1::text[], $2::float8[]) AS u(ip, due)
                  WHERE s.ip = u.ip::inet",
            )
            .bind(&ips)
            .bind(&due)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub(super) async fn refresh_sources(&self, dns: DnsRefresh) -> StoreResult<u64> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO ip_sources (ip, dns_due_at)
             SELECT DISTINCT source_ip, now() FROM aggregate_records WHERE source_ip IS NOT NULL
             ON CONFLICT (ip) DO NOTHING",
        )
        .execute(&mut *transaction)
        .await?;
        let marked = sqlx::query("UPDATE ip_sources SET described_at = NULL")
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if let Some(condition) = dns.condition("now()") {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE ip_sources SET dns_state = 'pending', dns_attempts = 0, dns_due_at = now()
                  WHERE {condition}"
            )))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(marked)
    }

    pub(super) async fn renew_stale_ptrs(&self) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE ip_sources SET dns_state = 'pending', dns_due_at = now()
              WHERE dns_state IN ('done', 'none') AND dns_due_at < now()",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub(super) async fn source(&self, ip: IpAddr) -> StoreResult<Option<SourceRecord>> {
        let row = sqlx::query(
            "SELECT host(ip), country, asn, as_name, as_domain, ptr, base_domain, source_name,
                    source_type, described_at IS NOT NULL, dns_state, dns_attempts::int8
               FROM ip_sources WHERE ip = $1::inet",
        )
        .bind(ip.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| SourceRecord {
            ip,
            country: row.get(1),
            asn: row.get(2),
            as_name: row.get(3),
            as_domain: row.get(4),
            ptr: row.get(5),
            base_domain: row.get(6),
            source_name: row.get(7),
            source_type: row.get(8),
            described: row.get(9),
            dns_state: StoredDnsState::parse(row.get::<&str, _>(10)),
            dns_attempts: row.get(11),
        }))
    }

    pub(super) async fn enrichment_counts(&self) -> StoreResult<EnrichmentCounts> {
        let rows = sqlx::query(
            "SELECT dns_state, count(*), count(*) FILTER (WHERE described_at IS NULL)
               FROM ip_sources GROUP BY dns_state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(EnrichmentCounts::from_rows(
            rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))),
        ))
    }
}

fn due_seconds(due_in: Option<Duration>) -> Option<f64> {
    due_in.map(|due| due.as_secs_f64())
}
