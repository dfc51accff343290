//! Where an aggregate query reads its rows: the records, a result rollup,
//! or a family of totals, whichever is the smallest that answers the filter
//! and grouping exactly (src/store/rollup.rs has the tables).

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::aggregate::GroupBy;
use super::filter::ParsedFilter;
use crate::store::derived;
use crate::store::rollup::{self, Family, Rollup};
use crate::store::Sql;

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
        let sender = filter.sender.is_some();
        let needs_source = filter.source.is_some()
            || sender
            || filter.uses_sources()
            || group_by.is_some_and(GroupBy::uses_sources);
        let needs_results = filter.disposition.is_some()
            || filter.dkim.is_some()
            || filter.spf.is_some()
            || group_by == Some(GroupBy::Disposition);
        // A caller limited to some domains reads totals kept per domain.
        let needs_domain =
            filter.domain.is_some() || !filter.scope.is_all() || group_by == Some(GroupBy::Domain);
        // Grouped by what sources are, and filtered by nothing a source
        // alone knows: the totals keyed by it.
        // One sender's totals and days are its rows of the totals per
        // name, a few hundred whatever the database holds.
        let by_description = match group_by {
            Some(GroupBy::Country) if !sender => Some(&derived::COUNTRY_TOTALS),
            Some(GroupBy::SourceName) => Some(&derived::NAME_TOTALS),
            None | Some(GroupBy::Day) | Some(GroupBy::Domain) if sender => {
                Some(&derived::NAME_TOTALS)
            }
            _ => None,
        };
        if let (Some(family), None, false, false, false) = (
            by_description,
            &filter.source,
            filter.uses_sources(),
            needs_org,
            needs_results,
        ) {
            return Plan::Totals(family);
        }
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
                // One domain named, or the only one the caller sees.
                "policy_domain" => {
                    filter.domain.is_some()
                        || filter
                            .scope
                            .domains()
                            .is_some_and(|domains| domains.len() == 1)
                }
                _ => false,
            })
    }

    /// Whether the rows read carry their source's description (country,
    /// AS, name, type), so that grouping by it needs no join: the totals
    /// per source do, at every grain, and those keyed by it.
    pub fn reads_descriptions(&self) -> bool {
        matches!(self, Plan::Totals(family) if family.day.described || family.keyed_by_description)
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

    /// Whether the rows this plan reads for `filter` may count negatively:
    /// a period tiled as whole months minus days takes the days away, so a
    /// group can sum to nothing and must be left out (`HAVING`).
    pub fn signed_rows(&self, filter: &ParsedFilter, by_day: bool) -> bool {
        matches!(self.tiling(filter, by_day), Some(tiling) if !tiling.subtracted.is_empty())
    }

    /// The months and days that cover the filter's period, for totals with
    /// a month grain read by a period with bounds; `None` where one table
    /// is read as it is.
    fn tiling(&self, filter: &ParsedFilter, by_day: bool) -> Option<Tiling> {
        let Plan::Totals(family) = self else {
            return None;
        };
        if by_day || family.month.is_none() || (filter.since.is_none() && filter.until.is_none()) {
            return None;
        }
        Tiling::new(filter.since, filter.until, Utc::now().date_naive())
    }

    /// `<relation> r`: the records, a rollup, or for totals the coarsest
    /// grains that tile the filter's period: all time when it has no
    /// bounds, else whole months with the days at either ragged end added
    /// or, where that reads fewer days, the month around an end with the
    /// days outside the period taken away. Returns whether the relation
    /// holds exactly the period, so that the caller must not filter its
    /// rows by date again (a month that is taken days from begins before
    /// the period).
    /// Only the columns the query can use are read from the tiles: a
    /// subquery of a union keeps every column it selects (it cannot be
    /// merged into its parent while it has a WHERE), and carrying all of
    /// them made the union a third slower.
    pub fn push_relation(
        &self,
        sql: &mut Sql,
        filter: &ParsedFilter,
        group_by: Option<GroupBy>,
    ) -> bool {
        let by_day = group_by == Some(GroupBy::Day);
        let family = match self {
            Plan::Records => {
                sql.push("aggregate_records r");
                return false;
            }
            Plan::Results(rollup) => {
                sql.push(rollup.table).push(" r");
                return false;
            }
            Plan::Totals(family) => family,
        };
        let unbounded = filter.since.is_none() && filter.until.is_none();
        if let (false, true, Some(all)) = (by_day, unbounded, family.all) {
            sql.push(all.table).push(" r");
            return false;
        }
        let (Some(month), Some(tiling)) = (family.month, self.tiling(filter, by_day)) else {
            sql.push(family.day.table).push(" r");
            return false;
        };
        let columns = Columns::read(family.day, filter, group_by);
        sql.push("(");
        push_part(sql, month, &columns, false, tiling.months);
        for days in tiling.added {
            sql.push(" UNION ALL ");
            push_part(
                sql,
                family.day,
                &columns,
                false,
                (Some(days.0), Some(days.1)),
            );
        }
        for days in tiling.subtracted {
            sql.push(" UNION ALL ");
            push_part(
                sql,
                family.day,
                &columns,
                true,
                (Some(days.0), Some(days.1)),
            );
        }
        sql.push(") r");
        true
    }
}

