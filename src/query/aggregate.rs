//! Aggregate data as the dashboard and the API show it: grouped summaries,
//! records, reports.

use serde::{Deserialize, Serialize};

use super::filter::{ParsedFilter, SourceMatch};
use super::plan::Plan;
use super::{normalize_time, Page, QueryError};
use crate::store::{Arg, Cell, Dialect, Sql, Store};

/// What a summary groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Source IP.
    #[default]
    Source,
    /// Named sending source (falls back to the IP).
    SourceName,
    /// Reporting organization.
    Org,
    Country,
    Asn,
    /// Policy domain.
    Domain,
    /// Day the report period began (UTC).
    Day,
    Disposition,
    HeaderFrom,
}

impl GroupBy {
    pub const ALL: [GroupBy; 9] = [
        GroupBy::Source,
        GroupBy::SourceName,
        GroupBy::Org,
        GroupBy::Country,
        GroupBy::Asn,
        GroupBy::Domain,
        GroupBy::Day,
        GroupBy::Disposition,
        GroupBy::HeaderFrom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Source => "source",
            GroupBy::SourceName => "source_name",
            GroupBy::Org => "org",
            GroupBy::Country => "country",
            GroupBy::Asn => "asn",
            GroupBy::Domain => "domain",
            GroupBy::Day => "day",
            GroupBy::Disposition => "disposition",
            GroupBy::HeaderFrom => "header_from",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            GroupBy::Source => "Source IP",
            GroupBy::SourceName => "Source",
            GroupBy::Org => "Reporting organization",
            GroupBy::Country => "Country",
            GroupBy::Asn => "AS",
            GroupBy::Domain => "Domain",
            GroupBy::Day => "Day",
            GroupBy::Disposition => "Disposition",
            GroupBy::HeaderFrom => "Header From",
        }
    }

    pub fn parse(text: &str) -> Result<Self, QueryError> {
        Self::ALL
            .into_iter()
            .find(|group| group.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|g| g.as_str()).collect();
                QueryError::Invalid(format!(
                    "group_by: {text:?} is not one of {}",
                    known.join(", ")
                ))
            })
    }

    /// The grouping key (text) and a display label, as SQL. `sources` is
    /// the alias the source descriptions are read from: `s` (ip_sources,
    /// joined) or `r` (totals that carry them).
    fn key_and_label(self, dialect: Dialect, sources: &str) -> (String, String) {
        let pg = dialect == Dialect::Postgres;
        let s = sources;
        let (key, label) = match self {
            // Labelled after grouping (`outer_label`), for the page's rows only.
            GroupBy::Source if pg => ("host(r.source_ip)".into(), "NULL".into()),
            GroupBy::Source => ("r.source_ip".into(), "NULL".into()),
            GroupBy::SourceName if pg => (
                format!("coalesce({s}.source_name, host(r.source_ip), r.invalid_source_ip)"),
                format!("max({s}.source_type)"),
            ),
            GroupBy::SourceName => (
                format!("coalesce({s}.source_name, r.source_ip, r.invalid_source_ip)"),
                format!("max({s}.source_type)"),
            ),
            GroupBy::Org => ("r.org_name".into(), "NULL".into()),
            GroupBy::Country => (format!("{s}.country"), "NULL".into()),
            GroupBy::Asn if pg => (format!("{s}.asn::text"), format!("max({s}.as_name)")),
            GroupBy::Asn => (
                format!("CAST({s}.asn AS TEXT)"),
                format!("max({s}.as_name)"),
            ),
            GroupBy::Domain => ("r.policy_domain".into(), "NULL".into()),
            GroupBy::Day if pg => (
                "to_char(r.date_begin AT TIME ZONE 'UTC', 'YYYY-MM-DD')".into(),
                "NULL".into(),
            ),
            GroupBy::Day => ("substr(r.date_begin, 1, 10)".into(), "NULL".into()),
            GroupBy::Disposition => ("r.disposition".into(), "NULL".into()),
            GroupBy::HeaderFrom => ("r.header_from".into(), "NULL".into()),
        };
        (key, label)
    }

    /// The label as the outer query over the groups `g` selects it.
    fn outer_label(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (GroupBy::Source, Dialect::Postgres) => {
                "(SELECT coalesce(s.source_name, s.ptr) FROM ip_sources s WHERE s.ip = g.key::inet)"
            }
            (GroupBy::Source, Dialect::Sqlite) => {
                "(SELECT coalesce(s.source_name, s.ptr) FROM ip_sources s WHERE s.ip = g.key)"
            }
            _ => "g.label",
        }
    }

    /// The outer query's columns: the groups, labelled.
    fn outer_columns(self, dialect: Dialect) -> String {
        format!(
            "g.key, {} AS label, g.messages, g.passed, g.dkim, g.spf, g.none, g.quarantine, g.reject",
            self.outer_label(dialect)
        )
    }

    /// What the rows are grouped by: the key itself, except that an IP is
    /// grouped as an address and turned into text once per group.
    fn grouping(self, dialect: Dialect, sources: &str) -> String {
        match self {
            GroupBy::Source => "r.source_ip".into(),
            other => other.key_and_label(dialect, sources).0,
        }
    }

    pub fn uses_sources(self) -> bool {
        matches!(
            self,
            GroupBy::Source | GroupBy::SourceName | GroupBy::Country | GroupBy::Asn
        )
    }

    /// Whether the key or label reads `ip_sources` (a source IP alone is
    /// labelled after grouping, for the page's rows only).
    fn reads_source_details(self) -> bool {
        matches!(self, GroupBy::SourceName | GroupBy::Country | GroupBy::Asn)
    }
}

