//! Overview, aggregate explorer, records, source detail, report detail.

use crate::scope::Scope;
use std::collections::BTreeMap;
use std::net::IpAddr;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;

use super::{
    csv_link, filter_form, pager, percent, plural, query_of, render, FilterForm, FirstSteps,
    Layout, PageError, PageUser, Select, SummaryLine, SummaryTable,
};
use crate::inbox::MessageStatus;
use crate::query::failures::{self, FailureRow};
use crate::query::tls::{self, ParsedTlsFilter, TlsGroupBy, TlsSummaryRow};
use crate::query::{
    aggregate, Filter, GroupBy, Page, PageParams, ParsedFilter, RecordRow, ReportRow, SummaryRow,
    SummarySort,
};
use crate::web::api::Params;
use crate::web::svg::{daily_bars, Series};
use crate::web::world_map::{country_name, world_map, CountryCount, MapMeasure};
use crate::web::AppState;

/// The sender page of a named source of the filter's domain (it needs a
/// domain; an IP without a name keeps its own page).
fn sender_page(filter: &Filter, group_by: GroupBy, row: &SummaryRow) -> Option<String> {
    let key = row.key.as_deref()?;
    let domain = filter
        .domain
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())?;
    if group_by != GroupBy::SourceName || key.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let pairs: Vec<(&str, &str)> = [
        ("domain", Some(domain)),
        ("name", Some(key)),
        ("since", filter.since.as_deref()),
        ("until", filter.until.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value.filter(|v| !v.is_empty())?)))
    .collect();
    Some(format!(
        "/senders/source?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    ))
}

/// Where a group's row leads: the records behind it (a named sender of
/// one domain: its sender page).
fn drill_down(filter: &Filter, group_by: GroupBy, row: &SummaryRow) -> Option<String> {
    if let Some(page) = sender_page(filter, group_by, row) {
        return Some(page);
    }
    let key = row.key.clone()?;
    let mut narrowed = filter.clone();
    match group_by {
        GroupBy::Source => narrowed.source = Some(key),
        // In quotes: the whole name, not every name containing it.
        GroupBy::SourceName => narrowed.source = Some(format!("\"{key}\"")),
        GroupBy::Org => narrowed.org = Some(format!("\"{key}\"")),
        GroupBy::Country => narrowed.country = Some(key),
        GroupBy::Asn => narrowed.asn = Some(key),
        GroupBy::Domain => narrowed.domain = Some(key),
        GroupBy::Day => {
            narrowed.since = Some(key.clone());
            narrowed.until = Some(key);
        }
        GroupBy::Disposition => narrowed.disposition = Some(key),
        GroupBy::HeaderFrom => narrowed.header_from = Some(key),
    }
    if group_by == GroupBy::Source {
        return Some(format!(
            "/sources/{}",
            row.key.as_deref().unwrap_or_default()
        ));
    }
    Some(format!("/records?{}", narrowed.query_string()))
}

/// Where a row of an overview table leads: the summary of that group,
/// broken down one step further (a reporter's or a country's senders, a
/// sender's IPs), keeping every filter that produced the row.
fn overview_link(filter: &Filter, group_by: GroupBy, row: &SummaryRow) -> Option<String> {
    if let Some(page) = sender_page(filter, group_by, row) {
        return Some(page);
    }
    let key = row.key.clone()?;
    let mut narrowed = filter.clone();
    let next = match group_by {
        GroupBy::Source => return Some(format!("/sources/{key}")),
        GroupBy::SourceName => {
            narrowed.source = Some(format!("\"{key}\""));
            GroupBy::Source
        }
        GroupBy::Org => {
            narrowed.org = Some(format!("\"{key}\""));
            GroupBy::SourceName
        }
        GroupBy::Country => {
            narrowed.country = Some(key);
            GroupBy::SourceName
        }
        GroupBy::Domain => {
            narrowed.domain = Some(key);
            GroupBy::SourceName
        }
        _ => return drill_down(filter, group_by, row),
    };
    let query = narrowed.query_string();
    let separator = if query.is_empty() { "" } else { "&" };
    Some(format!(
        "/aggregate?{query}{separator}group_by={}",
        next.as_str()
    ))
}

/// An overview table: the first `limit` groups of `filter`, in the
/// compact form that fits a card.
async fn summary_table(
    state: &AppState,
    scope: &Scope,
    filter: &Filter,
    group_by: GroupBy,
    sort: SummarySort,
    limit: i64,
) -> Result<SummaryTable, PageError> {
    let parsed = filter.parse(scope)?;
    let rows = aggregate::top_groups(&state.store, &parsed, group_by, sort, limit).await?;
    Ok(SummaryTable {
        heading: group_by.label(),
        compact: true,
        rows: rows
            .iter()
            .map(|row| SummaryLine::new(row, overview_link(filter, group_by, row)))
            .collect(),
    })
}

/// A day key (`2024-03-30`) as a date.
pub(super) fn day_of(key: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(key, "%Y-%m-%d").ok()
}

/// Pass / fail and quarantine / reject per day.
async fn daily_chart(state: &AppState, parsed: &ParsedFilter) -> Result<String, PageError> {
    let page = Page::new(Some(crate::query::MAX_PAGE), None, 1)?;
    let (days, _) =
        aggregate::summary(&state.store, parsed, GroupBy::Day, SummarySort::Key, page).await?;
    Ok(days_chart(&days))
}

/// Pass / fail and quarantine / reject per day, from a summary by day.
pub(super) fn days_chart(days: &[SummaryRow]) -> String {
    // Day keys are `YYYY-MM-DD`.
    let days: Vec<&SummaryRow> = days
        .iter()
        .filter(|d| d.key.as_deref().and_then(day_of).is_some())
        .collect();
    let dates: Vec<NaiveDate> = days
        .iter()
        .filter_map(|d| d.key.as_deref().and_then(day_of))
        .collect();
    let pass: Vec<i64> = days.iter().map(|d| d.dmarc_pass).collect();
    let fail_delivered: Vec<i64> = days
        .iter()
        .map(|d| (d.dmarc_fail - d.disposition_quarantine - d.disposition_reject).max(0))
        .collect();
    let quarantine: Vec<i64> = days.iter().map(|d| d.disposition_quarantine).collect();
    let reject: Vec<i64> = days.iter().map(|d| d.disposition_reject).collect();
    daily_bars(
        "Messages per day",
        &dates,
        &[
            Series {
                name: "DMARC pass",
                colour: "#2e7d32",
                values: pass,
            },
            Series {
                name: "fail, delivered",
                colour: "#f9a825",
                values: fail_delivered,
            },
            Series {
                name: "quarantined",
                colour: "#ef6c00",
                values: quarantine,
            },
            Series {
                name: "rejected",
                colour: "#c62828",
                values: reject,
            },
        ],
    )
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    form: FilterForm,
    periods: Vec<PeriodLink>,
    failed_messages: i64,
    failed_messages_text: String,
    first_steps: Option<FirstSteps>,
    chart: String,
    domains_table: SummaryTable,
    top_sources: SummaryTable,
    failing_sources: SummaryTable,
    top_orgs: SummaryTable,
    map: CountryMap,
    geo_banner: Option<GeoBanner>,
    tls: Vec<TlsSummaryRow>,
    failures: Vec<FailureRow>,
    totals_note: Option<String>,
}

/// Said while no IP database is loaded: countries and ASNs stay empty
/// until one is, and here is how.
pub(super) struct GeoBanner {
    /// Where `dmarcd geo update` puts the files.
    pub directory: String,
    /// `enrich.databases` lists files, none of which loads.
    pub listed: bool,
}

impl GeoBanner {
    pub(super) fn of(state: &AppState) -> Option<GeoBanner> {
        let geo = state.geo.as_ref()?;
        (geo.databases.loaded() == 0).then(|| GeoBanner {
            directory: geo.directory.display().to_string(),
            listed: geo.listed,
        })
    }
}

/// Countries the world map can shade: more than there are countries.
const MAP_COUNTRIES: i64 = 300;
/// Countries the table beside the map lists.
const TABLE_COUNTRIES: usize = 10;

/// The world map with its switch between messages and failing messages.
pub(super) struct CountryMap {
    pub svg: String,
    pub measures: Vec<PeriodLink>,
    /// The countries with the most mail, named: the map's accessible form.
    pub table: SummaryTable,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct MapParams {
    /// `failing`: shade by messages failing DMARC.
    pub map: Option<String>,
}

/// The map of the filter's mail by country, with the table beside it.
pub(super) async fn load_country_map(
    state: &AppState,
    scope: &Scope,
    path: &str,
    filter: &Filter,
    measure: MapMeasure,
) -> Result<CountryMap, PageError> {
    let rows = aggregate::top_groups(
        &state.store,
        &filter.parse(scope)?,
        GroupBy::Country,
        SummarySort::Messages,
        MAP_COUNTRIES,
    )
    .await?;
    Ok(country_map(path, filter, &rows, measure))
}

/// The map of `rows` (a summary by country), each country linking to the
/// explorer filtered by it (and by failing mail on the failing map).
fn country_map(
    path: &str,
    filter: &Filter,
    rows: &[SummaryRow],
    measure: MapMeasure,
) -> CountryMap {
    let counts: Vec<CountryCount> = rows
        .iter()
        .filter_map(|row| {
            Some(CountryCount {
                code: row.key.clone()?,
                messages: row.messages,
                failing: row.dmarc_fail,
            })
        })
        .collect();
    let svg = world_map(&counts, measure, |code| {
        let mut narrowed = filter.clone();
        narrowed.country = Some(code.to_string());
        if measure == MapMeasure::Failing {
            narrowed.result = Some("fail".into());
        }
        format!(
            "/aggregate?{}&group_by={}",
            narrowed.query_string(),
            GroupBy::SourceName.as_str()
        )
    });
    let measures = [MapMeasure::Messages, MapMeasure::Failing]
        .into_iter()
        .map(|choice| {
            let query = filter.query_string();
            let separator = if query.is_empty() { "" } else { "&" };
            PeriodLink {
                href: format!("{path}?{query}{separator}map={}#map", choice.as_str()),
                label: match choice {
                    MapMeasure::Messages => "messages".into(),
                    MapMeasure::Failing => "failing messages".into(),
                },
                current: choice == measure,
            }
        })
        .collect();
    CountryMap {
        svg,
        measures,
        table: countries_table(filter, rows),
    }
}

/// The countries table beside the map: the first rows of the same
/// summary, each named ("DE Germany").
fn countries_table(filter: &Filter, rows: &[SummaryRow]) -> SummaryTable {
    SummaryTable {
        heading: GroupBy::Country.label(),
        compact: true,
        rows: rows
            .iter()
            .take(TABLE_COUNTRIES)
            .map(|row| {
                let mut line = SummaryLine::new(row, overview_link(filter, GroupBy::Country, row));
                line.label = row
                    .key
                    .as_deref()
                    .and_then(country_name)
                    .map(str::to_string);
                line
            })
            .collect(),
    }
}

/// One of the overview's period shortcuts; the one in force is marked.
pub(super) struct PeriodLink {
    pub href: String,
    pub label: String,
    pub current: bool,
}

/// "As of" when the rollups (which the totals here read) have not yet
/// counted every stored report (store::applier): the time the oldest
/// waiting one was stored, and how much waits.
async fn totals_note(state: &AppState) -> Result<Option<String>, PageError> {
    let lag = state.store.rollup_lag().await?;
    Ok(lag.oldest.filter(|_| lag.reports > 0).map(|oldest| {
        format!(
            "Totals as of {} UTC: {} with {} stored since {} still being counted.",
            oldest.format("%Y-%m-%d %H:%M:%S"),
            plural(lag.reports, "report", "reports"),
            plural(lag.records, "record", "records"),
            if lag.reports == 1 { "is" } else { "are" }
        )
    }))
}

pub(super) async fn overview(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(filter): Params<Filter>,
    Params(map_params): Params<MapParams>,
) -> Result<Response, PageError> {
    let parsed = filter.parse(&user.scope)?;
    let today = chrono::Utc::now().date_naive();
    let mut periods: Vec<PeriodLink> = [7, 30, 90]
        .iter()
        .map(|days| {
            let mut period = filter.clone();
            period.since = Some((today - chrono::Duration::days(*days)).to_string());
            period.until = None;
            PeriodLink {
                current: filter.until.is_none() && filter.since == period.since,
                href: format!("/?{}", period.query_string()),
                label: format!("last {days} days"),
            }
        })
        .collect();
    let all_time = Filter {
        since: None,
        until: None,
        ..filter.clone()
    };
    periods.push(PeriodLink {
        current: filter.since.is_none() && filter.until.is_none(),
        href: format!("/?{}", all_time.query_string()),
        label: "all time".into(),
    });
    // The failing sources' links keep "fail" (the table's own filter).
    let failing = Filter {
        result: Some("fail".into()),
        ..filter.clone()
    };
    // The inbox belongs to no domain: only those who see every domain
    // are told of failed messages or shown the first steps.
    let inbox_counts = async {
        if !user.scope.is_all() {
            return Ok(Default::default());
        }
        Ok::<_, PageError>(state.store.status_counts().await?)
    };
    let top = |filter, group_by, limit| {
        summary_table(
            &state,
            &user.scope,
            filter,
            group_by,
            SummarySort::Messages,
            limit,
        )
    };
    let tls = async {
        let tls_filter = ParsedTlsFilter::from_dmarc(&parsed);
        Ok::<_, PageError>(tls::tls_summary(&state.store, &tls_filter, TlsGroupBy::Domain).await?)
    };
    let failures = async {
        let page = Page::new(Some(5), None, 5)?;
        Ok::<_, PageError>(failures::failures(&state.store, &parsed, page).await?.0)
    };
    // Independent queries, each on its own pooled connection.
    let measure = MapMeasure::parse(map_params.map.as_deref());
    let (chart, domains_table, top_sources, failing_sources, top_orgs, map) = tokio::try_join!(
        daily_chart(&state, &parsed),
        top(&filter, GroupBy::Domain, 50),
        top(&filter, GroupBy::SourceName, 10),
        top(&failing, GroupBy::SourceName, 10),
        top(&filter, GroupBy::Org, 10),
        load_country_map(&state, &user.scope, "/", &filter, measure),
    )?;
    let (tls, failures, inbox_counts, form, totals_note) = tokio::try_join!(
        tls,
        failures,
        inbox_counts,
        filter_form(&state, &user.scope, filter.clone(), Vec::new()),
        totals_note(&state),
    )?;
    let failed_messages = inbox_counts
        .get(&MessageStatus::Failed)
        .copied()
        .unwrap_or(0);
    // Nothing has ever arrived: say how to send the first report.
    let first_steps = (user.scope.is_all() && inbox_counts.values().sum::<i64>() == 0)
        .then(|| FirstSteps::new(&state));
    let page = OverviewPage {
        first_steps,
        chart,
        domains_table,
        top_sources,
        failing_sources,
        top_orgs,
        map,
        geo_banner: GeoBanner::of(&state),
        tls,
        failures,
        layout: Layout::new(&state, Some(user), "/"),
        form,
        periods,
        failed_messages_text: plural(failed_messages, "inbox message", "inbox messages"),
        failed_messages,
        totals_note,
    };
    render(page)
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct ExplorerParams {
    group_by: Option<String>,
    sort: Option<String>,
}

#[derive(Template)]
#[template(path = "explorer.html")]
struct ExplorerPage {
    layout: Layout,
    form: FilterForm,
    query: String,
    csv: String,
    totals_note: Option<String>,
    total: i64,
    summary: SummaryTable,
    previous: Option<String>,
    next: Option<String>,
}

pub(super) async fn explorer(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(filter): Params<Filter>,
    Params(params): Params<ExplorerParams>,
    Params(paging): Params<PageParams>,
) -> Result<Response, PageError> {
    let parsed = filter.parse(&user.scope)?;
    let group_by = GroupBy::parse(
        params
            .group_by
            .as_deref()
            .filter(|g| !g.is_empty())
            .unwrap_or("source_name"),
    )?;
    let sort_text = params
        .sort
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "messages".into());
    let sort = SummarySort::parse(&sort_text)?;
    let page = paging.page(50)?;
    let (rows, total) = aggregate::summary(&state.store, &parsed, group_by, sort, page).await?;
    let mut query = query_of(&filter);
    let extra = format!("group_by={}&sort={sort_text}", group_by.as_str());
    let full_query = if query.is_empty() {
        extra.clone()
    } else {
        format!("{query}&{extra}")
    };
    let (previous, next) = pager("/aggregate", &full_query, page.offset, page.limit, total);
    let selects = vec![
        Select {
            label: "Group by",
            name: "group_by",
            value: group_by.as_str().to_string(),
            options: GroupBy::ALL
                .iter()
                .map(|g| (g.as_str().to_string(), g.label().to_string()))
                .collect(),
        },
        Select {
            label: "Sort",
            name: "sort",
            value: sort_text.clone(),
            options: [
                ("messages", "most messages"),
                ("failures", "most failures"),
                ("pass_rate", "lowest pass rate"),
                ("key", "name / date"),
            ]
            .iter()
            .map(|(v, l)| (v.to_string(), l.to_string()))
            .collect(),
        },
    ];
    let summary = SummaryTable {
        heading: group_by.label(),
        compact: false,
        rows: rows
            .iter()
            .map(|row| SummaryLine::new(row, drill_down(&filter, group_by, row)))
            .collect(),
    };
    if query.is_empty() {
        query = extra;
    } else {
        query = format!("{query}&{extra}");
    }
    render(ExplorerPage {
        layout: Layout::new(&state, Some(user.clone()), "/aggregate"),
        form: filter_form(&state, &user.scope, filter, selects).await?,
        csv: csv_link("/api/v1/aggregate/summary", &query),
        query,
        totals_note: totals_note(&state).await?,
        total,
        summary,
        previous,
        next,
    })
}

#[derive(Template)]
#[template(path = "records.html")]
struct RecordsPage {
    layout: Layout,
    form: FilterForm,
    query: String,
    csv: String,
    total: i64,
    rows: Vec<RecordRow>,
    previous: Option<String>,
    next: Option<String>,
}

pub(super) async fn records(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(filter): Params<Filter>,
    Params(paging): Params<PageParams>,
) -> Result<Response, PageError> {
    let parsed = filter.parse(&user.scope)?;
    let page = paging.page(100)?;
    let (rows, total) = aggregate::records(&state.store, &parsed, page).await?;
    let query = query_of(&filter);
    let (previous, next) = pager("/records", &query, page.offset, page.limit, total);
    render(RecordsPage {
        layout: Layout::new(&state, Some(user.clone()), "/records"),
        form: filter_form(&state, &user.scope, filter, Vec::new()).await?,
        csv: csv_link("/api/v1/aggregate/records", &query),
        query,
        total,
        rows,
        previous,
        next,
    })
}

/// What is known about a source, for display.
struct SourceInfoView {
    ptr: Option<String>,
    dns_state: String,
    base_domain: Option<String>,
    source_name: Option<String>,
    source_type: Option<String>,
    country: Option<String>,
    asn: String,
    as_name: Option<String>,
}

#[derive(Template)]
#[template(path = "source.html")]
struct SourcePage {
    layout: Layout,
    ip: String,
    info: SourceInfoView,
    messages: i64,
    pass_rate: String,
    chart: String,
    dkim: Vec<(String, String, String, i64)>,
    spf: Vec<(String, String, String, i64)>,
    by_org: SummaryTable,
    by_header_from: SummaryTable,
    /// How many of the latest records the breakdowns read.
    sample: usize,
    /// The newest failure reports about mail from this source.
    failures: Vec<FailureRow>,
    failures_total: i64,
}

/// A summary of the sampled records by organization or header From (the
/// rollups have no per-source organization, and a busy source has hundreds
/// of thousands of records: the latest ones say what is happening now).
fn sample_table(filter: &Filter, rows: &[RecordRow], group_by: GroupBy) -> SummaryTable {
    let mut groups: BTreeMap<Option<String>, SummaryRow> = BTreeMap::new();
    for record in rows {
        let key = match group_by {
            GroupBy::Org => Some(record.org_name.clone()),
            _ => record.header_from.clone(),
        };
        let group = groups.entry(key.clone()).or_insert_with(|| SummaryRow {
            key,
            label: None,
            messages: 0,
            dmarc_pass: 0,
            dmarc_fail: 0,
            dkim_aligned_pass: 0,
            spf_aligned_pass: 0,
            disposition_none: 0,
            disposition_quarantine: 0,
            disposition_reject: 0,
            pass_rate: 0.0,
        });
        let count = record.count;
        let passes = |value: &Option<String>| value.as_deref() == Some("pass");
        group.messages += count;
        if record.dmarc_pass {
            group.dmarc_pass += count;
        } else {
            group.dmarc_fail += count;
        }
        group.dkim_aligned_pass += if passes(&record.dkim_aligned) {
            count
        } else {
            0
        };
        group.spf_aligned_pass += if passes(&record.spf_aligned) {
            count
        } else {
            0
        };
        match record.disposition.as_deref() {
            Some("none") => group.disposition_none += count,
            Some("quarantine") => group.disposition_quarantine += count,
            Some("reject") => group.disposition_reject += count,
            _ => {}
        }
    }
    let mut list: Vec<SummaryRow> = groups.into_values().collect();
    list.sort_by_key(|row| std::cmp::Reverse(row.messages));
    list.truncate(20);
    SummaryTable {
        heading: group_by.label(),
        compact: false,
        rows: list
            .iter()
            .map(|row| SummaryLine::new(row, drill_down(filter, group_by, row)))
            .collect(),
    }
}

/// Sums `count` per (domain, selector or scope, result) over the records'
/// DKIM or SPF results.
fn auth_breakdown(rows: &[RecordRow], dkim: bool) -> Vec<(String, String, String, i64)> {
    let mut totals: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    for row in rows {
        let checks: Vec<(String, String, String)> = if dkim {
            row.dkim_results
                .iter()
                .map(|c| (text(&c.domain), text(&c.selector), text(&c.result)))
                .collect()
        } else {
            row.spf_results
                .iter()
                .map(|c| (text(&c.domain), text(&c.scope), text(&c.result)))
                .collect()
        };
        for check in checks {
            *totals.entry(check).or_default() += row.count;
        }
    }
    let mut list: Vec<_> = totals
        .into_iter()
        .map(|((d, m, r), c)| (d, m, r, c))
        .collect();
    list.sort_by_key(|entry| std::cmp::Reverse(entry.3));
    list
}

pub(super) async fn source(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(ip): Path<String>,
) -> Result<Response, PageError> {
    let address: IpAddr = ip.parse().map_err(|_| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("{ip:?} is not an IP address"),
        )
    })?;
    let stored = state.store.source(address).await?;
    let filter = Filter {
        source: Some(address.to_string()),
        ..Filter::default()
    };
    let parsed = filter.parse(&user.scope)?;
    let whole = Page::new(Some(1), None, 1)?;
    let (totals, _) = aggregate::summary(
        &state.store,
        &parsed,
        GroupBy::Source,
        SummarySort::Messages,
        whole,
    )
    .await?;
    // A source known only from failure reports (their links lead here)
    // has a page too; one nothing mentions does not.
    let (failures, failures_total) =
        failures::failures(&state.store, &parsed, Page::new(Some(20), None, 20)?).await?;
    let (messages, dmarc_pass) = totals
        .first()
        .map_or((0, 0), |total| (total.messages, total.dmarc_pass));
    // (What dmarcd knows of an address is shown to a caller limited to
    // some domains only when theirs mention it.)
    if totals.is_empty() && failures_total == 0 && (stored.is_none() || !user.scope.is_all()) {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("no reports mention {address}"),
        ));
    }
    // The breakdown reads the latest 1000 records: enough to see which
    // domains sign and which SPF checks fail.
    let (rows, _) =
        aggregate::records(&state.store, &parsed, Page::new(Some(1000), None, 1000)?).await?;
    let info = match stored {
        Some(s) => SourceInfoView {
            ptr: s.ptr,
            dns_state: s.dns_state.as_str().to_string(),
            base_domain: s.base_domain,
            source_name: s.source_name,
            source_type: s.source_type,
            country: s.country,
            asn: s.asn.map(|a| format!("AS{a}")).unwrap_or_default(),
            as_name: s.as_name,
        },
        None => SourceInfoView {
            ptr: None,
            dns_state: "not enriched".into(),
            base_domain: None,
            source_name: None,
            source_type: None,
            country: None,
            asn: String::new(),
            as_name: None,
        },
    };
    render(SourcePage {
        layout: Layout::new(&state, Some(user.clone()), "/records"),
        messages,
        pass_rate: percent(dmarc_pass, messages),
        failures,
        failures_total,
        chart: daily_chart(&state, &parsed).await?,
        dkim: auth_breakdown(&rows, true),
        spf: auth_breakdown(&rows, false),
        by_org: sample_table(&filter, &rows, GroupBy::Org),
        by_header_from: sample_table(&filter, &rows, GroupBy::HeaderFrom),
        sample: rows.len(),
        ip: address.to_string(),
        info,
    })
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    layout: Layout,
    report: ReportRow,
    pct: String,
    rows: Vec<RecordRow>,
    previous: Option<String>,
    next: Option<String>,
}

