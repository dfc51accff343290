//! The Senders page: who sends as a domain, each source in its class with
//! the line that put it there, volume and pass rate; admins approve or
//! ignore a source (or any name, IP, CIDR block, AS or PTR base domain)
//! and revoke rules, and the classes follow at once.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use super::{check_csrf, percent, render, Layout, PageError, PageUser};
use crate::query::senders::{self, ClassTotal, SenderReport, SenderRow, SendersQuery};
use crate::query::Filter;
use crate::senders::{Action, Class, MatchKind};
use crate::store::approvals::{self, Approval, NewApproval};
use crate::web::api::Params;
use crate::web::senders::class_param;
use crate::web::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SendersParams {
    domain: Option<String>,
    since: Option<String>,
    until: Option<String>,
    class: Option<String>,
}

/// A class total as a link that shows only that class.
struct ClassLink {
    key: &'static str,
    label: &'static str,
    sources: i64,
    messages: i64,
    href: String,
    current: bool,
}

struct SenderLine {
    row: SenderRow,
    href: String,
    class_key: &'static str,
    class_label: &'static str,
    rate: String,
    /// The match kind an approve/ignore button names the source by.
    kind: &'static str,
}

struct PeriodLink {
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "senders.html")]
struct SendersPage {
    layout: Layout,
    domains: Vec<String>,
    domain: Option<String>,
    is_admin: bool,
    csrf: String,
    periods: Vec<PeriodLink>,
    report: Option<SenderReport>,
    classes: Vec<ClassLink>,
    lines: Vec<SenderLine>,
    rules: Vec<Approval>,
    kinds: Vec<(&'static str, &'static str)>,
    /// The query string to come back to after a form.
    back: String,
}

fn senders_href(
    domain: &str,
    since: Option<&str>,
    until: Option<&str>,
    class: Option<&str>,
) -> String {
    let pairs: Vec<(&str, &str)> = [
        ("domain", Some(domain)),
        ("since", since),
        ("until", until),
        ("class", class),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value.filter(|v| !v.is_empty())?)))
    .collect();
    format!(
        "/senders?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

pub(super) async fn senders(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(params): Params<SendersParams>,
) -> Result<Response, PageError> {
    let domains = state.store.domains(&user.scope).await?;
    let domain = params
        .domain
        .as_deref()
        .map(|d| d.trim().trim_end_matches('.').to_lowercase())
        .filter(|d| !d.is_empty())
        .or_else(|| domains.first().cloned());
    let class = class_param(params.class.as_deref())?;
    let since = params.since.clone().filter(|s| !s.trim().is_empty());
    let until = params.until.clone().filter(|s| !s.trim().is_empty());
    let mut page = SendersPage {
        layout: Layout::new(&state, Some(user.clone()), "/senders"),
        domains,
        domain: domain.clone(),
        // Analysts of the domain's group approve its sources too.
        is_admin: domain
            .as_deref()
            .is_some_and(|d| user.scope.may(d, crate::scope::GroupRole::Analyst)),
        csrf: user.csrf_token.clone(),
        periods: Vec::new(),
        report: None,
        classes: Vec::new(),
        lines: Vec::new(),
        rules: Vec::new(),
        kinds: MatchKind::ALL
            .iter()
            .map(|k| (k.key(), k.label()))
            .collect(),
        back: String::new(),
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
            href: senders_href(&domain, start.as_deref(), None, None),
            current: until.is_none() && since == start,
        });
    }
    let query = SendersQuery {
        domain: domain.clone(),
        since: since.clone(),
        until: until.clone(),
        class,
    };
    let report = senders::senders(&state.store, &user.scope, &state.senders, &query).await?;
    page.classes = report
        .classes
        .iter()
        .map(|total: &ClassTotal| ClassLink {
            key: total.class.key(),
            label: total.class.label(),
            sources: total.sources,
            messages: total.messages,
            href: senders_href(
                &domain,
                since.as_deref(),
                until.as_deref(),
                Some(total.class.key()),
            ),
            current: class == Some(total.class),
        })
        .collect();
    page.lines = report
        .sources
        .iter()
        .map(|row| {
            let href = format!(
                "/senders/source?{}",
                serde_urlencoded::to_string(
                    [
                        ("domain", Some(domain.as_str())),
                        ("name", Some(row.source.as_str())),
                        ("since", since.as_deref()),
                        ("until", until.as_deref()),
                    ]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect::<Vec<_>>()
                )
                .unwrap_or_default()
            );
            SenderLine {
                href,
                class_key: row.class.key(),
                class_label: row.class.label(),
                rate: percent(row.dmarc_pass, row.messages),
                kind: if row.is_ip { "ip" } else { "name" },
                row: row.clone(),
            }
        })
        .collect();
    page.rules = approvals::list(state.store.db(), &user.scope, Some(&domain), false).await?;
    page.back = senders_href(
        &domain,
        since.as_deref(),
        until.as_deref(),
        class.map(Class::key),
    );
    page.report = Some(report);
    render(page)
}