/// How summary rows are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SummarySort {
    /// Most messages first.
    #[default]
    Messages,
    /// Most DMARC failures first.
    Failures,
    /// Lowest pass rate first.
    PassRate,
    /// By key (days oldest first).
    Key,
}

impl SummarySort {
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        match text {
            "messages" => Ok(SummarySort::Messages),
            "failures" => Ok(SummarySort::Failures),
            "pass_rate" => Ok(SummarySort::PassRate),
            "key" => Ok(SummarySort::Key),
            other => Err(QueryError::Invalid(format!(
                "sort: {other:?} is not one of messages, failures, pass_rate, key"
            ))),
        }
    }
}

/// One group of a summary.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SummaryRow {
    /// The group's value (an IP, an organization, a day, …); null when unknown.
    pub key: Option<String>,
    /// A name for the key where there is one (source name, AS name, source type).
    pub label: Option<String>,
    /// Messages (sum of record counts).
    pub messages: i64,
    pub dmarc_pass: i64,
    pub dmarc_fail: i64,
    pub dkim_aligned_pass: i64,
    pub spf_aligned_pass: i64,
    pub disposition_none: i64,
    pub disposition_quarantine: i64,
    pub disposition_reject: i64,
    /// dmarc_pass / messages, 0–1.
    pub pass_rate: f64,
}

impl SummaryRow {
    pub const CSV_HEADER: &'static [&'static str] = &[
        "key",
        "label",
        "messages",
        "dmarc_pass",
        "dmarc_fail",
        "dkim_aligned_pass",
        "spf_aligned_pass",
        "disposition_none",
        "disposition_quarantine",
        "disposition_reject",
        "pass_rate",
    ];

    fn from_cells(cells: &[Cell]) -> Self {
        let messages = cells[2].int();
        let pass = cells[3].int();
        SummaryRow {
            key: cells[0].text(),
            label: cells[1].text(),
            messages,
            dmarc_pass: pass,
            dmarc_fail: messages - pass,
            dkim_aligned_pass: cells[4].int(),
            spf_aligned_pass: cells[5].int(),
            disposition_none: cells[6].int(),
            disposition_quarantine: cells[7].int(),
            disposition_reject: cells[8].int(),
            pass_rate: if messages > 0 {
                pass as f64 / messages as f64
            } else {
                0.0
            },
        }
    }

    pub fn csv_fields(&self) -> Vec<String> {
        vec![
            self.key.clone().unwrap_or_default(),
            self.label.clone().unwrap_or_default(),
            self.messages.to_string(),
            self.dmarc_pass.to_string(),
            self.dmarc_fail.to_string(),
            self.dkim_aligned_pass.to_string(),
            self.spf_aligned_pass.to_string(),
            self.disposition_none.to_string(),
            self.disposition_quarantine.to_string(),
            self.disposition_reject.to_string(),
            format!("{:.4}", self.pass_rate),
        ]
    }
}

/// The rollup a query over `filter` grouped by `group_by` reads (the day
/// grain of a family of totals), or `None` for the records themselves.
pub fn rollup_for(filter: &ParsedFilter, group_by: Option<GroupBy>) -> Option<&'static str> {
    Plan::for_query(filter, group_by).table()
}

/// `FROM aggregate_records r [LEFT JOIN ip_sources s] WHERE 1=1 AND …`.
pub(super) async fn push_from_where(
    store: &Store,
    sql: &mut Sql,
    filter: &ParsedFilter,
    join_sources: bool,
) -> Result<(), QueryError> {
    push_from_where_in(store, sql, filter, join_sources, Plan::Records, None).await
}

