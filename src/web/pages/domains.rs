//! The domains page: monitored domains with their posture (a grade per
//! record type, when last checked, "check now"), added and removed by hand.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::notice::Notice;
use super::{check_csrf, render, require_admin, Layout, PageError, PageUser};
use crate::audit::{self, Action, Actor, Change};
use crate::dns::RecordKind;
use crate::query::domains::{self, DomainRow};
use crate::web::api::Params;
use crate::web::{Address, AppState};

#[derive(Template)]
#[template(path = "domains.html")]
struct DomainsPage {
    layout: Layout,
    notice: Option<String>,
    error: Option<String>,
    is_admin: bool,
    csrf: String,
    rows: Vec<DomainView>,
    labels: Vec<&'static str>,
}

/// A monitored domain and its newest check's grades.
struct DomainView {
    row: DomainRow,
    checked_at: Option<String>,
    /// One per record type, in `RecordKind::ALL` order.
    grades: Vec<&'static str>,
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
    let mut postures: std::collections::HashMap<String, crate::store::posture::DomainPosture> =
        crate::store::posture::monitored_posture(state.store.db())
            .await?
            .into_iter()
            .map(|posture| (posture.domain.clone(), posture))
            .collect();
    let rows = domains::domains(&state.store, &user.scope)
        .await?
        .into_iter()
        .map(|row| {
            let posture = postures.remove(&row.name);
            let grades = RecordKind::ALL
                .iter()
                .map(|&kind| {
                    posture
                        .as_ref()
                        .and_then(|p| p.grades.iter().find(|grade| grade.kind == kind))
                        .map_or("unchecked", |grade| grade.severity.key())
                })
                .collect();
            DomainView {
                checked_at: posture
                    .and_then(|p| p.checked_at)
                    .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
                grades,
                row,
            }
        })
        .collect();
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
        labels: RecordKind::ALL.iter().map(|kind| kind.label()).collect(),
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
    Address(address): Address,
    Form(form): Form<DomainForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let notice = match domains::add_domain(&state.store, &user.scope, &form.name, None).await {
        Ok(true) => {
            let name = form.name.trim().trim_end_matches('.').to_lowercase();
            let change = Change::of(Action::DomainAdd, name);
            audit::record(&state.store, &Actor::new(&user.username, address), change).await?;
            Notice::DomainAdded
        }
        Ok(false) => Notice::DomainAlreadyMonitored,
        Err(crate::query::QueryError::Invalid(_)) => Notice::NotADomainName,
        Err(error) => return Err(error.into()),
    };
    Ok(notice.redirect("/domains", 0))
}

pub(super) async fn remove_domain(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<DomainForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let removed = domains::remove_domain(&state.store, &user.scope, &form.name).await?;
    let notice = if removed {
        let name = form.name.trim().trim_end_matches('.').to_lowercase();
        let change = Change::of(Action::DomainRemove, name);
        audit::record(&state.store, &Actor::new(&user.username, address), change).await?;
        Notice::DomainRemoved
    } else {
        Notice::DomainNotMonitored
    };
    Ok(notice.redirect("/domains", 0))
}