/// The columns of a family of totals a query reads: the keys (filters
/// name the dimensions), the description its grouping shows, and the
/// counters of the DMARC result it counts (`Measures` in aggregate.rs).
struct Columns {
    plain: Vec<&'static str>,
    counters: Vec<&'static str>,
}

impl Columns {
    fn read(rollup: &Rollup, filter: &ParsedFilter, group_by: Option<GroupBy>) -> Columns {
        let result = filter.result;
        let mut plain = rollup.key_columns();
        if rollup.described {
            plain.extend(match group_by {
                Some(GroupBy::SourceName) => &["source_name", "source_type"][..],
                Some(GroupBy::Country) => &["country"][..],
                Some(GroupBy::Asn) => &["asn", "as_name"][..],
                _ => &[][..],
            });
            // One sender's rows are told by their name.
            if filter.sender.is_some() && !plain.contains(&"source_name") {
                plain.push("source_name");
            }
        }
        // All messages count the plain counters and tell the passing ones
        // by `fail_count`; failing ones count the `fail_` counters; passing
        // ones are the difference of both.
        let counters = rollup
            .value_names()
            .into_iter()
            .filter(|name| {
                let failing = name.starts_with("fail_");
                match result {
                    None => !failing || *name == "fail_count",
                    Some(false) => failing,
                    Some(true) => true,
                }
            })
            .collect();
        Columns { plain, counters }
    }
}

/// `SELECT <columns> FROM <rollup> WHERE <date_begin in [from, to)>`, with
/// the counters negated when `negated`. The columns are named so that the
/// parts of a union line up.
fn push_part(
    sql: &mut Sql,
    rollup: &Rollup,
    columns: &Columns,
    negated: bool,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) {
    let mut select: Vec<String> = columns.plain.iter().map(|c| c.to_string()).collect();
    select.extend(columns.counters.iter().map(|counter| match negated {
        true => format!("-{counter} AS {counter}"),
        false => counter.to_string(),
    }));
    sql.push("SELECT ")
        .push(&select.join(", "))
        .push(" FROM ")
        .push(rollup.table)
        .push(" WHERE 1 = 1");
    if let Some(from) = from {
        sql.push(" AND date_begin >= ").bind(from);
    }
    if let Some(to) = to {
        sql.push(" AND date_begin < ").bind(to);
    }
}

/// A period `[since, until)` (midnights, either open) as the whole months
/// `[months.0, months.1)` plus the `added` days and minus the `subtracted`
/// ones (each a `[from, to)` of days).
#[derive(Debug, PartialEq, Eq)]
struct Tiling {
    months: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    added: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    subtracted: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Tiling {
    /// `None` when no month fits: the period is read as days.
    ///
    /// At each ragged end the days inside the period are added to the
    /// months after it, or the days outside it are taken from its month,
    /// whichever reads fewer rows: a month row stands for a few day rows
    /// (a source seen on several days of a month has one month row), so
    /// taking away wins only when it reads less than half the days. Days
    /// after `today` hold no reports and cost nothing.
    fn new(
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        today: NaiveDate,
    ) -> Option<Tiling> {
        let cost = |from: DateTime<Utc>, to: DateTime<Utc>| {
            let end = to.min(day_start(today + chrono::Days::new(1)));
            (end - from).num_days().max(0)
        };
        let takes_away = |added: i64, taken: i64| 2 * taken + 1 < added;
        let mut tiling = Tiling {
            months: (None, None),
            added: Vec::new(),
            subtracted: Vec::new(),
        };
        if let Some(since) = since {
            let (after, around) = (month_at_or_after(since), month_at_or_before(since));
            if after == since {
                tiling.months.0 = Some(since);
            } else if takes_away(cost(since, after), cost(around, since)) {
                tiling.months.0 = Some(around);
                tiling.subtracted.push((around, since));
            } else {
                tiling.months.0 = Some(after);
                tiling.added.push((since, after));
            }
        }
        if let Some(until) = until {
            let (before, around) = (month_at_or_before(until), month_at_or_after(until));
            if before == until {
                tiling.months.1 = Some(until);
            } else if takes_away(cost(before, until), cost(until, around)) {
                tiling.months.1 = Some(around);
                tiling.subtracted.push((until, around));
            } else {
                tiling.months.1 = Some(before);
                tiling.added.push((before, until));
            }
        }
        match tiling.months {
            (Some(first), Some(last)) if first >= last => None,
            _ => Some(tiling),
        }
    }
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
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
        Plan::for_query(&filter.parse(&crate::scope::Scope::All).unwrap(), group_by).table()
    }