/// `FROM <relation> r [LEFT JOIN ip_sources s] WHERE 1=1 AND …` over the
/// rows `plan` names. Totals take the DMARC result as a choice of columns
/// (`Measures`), so its condition is left out here.
async fn push_from_where_in(
    store: &Store,
    sql: &mut Sql,
    filter: &ParsedFilter,
    join_sources: bool,
    plan: Plan,
    group_by: Option<GroupBy>,
) -> Result<(), QueryError> {
    sql.push(" FROM ");
    let period_read = plan.push_relation(sql, filter, group_by);
    if join_sources || filter.uses_sources() {
        sql.push(" LEFT JOIN ip_sources s ON s.ip = r.source_ip");
    }
    sql.push(" WHERE 1 = 1");
    let networks = match (&filter.source, store.dialect()) {
        (Some(network @ SourceMatch::Network { .. }), Dialect::Sqlite) => {
            Some(sqlite_ips_in(store, network).await?)
        }
        _ => None,
    };
    let mut conditions = match plan {
        Plan::Totals(_) => ParsedFilter {
            result: None,
            ..filter.clone()
        },
        _ => filter.clone(),
    };
    if period_read {
        // The relation holds the period and nothing else; some of its rows
        // (a month that days are taken from) begin before it.
        conditions.since = None;
        conditions.until = None;
    }
    conditions.push_conditions(sql, networks.as_deref());
    if let (Plan::Totals(_), Some(passing)) = (plan, filter.result) {
        // A row without a record of that result adds nothing to its
        // counters: it is skipped before it is summed. Most rows of a
        // source's day hold one result only (on the load seed, three day
        // rows in four have no failing record).
        sql.push(match passing {
            true => " AND r.records <> r.fail_records",
            false => " AND r.fail_records <> 0",
        });
    }
    Ok(())
}

/// SQLite stores IPs as text: the addresses of a CIDR block are found among
/// the known sources in Rust.
async fn sqlite_ips_in(store: &Store, network: &SourceMatch) -> Result<Vec<String>, QueryError> {
    let mut sql = store.sql();
    sql.push("SELECT ip FROM ip_sources");
    let rows = store.fetch_table(sql).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row[0].text())
        .filter(|ip| ip.parse().is_ok_and(|ip| network.contains(ip)))
        .collect())
}

/// The sums a summary row is made of, as SQL over the rows `plan` names.
struct Measures {
    messages: String,
    passed: String,
    dkim: String,
    spf: String,
    none: String,
    quarantine: String,
    reject: String,
    /// Records behind the rows (for totals of the records list).
    records: String,
    /// What a group needs to exist (totals hold rows for either result).
    having: Option<String>,
}

impl Measures {
    fn new(plan: Plan, dialect: Dialect, result: Option<bool>) -> Self {
        Self::over(plan, dialect, result, true, false)
    }

    /// The measures of rows that are groups already (`aggregate` false):
    /// the same expressions without the sums. `signed`: some rows count
    /// negatively (`Plan::signed_rows`), so a group may hold no records.
    fn over(
        plan: Plan,
        dialect: Dialect,
        result: Option<bool>,
        aggregate: bool,
        signed: bool,
    ) -> Self {
        let sum = |expression: &str| match aggregate {
            true => super::sum(dialect, expression),
            false => format!("coalesce({expression}, 0)"),
        };
        if let Plan::Totals(_) = plan {
            // All, failing only, or passing only (all minus failing).
            let column = |name: &str| match result {
                None => format!("r.{name}"),
                Some(false) => format!("r.fail_{name}"),
                Some(true) => format!("r.{name} - r.fail_{name}"),
            };
            let records = sum(&column("records"));
            return Measures {
                messages: sum(&column("count")),
                passed: match result {
                    None => sum("r.count - r.fail_count"),
                    Some(false) => "0".into(),
                    Some(true) => sum(&column("count")),
                },
                dkim: sum(&column("dkim_pass")),
                spf: sum(&column("spf_pass")),
                none: sum(&column("disp_none")),
                quarantine: sum(&column("disp_quarantine")),
                reject: sum(&column("disp_reject")),
                // A result's rows without a record of it are left out
                // before summing (`push_from_where_in`), so only rows that
                // count negatively can leave a group with none.
                having: signed.then(|| format!("{records} > 0")),
                records,
            };
        }
        let pass = match dialect {
            Dialect::Postgres => "r.dmarc_pass",
            Dialect::Sqlite => "r.dmarc_pass = 1",
        };
        let when = |condition: &str| sum(&format!("CASE WHEN {condition} THEN r.count END"));
        Measures {
            messages: sum("r.count"),
            passed: when(pass),
            dkim: when("r.dkim_aligned = 'pass'"),
            spf: when("r.spf_aligned = 'pass'"),
            none: when("r.disposition = 'none'"),
            quarantine: when("r.disposition = 'quarantine'"),
            reject: when("r.disposition = 'reject'"),
            records: match plan {
                Plan::Records => "count(*)".into(),
                _ => sum("r.records"),
            },
            having: None,
        }
    }
}

