//! Grouped summaries: message counts and pass rates per source,
//! organization, country, AS, domain, day, disposition or header From.

use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{push_from_where_in, GroupBy, Measures};
use crate::query::filter::ParsedFilter;
use crate::query::plan::Plan;
use crate::query::{Page, QueryError, RowStream};
use crate::store::{Sql, Store};

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
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

/// A group as the database returns it.
#[derive(sqlx::FromRow)]
struct Group {
    key: Option<String>,
    label: Option<String>,
    messages: i64,
    passed: i64,
    dkim: i64,
    spf: i64,
    none: i64,
    quarantine: i64,
    reject: i64,
}

/// A group with the number of groups in the whole summary.
#[derive(sqlx::FromRow)]
struct CountedGroup {
    #[sqlx(flatten)]
    group: Group,
    groups: i64,
}

impl From<Group> for SummaryRow {
    fn from(group: Group) -> Self {
        let (messages, pass) = (group.messages, group.passed);
        SummaryRow {
            key: group.key,
            label: group.label,
            messages,
            dmarc_pass: pass,
            dmarc_fail: messages - pass,
            dkim_aligned_pass: group.dkim,
            spf_aligned_pass: group.spf,
            disposition_none: group.none,
            disposition_quarantine: group.quarantine,
            disposition_reject: group.reject,
            pass_rate: if messages > 0 {
                pass as f64 / messages as f64
            } else {
                0.0
            },
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
    let mut sql = store.reads().sql();
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
    /// GROUP BY the source IP, with the IP and its messages alone
    /// (`busiest_sources`).
    IpMessages,
    /// The IP and messages of rows with a source IP, each a group already.
    IpMessagesOfRows,
}

async fn push_groups(
    store: &Store,
    sql: &mut Sql,
    filter: &ParsedFilter,
    group_by: GroupBy,
    plan: Plan,
    grouping: Grouping,
) -> Result<(), QueryError> {
    let backend = store.reads().backend();
    let by_day = group_by == GroupBy::Day;
    // Totals that carry the source descriptions need no join for them.
    let described = plan.reads_descriptions();
    let sources = if described { "r" } else { "s" };
    let (key, label) = group_by.key_and_label(backend, sources);
    let aggregate = !matches!(
        grouping,
        Grouping::RowsAreGroups | Grouping::IpMessagesOfRows
    );
    let signed = plan.signed_rows(filter, by_day);
    let m = Measures::over(plan, backend, filter.result, aggregate, signed);
    match grouping {
        Grouping::Ranking => sql.push(&format!(
            "SELECT r.source_ip AS ip, {key} AS key, {label} AS label, {} AS messages, {} AS passed",
            m.messages, m.passed
        )),
        Grouping::IpMessages | Grouping::IpMessagesOfRows => sql.push(&format!(
            "SELECT r.source_ip AS ip, {} AS messages",
            m.messages
        )),
        Grouping::Aggregate | Grouping::RowsAreGroups | Grouping::NullSourceOnly => {
            sql.push(&format!(
                "SELECT {key} AS key, {label} AS label, {} AS messages, {} AS passed, \
                 {} AS dkim, {} AS spf, {} AS none, {} AS quarantine, {} AS reject",
                m.messages, m.passed, m.dkim, m.spf, m.none, m.quarantine, m.reject
            ))
        }
    };
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
        Grouping::Aggregate | Grouping::Ranking | Grouping::IpMessages => {}
        Grouping::RowsAreGroups | Grouping::IpMessagesOfRows => {
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
        group_by.grouping(backend, sources)
    ));
    if let Some(having) = &m.having {
        sql.push(" HAVING ").push(having);
    }
    Ok(())
}

/// The summary in a subquery, so that the order can use its columns in
/// expressions (PostgreSQL allows only bare output names in ORDER BY).
fn ordered_summary(store: &Store, inner: &Sql, group_by: GroupBy, sort: SummarySort) -> Sql {
    let mut sql = store.reads().sql();
    sql.push("SELECT ")
        .push(&group_by.outer_columns(store.reads().backend()))
        .push(" FROM (");
    sql.append(inner);
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
/// a database with LATERAL joins (PostgreSQL: SQLite has none, and is not
/// for millions of records).
///
/// One sender's rows (a sender page) are few enough to sum in one pass;
/// ranking first would cost a lookup per listed IP (1,000 of them: a
/// 30-day sender page at 10M records, 4 clients, p95 200 ms against 98).
fn ranks_first(store: &Store, filter: &ParsedFilter, group_by: GroupBy, plan: Plan) -> bool {
    store.reads().backend().lateral_joins()
        && group_by == GroupBy::Source
        && filter.sender.is_none()
        && matches!(plan, Plan::Totals(_))
        && !plan.rows_are_groups(filter, group_by)
}

/// One page of the summary by source, ranked on messages and passes alone;
/// each of its sources' DKIM, SPF and disposition counts is then summed
/// from the same rows, found through the index by source. Summing those
/// five counters over every source of a month was a third of the query (on
/// the load seed, 82 against 56 ms in psql for the failures of 36 days).
/// With `count_groups`, each row carries the number of groups (`groups`).
async fn ranked_page(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    plan: Plan,
    sort: SummarySort,
    page: Page,
    count_groups: bool,
) -> Result<Sql, QueryError> {
    let backend = store.reads().backend();
    let mut sql = store.reads().sql();
    sql.push(&format!(
        "SELECT g.key, {} AS label, g.messages, g.passed, \
         x.dkim, x.spf, x.none, x.quarantine, x.reject",
        group_by.outer_label(backend)
    ));
    sql.push(match count_groups {
        true => ", g.groups FROM (SELECT n.*, count(*) OVER () AS groups FROM (",
        false => " FROM (SELECT n.* FROM (",
    });
    push_groups(store, &mut sql, filter, group_by, plan, Grouping::Ranking).await?;
    sql.push(") AS n").push(summary_order(sort));
    page.push_limit(&mut sql);
    let signed = plan.signed_rows(filter, false);
    let m = Measures::over(plan, backend, filter.result, true, signed);
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
    let db = store.reads();
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
        let mut sql = db.sql();
        sql.push("SELECT ")
            .push(&group_by.outer_columns(db.backend()))
            .push(", count(*) OVER () AS groups FROM (");
        sql.append(&inner);
        sql.push(") AS g");
        sql.push(summary_order(sort));
        page.push_limit(&mut sql);
        sql
    };
    let rows: Vec<CountedGroup> = db.fetch_all(&sql).await?;
    let total = match rows.first() {
        Some(row) => row.groups,
        None if page.offset == 0 => 0,
        // Past the last page: the count needs a pass of its own.
        None => {
            let inner = summary_sql_from(store, filter, group_by, plan).await?;
            crate::query::count_of(db, &inner).await?
        }
    };
    Ok((
        rows.into_iter().map(|row| row.group.into()).collect(),
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
    let rows: Vec<Group> = store.reads().fetch_all(&sql).await?;
    Ok(rows.into_iter().map(SummaryRow::from).collect())
}

/// The `limit` source IPs with the most messages, and their messages:
/// the ranking alone, without the other counters or the number of groups.
/// The sender pages gather the busiest IPs under their names and need no
/// more; summing DKIM, SPF and dispositions for each of 1,000 IPs was half
/// of the 30-day senders query at 10M records (74 ms, 42 of them that).
pub async fn busiest_sources(
    store: &Store,
    filter: &ParsedFilter,
    limit: i64,
) -> Result<Vec<(IpAddr, i64)>, QueryError> {
    let plan = Plan::for_query(filter, Some(GroupBy::Source));
    let grouping = if plan.rows_are_groups(filter, GroupBy::Source) {
        Grouping::IpMessagesOfRows
    } else {
        Grouping::IpMessages
    };
    let mut inner = store.reads().sql();
    push_groups(store, &mut inner, filter, GroupBy::Source, plan, grouping).await?;
    // Ordered on the address itself, and only the kept ones written as
    // text: formatting all of a domain's 49,000 addresses first was a
    // quarter of the all-time query (20.3 against 14.9 ms at 10M records).
    let mut sql = store.reads().sql();
    sql.push(&format!(
        "SELECT {} AS key, n.messages FROM (",
        store.reads().backend().ip_text("n.ip")
    ));
    sql.append(&inner);
    sql.push(") AS n WHERE n.ip IS NOT NULL ORDER BY n.messages DESC, n.ip LIMIT ")
        .bind(limit.max(0));
    let rows: Vec<(String, i64)> = store.reads().fetch_all(&sql).await?;
    // Keys are the stored IPs as text; anything else is not a source IP.
    Ok(rows
        .into_iter()
        .filter_map(|(key, messages)| Some((IpAddr::from_str(&key).ok()?, messages)))
        .collect())
}

/// Every group, streamed (CSV export).
pub async fn summary_stream(
    store: &Store,
    filter: &ParsedFilter,
    group_by: GroupBy,
    sort: SummarySort,
) -> Result<RowStream<SummaryRow>, QueryError> {
    let inner = summary_sql(store, filter, group_by).await?;
    let sql = ordered_summary(store, &inner, group_by, sort);
    Ok(RowStream::new::<Group>(store.reads(), sql))
}
