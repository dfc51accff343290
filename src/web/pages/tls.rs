//! The TLS-RPT pages: sessions over time, per result type and sending MTA,
//! per domain and reporter, the reports (each with its own page: policies,
//! sessions, failure details), filtered by what a TLS report has.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::aggregate::day_of;
use super::{csv_link, pager, render, Layout, PageError, PageUser};
use crate::query::tls::{
    self, TlsFilter, TlsGroupBy, TlsKnownValues, TlsPolicyDetail, TlsPolicyRow, TlsReportDetail,
    TlsReportRow, TlsSummaryRow, POLICY_TYPES,
};
use crate::query::{Page, PageParams};
use crate::web::api::Params;
use crate::web::svg::{daily_bars, named_bars, Bar, Series};
use crate::web::AppState;

const SUCCESS: &str = "#2e7d32";
const FAILURE: &str = "#c62828";

/// The TLS filter form: the values set, and the choices it offers.
pub struct TlsForm {
    pub filter: TlsFilter,
    pub known: TlsKnownValues,
    pub policy_types: &'static [&'static str],
}

#[derive(Template)]
#[template(path = "tls.html")]
struct TlsPage {
    layout: Layout,
    form: TlsForm,
    chart: String,
    result_chart: String,
    mta_chart: String,
    groups: Vec<(&'static str, Vec<TlsSummaryRow>)>,
    reports: Vec<TlsReportRow>,
    total: i64,
    csv: String,
    previous: Option<String>,
    next: Option<String>,
    policies: Vec<TlsPolicyRow>,
}

/// `/tls?…` with `filter` and one more parameter set.
fn narrowed(filter: &TlsFilter, set: impl FnOnce(&mut TlsFilter)) -> String {
    let mut narrowed = filter.clone();
    set(&mut narrowed);
    format!("/tls?{}", narrowed.query_string())
}

/// Sessions per result type: the successful ones, then each kind of
/// failure, each leading to the reports that have it.
pub(super) fn result_bars(
    filter: &TlsFilter,
    successful: i64,
    failures: &[TlsSummaryRow],
) -> Vec<Bar> {
    let mut bars = Vec::new();
    if successful > 0 {
        bars.push(Bar {
            label: "successful".into(),
            value: successful,
            colour: SUCCESS,
            href: None,
        });
    }
    for row in failures {
        bars.push(Bar {
            label: row.key.clone().unwrap_or_else(|| "(not reported)".into()),
            value: row.failed_sessions,
            colour: FAILURE,
            href: row
                .key
                .as_ref()
                .map(|key| narrowed(filter, |f| f.result_type = Some(key.clone()))),
        });
    }
    bars
}

pub(super) fn mta_bars(filter: &TlsFilter, failures: &[TlsSummaryRow]) -> Vec<Bar> {
    failures
        .iter()
        .take(20)
        .map(|row| Bar {
            label: row.key.clone().unwrap_or_else(|| "(not reported)".into()),
            value: row.failed_sessions,
            colour: FAILURE,
            href: row
                .key
                .as_ref()
                .map(|key| narrowed(filter, |f| f.sending_mta = Some(key.clone()))),
        })
        .collect()
}

/// Successful and failed sessions per day, from a summary by day.
pub(super) fn sessions_per_day(days: &[TlsSummaryRow]) -> String {
    let dated: Vec<&TlsSummaryRow> = days
        .iter()
        .filter(|d| d.key.as_deref().and_then(day_of).is_some())
        .collect();
    let dates: Vec<_> = dated
        .iter()
        .filter_map(|d| d.key.as_deref().and_then(day_of))
        .collect();
    daily_bars(
        "TLS sessions per day",
        &dates,
        &[
            Series {
                name: "successful",
                colour: SUCCESS,
                values: dated.iter().map(|d| d.successful_sessions).collect(),
            },
            Series {
                name: "failed",
                colour: FAILURE,
                values: dated.iter().map(|d| d.failed_sessions).collect(),
            },
        ],
    )
}

pub(super) async fn tls(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(filter): Params<TlsFilter>,
    Params(paging): Params<PageParams>,
) -> Result<Response, PageError> {
    let parsed = filter.parse(&user.scope)?;
    let summary = |group| tls::tls_summary(&state.store, &parsed, group);
    let (days, domains, orgs, result_types, mtas, mxs) = tokio::try_join!(
        summary(TlsGroupBy::Day),
        summary(TlsGroupBy::Domain),
        summary(TlsGroupBy::Org),
        summary(TlsGroupBy::ResultType),
        summary(TlsGroupBy::SendingMta),
        summary(TlsGroupBy::ReceivingMx),
    )?;
    let chart = sessions_per_day(&days);
    let successful = domains.iter().map(|d| d.successful_sessions).sum();
    let result_chart = named_bars(
        "Sessions per result type",
        &result_bars(&filter, successful, &result_types),
    );
    let mta_chart = named_bars("Failed sessions per sending MTA", &mta_bars(&filter, &mtas));
    let page = paging.page(50)?;
    let (reports, total) = tls::tls_reports(&state.store, &parsed, page).await?;
    let query = filter.query_string();
    let (previous, next) = pager("/tls", &query, page.offset, page.limit, total);
    let policies =
        tls::tls_policies(&state.store, &parsed, Page::new(Some(100), None, 100)?).await?;
    render(TlsPage {
        layout: Layout::new(&state, Some(user.clone()), "/tls"),
        form: TlsForm {
            filter,
            known: tls::tls_known_values(&state.store, &user.scope).await?,
            policy_types: &POLICY_TYPES,
        },
        chart,
        result_chart,
        mta_chart,
        groups: vec![
            ("By policy domain", domains),
            ("By reporting organization", orgs),
            ("Failures by receiving MX", mxs),
        ],
        reports,
        total,
        csv: csv_link("/api/v1/tls/reports", &query),
        previous,
        next,
        policies,
    })
}

/// A policy of a report as its page shows it, with a note when its
/// failure details and its total of failed sessions disagree.
struct PolicyView {
    policy: TlsPolicyDetail,
    note: Option<String>,
}

/// What to say when the details of `policy` do not add up to its failed
/// sessions (RFC 8460 §4.3 allows both ways).
fn details_note(policy: &TlsPolicyDetail) -> Option<String> {
    let detailed = policy.detailed_failed_sessions;
    let total = policy.failed_sessions;
    if detailed > total {
        Some(format!(
            "The failure details add up to {detailed} failed sessions, more than the {total} \
             the policy counts: a session can be reported under more than one failure."
        ))
    } else if detailed < total {
        Some(format!(
            "The failure details account for {detailed} of the {total} failed sessions: the \
             reporter did not detail the other {}.",
            total - detailed
        ))
    } else {
        None
    }
}

#[derive(Template)]
#[template(path = "tls_report.html")]
struct TlsReportPage {
    layout: Layout,
    report: TlsReportDetail,
    policies: Vec<PolicyView>,
    result_chart: String,
    mta_chart: String,
    /// Whether any policy's details disagree with its total.
    mismatched: bool,
}

/// Failed sessions of a report's details summed by `key`, busiest first.
fn sum_details(
    report: &TlsReportDetail,
    key: impl Fn(&tls::TlsFailureDetailRow) -> Option<String>,
) -> Vec<TlsSummaryRow> {
    let mut sums: BTreeMap<Option<String>, i64> = BTreeMap::new();
    for detail in report.policies.iter().flat_map(|p| &p.failure_details) {
        *sums.entry(key(detail)).or_default() += detail.failed_sessions;
    }
    let mut rows: Vec<TlsSummaryRow> = sums
        .into_iter()
        .map(|(key, failed_sessions)| TlsSummaryRow {
            key,
            successful_sessions: 0,
            failed_sessions,
        })
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.failed_sessions));
    rows
}

pub(super) async fn tls_report(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let report = tls::tls_report(&state.store, &user.scope, id)
        .await?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, format!("no TLS report {id}")))?;
    // The bars lead to every report with the same failure.
    let all = TlsFilter::default();
    let result_chart = named_bars(
        "Sessions per result type",
        &result_bars(
            &all,
            report.successful_sessions,
            &sum_details(&report, |d| Some(d.result_type.clone())),
        ),
    );
    let mta_chart = named_bars(
        "Failed sessions per sending MTA",
        &mta_bars(&all, &sum_details(&report, |d| d.sending_mta_ip.clone())),
    );
    let policies: Vec<PolicyView> = report
        .policies
        .iter()
        .map(|policy| PolicyView {
            note: details_note(policy),
            policy: policy.clone(),
        })
        .collect();
    render(TlsReportPage {
        layout: Layout::new(&state, Some(user.clone()), "/tls"),
        mismatched: policies.iter().any(|p| p.note.is_some()),
        policies,
        result_chart,
        mta_chart,
        report,
    })
}