/// The SELECT of a summary, without ORDER BY or paging.
async fn summary_sql(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
) -> Result<Sql, QueryError> {
    summary_sql_from(
        store,
        filter,
        group_by,
        Plan::for_query(filter, Some(group_by)),
    )
    .await
}

async fn summary_sql_from(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    plan: Plan,
) -> Result<Sql, QueryError> {
    let mut sql = store.sql();
    if plan.rows_are_groups(filter, group_by) {
        // No aggregation over tens of thousands of groups: each row is one,
        // except that rows without a valid IP share the null key.
        push_groups(
            store,
            &mut sql,
            filter,
            group_by,
            plan,
            Grouping::RowsAreGroups,
        )
        .await?;
        sql.push(" UNION ALL ");
        push_groups(
            store,
            &mut sql,
            filter,
            group_by,
            plan,
            Grouping::NullSourceOnly,
        )
        .await?;
    } else {
        push_groups(store, &mut sql, filter, group_by, plan, Grouping::Aggregate).await?;
    }
    Ok(sql)
}

/// How `push_groups` turns rows into groups.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grouping {
    /// GROUP BY the key.
    Aggregate,
    /// The rows with a source IP, each a group already.
    RowsAreGroups,
    /// The rows without a valid source IP, aggregated into one group.
    NullSourceOnly,
    /// GROUP BY the source IP, with only what ranks the groups: the IP, the
    /// key, messages and passes (`ranked_page`).
    Ranking,
}

async fn push_groups(
    store: &Store,
    sql: &mut Sql,
    filter: &ParsedFilter,
    group_by: GroupBy,
    plan: Plan,
    grouping: Grouping,
) -> Result<(), QueryError> {
    let dialect = store.dialect();
    let by_day = group_by == GroupBy::Day;
    // Totals that carry the source descriptions need no join for them.
    let described = plan.reads_descriptions();
    let sources = if described { "r" } else { "s" };
    let (key, label) = group_by.key_and_label(dialect, sources);
    let aggregate = grouping != Grouping::RowsAreGroups;
    let signed = plan.signed_rows(filter, by_day);
    let m = Measures::over(plan, dialect, filter.result, aggregate, signed);
    if grouping == Grouping::Ranking {
        sql.push(&format!(
            "SELECT r.source_ip AS ip, {key} AS key, {label} AS label, {} AS messages, {} AS passed",
            m.messages, m.passed
        ));
    } else {
        sql.push(&format!(
            "SELECT {key} AS key, {label} AS label, {} AS messages, {} AS passed, \
             {} AS dkim, {} AS spf, {} AS none, {} AS quarantine, {} AS reject",
            m.messages, m.passed, m.dkim, m.spf, m.none, m.quarantine, m.reject
        ));
    }
    push_from_where_in(
        store,
        sql,
        filter,
        group_by.reads_source_details() && !described,
        plan,
        Some(group_by),
    )
    .await?;
    match grouping {
        Grouping::Aggregate | Grouping::Ranking => {}
        Grouping::RowsAreGroups => {
            sql.push(" AND r.source_ip IS NOT NULL");
            if let Some(having) = &m.having {
                sql.push(" AND ").push(having);
            }
            return Ok(());
        }
        Grouping::NullSourceOnly => {
            sql.push(" AND r.source_ip IS NULL");
        }
    }
    sql.push(&format!(
        " GROUP BY {}",
        group_by.grouping(dialect, sources)
    ));
    if let Some(having) = &m.having {
        sql.push(" HAVING ").push(having);
    }
    Ok(())
}

/// The summary in a subquery, so that the order can use its columns in
/// expressions (PostgreSQL allows only bare output names in ORDER BY).
fn ordered_summary(store: &Store, inner: &Sql, group_by: GroupBy, sort: SummarySort) -> Sql {
    let mut sql = store.sql();
    sql.push("SELECT ")
        .push(&group_by.outer_columns(store.dialect()))
        .push(" FROM (");
    super::append(&mut sql, inner);
    sql.push(") AS g");
    sql.push(summary_order(sort));
    sql
}

