//! Where an aggregate query reads its rows: the records, a result rollup,
//! or a family of totals, whichever is the smallest that answers the filter
//! and grouping exactly (src/store/rollup.rs has the tables).

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::aggregate::GroupBy;
use super::filter::ParsedFilter;
use crate::store::rollup::{self, Family, Rollup};
use crate::store::{Arg, Sql};

/// The rows a query reads.
#[derive(Clone, Copy)]
pub enum Plan {
    /// `aggregate_records` itself.
    Records,
    /// A result rollup: every filter applies to it as to the records.
    Results(&'static Rollup),
    /// Totals: the DMARC result is a choice of counter columns, and the
    /// other result filters (disposition, aligned DKIM/SPF) never apply.
    Totals(&'static Family),
}

impl Plan {
    pub fn for_query(filter: &ParsedFilter, group_by: Option<GroupBy>) -> Plan {
        let midnight =
            |time: Option<DateTime<Utc>>| time.is_none_or(|t| t.time() == chrono::NaiveTime::MIN);
        let by_record = filter.report.is_some()
            || filter.header_from.is_some()
            || group_by == Some(GroupBy::HeaderFrom)
            || !midnight(filter.since)
            || !midnight(filter.until);
        if by_record {
            return Plan::Records;
        }
        let needs_org = filter.org.is_some() || group_by == Some(GroupBy::Org);
        let needs_source = filter.source.is_some()
            || filter.uses_sources()
            || group_by.is_some_and(GroupBy::uses_sources);
        let needs_results = filter.disposition.is_some()
            || filter.dkim.is_some()
            || filter.spf.is_some()
            || group_by == Some(GroupBy::Disposition);
        let needs_domain = filter.domain.is_some() || group_by == Some(GroupBy::Domain);
        match (needs_source, needs_org, needs_results) {
            (true, true, _) | (true, _, true) => Plan::Records,
            (false, true, true) => Plan::Results(&rollup::ORG_DAY),
            (false, false, true) => Plan::Results(&rollup::DOMAIN_DAY),
            (true, false, false) if needs_domain => Plan::Totals(&rollup::DOMAIN_SOURCE_TOTALS),
            (true, false, false) => Plan::Totals(&rollup::SOURCE_TOTALS),
            (false, _, false) => Plan::Totals(&rollup::ORG_TOTALS),
        }
    }

    /// Whether each row this plan reads for a summary grouped by `group_by`
    /// is one group already: the all-time totals per source IP, or per
    /// domain and source IP when the filter names the domain. Such a
    /// summary needs no aggregation.
    pub fn rows_are_groups(&self, filter: &ParsedFilter, group_by: GroupBy) -> bool {
        let Plan::Totals(family) = self else {
            return false;
        };
        let Some(all) = family.all else {
            return false;
        };
        let unbounded = filter.since.is_none() && filter.until.is_none();
        unbounded
            && group_by == GroupBy::Source
            && all.dimensions.iter().all(|dimension| match *dimension {
                "source_ip" | "invalid_source_ip" => true,
                "policy_domain" => filter.domain.is_some(),
                _ => false,
            })
    }

    /// Whether the rows read carry their source's description (country,
    /// AS, name, type), so that grouping by it needs no join: the totals
    /// per source do, at every grain.
    pub fn reads_descriptions(&self) -> bool {
        matches!(self, Plan::Totals(family) if family.day.described)
    }

    /// The table a query names (the day grain of totals), or `None` for the
    /// records.
    pub fn table(&self) -> Option<&'static str> {
        match self {
            Plan::Records => None,
            Plan::Results(rollup) => Some(rollup.table),
            Plan::Totals(family) => Some(family.day.table),
        }
    }

    /// `<relation> r`: the records, a rollup, or for totals the coarsest
    /// grains that tile the filter's period: all time when it has no
    /// bounds, else whole months with the days at either ragged end.
    pub fn push_relation(&self, sql: &mut Sql, filter: &ParsedFilter, by_day: bool) {
        let family = match self {
            Plan::Records => {
                sql.push("aggregate_records r");
                return;
            }
            Plan::Results(rollup) => {
                sql.push(rollup.table).push(" r");
                return;
            }
            Plan::Totals(family) => family,
        };
        let unbounded = filter.since.is_none() && filter.until.is_none();
        match (by_day, unbounded, family.all, family.month) {
            (false, true, Some(all), _) => {
                sql.push(all.table).push(" r");
            }
            (false, _, _, Some(month)) => {
                let first = filter.since.map(month_at_or_after);
                let last = filter.until.map(month_at_or_before);
                if let (Some(first), Some(last)) = (first, last) {
                    if first >= last {
                        // No whole month inside the period.
                        sql.push(family.day.table).push(" r");
                        return;
                    }
                }
                sql.push("(SELECT * FROM ")
                    .push(month.table)
                    .push(" WHERE 1 = 1");
                if let Some(first) = first {
                    sql.push(" AND date_begin >= ").bind(Arg::Time(first));
                }
                if let Some(last) = last {
                    sql.push(" AND date_begin < ").bind(Arg::Time(last));
                }
                sql.push(" UNION ALL SELECT * FROM ")
                    .push(family.day.table)
                    .push(" WHERE ");
                match (first, last) {
                    (Some(first), Some(last)) => {
                        sql.push("(date_begin < ")
                            .bind(Arg::Time(first))
                            .push(" OR date_begin >= ")
                            .bind(Arg::Time(last))
                            .push(")");
                    }
                    (Some(first), None) => {
                        sql.push("date_begin < ").bind(Arg::Time(first));
                    }
                    (None, Some(last)) => {
                        sql.push("date_begin >= ").bind(Arg::Time(last));
                    }
                    (None, None) => {
                        sql.push("1 = 0");
                    }
                }
                sql.push(") r");
            }
            _ => {
                sql.push(family.day.table).push(" r");
            }
        }
    }
}

fn month_start(day: NaiveDate) -> DateTime<Utc> {
    day.with_day(1)
        .expect("every month has a first day")
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

/// The first month start at or after `time`.
fn month_at_or_after(time: DateTime<Utc>) -> DateTime<Utc> {
    let start = month_start(time.date_naive());
    if start == time {
        start
    } else {
        month_start(start.date_naive() + chrono::Months::new(1))
    }
}

/// The last month start at or before `time`.
fn month_at_or_before(time: DateTime<Utc>) -> DateTime<Utc> {
    month_start(time.date_naive())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Filter;

    fn plan(query: &str, group_by: Option<GroupBy>) -> Option<&'static str> {
        let filter: Filter = serde_urlencoded::from_str(query).unwrap();
        Plan::for_query(&filter.parse().unwrap(), group_by).table()
    }

    #[test]
    fn the_smallest_rollup_that_answers_is_chosen() {
        assert_eq!(plan("", Some(GroupBy::Source)), Some("totals_source_day"));
        assert_eq!(
            plan("domain=example.com&result=fail", Some(GroupBy::Country)),
            Some("totals_domain_source_day")
        );
        assert_eq!(plan("", Some(GroupBy::Org)), Some("totals_org_day"));
        assert_eq!(
            plan("dkim=fail", Some(GroupBy::Org)),
            Some("rollup_org_day")
        );
        assert_eq!(
            plan("", Some(GroupBy::Disposition)),
            Some("rollup_domain_day")
        );
        assert_eq!(plan("spf=fail", Some(GroupBy::Source)), None);
        assert_eq!(plan("org=google.com", Some(GroupBy::Source)), None);
        assert_eq!(plan("", Some(GroupBy::HeaderFrom)), None);
        assert_eq!(plan("since=2024-03-30T12:00:00Z", Some(GroupBy::Day)), None);
    }

    #[test]
    fn periods_are_tiled_by_whole_months_and_ragged_days() {
        let time = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let may = time("2024-05-01T00:00:00Z");
        assert_eq!(month_at_or_after(may), may);
        assert_eq!(month_at_or_before(may), may);
        assert_eq!(
            month_at_or_after(time("2024-12-02T00:00:00Z")),
            time("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            month_at_or_before(time("2024-05-31T00:00:00Z")),
            time("2024-05-01T00:00:00Z")
        );
        let relation = |query: &str| {
            let filter: Filter = serde_urlencoded::from_str(query).unwrap();
            let parsed = filter.parse().unwrap();
            let mut sql = Sql::new(crate::store::Dialect::Postgres);
            Plan::Totals(&rollup::SOURCE_TOTALS).push_relation(&mut sql, &parsed, false);
            sql.text().to_string()
        };
        assert_eq!(relation(""), "totals_source_all r");
        assert_eq!(
            relation("since=2024-05-03&until=2024-05-20"),
            "totals_source_day r"
        );
        let split = relation("since=2024-04-20&until=2024-06-03");
        assert!(
            split.contains(
                "FROM totals_source_month WHERE 1 = 1 AND date_begin >= $1 AND date_begin < $2"
            ),
            "{split}"
        );
        assert!(
            split.contains("FROM totals_source_day WHERE (date_begin < $3 OR date_begin >= $4)"),
            "{split}"
        );
    }
}