#[derive(Deserialize)]
pub(super) struct RuleForm {
    csrf: String,
    domain: String,
    /// `domain` (this domain only) or `all`.
    #[serde(default)]
    scope: Option<String>,
    action: String,
    match_kind: String,
    value: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    back: Option<String>,
}

/// Where a form returns: a Senders page link it was given, else the domain's.
fn back_to(back: Option<&str>, domain: &str) -> String {
    match back {
        Some(back) if back.starts_with("/senders?") && !back.contains("//") => back.to_string(),
        _ => senders_href(domain, None, None, None),
    }
}

/// Approve or ignore: a rule for the domain (or every domain).
pub(super) async fn add_rule(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    crate::web::Address(address): crate::web::Address,
    Form(form): Form<RuleForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let bad = |message: String| PageError::new(StatusCode::BAD_REQUEST, message);
    let domain = form.domain.trim().trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&domain) {
        return Err(bad(format!("{domain:?} is not a domain name")));
    }
    let action = Action::parse(&form.action).map_err(|error| bad(error.0))?;
    let kind = MatchKind::parse(&form.match_kind).map_err(|error| bad(error.0))?;
    let value = kind.canonical(&form.value).map_err(|error| bad(error.0))?;
    let note = form.note.unwrap_or_default().trim().to_string();
    if note.chars().count() > 500 || note.chars().any(char::is_control) {
        return Err(bad("the note: at most 500 characters on one line".into()));
    }
    let every_domain = form.scope.as_deref() == Some("all");
    crate::web::senders::add_approval_by(
        &state,
        &crate::audit::Actor::new(&user.username, address),
        &user.scope,
        &NewApproval {
            domain: (!every_domain).then(|| domain.clone()),
            action,
            match_kind: kind,
            value,
            note,
            created_by: user.username.clone(),
        },
    )
    .await?;
    Ok(Redirect::to(&back_to(form.back.as_deref(), &domain)).into_response())
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    csrf: String,
    id: i64,
    domain: String,
    #[serde(default)]
    back: Option<String>,
}

pub(super) async fn revoke_rule(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    crate::web::Address(address): crate::web::Address,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let actor = crate::audit::Actor::new(&user.username, address);
    if crate::web::senders::revoke_approval_by(&state, &actor, &user.scope, form.id)
        .await?
        .is_none()
    {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("there is no active rule {}", form.id),
        ));
    }
    let domain = form.domain.trim().to_lowercase();
    Ok(Redirect::to(&back_to(form.back.as_deref(), &domain)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SenderParams {
    domain: Option<String>,
    name: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

#[derive(Template)]
#[template(path = "sender.html")]
struct SenderPage {
    layout: Layout,
    name: String,
    detail: senders::SenderDetail,
    class_key: &'static str,
    class_label: &'static str,
    rate: String,
    records_href: String,
    back: String,
    chart: String,
    json_href: String,
}

/// A sender's page: all its IPs together, its DKIM and SPF results,
/// reporters, countries and days, with links to its records and IPs.
pub(super) async fn sender(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(params): Params<SenderParams>,
) -> Result<Response, PageError> {
    let domain = params
        .domain
        .as_deref()
        .map(|d| d.trim().trim_end_matches('.').to_lowercase())
        .unwrap_or_default();
    let name = params.name.unwrap_or_default().trim().to_string();
    let visible = crate::query::domains::require_visible(&state.store, &user.scope, &domain)
        .await
        .is_ok();
    if name.is_empty() || !visible {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "name a domain dmarcd knows and one of its senders (from the Senders page)",
        ));
    }
    let since = params.since.filter(|s| !s.trim().is_empty());
    let until = params.until.filter(|s| !s.trim().is_empty());
    let query = SendersQuery {
        domain: domain.clone(),
        since: since.clone(),
        until: until.clone(),
        class: None,
    };
    let detail = senders::sender(&state.store, &user.scope, &state.senders, &query, &name).await?;
    let Some(row) = detail.row.clone() else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("{name} sent no mail as {domain} in this period"),
        ));
    };
    let records = Filter {
        domain: Some(domain.clone()),
        source: Some(format!("\"{name}\"")),
        since: since.clone(),
        until: until.clone(),
        ..Filter::default()
    };
    render(SenderPage {
        layout: Layout::new(&state, Some(user), "/senders"),
        class_key: row.class.key(),
        class_label: row.class.label(),
        rate: percent(row.dmarc_pass, row.messages),
        records_href: format!("/records?{}", records.query_string()),
        back: senders_href(&domain, since.as_deref(), until.as_deref(), None),
        chart: super::aggregate::days_chart(&detail.days),
        json_href: format!(
            "/api/v1/domains/{domain}/senders/source?{}",
            serde_urlencoded::to_string(
                [
                    ("name", Some(name.as_str())),
                    ("since", since.as_deref()),
                    ("until", until.as_deref()),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect::<Vec<_>>()
            )
            .unwrap_or_default()
        ),
        name,
        detail,
    })
}