fn summary_order(sort: SummarySort) -> &'static str {
    match sort {
        SummarySort::Messages => " ORDER BY messages DESC, key",
        SummarySort::Failures => " ORDER BY messages - passed DESC, key",
        SummarySort::PassRate => {
            " ORDER BY CAST(passed AS REAL) / CASE WHEN messages = 0 THEN 1 ELSE messages END, messages DESC, key"
        }
        SummarySort::Key => " ORDER BY key",
    }
}

/// Whether a page of this summary ranks the groups first and sums the rest
/// of their counters for the page's groups alone (`ranked_page`): by source
/// over totals whose rows are not one per group (a period with bounds), on
/// PostgreSQL (SQLite has no LATERAL, and is not for millions of records).
fn ranks_first(store: &Store, filter: &ParsedFilter, group_by: GroupBy, plan: Plan) -> bool {
    store.dialect() == Dialect::Postgres
        && group_by == GroupBy::Source
        && matches!(plan, Plan::Totals(_))
        && !plan.rows_are_groups(filter, group_by)
}

/// One page of the summary by source, ranked on messages and passes alone;
/// each of its sources' DKIM, SPF and disposition counts is then summed
/// from the same rows, found through the index by source. Summing those
/// five counters over every source of a month was a third of the query (on
/// the load seed, 82 against 56 ms in psql for the failures of 36 days).
/// With `count_groups`, each row carries the number of groups (column 9).
async fn ranked_page(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    plan: Plan,
    sort: SummarySort,
    page: Page,
    count_groups: bool,
) -> Result<Sql, QueryError> {
    let dialect = store.dialect();
    let mut sql = store.sql();
    sql.push(&format!(
        "SELECT g.key, {} AS label, g.messages, g.passed, \
         x.dkim, x.spf, x.none, x.quarantine, x.reject",
        group_by.outer_label(dialect)
    ));
    sql.push(match count_groups {
        true => ", g.groups FROM (SELECT n.*, count(*) OVER () AS groups FROM (",
        false => " FROM (SELECT n.* FROM (",
    });
    push_groups(store, &mut sql, filter, group_by, plan, Grouping::Ranking).await?;
    sql.push(") AS n").push(summary_order(sort));
    page.push_limit(&mut sql);
    let signed = plan.signed_rows(filter, false);
    let m = Measures::over(plan, dialect, filter.result, true, signed);
    sql.push(&format!(
        ") AS g CROSS JOIN LATERAL (SELECT {} AS dkim, {} AS spf, \
         {} AS none, {} AS quarantine, {} AS reject",
        m.dkim, m.spf, m.none, m.quarantine, m.reject
    ));
    push_from_where_in(store, &mut sql, filter, false, plan, Some(group_by)).await?;
    // Rows without a valid IP are one group, with the null key.
    sql.push(" AND (r.source_ip = g.ip OR (g.ip IS NULL AND r.source_ip IS NULL))) AS x");
    sql.push(summary_order(sort));
    Ok(sql)
}

/// Message counts and pass rates per group, one page, with the number of groups.
pub async fn summary(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    sort: SummarySort,
    page: Page,
) -> Result<(Vec<SummaryRow>, i64), QueryError> {
    summary_from(store, filter, group_by, sort, page, true).await
}

/// `summary`, from the records themselves when `use_rollups` is false (to
/// check that the rollups agree with them).
pub async fn summary_from(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    sort: SummarySort,
    page: Page,
    use_rollups: bool,
) -> Result<(Vec<SummaryRow>, i64), QueryError> {
    let plan = if use_rollups {
        Plan::for_query(filter, Some(group_by))
    } else {
        Plan::Records
    };
    // The number of groups comes with the page, from one pass over the rows.
    let sql = if ranks_first(store, filter, group_by, plan) {
        ranked_page(store, filter, group_by, plan, sort, page, true).await?
    } else {
        let inner = summary_sql_from(store, filter, group_by, plan).await?;
        let mut sql = store.sql();
        sql.push("SELECT ")
            .push(&group_by.outer_columns(store.dialect()))
            .push(", count(*) OVER () AS groups FROM (");
        super::append(&mut sql, &inner);
        sql.push(") AS g");
        sql.push(summary_order(sort));
        page.push_limit(&mut sql);
        sql
    };
    let rows = store.fetch_table(sql).await?;
    let total = match rows.first() {
        Some(row) => row[9].int(),
        None if page.offset == 0 => 0,
        // Past the last page: the count needs a pass of its own.
        None => {
            let inner = summary_sql_from(store, filter, group_by, plan).await?;
            let mut count = store.sql();
            count.push("SELECT count(*) FROM (");
            super::append(&mut count, &inner);
            count.push(") AS groups");
            store
                .fetch_table(count)
                .await?
                .first()
                .map_or(0, |row| row[0].int())
        }
    };
    Ok((
        rows.iter().map(|row| SummaryRow::from_cells(row)).collect(),
        total,
    ))
}

