//! The Audit page: who changed what, when and from where, newest first,
//! filtered by actor, action, target and time, with the value before and
//! after; a CSV link exports every matching entry. Admins only; nothing on
//! it changes an entry.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::{csv_link, render, require_admin, Layout, PageError, PageUser};
use crate::audit::Action;
use crate::store::audit::EntryRow;
use crate::web::api::Params;
use crate::web::audit::{page, AuditParams};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    params: AuditParams,
    /// Every action and group, for the filter's choice.
    actions: Vec<&'static str>,
    entries: Vec<EntryRow>,
    next: Option<String>,
    csv: String,
}

pub(super) async fn audit(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(params): Params<AuditParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    require_admin(&user)?;
    let (filter, limit) = params.filter()?;
    let listed = page(&state, &filter, limit).await?;
    // The same parameters, less the paging, for the next page and the CSV.
    let kept: Vec<&str> = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("before="))
        .collect();
    let kept = kept.join("&");
    let next = listed.next_before.map(|before| {
        if kept.is_empty() {
            format!("/audit?before={before}")
        } else {
            format!("/audit?{kept}&before={before}")
        }
    });
    let mut actions = Vec::new();
    for group in Action::groups() {
        actions.push(group);
        actions.extend(
            Action::ALL
                .iter()
                .map(|action| action.key())
                .filter(|key| key.starts_with(group)),
        );
    }
    render(AuditPage {
        layout: Layout::new(&state, Some(user), "/audit"),
        params,
        actions,
        entries: listed.entries,
        next,
        csv: csv_link("/api/v1/audit", &kept),
    })
}
