//! The TLS-RPT page: sessions per day, per domain and failure, and the
//! policies reported.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::{filter_form, render, FilterForm, Layout, PageError, PageUser};
use crate::query::tls::{self, TlsGroupBy, TlsPolicyRow, TlsSummaryRow};
use crate::query::{Filter, Page};
use crate::web::api::Params;
use crate::web::svg::{stacked_bars, Series};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "tls.html")]
struct TlsPage {
    layout: Layout,
    form: FilterForm,
    chart: String,
    groups: Vec<(&'static str, Vec<TlsSummaryRow>)>,
    policies: Vec<TlsPolicyRow>,
}

pub(super) async fn tls(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(filter): Params<Filter>,
) -> Result<Response, PageError> {
    let parsed = filter.parse()?;
    let days = tls::tls_summary(&state.store, &parsed, TlsGroupBy::Day).await?;
    let labels: Vec<String> = days
        .iter()
        .map(|d| d.key.clone().unwrap_or_default())
        .collect();
    let chart = stacked_bars(
        &labels,
        &[
            Series {
                name: "successful",
                colour: "#2e7d32",
                values: days.iter().map(|d| d.successful_sessions).collect(),
            },
            Series {
                name: "failed",
                colour: "#c62828",
                values: days.iter().map(|d| d.failed_sessions).collect(),
            },
        ],
    );
    let mut groups = Vec::new();
    for (title, group) in [
        ("By policy domain", TlsGroupBy::Domain),
        ("By reporting organization", TlsGroupBy::Org),
        ("Failures by result type", TlsGroupBy::ResultType),
        ("Failures by sending MTA", TlsGroupBy::SendingMta),
        ("Failures by receiving MX", TlsGroupBy::ReceivingMx),
    ] {
        groups.push((title, tls::tls_summary(&state.store, &parsed, group).await?));
    }
    let policies =
        tls::tls_policies(&state.store, &parsed, Page::new(Some(100), None, 100)?).await?;
    render(TlsPage {
        layout: Layout::new(&state, Some(user), "/tls"),
        form: filter_form(&state, filter, Vec::new()).await?,
        chart,
        groups,
        policies,
    })
}