/// The first `limit` groups alone, without counting the rest (the
/// overview's top tables: counting keeps every group of a month-long
/// summary by source until the end).
pub async fn top_groups(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    sort: SummarySort,
    limit: i64,
) -> Result<Vec<SummaryRow>, QueryError> {
    let page = Page::new(Some(limit), None, limit)?;
    let plan = Plan::for_query(filter, Some(group_by));
    let sql = if ranks_first(store, filter, group_by, plan) {
        ranked_page(store, filter, group_by, plan, sort, page, false).await?
    } else {
        let inner = summary_sql_from(store, filter, group_by, plan).await?;
        let mut sql = ordered_summary(store, &inner, group_by, sort);
        page.push_limit(&mut sql);
        sql
    };
    let rows = store.fetch_table(sql).await?;
    Ok(rows.iter().map(|row| SummaryRow::from_cells(row)).collect())
}

/// Every group, streamed (CSV export).
pub async fn summary_stream(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    sort: SummarySort,
) -> Result<super::RowStream<SummaryRow>, QueryError> {
    let inner = summary_sql(store, filter, group_by).await?;
    let sql = ordered_summary(store, &inner, group_by, sort);
    Ok(super::RowStream::new(
        store.stream_table(sql, 256),
        |cells| SummaryRow::from_cells(&cells),
    ))
}

/// One aggregate record with what is known about its source.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecordRow {
    pub id: i64,
    /// The stored report's id (`/api/v1/aggregate/reports/{id}`).
    pub report: i64,
    pub org_name: String,
    pub policy_domain: String,
    pub date_begin: String,
    pub date_end: String,
    /// Null when the report carried an unparseable address (see invalid_source_ip).
    pub source_ip: Option<String>,
    pub invalid_source_ip: Option<String>,
    pub country: Option<String>,
    pub asn: Option<i64>,
    pub as_name: Option<String>,
    pub ptr: Option<String>,
    pub base_domain: Option<String>,
    pub source_name: Option<String>,
    pub source_type: Option<String>,
    /// Messages this record stands for.
    pub count: i64,
    pub disposition: Option<String>,
    pub dkim_aligned: Option<String>,
    pub spf_aligned: Option<String>,
    pub dmarc_pass: bool,
    pub header_from: Option<String>,
    pub envelope_from: Option<String>,
    pub envelope_to: Option<String>,
    /// JSON array of DKIM results (domain, selector, result).
    pub dkim_results: String,
    /// JSON array of SPF results (domain, scope, result).
    pub spf_results: String,
    /// JSON array of policy override reasons.
    pub reasons: String,
}

impl RecordRow {
    pub const CSV_HEADER: &'static [&'static str] = &[
        "id",
        "report",
        "org_name",
        "policy_domain",
        "date_begin",
        "date_end",
        "source_ip",
        "invalid_source_ip",
        "country",
        "asn",
        "as_name",
        "ptr",
        "base_domain",
        "source_name",
        "source_type",
        "count",
        "disposition",
        "dkim_aligned",
        "spf_aligned",
        "dmarc_pass",
        "header_from",
        "envelope_from",
        "envelope_to",
        "dkim_results",
        "spf_results",
        "reasons",
    ];

    fn from_cells(cells: &[Cell]) -> Self {
        let text = |i: usize| cells[i].text();
        RecordRow {
            id: cells[0].int(),
            report: cells[1].int(),
            org_name: text(2).unwrap_or_default(),
            policy_domain: text(3).unwrap_or_default(),
            date_begin: normalize_time(text(4)),
            date_end: normalize_time(text(5)),
            source_ip: text(6),
            invalid_source_ip: text(7),
            country: text(8),
            asn: cells[9].opt_int(),
            as_name: text(10),
            ptr: text(11),
            base_domain: text(12),
            source_name: text(13),
            source_type: text(14),
            count: cells[15].int(),
            disposition: text(16),
            dkim_aligned: text(17),
            spf_aligned: text(18),
            dmarc_pass: cells[19].bool(),
            header_from: text(20),
            envelope_from: text(21),
            envelope_to: text(22),
            dkim_results: text(23).unwrap_or_else(|| "[]".into()),
            spf_results: text(24).unwrap_or_else(|| "[]".into()),
            reasons: text(25).unwrap_or_else(|| "[]".into()),
        }
    }

    pub fn csv_fields(&self) -> Vec<String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            self.id.to_string(),
            self.report.to_string(),
            self.org_name.clone(),
            self.policy_domain.clone(),
            self.date_begin.clone(),
            self.date_end.clone(),
            o(&self.source_ip),
            o(&self.invalid_source_ip),
            o(&self.country),
            self.asn.map(|a| a.to_string()).unwrap_or_default(),
            o(&self.as_name),
            o(&self.ptr),
            o(&self.base_domain),
            o(&self.source_name),
            o(&self.source_type),
            self.count.to_string(),
            o(&self.disposition),
            o(&self.dkim_aligned),
            o(&self.spf_aligned),
            self.dmarc_pass.to_string(),
            o(&self.header_from),
            o(&self.envelope_from),
            o(&self.envelope_to),
            self.dkim_results.clone(),
            self.spf_results.clone(),
            self.reasons.clone(),
        ]
    }
}

