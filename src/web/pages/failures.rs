//! Failure report pages: the list and one report with the headers of
//! the failed message.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{
    csv_link, filter_form, pager, query_of, render, FilterForm, Layout, PageError, PageUser,
};
use crate::query::failures::{self, FailureRow};
use crate::query::{Filter, PageParams};
use crate::web::api::Params;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "failures.html")]
struct FailuresPage {
    layout: Layout,
    form: FilterForm,
    total: i64,
    rows: Vec<FailureRow>,
    csv: String,
    previous: Option<String>,
    next: Option<String>,
}

pub(super) async fn failures(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(filter): Params<Filter>,
    Params(paging): Params<PageParams>,
) -> Result<Response, PageError> {
    let parsed = filter.parse()?;
    let page = paging.page(50)?;
    let (rows, total) = failures::failures(&state.store, &parsed, page).await?;
    let query = query_of(&filter);
    let (previous, next) = pager("/failures", &query, page.offset, page.limit, total);
    render(FailuresPage {
        layout: Layout::new(&state, Some(user), "/failures"),
        form: filter_form(&state, filter, Vec::new()).await?,
        total,
        rows,
        csv: csv_link("/api/v1/failure/reports", &query),
        previous,
        next,
    })
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailurePage {
    layout: Layout,
    report: FailureRow,
    fields: Vec<(&'static str, String)>,
    headers: String,
}

/// The header block of the failed message inside a stored ARF report:
/// after the `message/rfc822` or `text/rfc822-headers` part's own headers,
/// up to the first blank line. At most 32 KiB.
fn original_headers(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(512 * 1024)]).replace("\r\n", "\n");
    let lower = text.to_ascii_lowercase();
    let Some(start) = ["text/rfc822-headers", "message/rfc822", "message/rfc-822"]
        .iter()
        .filter_map(|kind| lower.find(kind))
        .min()
    else {
        return String::new();
    };
    let Some(part_headers_end) = text[start..].find("\n\n").map(|i| start + i + 2) else {
        return String::new();
    };
    let block = &text[part_headers_end..];
    let end = block.find("\n\n").unwrap_or(block.len()).min(32 * 1024);
    block[..end].to_string()
}

pub(super) async fn failure(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let report = failures::failure(&state.store, id)
        .await?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, format!("no failure report {id}")))?;
    let headers = match report.message_id {
        Some(message) => state
            .store
            .message_raw(message)
            .await?
            .map(|raw| original_headers(&raw))
            .unwrap_or_default(),
        None => String::new(),
    };
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let fields = vec![
        ("Format", report.format.clone()),
        ("Feedback type", o(&report.feedback_type)),
        ("Arrival date", o(&report.arrival_date)),
        ("Source IP", o(&report.source_ip)),
        ("Reported domain", o(&report.reported_domain)),
        ("Authentication failure", o(&report.auth_failure)),
        ("Delivery result", o(&report.delivery_result)),
        ("DKIM domain", o(&report.dkim_domain)),
        ("Original envelope sender", o(&report.original_mail_from)),
        ("Original From", o(&report.original_from)),
        ("Original subject", o(&report.original_subject)),
        ("Reporting MTA", o(&report.reporting_mta)),
        ("User agent", o(&report.user_agent)),
        ("Received", report.received_at.clone()),
    ];
    render(FailurePage {
        layout: Layout::new(&state, Some(user), "/failures"),
        report,
        fields,
        headers,
    })
}
