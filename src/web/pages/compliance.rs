//! The Compliance page: per domain, messages and sources per class over
//! the period as numbers and a chart, the biggest problems first as
//! sentences with their fix, and the readiness card (what quarantine and
//! reject would have done over the last 30 days, the authorized mail they
//! would lose, and the next record to publish).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::aggregate::{load_country_map, CountryMap};
use super::{render, Layout, PageError, PageUser};
use crate::query::compliance::{self, grouped, Blocker, Compliance, Problem, Readiness};
use crate::query::senders::SendersQuery;
use crate::query::Filter;
use crate::senders::readiness::{PolicyOrigin, Verdict};
use crate::senders::Class;
use crate::web::api::Params;
use crate::web::svg::{share_bars, Share, ShareBar};
use crate::web::world_map::MapMeasure;
use crate::web::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ComplianceParams {
    domain: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `failing`: the map shades by failing messages.
    map: Option<String>,
}

/// A class's colour in charts (the class labels' colours in base.html).
pub(super) fn class_colour(class: Class) -> &'static str {
    match class {
        Class::Authorized => "#2e7d32",
        Class::Forwarded => "#1565c0",
        Class::Misconfigured => "#ef6c00",
        Class::Suspicious => "#c62828",
        Class::Ignored => "#9e9e9e",
    }
}

struct ClassLine {
    key: &'static str,
    label: &'static str,
    sources: i64,
    messages: String,
    share: String,
    href: String,
}

struct ProblemLine {
    problem: Problem,
    class_key: &'static str,
    class_label: &'static str,
    href: String,
}

struct PeriodLink {
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "compliance.html")]
struct CompliancePage {
    layout: Layout,
    domains: Vec<String>,
    domain: Option<String>,
    periods: Vec<PeriodLink>,
    compliance: Option<Compliance>,
    classes: Vec<ClassLine>,
    chart: String,
    problems: Vec<ProblemLine>,
    readiness: Option<Readiness>,
    verdict_key: &'static str,
    policy_origin: &'static str,
    impact: Vec<(&'static str, &'static str, String, String)>,
    blockers: Vec<(Blocker, String)>,
    /// The domain's mail by country.
    map: Option<CountryMap>,
}

fn href(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(name, value)| Some((*name, value.filter(|v| !v.is_empty())?)))
        .collect();
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

pub(super) async fn compliance(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(params): Params<ComplianceParams>,
) -> Result<Response, PageError> {
    let domains = state.store.domains(&user.scope).await?;
    let domain = params
        .domain
        .as_deref()
        .map(|d| d.trim().trim_end_matches('.').to_lowercase())
        .filter(|d| !d.is_empty())
        .or_else(|| domains.first().cloned());
    let since = params.since.clone().filter(|s| !s.trim().is_empty());
    let until = params.until.clone().filter(|s| !s.trim().is_empty());
    let mut page = CompliancePage {
        layout: Layout::new(&state, Some(user), "/compliance"),
        domains,
        domain: domain.clone(),
        periods: Vec::new(),
        compliance: None,
        classes: Vec::new(),
        chart: String::new(),
        problems: Vec::new(),
        readiness: None,
        verdict_key: "",
        policy_origin: "",
        impact: Vec::new(),
        blockers: Vec::new(),
        map: None,
    };
    let Some(domain) = domain else {
        return render(page);
    };
    crate::query::domains::require_visible(&state.store, &page.layout.scope(), &domain).await?;
    let today = Utc::now().date_naive();
    for (label, days) in [
        ("7 days", Some(7)),
        ("30 days", Some(30)),
        ("90 days", Some(90)),
        ("All time", None),
    ] {
        let start = days.map(|days: i64| (today - chrono::Duration::days(days)).to_string());
        page.periods.push(PeriodLink {
            label,
            href: href(
                "/compliance",
                &[("domain", Some(&domain)), ("since", start.as_deref())],
            ),
            current: until.is_none() && since == start,
        });
    }
    let query = SendersQuery {
        domain: domain.clone(),
        since: since.clone(),
        until: until.clone(),
        class: None,
    };
    let map_filter = Filter {
        domain: Some(domain.clone()),
        since: since.clone(),
        until: until.clone(),
        ..Filter::default()
    };
    let measure = MapMeasure::parse(params.map.as_deref());
    // The classed sources (read once when the period is readiness's 30
    // days) and the map, side by side.
    let scope = page.layout.scope();
    let (both, map) = tokio::join!(
        compliance::compliance_and_readiness(&state.store, &scope, &state.senders, &query),
        load_country_map(&state, &scope, "/compliance", &map_filter, measure)
    );
    let (report, readiness) = both?;
    page.map = Some(map?);

    let messages: i64 = report.classes.iter().map(|c| c.messages).sum();
    page.classes = report
        .classes
        .iter()
        .map(|total| ClassLine {
            key: total.class.key(),
            label: total.class.label(),
            sources: total.sources,
            messages: grouped(total.messages),
            share: super::percent(total.messages, messages),
            href: href(
                "/senders",
                &[
                    ("domain", Some(&domain)),
                    ("since", since.as_deref()),
                    ("until", until.as_deref()),
                    ("class", Some(total.class.key())),
                ],
            ),
        })
        .collect();
    let bar = |label, value: fn(&crate::query::senders::ClassTotal) -> i64| ShareBar {
        label,
        shares: report
            .classes
            .iter()
            .map(|total| Share {
                name: total.class.label(),
                colour: class_colour(total.class),
                value: value(total),
            })
            .collect(),
    };
    page.chart = share_bars(
        &format!("Messages and sources of {domain} per class"),
        &[
            bar("Messages", |t| t.messages),
            bar("Sources", |t| t.sources),
        ],
    );
    page.problems = report
        .problems
        .iter()
        .map(|problem| ProblemLine {
            class_key: problem.class.key(),
            class_label: problem.class.label(),
            href: href(
                "/senders/source",
                &[
                    ("domain", Some(&domain)),
                    ("name", Some(&problem.source)),
                    ("since", since.as_deref()),
                    ("until", until.as_deref()),
                ],
            ),
            problem: problem.clone(),
        })
        .collect();
    page.verdict_key = match readiness.verdict {
        Verdict::NoData => "no_data",
        Verdict::Blocked => "blocked",
        Verdict::Ready => "ready",
        Verdict::Enforced => "enforced",
    };
    page.policy_origin = match readiness.policy.as_ref().map(|p| p.origin) {
        Some(PolicyOrigin::Dns) => "the DNS check of",
        Some(PolicyOrigin::Reports) => "the newest report, of",
        None => "",
    };
    page.impact = readiness
        .impact
        .iter()
        .filter(|i| i.messages > 0)
        .map(|i| {
            (
                i.class.key(),
                i.class.label(),
                grouped(i.messages),
                grouped(i.failing),
            )
        })
        .collect();
    page.blockers = readiness
        .blockers
        .iter()
        .map(|b| {
            (
                b.clone(),
                href(
                    "/senders/source",
                    &[
                        ("domain", Some(&domain)),
                        ("name", Some(&b.source)),
                        (
                            "since",
                            Some(&readiness.since[..10.min(readiness.since.len())]),
                        ),
                    ],
                ),
            )
        })
        .collect();
    page.compliance = Some(report);
    page.readiness = Some(readiness);
    render(page)
}