async fn records_sql(store: &Store, filter: &ParsedFilter) -> Result<Sql, QueryError> {
    let pg = store.dialect() == Dialect::Postgres;
    let mut sql = store.sql();
    sql.push(if pg {
        "SELECT r.id, r.report_id, r.org_name, r.policy_domain, r.date_begin, r.date_end, \
         host(r.source_ip), r.invalid_source_ip, s.country, s.asn, s.as_name, s.ptr, s.base_domain, \
         s.source_name, s.source_type, r.count, r.disposition, r.dkim_aligned, r.spf_aligned, \
         r.dmarc_pass, r.header_from, r.envelope_from, r.envelope_to, r.dkim_results::text, \
         r.spf_results::text, r.reasons::text"
    } else {
        "SELECT r.id, r.report_id, r.org_name, r.policy_domain, r.date_begin, r.date_end, \
         r.source_ip, r.invalid_source_ip, s.country, s.asn, s.as_name, s.ptr, s.base_domain, \
         s.source_name, s.source_type, r.count, r.disposition, r.dkim_aligned, r.spf_aligned, \
         r.dmarc_pass, r.header_from, r.envelope_from, r.envelope_to, r.dkim_results, \
         r.spf_results, r.reasons"
    });
    push_from_where(store, &mut sql, filter, true).await?;
    // Newest first; the id makes the order stable across pages.
    sql.push(" ORDER BY r.date_begin DESC, r.id DESC");
    Ok(sql)
}

/// Records matching the filter, newest first, one page, with the total.
pub async fn records(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<(Vec<RecordRow>, i64), QueryError> {
    let total = records_total(store, filter, true).await?;
    let mut sql = records_sql(store, filter).await?;
    page.push_limit(&mut sql);
    let rows = store.fetch_table(sql).await?;
    Ok((
        rows.iter().map(|row| RecordRow::from_cells(row)).collect(),
        total,
    ))
}

/// How many records match the filter: from a rollup when one covers it
/// (`use_rollups`), else counted.
pub async fn records_total(
    store: &Store,
    filter: &ParsedFilter,
    use_rollups: bool,
) -> Result<i64, QueryError> {
    let plan = if use_rollups {
        Plan::for_query(filter, None)
    } else {
        Plan::Records
    };
    let mut count = store.sql();
    let records = Measures::new(plan, store.dialect(), filter.result).records;
    count.push(&format!("SELECT {records}"));
    push_from_where_in(store, &mut count, filter, false, plan, None).await?;
    Ok(store
        .fetch_table(count)
        .await?
        .first()
        .map_or(0, |row| row[0].int()))
}

pub async fn records_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<super::RowStream<RecordRow>, QueryError> {
    let sql = records_sql(store, filter).await?;
    Ok(super::RowStream::new(
        store.stream_table(sql, 256),
        |cells| RecordRow::from_cells(&cells),
    ))
}

/// One stored aggregate report's metadata and published policy.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReportRow {
    pub id: i64,
    /// The inbox message it came in (`/api/v1/inbox/messages/{id}`).
    pub message_id: Option<i64>,
    pub org_name: String,
    pub email: Option<String>,
    pub report_id: String,
    pub policy_domain: String,
    pub date_begin: String,
    pub date_end: String,
    pub schema: String,
    pub adkim: Option<String>,
    pub aspf: Option<String>,
    pub p: Option<String>,
    pub sp: Option<String>,
    pub np: Option<String>,
    pub pct: Option<i64>,
    pub fo: Option<String>,
    pub record_count: i64,
    pub message_count: i64,
    pub received_at: String,
}