    #[test]
    fn a_caller_of_one_domain_reads_its_sources_totals_as_they_are() {
        use crate::scope::{GroupRole, Membership, Scope};
        let scope = |domains: &[&str]| {
            Scope::groups(vec![Membership {
                group_id: 2,
                group: "g".into(),
                role: GroupRole::Viewer,
                domains: domains.iter().map(|d| d.to_string()).collect(),
            }])
        };
        let rows_are_groups = |scope: &Scope| {
            let parsed = Filter::default().parse(scope).unwrap();
            let plan = Plan::for_query(&parsed, Some(GroupBy::Source));
            assert_eq!(plan.table(), Some("totals_domain_source_day"));
            plan.rows_are_groups(&parsed, GroupBy::Source)
        };
        assert!(rows_are_groups(&scope(&["a.example"])));
        assert!(!rows_are_groups(&scope(&["a.example", "b.example"])));
    }

    #[test]
    fn the_smallest_rollup_that_answers_is_chosen() {
        assert_eq!(plan("", Some(GroupBy::Source)), Some("totals_source_day"));
        assert_eq!(
            plan("domain=example.com&result=fail", Some(GroupBy::Asn)),
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
        assert_eq!(plan("", Some(GroupBy::Country)), Some("totals_country_day"));
        assert_eq!(
            plan("domain=example.com&result=fail", Some(GroupBy::SourceName)),
            Some("totals_name_day")
        );
        assert_eq!(
            plan("country=DE", Some(GroupBy::Country)),
            Some("totals_source_day"),
            "a filter on what a source is reads the totals per source"
        );
        assert_eq!(
            plan("source=11.0.0.0/8", Some(GroupBy::SourceName)),
            Some("totals_source_day")
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
            let parsed = filter.parse(&crate::scope::Scope::All).unwrap();
            let mut sql = Sql::new(Default::default());
            Plan::Totals(&rollup::SOURCE_TOTALS).push_relation(&mut sql, &parsed, None);
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
            split.contains("FROM totals_source_day WHERE 1 = 1 AND date_begin >= $3 AND date_begin < $4 UNION ALL"),
            "{split}"
        );
        assert!(!split.contains("-count"), "{split}");
    }

    #[test]
    fn a_ragged_end_takes_days_from_its_month_when_that_reads_fewer() {
        let day = |text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(day_start)
                .unwrap()
        };
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        // 29 days added, or 1 taken away from November.
        assert_eq!(
            Tiling::new(Some(day("2026-11-02")), None, today),
            Some(Tiling {
                months: (Some(day("2026-11-01")), None),
                added: vec![],
                subtracted: vec![(day("2026-11-01"), day("2026-11-02"))],
            })
        );
        // 5 days added rather than 26 taken away.
        assert_eq!(
            Tiling::new(Some(day("2026-10-27")), None, today),
            Some(Tiling {
                months: (Some(day("2026-11-01")), None),
                added: vec![(day("2026-10-27"), day("2026-11-01"))],
                subtracted: vec![],
            })
        );
        // Until the 29th of September: two days taken from it; the days
        // after today cost nothing, so December's rest is taken away.
        assert_eq!(
            Tiling::new(Some(day("2026-09-03")), Some(day("2026-09-29")), today),
            Some(Tiling {
                months: (Some(day("2026-09-01")), Some(day("2026-10-01"))),
                added: vec![],
                subtracted: vec![
                    (day("2026-09-01"), day("2026-09-03")),
                    (day("2026-09-29"), day("2026-10-01")),
                ],
            })
        );
        assert_eq!(
            Tiling::new(Some(day("2026-10-27")), Some(day("2026-12-03")), today),
            Some(Tiling {
                months: (Some(day("2026-11-01")), Some(day("2027-01-01"))),
                added: vec![(day("2026-10-27"), day("2026-11-01"))],
                subtracted: vec![(day("2026-12-03"), day("2027-01-01"))],
            })
        );
        // Within one month, a short period is read as days.
        assert_eq!(
            Tiling::new(Some(day("2026-09-03")), Some(day("2026-09-10")), today),
            None
        );
        let filter: Filter = serde_urlencoded::from_str("since=2026-11-02").unwrap();
        let parsed = filter.parse(&crate::scope::Scope::All).unwrap();
        let plan = Plan::Totals(&rollup::SOURCE_TOTALS);
        assert!(
            plan.signed_rows(&parsed, false),
            "a day taken from November"
        );
        assert!(!plan.signed_rows(&parsed, true), "by day reads days");
        let mut sql = Sql::new(Default::default());
        assert!(plan.push_relation(&mut sql, &parsed, Some(GroupBy::Country)));
        assert!(
            sql.text().contains(
                "SELECT date_begin, source_ip, invalid_source_ip, country, count, records, \
                 dkim_pass, spf_pass, disp_none, disp_quarantine, disp_reject, fail_count FROM"
            ),
            "{}",
            sql.text()
        );
    }
}
