//! The MTA-STS page of a monitored domain: the hosted policy (mode, MX
//! patterns, max_age, id, the file as served), whether DNS announces it,
//! the certificate, the MX hosts' STARTTLS, the records to publish, the
//! hosted DMARC record, the change history, and the domain's TLS reports
//! beside it. Admins switch the mode here; `enforce` is refused with its
//! reasons unless forced.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::tls::{mta_bars, result_bars, sessions_per_day};
use super::{check_csrf, render, Layout, PageError, PageUser};
use crate::hosted::dmarc::HostedDmarc;
use crate::hosted::policy::Mode;
use crate::hosted::probe::MxProbe;
use crate::hosted::{HostedError, PolicyRequest};
use crate::query::tls::{self, TlsFilter, TlsGroupBy};
use crate::web::hosted::{service, view, MtaStsView};
use crate::web::svg::named_bars;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "mta_sts.html")]
struct MtaStsPage {
    layout: Layout,
    is_admin: bool,
    csrf: String,
    view: MtaStsView,
    mode: &'static str,
    mx_text: String,
    dns_summary: String,
    dns_ok: bool,
    probes: Vec<MxProbe>,
    probed: bool,
    /// Why the last change was refused (enforce), or other errors.
    refusal: Vec<String>,
    notice: Option<String>,
    dmarc: HostedDmarc,
    dmarc_record: Option<String>,
    tls_chart: String,
    tls_results: String,
    tls_mtas: String,
    tls_link: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PageQuery {
    /// Probe the MX hosts now.
    probe: Option<String>,
    /// What the last form did.
    done: Option<String>,
}

fn domain_of(name: &str) -> Result<String, PageError> {
    let domain = name.trim().trim_end_matches('.').to_lowercase();
    if crate::domain::is_domain_name(&domain) {
        Ok(domain)
    } else {
        Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("{domain} is not a domain name"),
        ))
    }
}

pub(super) async fn page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let domain = domain_of(&name)?;
    let probe = query.probe.is_some();
    let notice = query.done.map(|done| match done.as_str() {
        "policy" => "Policy changed: a new id is served by HTTPS and DNS.".to_string(),
        "dmarc" => "Hosted DMARC record saved.".to_string(),
        _ => String::new(),
    });
    show(&state, user, &domain, probe, Vec::new(), notice).await
}

async fn show(
    state: &AppState,
    user: crate::accounts::SessionUser,
    domain: &str,
    probe: bool,
    refusal: Vec<String>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let service = service(state)?;
    let view = view(state, &user.scope, service, domain).await?;
    let served = view.policy.as_ref().map(|p| p.policy_id.clone());
    let dns = service.dns_state(domain, served.as_deref()).await;
    let probes = if probe {
        let hosts = service.live_mx(domain).await.unwrap_or_default();
        service.probe(&hosts).await
    } else {
        Vec::new()
    };
    let dmarc_record = crate::store::hosted::dmarc_record(state.store.db(), domain)
        .await?
        .map(|stored| stored.record);
    let (tls_chart, tls_results, tls_mtas, tls_link) =
        tls_beside(state, &user.scope, domain).await?;
    render(MtaStsPage {
        layout: Layout::new(state, Some(user.clone()), "/domains"),
        is_admin: user.scope.may(domain, crate::scope::GroupRole::Owner),
        csrf: user.csrf_token,
        mode: view.policy.as_ref().map_or("none", |p| p.policy.mode.key()),
        mx_text: view
            .policy
            .as_ref()
            .map(|p| p.policy.mx.join("\n"))
            .unwrap_or_default(),
        dns_summary: dns.summary,
        dns_ok: dns.id_matches,
        probes,
        probed: probe,
        refusal,
        notice: notice.filter(|n| !n.is_empty()),
        dmarc: dmarc_record
            .as_deref()
            .map(HostedDmarc::from_record)
            .unwrap_or_else(|| HostedDmarc {
                p: "none".to_string(),
                ..HostedDmarc::default()
            }),
        dmarc_record,
        tls_chart,
        tls_results,
        tls_mtas,
        tls_link,
        view,
    })
}

/// The domain's TLS reports of the last 30 days: sessions per day, per
/// result type and failures per sending MTA.
async fn tls_beside(
    state: &AppState,
    scope: &crate::scope::Scope,
    domain: &str,
) -> Result<(String, String, String, String), PageError> {
    let filter = TlsFilter {
        domain: Some(domain.to_string()),
        since: Some(
            (Utc::now() - Duration::days(30))
                .format("%Y-%m-%d")
                .to_string(),
        ),
        ..TlsFilter::default()
    };
    let parsed = filter.parse(scope)?;
    let summary = |group| tls::tls_summary(&state.store, &parsed, group);
    let (days, result_types, mtas) = tokio::try_join!(
        summary(TlsGroupBy::Day),
        summary(TlsGroupBy::ResultType),
        summary(TlsGroupBy::SendingMta),
    )?;
    let chart = sessions_per_day(&days);
    let successful = days.iter().map(|d| d.successful_sessions).sum();
    let results = named_bars(
        "Sessions per result type",
        &result_bars(&filter, successful, &result_types),
    );
    let mta = named_bars("Failed sessions per sending MTA", &mta_bars(&filter, &mtas));
    Ok((
        chart,
        results,
        mta,
        format!("/tls?{}", filter.query_string()),
    ))
}