impl ReportRow {
    pub const CSV_HEADER: &'static [&'static str] = &[
        "id",
        "message_id",
        "org_name",
        "email",
        "report_id",
        "policy_domain",
        "date_begin",
        "date_end",
        "schema",
        "adkim",
        "aspf",
        "p",
        "sp",
        "np",
        "pct",
        "fo",
        "record_count",
        "message_count",
        "received_at",
    ];

    fn from_cells(cells: &[Cell]) -> Self {
        let text = |i: usize| cells[i].text();
        ReportRow {
            id: cells[0].int(),
            message_id: cells[1].opt_int(),
            org_name: text(2).unwrap_or_default(),
            email: text(3),
            report_id: text(4).unwrap_or_default(),
            policy_domain: text(5).unwrap_or_default(),
            date_begin: normalize_time(text(6)),
            date_end: normalize_time(text(7)),
            schema: text(8).unwrap_or_default(),
            adkim: text(9),
            aspf: text(10),
            p: text(11),
            sp: text(12),
            np: text(13),
            pct: cells[14].opt_int(),
            fo: text(15),
            record_count: cells[16].int(),
            message_count: cells[17].int(),
            received_at: normalize_time(text(18)),
        }
    }

    pub fn csv_fields(&self) -> Vec<String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            self.id.to_string(),
            self.message_id.map(|m| m.to_string()).unwrap_or_default(),
            self.org_name.clone(),
            o(&self.email),
            self.report_id.clone(),
            self.policy_domain.clone(),
            self.date_begin.clone(),
            self.date_end.clone(),
            self.schema.clone(),
            o(&self.adkim),
            o(&self.aspf),
            o(&self.p),
            o(&self.sp),
            o(&self.np),
            self.pct.map(|p| p.to_string()).unwrap_or_default(),
            o(&self.fo),
            self.record_count.to_string(),
            self.message_count.to_string(),
            self.received_at.clone(),
        ]
    }
}

const REPORT_COLUMNS: &str =
    "a.id, a.message_id, a.org_name, a.email, a.report_id, a.policy_domain, \
     a.date_begin, a.date_end, a.schema, a.adkim, a.aspf, a.p, a.sp, a.np, a.pct, a.fo, \
     a.record_count, a.message_count, a.created_at";

/// Reports filter on what a report has: domain, organization, period.
fn reports_sql(store: &Store, filter: &ParsedFilter) -> Sql {
    let mut sql = store.sql();
    sql.push("SELECT ")
        .push(REPORT_COLUMNS)
        .push(" FROM aggregate_reports a WHERE 1 = 1");
    if let Some(domain) = &filter.domain {
        sql.push(" AND a.policy_domain = ")
            .bind_text(domain.clone());
    }
    if let Some(org) = &filter.org {
        sql.push(" AND a.org_name = ").bind_text(org.clone());
    }
    if let Some(since) = filter.since {
        sql.push(" AND a.date_begin >= ").bind(Arg::Time(since));
    }
    if let Some(until) = filter.until {
        sql.push(" AND a.date_begin < ").bind(Arg::Time(until));
    }
    sql
}

pub async fn reports(
    store: &Store,
    filter: &ParsedFilter,
    page: Page,
) -> Result<(Vec<ReportRow>, i64), QueryError> {
    let inner = reports_sql(store, filter);
    let mut count = Sql::new(store.dialect());
    count.push("SELECT count(*) FROM (");
    super::append(&mut count, &inner);
    count.push(") AS reports");
    let total = store
        .fetch_table(count)
        .await?
        .first()
        .map_or(0, |row| row[0].int());
    let mut sql = inner;
    sql.push(" ORDER BY a.date_begin DESC, a.id DESC");
    page.push_limit(&mut sql);
    let rows = store.fetch_table(sql).await?;
    Ok((
        rows.iter().map(|row| ReportRow::from_cells(row)).collect(),
        total,
    ))
}

pub async fn reports_stream(
    store: &Store,
    filter: &ParsedFilter,
) -> Result<super::RowStream<ReportRow>, QueryError> {
    let mut sql = reports_sql(store, filter);
    sql.push(" ORDER BY a.date_begin DESC, a.id DESC");
    Ok(super::RowStream::new(
        store.stream_table(sql, 256),
        |cells| ReportRow::from_cells(&cells),
    ))
}

pub async fn report(store: &Store, id: i64) -> Result<Option<ReportRow>, QueryError> {
    let mut sql = store.sql();
    sql.push("SELECT ")
        .push(REPORT_COLUMNS)
        .push(" FROM aggregate_reports a WHERE a.id = ")
        .bind(Arg::Int(id));
    let rows = store.fetch_table(sql).await?;
    Ok(rows.first().map(|row| ReportRow::from_cells(row)))
}
