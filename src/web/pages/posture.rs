//! Posture pages: a monitored domain's findings, SPF tree, record changes
//! and checks ("check now", DKIM selectors added by hand), and the lookup
//! page for any domain name (rate-limited, nothing stored).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{check_csrf, render, require_admin, Layout, PageError, PageUser};
use crate::dns::spf_tree::{SpfNode, SpfTree};
use crate::dns::{Finding, Grade, RecordKind, Severity};
use crate::store::posture::{self, RecordEvent};
use crate::web::api::Params;
use crate::web::posture::{request_budget, service};
use crate::web::{AppState, ClientIp};

/// One record type's grade and findings, as the pages show them.
pub(super) struct KindView {
    pub label: &'static str,
    pub grade: &'static str,
    pub findings: Vec<FindingView>,
}

pub(super) struct FindingView {
    pub severity: &'static str,
    pub message: String,
    pub code: String,
    /// The record to publish, as a zone file line.
    pub fix: Option<String>,
}

/// One line of the SPF tree: indented by its depth.
pub(super) struct SpfLine {
    pub indent: usize,
    pub text: String,
    pub networks: String,
    pub note: String,
    pub record: bool,
}

pub(super) fn kinds_view(grades: &[Grade], findings: &[Finding]) -> Vec<KindView> {
    RecordKind::ALL
        .iter()
        .map(|&kind| KindView {
            label: kind.label(),
            grade: grades
                .iter()
                .find(|grade| grade.kind == kind)
                .map_or(Severity::Unknown, |grade| grade.severity)
                .key(),
            findings: findings
                .iter()
                .filter(|finding| finding.kind == kind)
                .map(|finding| FindingView {
                    severity: finding.severity.key(),
                    message: finding.message.clone(),
                    code: finding.code.clone(),
                    fix: finding.fix.as_ref().map(|fix| fix.to_string()),
                })
                .collect(),
        })
        .collect()
}

pub(super) fn spf_lines(tree: Option<&SpfTree>) -> Vec<SpfLine> {
    fn walk(node: &SpfNode, depth: usize, lines: &mut Vec<SpfLine>) {
        lines.push(SpfLine {
            indent: depth * 2,
            text: format!(
                "{}: {}",
                node.domain,
                node.record.as_deref().unwrap_or("(no record)")
            ),
            networks: String::new(),
            note: node.problem.clone().unwrap_or_default(),
            record: true,
        });
        for term in &node.terms {
            lines.push(SpfLine {
                indent: depth * 2 + 1,
                text: term.term.clone(),
                networks: term.networks.join(", "),
                note: term.note.clone().unwrap_or_default(),
                record: false,
            });
            if let Some(child) = &term.child {
                walk(child, depth + 1, lines);
            }
        }
    }
    let mut lines = Vec::new();
    if let Some(tree) = tree {
        walk(&tree.root, 0, &mut lines);
    }
    lines
}

#[derive(Template)]
#[template(path = "domain.html")]
struct DomainPage {
    layout: Layout,
    domain: String,
    is_admin: bool,
    csrf: String,
    checked_at: Option<String>,
    next_check_at: Option<String>,
    kinds: Vec<KindView>,
    spf_summary: Option<String>,
    spf: Vec<SpfLine>,
    events: Vec<RecordEvent>,
    history: Vec<(String, Vec<KindView>)>,
    selectors: Vec<String>,
}

pub(super) async fn domain(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let domain = name.trim().trim_end_matches('.').to_lowercase();
    let db = state.store.db();
    if !crate::domain::is_domain_name(&domain)
        || !crate::query::domains::visible(&state.store, &user.scope, &domain).await?
    {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("{domain} is not a monitored domain; the lookup page checks any domain"),
        ));
    }
    let checks = posture::checks_of(db, &domain, 10).await?;
    let latest = checks.first();
    let tree: Option<SpfTree> = latest
        .and_then(|check| check.spf.clone())
        .and_then(|value| serde_json::from_value(value).ok());
    let history = checks
        .iter()
        .map(|check| {
            (
                check.checked_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                kinds_view(&check.grades, &[]),
            )
        })
        .collect();
    render(DomainPage {
        layout: Layout::new(&state, Some(user.clone()), "/domains"),
        is_admin: user.is_admin(),
        csrf: user.csrf_token,
        checked_at: latest
            .map(|check| check.checked_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        next_check_at: posture::next_check_at(db, &domain)
            .await?
            .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
        kinds: latest.map_or_else(Vec::new, |check| kinds_view(&check.grades, &check.findings)),
        spf_summary: tree.as_ref().map(spf_summary),
        spf: spf_lines(tree.as_ref()),
        events: posture::events_of(db, &domain, 50).await?,
        history,
        selectors: posture::selectors_for(db, &domain, 30, 10_000).await?,
        domain,
    })
}

