//! TLS-RPT, failure reports, inbox and domains pages.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::notice::Notice;
use super::{
    check_csrf, filter_form, pager, query_of, render, require_admin, FilterForm, Layout, PageError,
    PageUser,
};
use crate::query::other::{
    self, DomainRow, FailureRow, InboxRow, TlsGroupBy, TlsPolicyRow, TlsSummaryRow, INBOX_STATUSES,
};
use crate::query::{Filter, Page, PageParams};
use crate::store::Requeue;
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
    let days = other::tls_summary(&state.store, &parsed, TlsGroupBy::Day).await?;
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
        groups.push((
            title,
            other::tls_summary(&state.store, &parsed, group).await?,
        ));
    }
    let policies =
        other::tls_policies(&state.store, &parsed, Page::new(Some(100), None, 100)?).await?;
    render(TlsPage {
        layout: Layout::new(&state, Some(user), "/tls"),
        form: filter_form(&state, filter, Vec::new()).await?,
        chart,
        groups,
        policies,
    })
}

#[derive(Template)]
#[template(path = "failures.html")]
struct FailuresPage {
    layout: Layout,
    form: FilterForm,
    total: i64,
    rows: Vec<FailureRow>,
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
    let (rows, total) = other::failures(&state.store, &parsed, page).await?;
    let (previous, next) = pager(
        "/failures",
        &query_of(&filter),
        page.offset,
        page.limit,
        total,
    );
    render(FailuresPage {
        layout: Layout::new(&state, Some(user), "/failures"),
        form: filter_form(&state, filter, Vec::new()).await?,
        total,
        rows,
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
    let report = other::failure(&state.store, id)
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

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    notice: Option<String>,
    statuses: &'static [&'static str],
    status: String,
    is_admin: bool,
    csrf: String,
    total: i64,
    rows: Vec<InboxRow>,
    previous: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct InboxParams {
    status: Option<String>,
    notice: Option<String>,
    n: Option<String>,
}

pub(super) async fn inbox(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(params): Params<InboxParams>,
    Params(paging): Params<PageParams>,
) -> Result<Response, PageError> {
    let status = params.status.clone().unwrap_or_default();
    let page = paging.page(50)?;
    let (rows, total) = other::inbox(&state.store, Some(&status), page).await?;
    let query = if status.is_empty() {
        String::new()
    } else {
        format!("status={status}")
    };
    let (previous, next) = pager("/inbox", &query, page.offset, page.limit, total);
    render(InboxPage {
        layout: Layout::new(&state, Some(user.clone()), "/inbox"),
        notice: Notice::shown(params.notice.as_deref(), params.n.as_deref()).map(|(_, text)| text),
        statuses: &INBOX_STATUSES,
        status,
        is_admin: user.is_admin(),
        csrf: user.csrf_token,
        total,
        rows,
        previous,
        next,
    })
}

pub(super) async fn inbox_raw(
    State(state): State<AppState>,
    PageUser(_): PageUser,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let raw =
        state.store.message_raw(id).await?.ok_or_else(|| {
            PageError::new(StatusCode::NOT_FOUND, format!("no inbox message {id}"))
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"message-{id}.eml\""),
            ),
        ],
        raw,
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn reprocess(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let requeued = state.store.requeue(&Requeue::Ids(vec![id])).await?;
    tracing::info!(user = %user.username, id, "reprocess requested");
    let notice = if requeued > 0 {
        Notice::Requeued
    } else {
        Notice::NoSuchMessage
    };
    Ok(notice.redirect("/inbox", id.unsigned_abs()))
}

pub(super) async fn reprocess_failed(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let requeued = state.store.requeue(&Requeue::Failed).await?;
    tracing::info!(user = %user.username, requeued, "reprocess of failed messages requested");
    Ok(Notice::FailedRequeued.redirect("/inbox", requeued))
}

#[derive(Template)]
#[template(path = "domains.html")]
struct DomainsPage {
    layout: Layout,
    notice: Option<String>,
    error: Option<String>,
    is_admin: bool,
    csrf: String,
    rows: Vec<DomainRow>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct NoticeParams {
    notice: Option<String>,
    n: Option<String>,
}

pub(super) async fn domains(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(params): Params<NoticeParams>,
) -> Result<Response, PageError> {
    let rows = other::domains(&state.store).await?;
    let (notice, error) = match Notice::shown(params.notice.as_deref(), params.n.as_deref()) {
        Some((notice, text)) if notice.is_error() => (None, Some(text)),
        Some((_, text)) => (Some(text), None),
        None => (None, None),
    };
    render(DomainsPage {
        layout: Layout::new(&state, Some(user.clone()), "/domains"),
        notice,
        error,
        is_admin: user.is_admin(),
        csrf: user.csrf_token,
        rows,
    })
}

#[derive(Deserialize)]
pub(super) struct DomainForm {
    csrf: String,
    name: String,
}

pub(super) async fn add_domain(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<DomainForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let notice = match other::add_domain(&state.store, &form.name).await {
        Ok(true) => Notice::DomainAdded,
        Ok(false) => Notice::DomainAlreadyMonitored,
        Err(crate::query::QueryError::Invalid(_)) => Notice::NotADomainName,
        Err(error) => return Err(error.into()),
    };
    Ok(notice.redirect("/domains", 0))
}

pub(super) async fn remove_domain(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<DomainForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let removed = other::remove_domain(&state.store, &form.name).await?;
    let notice = if removed {
        Notice::DomainRemoved
    } else {
        Notice::DomainNotMonitored
    };
    Ok(notice.redirect("/domains", 0))
}