pub(super) async fn report(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Params(paging): Params<PageParams>,
) -> Result<Response, PageError> {
    let report = aggregate::report(&state.store, &user.scope, id)
        .await?
        .ok_or_else(|| {
            PageError::new(StatusCode::NOT_FOUND, format!("no aggregate report {id}"))
        })?;
    let parsed = ParsedFilter {
        report: Some(id),
        scope: user.scope.clone(),
        ..ParsedFilter::default()
    };
    let page = paging.page(200)?;
    let (rows, total) = aggregate::records(&state.store, &parsed, page).await?;
    let (previous, next) = pager(
        &format!("/reports/{id}"),
        "",
        page.offset,
        page.limit,
        total,
    );
    render(ReportPage {
        layout: Layout::new(&state, Some(user.clone()), "/records"),
        pct: report
            .pct
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into()),
        report,
        rows,
        previous,
        next,
    })
}

/// The report's XML as it arrived, decoded from the stored message.
pub(super) async fn report_xml(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let not_found = || PageError::new(StatusCode::NOT_FOUND, format!("no aggregate report {id}"));
    let report = aggregate::report(&state.store, &user.scope, id)
        .await?
        .ok_or_else(not_found)?;
    let message = report.message_id.ok_or_else(not_found)?;
    let location = aggregate::report_location(&state.store, &user.scope, id).await?;
    // Without its location the first report in the message is taken: a
    // caller who sees some domains only gets it from a message they see.
    if location.is_none()
        && crate::query::inbox::inbox_message(&state.store, &user.scope, message)
            .await?
            .is_none()
    {
        return Err(not_found());
    }
    let raw = state
        .store
        .message_raw(message)
        .await?
        .ok_or_else(not_found)?;
    let limits = state.limits.clone();
    let name = format!("message {message}");
    let xml = tokio::task::spawn_blocking(move || {
        let mut found: Option<Vec<u8>> = None;
        let _ = crate::decode::visit_payloads::<crate::decode::DecodeError>(
            &mut &raw[..],
            &name,
            &limits,
            &mut |payload| {
                // Locations begin with the input's name, which differs
                // between the first decode and this one: compare the members.
                let members = |l: &str| l.split_once(" › ").map(|(_, rest)| rest.to_string());
                let wanted = location
                    .as_deref()
                    .is_none_or(|l| members(l) == members(&payload.location));
                if found.is_none() && wanted {
                    let mut bytes = Vec::new();
                    let location = payload.location.clone();
                    std::io::Read::read_to_end(payload.reader, &mut bytes)
                        .map_err(|source| crate::decode::DecodeError::Io { location, source })?;
                    found = Some(bytes);
                }
                Ok(())
            },
        );
        found
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            "the report could not be found in its message again",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/xml".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"report-{id}.xml\""),
            ),
        ],
        xml,
    )
        .into_response())
}