pub(super) fn spf_summary(tree: &SpfTree) -> String {
    format!(
        "DNS lookups: {} of 10 allowed; void lookups: {} of 2; authorizes {}",
        tree.lookups,
        tree.void_lookups,
        if tree.authorized_networks.is_empty() {
            "no network".to_string()
        } else {
            tree.authorized_networks.join(", ")
        }
    )
}

#[derive(Deserialize)]
pub(super) struct CheckForm {
    csrf: String,
    name: String,
}

/// "Check now": checks a monitored domain and shows its page.
pub(super) async fn check_now(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(form): Form<CheckForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let domain = form.name.trim().trim_end_matches('.').to_lowercase();
    let service = service(&state)?;
    if !crate::domain::is_domain_name(&domain)
        || !crate::query::domains::visible(&state.store, &user.scope, &domain).await?
    {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("{domain} is not a monitored domain"),
        ));
    }
    if !user.scope.may(&domain, crate::scope::GroupRole::Analyst) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "checking now needs the analyst or owner role in the domain's group",
        ));
    }
    let budget = request_budget(&state, service);
    service.schedule.check_now_within(&domain, budget).await?;
    Ok(Redirect::to(&format!("/domains/{domain}")).into_response())
}

#[derive(Deserialize)]
pub(super) struct SelectorForm {
    csrf: String,
    name: String,
    selector: String,
}

/// Adds a DKIM selector to check for a monitored domain.
pub(super) async fn add_selector(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    crate::web::Address(address): crate::web::Address,
    Form(form): Form<SelectorForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    require_admin(&user)?;
    let domain = form.name.trim().trim_end_matches('.').to_lowercase();
    let selector = form.selector.trim().to_ascii_lowercase();
    if !posture::is_selector(&selector) {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "a DKIM selector is one or more labels of letters, digits, hyphens and underscores",
        ));
    }
    if !crate::domain::is_domain_name(&domain)
        || !crate::query::domains::visible(&state.store, &user.scope, &domain).await?
    {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("{domain} is not a monitored domain"),
        ));
    }
    if posture::add_selector(state.store.db(), &domain, &selector).await? {
        let change = crate::audit::Change::of(crate::audit::Action::DomainSelectorAdd, &domain)
            .to(&serde_json::json!({ "dkim_selector": selector }));
        let actor = crate::audit::Actor::new(&user.username, address);
        crate::audit::record(&state.store, &actor, change).await?;
    }
    Ok(Redirect::to(&format!("/domains/{domain}")).into_response())
}

#[derive(Template)]
#[template(path = "lookup.html")]
struct LookupPage {
    layout: Layout,
    query: String,
    error: Option<String>,
    domain: Option<String>,
    kinds: Vec<KindView>,
    spf_summary: Option<String>,
    spf: Vec<SpfLine>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LookupParams {
    domain: Option<String>,
}

/// The lookup page: any domain's records checked now (not stored).
pub(super) async fn lookup(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    ClientIp(client): ClientIp,
    Params(params): Params<LookupParams>,
) -> Result<Response, PageError> {
    let query = params.domain.unwrap_or_default().trim().to_string();
    let mut page = LookupPage {
        layout: Layout::new(&state, Some(user), "/lookup"),
        query: query.clone(),
        error: None,
        domain: None,
        kinds: Vec::new(),
        spf_summary: None,
        spf: Vec::new(),
    };
    if query.is_empty() {
        return render(page);
    }
    let domain = query.trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&domain) {
        page.error = Some(format!("{query} is not a domain name."));
        return render(page).map(|response| with_status(response, StatusCode::BAD_REQUEST));
    }
    let service = service(&state)?;
    if let Err(error) = service.allow_lookup(client) {
        page.error = Some(error.message);
        return render(page).map(|response| with_status(response, StatusCode::TOO_MANY_REQUESTS));
    }
    let budget = request_budget(&state, service);
    let selectors =
        crate::web::posture::lookup_selectors(&state, &page.layout.scope(), &domain).await?;
    let report = service
        .schedule
        .checker()
        .check_within(&domain, &selectors, budget)
        .await;
    page.kinds = kinds_view(&report.grades, &report.findings);
    page.spf_summary = report.spf.as_ref().map(spf_summary);
    page.spf = spf_lines(report.spf.as_ref());
    page.domain = Some(report.domain);
    render(page)
}

fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}
