//! The inbox page: stored messages, their raw bytes, and reprocessing.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::notice::Notice;
use super::{check_csrf, csv_link, pager, render, require_admin, Layout, PageError, PageUser};
use crate::audit::{self, Action, Actor, Change};
use crate::query::inbox::{self, InboxRow, INBOX_STATUSES};
use crate::query::PageParams;
use crate::store::Requeue;
use crate::web::api::Params;
use crate::web::{Address, AppState};

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
    csv: String,
    first_steps: Option<super::FirstSteps>,
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
    let (rows, total) = inbox::inbox(&state.store, &user.scope, Some(&status), page).await?;
    let query = if status.is_empty() {
        String::new()
    } else {
        format!("status={status}")
    };
    let (previous, next) = pager("/inbox", &query, page.offset, page.limit, total);
    render(InboxPage {
        first_steps: (total == 0 && status.is_empty() && user.scope.is_all())
            .then(|| super::FirstSteps::new(&state)),
        layout: Layout::new(&state, Some(user.clone()), "/inbox"),
        notice: Notice::shown(params.notice.as_deref(), params.n.as_deref()).map(|(_, text)| text),
        statuses: &INBOX_STATUSES,
        status,
        is_admin: user.is_admin(),
        csrf: user.csrf_token,
        total,
        rows,
        csv: csv_link("/api/v1/inbox/messages", &query),
        previous,
        next,
    })
}

pub(super) async fn inbox_raw(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let raw = match inbox::message_raw(&state.store, &user.scope, id).await? {
        Some(raw) => raw,
        None => {
            return Err(crate::web::api::missing_raw(&state, &user.scope, id)
                .await?
                .into())
        }
    };
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
    Address(address): Address,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    if !inbox::may_reprocess(&state.store, &user.scope, id).await? {
        return Ok(Notice::NoSuchMessage.redirect("/inbox", id.unsigned_abs()));
    }
    let requeued = state.store.requeue(&Requeue::Ids(vec![id])).await?;
    tracing::info!(user = %user.username, id, "reprocess requested");
    let notice = if requeued > 0 {
        let change = Change::of(Action::MessageReprocess, format!("message {id}"));
        audit::record(&state.store, &Actor::new(&user.username, address), change).await?;
        Notice::Requeued
    } else {
        Notice::NoSuchMessage
    };
    Ok(notice.redirect("/inbox", id.unsigned_abs()))
}

pub(super) async fn reprocess_failed(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let requeued = state.store.requeue(&Requeue::Failed).await?;
    tracing::info!(user = %user.username, requeued, "reprocess of failed messages requested");
    let change = Change::of(Action::MessagesReprocessFailed, "failed messages")
        .to(&serde_json::json!({ "requeued": requeued }));
    audit::record(&state.store, &Actor::new(&user.username, address), change).await?;
    Ok(Notice::FailedRequeued.redirect("/inbox", requeued))
}