#[derive(Deserialize)]
pub(super) struct PolicyForm {
    csrf: String,
    mode: String,
    #[serde(default)]
    mx: String,
    #[serde(default)]
    max_age: String,
    #[serde(default)]
    force: Option<String>,
}

/// Changes the policy; a refused `enforce` shows the page with its reasons.
pub(super) async fn change(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    crate::web::Address(address): crate::web::Address,
    Path(name): Path<String>,
    Form(form): Form<PolicyForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let domain = domain_of(&name)?;
    crate::web::hosted::require_owner(&user.scope, &domain)?;
    let service = service(&state)?;
    let mode = Mode::parse(&form.mode).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "mode: give none, testing or enforce",
        )
    })?;
    let mx: Vec<String> = form
        .mx
        .split(|c: char| c == '\n' || c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let max_age = match form.max_age.trim() {
        "" => None,
        text => Some(text.parse::<u64>().map_err(|_| {
            PageError::new(StatusCode::BAD_REQUEST, "max_age: give a number of seconds")
        })?),
    };
    let request = PolicyRequest {
        mode,
        mx: (!mx.is_empty()).then_some(mx),
        max_age,
        force: form.force.is_some(),
    };
    match service
        .change_policy(
            &domain,
            &request,
            &crate::audit::Actor::new(&user.username, address),
        )
        .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("/domains/{domain}/mta-sts?done=policy")).into_response())
        }
        Err(HostedError::Unsafe { refusal }) => {
            let mut reasons = vec!["Not enforced: senders enforcing this policy would refuse to deliver. Fix these, or tick \"enforce anyway\":".to_string()];
            reasons.extend(refusal.reasons);
            let mut response = show(&state, user, &domain, true, reasons, None).await?;
            *response.status_mut() = StatusCode::CONFLICT;
            Ok(response)
        }
        Err(
            error @ (HostedError::Policy(_) | HostedError::NoMx(_) | HostedError::MxLookup { .. }),
        ) => {
            let mut response =
                show(&state, user, &domain, false, vec![error.to_string()], None).await?;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            Ok(response)
        }
        Err(error) => Err(crate::web::ApiError::from(error).into()),
    }
}

#[derive(Deserialize)]
pub(super) struct DmarcForm {
    csrf: String,
    p: String,
    #[serde(default)]
    sp: String,
    #[serde(default)]
    np: String,
    #[serde(default)]
    pct: String,
    #[serde(default)]
    t: Option<String>,
    #[serde(default)]
    rua: String,
    #[serde(default)]
    ruf: String,
    #[serde(default)]
    adkim: String,
    #[serde(default)]
    aspf: String,
}

/// Saves the hosted DMARC record from its fields.
pub(super) async fn set_dmarc(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    crate::web::Address(address): crate::web::Address,
    Path(name): Path<String>,
    Form(form): Form<DmarcForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let domain = domain_of(&name)?;
    crate::web::hosted::require_owner(&user.scope, &domain)?;
    let service = service(&state)?;
    let optional = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
    let list = |text: &str| -> Vec<String> {
        text.split([',', '\n', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                if t.starts_with("mailto:") {
                    t.to_string()
                } else {
                    format!("mailto:{t}")
                }
            })
            .collect()
    };
    let pct = match form.pct.trim() {
        "" => None,
        text => Some(text.parse::<u8>().map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "pct: give a percentage from 0 to 100",
            )
        })?),
    };
    let fields = HostedDmarc {
        p: form.p.trim().to_string(),
        sp: optional(&form.sp),
        np: optional(&form.np),
        t: form.t.is_some().then_some(true),
        pct,
        rua: list(&form.rua),
        ruf: list(&form.ruf),
        adkim: optional(&form.adkim),
        aspf: optional(&form.aspf),
    };
    let actor = crate::audit::Actor::new(&user.username, address);
    match service.set_dmarc(&domain, &fields, &actor).await {
        Ok(_) => Ok(Redirect::to(&format!("/domains/{domain}/mta-sts?done=dmarc")).into_response()),
        Err(HostedError::Dmarc(error)) => {
            let mut response =
                show(&state, user, &domain, false, vec![error.to_string()], None).await?;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            Ok(response)
        }
        Err(error) => Err(crate::web::ApiError::from(error).into()),
    }
}
